"""Mount options -> flags, and paths resolved safely inside a root.

`parse_options` is pure (unit-tested). `resolve_in_root` treats the container's root filesystem
as hostile: symlinks are followed only inside it, `..` stops at its top, so a mount target or a
device path in an image can never land on the host.
"""

from __future__ import annotations

import os
from collections import namedtuple

from berth.errors import InvalidConfig
from berth.runtime import _sys

# option -> (clear, set)
_FLAGS: dict[str, tuple[int, int]] = {
    "ro": (0, _sys.MS_RDONLY), "rw": (_sys.MS_RDONLY, 0),
    "nosuid": (0, _sys.MS_NOSUID), "suid": (_sys.MS_NOSUID, 0),
    "nodev": (0, _sys.MS_NODEV), "dev": (_sys.MS_NODEV, 0),
    "noexec": (0, _sys.MS_NOEXEC), "exec": (_sys.MS_NOEXEC, 0),
    "sync": (0, _sys.MS_SYNCHRONOUS), "async": (_sys.MS_SYNCHRONOUS, 0),
    "dirsync": (0, _sys.MS_DIRSYNC), "remount": (0, _sys.MS_REMOUNT),
    "mand": (0, _sys.MS_MANDLOCK), "nomand": (_sys.MS_MANDLOCK, 0),
    "noatime": (0, _sys.MS_NOATIME), "atime": (_sys.MS_NOATIME, 0),
    "nodiratime": (0, _sys.MS_NODIRATIME), "diratime": (_sys.MS_NODIRATIME, 0),
    "relatime": (0, _sys.MS_RELATIME), "norelatime": (_sys.MS_RELATIME, 0),
    "strictatime": (0, _sys.MS_STRICTATIME), "nostrictatime": (_sys.MS_STRICTATIME, 0),
    "bind": (0, _sys.MS_BIND), "rbind": (0, _sys.MS_BIND | _sys.MS_REC),
    "silent": (0, _sys.MS_SILENT), "loud": (_sys.MS_SILENT, 0),
    "lazytime": (0, _sys.MS_LAZYTIME), "nolazytime": (_sys.MS_LAZYTIME, 0),
    "nosymfollow": (0, _sys.MS_NOSYMFOLLOW), "symfollow": (_sys.MS_NOSYMFOLLOW, 0),
}
PROPAGATION: dict[str, int] = {
    "private": _sys.MS_PRIVATE, "rprivate": _sys.MS_PRIVATE | _sys.MS_REC,
    "shared": _sys.MS_SHARED, "rshared": _sys.MS_SHARED | _sys.MS_REC,
    "slave": _sys.MS_SLAVE, "rslave": _sys.MS_SLAVE | _sys.MS_REC,
    "unbindable": _sys.MS_UNBINDABLE, "runbindable": _sys.MS_UNBINDABLE | _sys.MS_REC,
}
# Recursive attributes (config.md's AT_RECURSIVE options): option -> (clear, set), for the
# mount and every mount below it. The atime modes are left out: they are not plain bits.
_RECURSIVE: dict[str, tuple[int, int]] = {
    "r" + name: _FLAGS[name] for name in ("ro", "rw", "nosuid", "suid", "nodev", "dev",
                                          "noexec", "exec", "nodiratime", "diratime",
                                          "nosymfollow", "symfollow")}
# Options runc accepts that are not for the kernel.
_IGNORED = {"tmpcopyup", "defaults"}


class Options(namedtuple("Options", "flags propagation data recursive",
                         defaults=((0, 0),))):
    __slots__ = ()
    flags: int
    propagation: tuple[int, ...]
    data: str
    recursive: tuple[int, int]  # (clear, set) for the mount and all mounts below it

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & _sys.MS_BIND)


def parse_options(options: tuple[str, ...] | list[str], field: str = "mounts[].options") -> Options:
    flags = 0
    rclear = rset = 0
    prop: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, set_ = _FLAGS[opt]
            flags = (flags & ~clear) | set_
        elif opt in _RECURSIVE:
            clear, set_ = _RECURSIVE[opt]
            rclear, rset = (rclear | clear) & ~set_, (rset & ~clear) | set_
        elif opt in ("ratime", "rnoatime", "rrelatime", "rnorelatime", "rstrictatime",
                     "rnostrictatime"):
            raise InvalidConfig(field, f"option {opt!r} (recursive atime mode) is not supported")
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        elif opt in _IGNORED:
            continue
        elif opt in ("idmap", "ridmap"):
            raise InvalidConfig(field, f"option {opt!r} (id-mapped mounts) is not supported")
        else:
            data.append(opt)
    return Options(flags, tuple(prop), ",".join(data), (rclear, rset))


def resolve_in_root(root: str, path: str, max_links: int = 255) -> str:
    """Host path of `path` as seen inside `root`, following symlinks only within root.

    Components that do not exist yet are appended lexically (the caller creates them).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            resolved.extend(p for p in parts if p not in ("", "."))
            # Lexical from here on, but `..` must still not climb out.
            out: list[str] = []
            for p in resolved:
                if p == "..":
                    if out:
                        out.pop()
                else:
                    out.append(p)
            return os.path.join(root, *out)
        if (st.st_mode & 0o170000) == 0o120000:
            links += 1
            if links > max_links:
                raise OSError(40, f"too many symlinks resolving {path} in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def mkdir_all_in_root(root: str, path: str, mode: int = 0o755) -> str:
    """Create `path` (a directory) inside root, component by component, never leaving root."""
    target = resolve_in_root(root, path)
    rel = os.path.relpath(target, root)
    cur = root
    if rel != ".":
        for part in rel.split("/"):
            cur = resolve_in_root(root, os.path.relpath(os.path.join(cur, part), root))
            try:
                os.mkdir(cur, mode)
            except FileExistsError:
                pass
    return target


def ensure_file_in_root(root: str, path: str) -> str:
    """Create an empty regular file at `path` inside root (for a file bind mount)."""
    parent = mkdir_all_in_root(root, os.path.dirname(path) or "/")
    target = resolve_in_root(root, os.path.relpath(os.path.join(parent, os.path.basename(path)), root))
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
    return target
