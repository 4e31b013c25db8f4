"""Perform the Mount data that store/snapshots.py plans; unmount; find overlay mounts.

    mount_all(mounts, method=None, short_base=None) -> list[Method]
    mount(m, method=None, short_base=None) -> Method
        overlay: the new mount API first (fsopen("overlay"), one fsconfig("lowerdir+") per layer
        from the top down, upperdir, workdir, create, fsmount, move_mount); when the kernel lacks
        it (ENOSYS) or overlayfs refuses `lowerdir+` (before 6.8: EINVAL), mount(2) with full paths if they fit in one page,
        else with short names: `l/<id>` symlinks under the plan's short_base, mount(2) run in
        a child whose working directory is that base (so no thread's cwd changes).
        bind: mount(2) MS_BIND (+ read-only remount).
    unmount(target, detach=False)       umount2; a target that is not mounted is not an error
    is_mounted(target) -> bool
    overlay_mounts_under(root) -> list[str]   the leak check: overlay mount points below root

Errors: RuntimeFailure naming the target and the failing step, with the OSError as cause.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from berth.errors import RuntimeFailure
from berth.store import _mountapi as sys_
from berth.store.snapshots import Method, Mount, ShortNames, choose_method

__all__ = [
    "MountFailed", "ensure_links", "is_mounted", "mount", "mount_all", "mounts_under",
    "overlay_mounts_under", "unmount",
]


class MountFailed(RuntimeFailure):
    def __init__(self, target: str, step: str, cause: OSError | str) -> None:
        super().__init__(f"overlay at {target}: {step} failed: {cause}")
        self.target = target
        self.step = step
        self.errno = cause.errno if isinstance(cause, OSError) else None


def mount_all(mounts: Sequence[Mount], *, method: Method | None = None,
              short_base: str | Path | None = None) -> list[Method]:
    """Perform `mounts` in order; on a failure, unmount the ones already done."""
    done: list[Mount] = []
    used: list[Method] = []
    try:
        for m in mounts:
            used.append(mount(m, method=method, short_base=short_base))
            done.append(m)
    except BaseException as err:
        for m in reversed(done):
            try:
                unmount(m.target, detach=True)
            except RuntimeFailure as cleanup:
                err.add_note(f"cleanup also failed: {cleanup}")
        raise
    return used


def mount(m: Mount, *, method: Method | None = None,
          short_base: str | Path | None = None) -> Method:
    """Perform one Mount; returns the method used. `method` forces one (tests, old kernels);
    by default the new API, falling back to mount(2) when the kernel lacks it. `short_base`
    overrides the plan's directory for the `l/` links."""
    for d in m.dirs():
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise MountFailed(m.target, f"mkdir {d}", e) from e
    if m.type == "bind":
        _bind(m)
        return Method.MOUNT
    if m.type != "overlay":
        raise MountFailed(m.target, "plan", f"unknown mount type {m.type!r}")
    base = str(short_base or m.short_base)
    refused: MountFailed | None = None
    if method is None:
        method = choose_method(m)
        if method is Method.NEW_API:
            try:
                _mount_new_api(m)
                return Method.NEW_API
            except MountFailed as e:
                if not _new_api_unavailable(e):
                    raise
                refused = e
            method = choose_method(m, new_api=False)
    else:
        choose_method(m, force=method)  # raises when it cannot fit
    try:
        if method is Method.NEW_API:
            _mount_new_api(m)
        elif method is Method.MOUNT:
            _mount_syscall(m, m.options(), cwd=None)
        else:
            if not base:
                raise MountFailed(m.target, "plan", "short names need a base directory")
            short = ShortNames.plan(base, m.lowers, existing=_read_links(base))
            ensure_links(short)
            _mount_syscall(m, short.options(m), cwd=base)
    except MountFailed as e:
        if refused is not None:
            e.add_note(f"the new mount API was tried first: {refused}")
        raise
    return method


def _new_api_unavailable(e: MountFailed) -> bool:
    """The kernel lacks the new API (ENOSYS, or a seccomp filter's EPERM at fsopen) or
    overlayfs does not know `lowerdir+` (kernels before 6.8: EINVAL, and the kernel's message
    on the context fd says "Unknown parameter"; a bad layer is EINVAL too, so the message
    decides)."""
    if e.step == "fsopen overlay":
        return e.errno in (errno.ENOSYS, errno.EPERM)
    return (e.step.startswith("fsconfig lowerdir+") and e.errno == errno.EINVAL
            and "Unknown parameter" in str(e))


def _mount_new_api(m: Mount) -> None:
    step = "fsopen overlay"
    fs_fd = mnt_fd = -1
    try:
        fs_fd = sys_.fsopen("overlay")
        for lower in m.lowers:  # top first: each lowerdir+ appends below the previous one
            step = f"fsconfig lowerdir+ {lower}"
            sys_.fsconfig_string(fs_fd, "lowerdir+", lower)
        if m.upper is not None:
            step = "fsconfig upperdir"
            sys_.fsconfig_string(fs_fd, "upperdir", m.upper)
            step = "fsconfig workdir"
            sys_.fsconfig_string(fs_fd, "workdir", m.work or "")
        step = "fsconfig create"
        sys_.fsconfig_create(fs_fd)
        step = "fsmount"
        mnt_fd = sys_.fsmount(fs_fd, sys_.MOUNT_ATTR_RDONLY if m.readonly else 0)
        step = f"move_mount to {m.target}"
        sys_.move_mount(mnt_fd, m.target)
    except OSError as e:
        raise MountFailed(m.target, step, e) from e
    finally:
        for fd in (mnt_fd, fs_fd):
            if fd >= 0:
                os.close(fd)


def _mount_syscall(m: Mount, data: str, cwd: str | None) -> None:
    flags = sys_.MS_RDONLY if m.readonly else 0
    if cwd is None:
        try:
            sys_.mount("overlay", m.target, "overlay", flags, data)
        except OSError as e:
            raise MountFailed(m.target, "mount(2) overlay", e) from e
        return
    # Relative lowers resolve against the caller's cwd, which is per process: mount from a
    # child so no other thread of ours sees its cwd change. Same mount namespace, so the
    # mount is ours.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only async-signal-safe work, then _exit
        code = 0
        try:
            os.close(r)
            os.chdir(cwd)
            sys_.mount("overlay", m.target, "overlay", flags, data)
        except OSError as e:
            code = 1
            try:
                os.write(w, f"{e.errno or 0}\n{e}".encode())
            except OSError:
                pass
        except BaseException:  # noqa: BLE001 - never return into the parent's code
            code = 2
        os._exit(code)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            report = f.read().decode(errors="replace")
    finally:
        _, status = os.waitpid(pid, 0)
    if status != 0:
        num, _, msg = report.partition("\n")
        err = OSError(int(num) if num.isdigit() else errno.EIO, msg or f"status {status}")
        raise MountFailed(m.target, f"mount(2) overlay with short names in {cwd}", err)


def _bind(m: Mount) -> None:
    try:
        sys_.mount(m.source, m.target, None, sys_.MS_BIND, None)
    except OSError as e:
        raise MountFailed(m.target, f"bind {m.source}", e) from e
    if m.readonly:
        try:
            sys_.mount("", m.target, None,
                       sys_.MS_BIND | sys_.MS_REMOUNT | sys_.MS_RDONLY, None)
        except OSError as e:
            try:
                sys_.umount2(m.target, sys_.MNT_DETACH)
            except OSError as cleanup:
                e.add_note(f"cleanup also failed: {cleanup}")
            raise MountFailed(m.target, "remount read-only", e) from e


def _read_links(base: str) -> dict[str, str]:
    out: dict[str, str] = {}
    ldir = os.path.join(base, "l")
    try:
        names = os.listdir(ldir)
    except FileNotFoundError:
        return out
    for name in names:
        try:
            out[f"l/{name}"] = os.readlink(os.path.join(ldir, name))
        except OSError:
            continue
    return out


def ensure_links(short: ShortNames) -> None:
    """Create the short-name symlinks the plan needs (atomically: symlink then rename)."""
    os.makedirs(os.path.join(short.base, "l"), exist_ok=True)
    for name, target in short.links.items():
        path = os.path.join(short.base, name)
        try:
            if os.readlink(path) == target:
                continue
        except OSError:
            pass
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            os.symlink(target, tmp)
            os.replace(tmp, path)
        except OSError as e:
            raise MountFailed(target, f"short-name link {path}", e) from e


def unmount(target: str | Path, *, detach: bool = False) -> None:
    """Unmount `target` (all mounts stacked there). Not mounted is not an error."""
    target = os.path.realpath(target)
    for _ in range(64):
        if not is_mounted(target):
            return
        try:
            sys_.umount2(target, sys_.MNT_DETACH if detach else 0)
        except OSError as e:
            if e.errno == errno.EINVAL and not is_mounted(target):
                return
            raise MountFailed(target, "umount", e) from e
    raise MountFailed(target, "umount", "still mounted after 64 unmounts")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline, backslash (and ':' for lowerdir+) as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mountinfo(path: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """(mount point, fs type) for each entry of the mount table."""
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index("-")
            except ValueError:
                continue
            out.append((_unescape(fields[4]), fields[sep + 1]))
    return out


def is_mounted(target: str | Path) -> bool:
    target = os.path.realpath(target)
    return any(point == target for point, _ in _mountinfo())


def mounts_under(root: str | Path, fstype: str | None = None) -> list[str]:
    root = os.path.realpath(root)
    prefix = root.rstrip("/") + "/"
    return sorted({p for p, t in _mountinfo()
                   if (p == root or p.startswith(prefix)) and (fstype is None or t == fstype)})


def overlay_mounts_under(root: str | Path) -> list[str]:
    """Overlay mount points at or below `root`: what a leak check wants to be empty."""
    return mounts_under(root, "overlay")
