"""Open paths inside a root directory as if it were `/` (a container's root filesystem, or any
directory a copy writes into): symlinks are followed, but an absolute link starts again at the
root and `..` stops at it, so no path leads outside (docker's FollowSymlinkInScope, crun's
`safe_openat`).

    open_in_root(root_fd, path, flags)   openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS); on
                                         kernels without openat2 (before 5.6) a walk of
                                         `scoped_resolve` with O_NOFOLLOW at the end
    scoped_resolve(path, lookup)         pure: the path, relative to the root, that `path`
                                         reaches; `lookup(rel)` -> ('link', target) or (kind, '')

Raises OSError as the kernel does (ENOENT, ENOTDIR, ELOOP...), with the path named.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

__all__ = ["open_in_root", "scoped_resolve"]

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every architecture (asm-generic, since 5.6)
_MAX_LINKS = 40


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc: ctypes.CDLL | None = None
_have_openat2 = True


def _openat2(dir_fd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags, mode, resolve)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd),
                       ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0o600) -> int:
    """Open `path` (absolute or relative, read as relative to the root) under `root_fd`. The
    last component is followed unless `flags` has O_NOFOLLOW (then a symlink there opens as
    the link itself, with O_PATH)."""
    global _have_openat2
    rel = path.lstrip("/") or "."
    flags |= os.O_CLOEXEC
    if _have_openat2:
        try:
            return _openat2(root_fd, rel, flags, mode if flags & os.O_CREAT else 0,
                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter
                raise
            _have_openat2 = False
    return _open_walk(root_fd, rel, flags, mode)


def _open_walk(root_fd: int, rel: str, flags: int, mode: int) -> int:
    """Without openat2: resolve with lstat/readlink under the root, then open the result with
    O_NOFOLLOW on every path (a race with a concurrent rename can fail, not escape: the final
    open still does not follow a symlink)."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    follow_last = not flags & os.O_NOFOLLOW

    def lookup(r: str) -> tuple[str, str]:
        try:
            st = os.stat(r, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            return ("missing", "")
        import stat as st_
        if st_.S_ISLNK(st.st_mode):
            return ("link", os.readlink(r, dir_fd=root_fd))
        return ("dir" if st_.S_ISDIR(st.st_mode) else "other", "")

    if not parts:
        return os.open(".", flags, mode, dir_fd=root_fd)
    parent = scoped_resolve("/".join(parts[:-1]), lookup, follow_last=True)
    last = parts[-1]
    if last == "..":
        target = parent.rpartition("/")[0] if "/" in parent else ""
        return os.open(target or ".", flags, mode, dir_fd=root_fd)
    full = f"{parent}/{last}" if parent else last
    if follow_last:
        full = scoped_resolve(full, lookup, follow_last=True) or "."
    return os.open(full, flags | os.O_NOFOLLOW if full != "." else flags, mode,
                   dir_fd=root_fd)


def scoped_resolve(path: str, lookup: Callable[[str], tuple[str, str]], *,
                   follow_last: bool = True) -> str:
    """Pure: the path relative to the root ('' for the root) that `path` names when symlinks
    are followed inside the root: an absolute target restarts at the root, `..` at the root
    stays there. A missing component ends the resolution (the rest is appended as written);
    the last component is followed only if `follow_last`. ELOOP after 40 links."""
    pending = [p for p in reversed(path.split("/"))]
    stack: list[str] = []
    links = 0
    while pending:
        comp = pending.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if stack:
                stack.pop()
            continue
        stack.append(comp)
        if not pending and not follow_last:
            break
        kind, target = lookup("/".join(stack))
        if kind == "link":
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            stack.pop()
            if target.startswith("/"):
                stack.clear()
            pending.extend(reversed(target.split("/")))
        elif kind == "missing":
            stack.extend(p for p in reversed(pending) if p not in ("", "."))
            # what is left is appended as written, `..` resolved lexically
            out: list[str] = []
            for p in stack:
                if p == "..":
                    if out:
                        out.pop()
                else:
                    out.append(p)
            return "/".join(out)
    return "/".join(stack)
