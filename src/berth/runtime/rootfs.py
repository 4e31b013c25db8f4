"""The container's root filesystem: spec mounts, /dev, pivot_root, masked and read-only paths.

Runs inside the container's new mount namespace, in the init process, before pivot_root (for
`prepare`) and after it (for `finish`). Every target path is resolved inside the rootfs.
"""

from __future__ import annotations

import os
import stat
from collections import namedtuple

from berth.errors import RuntimeFailure
from berth.oci.runtime_spec import Device, Mount, Spec
from berth.runtime import _sys
from berth.runtime.mounts import (PROPAGATION, ensure_file_in_root, mkdir_all_in_root,
                                  parse_options, resolve_in_root)

DEFAULT_DEVICES = (
    Device("/dev/null", "c", 1, 3), Device("/dev/zero", "c", 1, 5),
    Device("/dev/full", "c", 1, 7), Device("/dev/random", "c", 1, 8),
    Device("/dev/urandom", "c", 1, 9), Device("/dev/tty", "c", 5, 0),
)
DEFAULT_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                 ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


class CgroupView(namedtuple("CgroupView", "v1 v2_path")):
    """What a `cgroup` mount needs: v1 hierarchies (mountpoint, options, our path) or v2."""

    __slots__ = ()
    v1: tuple[tuple[str, str, str], ...]   # (host mountpoint, super options, container path)
    v2_path: str | None                    # container path in the unified hierarchy (pure v2)


def _fail(step: str, err: OSError) -> RuntimeFailure:
    return RuntimeFailure(f"{step}: {err.strerror or err}")


def prepare(spec: Spec, rootfs: str, bundle: str, cgroups: CgroupView, userns: bool) -> None:
    """Everything before pivot_root: propagation, the rootfs bind, spec mounts, /dev."""
    # Host mounts must never see ours: slave (or private) first; a requested shared
    # propagation is applied to the new / after pivot_root (pivot_root refuses shared parents).
    prop = _sys.MS_SLAVE | _sys.MS_REC
    if spec.linux.rootfs_propagation in ("private", "rprivate"):
        prop = PROPAGATION[spec.linux.rootfs_propagation]
    try:
        _sys.mount(None, "/", None, prop)
        # pivot_root needs the new root to be a mount point whose parent is not shared.
        _sys.mount(rootfs, rootfs, None, _sys.MS_BIND | _sys.MS_REC)
    except OSError as e:
        raise _fail(f"rootfs {rootfs}", e) from e
    for i, m in enumerate(spec.mounts):
        try:
            _mount_one(m, rootfs, bundle, cgroups, f"mounts[{i}]")
        except OSError as e:
            raise _fail(f"mounts[{i}] {m.type or 'bind'} on {m.destination}", e) from e
    dev_is_tmpfs = any(m.destination == "/dev" for m in spec.mounts)
    _make_devices(spec, rootfs, userns, dev_is_tmpfs)


def _mount_one(m: Mount, rootfs: str, bundle: str, cgroups: CgroupView, field: str) -> None:
    opts = parse_options(m.options, f"{field}.options")
    if m.type == "cgroup" or m.type == "cgroup2":
        _mount_cgroups(m, rootfs, opts.flags, cgroups)
        return
    if opts.is_bind or m.type == "bind":
        source = m.source if m.source.startswith("/") else os.path.join(bundle, m.source)
        if os.path.isdir(source):
            target = mkdir_all_in_root(rootfs, m.destination)
        else:
            target = ensure_file_in_root(rootfs, m.destination)
        _sys.mount(source, target, None, _sys.MS_BIND | (opts.flags & _sys.MS_REC))
        rest = opts.flags & ~(_sys.MS_BIND | _sys.MS_REC | _sys.MS_REMOUNT)
        if rest:
            _sys.mount(None, target, None, _sys.MS_BIND | _sys.MS_REMOUNT | rest | _locked_flags(target))
    else:
        target = mkdir_all_in_root(rootfs, m.destination)
        _sys.mount(m.source or m.type, target, m.type, opts.flags, opts.data or None)
    if opts.recursive != (0, 0):
        _remount_tree(target, *opts.recursive)
    for p in opts.propagation:
        _sys.mount(None, target, None, p)


def _remount_tree(target: str, clear: int, set_: int) -> None:
    """Recursive attributes (rro, rnosuid...): what mount_setattr(AT_RECURSIVE) does, as one
    bind remount of `target` and of each mount below it, parents first."""
    prefix = target.rstrip("/") + "/"
    points = [target]
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if "\\" in point:  # octal escapes: \040 for a space...
                point = point.encode().decode("unicode_escape").encode("latin-1").decode()
            if point.startswith(prefix):
                points.append(point)
    for point in points:
        flags = (_locked_flags(point) & ~clear) | set_
        _sys.mount(None, point, None, _sys.MS_BIND | _sys.MS_REMOUNT | flags)


def _locked_flags(path: str) -> int:
    """Flags a bind remount must keep (the kernel refuses to drop them in a user namespace)."""
    st = os.statvfs(path)
    out = 0
    for bit, flag in ((os.ST_NOSUID, _sys.MS_NOSUID), (os.ST_NODEV, _sys.MS_NODEV),
                      (os.ST_NOEXEC, _sys.MS_NOEXEC), (os.ST_RDONLY, _sys.MS_RDONLY),
                      (os.ST_NOATIME, _sys.MS_NOATIME), (os.ST_NODIRATIME, _sys.MS_NODIRATIME),
                      (os.ST_RELATIME, _sys.MS_RELATIME)):
        if st.f_flag & bit:
            out |= flag
    return out


def _mount_cgroups(m: Mount, rootfs: str, flags: int, cg: CgroupView) -> None:
    target = mkdir_all_in_root(rootfs, m.destination)
    base = flags & (_sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC)
    if cg.v2_path is not None or not cg.v1:
        _sys.mount("cgroup2", target, "cgroup2", flags)
        return
    # v1 (and hybrid hosts): a tmpfs holding one read-only bind of our cgroup per hierarchy,
    # as runc does, so the container sees its own limits and nothing of the host's tree.
    _sys.mount("tmpfs", target, "tmpfs", base, "mode=755")
    for mountpoint, _super_opts, path in cg.v1:
        name = os.path.basename(mountpoint)
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        source = os.path.join(mountpoint, path.lstrip("/"))
        _sys.mount(source, sub, None, _sys.MS_BIND | _sys.MS_REC)
        _sys.mount(None, sub, None, _sys.MS_BIND | _sys.MS_REMOUNT | flags | base)


def _make_devices(spec: Spec, rootfs: str, userns: bool, dev_is_tmpfs: bool) -> None:
    devices: dict[str, Device] = {d.path: d for d in DEFAULT_DEVICES}
    devices.update({d.path: d for d in spec.linux.devices})
    old = os.umask(0)
    try:
        for dev in devices.values():
            try:
                _make_device(dev, rootfs, userns)
            except OSError as e:
                raise _fail(f"device {dev.path}", e) from e
        if dev_is_tmpfs:
            for src, link in DEFAULT_LINKS:
                _symlink(rootfs, src, link)
        pts = resolve_in_root(rootfs, "/dev/pts/ptmx")
        if os.path.exists(pts):
            ptmx = resolve_in_root(rootfs, "/dev/ptmx")
            if os.path.lexists(ptmx):
                os.unlink(ptmx)
            os.symlink("pts/ptmx", ptmx)
    finally:
        os.umask(old)


def _symlink(rootfs: str, src: str, link: str) -> None:
    target = resolve_in_root(rootfs, link)
    if not os.path.lexists(target):
        os.symlink(src, target)


def _make_device(dev: Device, rootfs: str, userns: bool) -> None:
    parent = mkdir_all_in_root(rootfs, os.path.dirname(dev.path))
    target = resolve_in_root(rootfs, os.path.relpath(os.path.join(parent, os.path.basename(dev.path)), rootfs))
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[dev.type]
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            raise OSError(21, f"{dev.path} is a directory in the rootfs")
        os.unlink(target)
    if userns:
        # mknod is not allowed in a user namespace: bind the host's node instead.
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o000))
        _sys.mount(dev.path, target, None, _sys.MS_BIND)
        return
    os.mknod(target, kind | (dev.file_mode & 0o7777), os.makedev(dev.major, dev.minor))
    os.chown(target, dev.uid, dev.gid, follow_symlinks=False)


def pivot(rootfs: str) -> None:
    try:
        old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.chdir(rootfs)
            _sys.pivot_root(".", ".")
            # The old root is now stacked on the new one, but "." still names the new root:
            # go to the old one by its fd, or the rslave below would also strip the
            # propagation ("shared", "unbindable"...) the spec gave the container's mounts.
            os.fchdir(old_root)
        finally:
            os.close(old_root)
        # Detach the old root without our unmounts reaching the host.
        _sys.mount(None, ".", None, _sys.MS_SLAVE | _sys.MS_REC)
        _sys.umount2(".", _sys.MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise _fail("pivot_root", e) from e


def finish(spec: Spec) -> None:
    """After pivot_root: propagation of /, masked and read-only paths, a read-only root."""
    try:
        if spec.linux.rootfs_propagation in ("shared", "rshared", "slave", "rslave",
                                              "private", "rprivate", "unbindable", "runbindable"):
            _sys.mount(None, "/", None, PROPAGATION[spec.linux.rootfs_propagation])
        for path in spec.linux.readonly_paths:
            _readonly(path)
        for path in spec.linux.masked_paths:
            _mask(path)
        if spec.root_readonly:
            _sys.mount(None, "/", None,
                       _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY | _locked_flags("/"))
    except OSError as e:
        raise _fail("finishing the rootfs", e) from e


def _readonly(path: str) -> None:
    try:
        _sys.mount(path, path, None, _sys.MS_BIND | _sys.MS_REC)
    except FileNotFoundError:
        return
    _sys.mount(None, path, None,
               _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY | _sys.MS_REC | _locked_flags(path))


def _mask(path: str) -> None:
    try:
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if not os.path.lexists(path):
            return
        if is_dir:
            _sys.mount("tmpfs", path, "tmpfs", _sys.MS_RDONLY)
        else:
            _sys.mount("/dev/null", path, None, _sys.MS_BIND)
    except FileNotFoundError:
        return
