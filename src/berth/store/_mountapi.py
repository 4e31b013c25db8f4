"""The store's ctypes: the new mount API (fsopen, fsconfig, fsmount, move_mount), mount(2)
and umount2(2). The runtime has its own in runtime/_sys.py; store/ may not import it.

Each wrapper raises OSError(errno, "<call> <object>: <strerror>[: <kernel message>]"). For
fsconfig the kernel's own message is read from the filesystem context fd (fsopen(2):
"e overlayfs: ..." lines) and appended, so a refused layer says why.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "FSCONFIG_CMD_CREATE", "FSCONFIG_SET_FLAG", "FSCONFIG_SET_STRING", "MNT_DETACH",
    "MOUNT_ATTR_RDONLY", "MS_BIND", "MS_RDONLY", "MS_REMOUNT", "fsconfig_create",
    "fsconfig_flag", "fsconfig_string", "fsmount", "fsopen", "mount", "move_mount", "umount2",
]

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# Generic syscall numbers, the same on x86_64 and aarch64 (asm-generic/unistd.h, 5.2+).
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _fail(what: str, extra: str = "") -> OSError:
    err = ctypes.get_errno()
    msg = f"{what}: {os.strerror(err)}" + (f": {extra}" if extra else "")
    return OSError(err, msg)


def kernel_log(fs_fd: int) -> str:
    """Messages the kernel queued on a filesystem context fd, joined by '; ' (may be '')."""
    out = []
    for _ in range(16):
        try:
            data = os.read(fs_fd, 4096)
        except OSError:  # ENODATA: nothing more queued
            break
        if not data:
            break
        out.append(data.decode(errors="replace").strip())
    return "; ".join(out)


def fsopen(fstype: str) -> int:
    ret = _syscall(SYS_FSOPEN, ctypes.c_char_p(fstype.encode()), ctypes.c_uint(FSOPEN_CLOEXEC))
    if ret < 0:
        raise _fail(f"fsopen {fstype}")
    return int(ret)


def _fsconfig(fs_fd: int, cmd: int, key: str | None, value: bytes | None, what: str) -> None:
    ret = _syscall(SYS_FSCONFIG, ctypes.c_int(fs_fd), ctypes.c_uint(cmd),
                   ctypes.c_char_p(key.encode() if key is not None else None),
                   ctypes.c_char_p(value), ctypes.c_int(0))
    if ret < 0:
        err = ctypes.get_errno()
        log = kernel_log(fs_fd)
        ctypes.set_errno(err)
        raise _fail(what, log)


def fsconfig_string(fs_fd: int, key: str, value: str) -> None:
    _fsconfig(fs_fd, FSCONFIG_SET_STRING, key, os.fsencode(value), f"fsconfig {key}={value}")


def fsconfig_flag(fs_fd: int, key: str) -> None:
    _fsconfig(fs_fd, FSCONFIG_SET_FLAG, key, None, f"fsconfig {key}")


def fsconfig_create(fs_fd: int) -> None:
    _fsconfig(fs_fd, FSCONFIG_CMD_CREATE, None, None, "fsconfig create")


def fsmount(fs_fd: int, attr: int = 0) -> int:
    ret = _syscall(SYS_FSMOUNT, ctypes.c_int(fs_fd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                   ctypes.c_uint(attr))
    if ret < 0:
        raise _fail("fsmount")
    return int(ret)


def move_mount(mnt_fd: int, target: str) -> None:
    ret = _syscall(SYS_MOVE_MOUNT, ctypes.c_int(mnt_fd), ctypes.c_char_p(b""),
                   ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(target)),
                   ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
    if ret < 0:
        raise _fail(f"move_mount to {target}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    ret = _libc.mount(os.fsencode(source), os.fsencode(target),
                      fstype.encode() if fstype else None, flags,
                      os.fsencode(data) if data is not None else None)
    if ret < 0:
        raise _fail(f"mount {fstype or 'bind'} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(os.fsencode(target), flags) < 0:
        raise _fail(f"umount {target}")
