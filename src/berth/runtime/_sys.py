"""The only ctypes file of the runtime: the Linux system calls Python 3.11's `os` lacks.

Each wrapper raises OSError with errno and a message naming the call and its object, so the
callers above can wrap it in a BerthError with context.
"""

from __future__ import annotations

import ctypes
import os


_libc = ctypes.CDLL(None, use_errno=True)

# Namespace clone flags (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

CLOSE_RANGE_CLOEXEC = 1 << 2

_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "setns": 308, "unshare": 272, "close_range": 436,
               "capget": 125, "capset": 126, "seccomp": 317},
    "aarch64": {"pivot_root": 41, "setns": 268, "unshare": 97, "close_range": 436,
                "capget": 90, "capset": 91, "seccomp": 277},
}[os.uname().machine]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, f"mount {source or fstype or ''} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    ret = _libc.syscall(_SYSCALLS["pivot_root"], _b(new_root), _b(put_old))
    _check(ret, f"pivot_root {new_root}")


def unshare(flags: int) -> None:
    _check(_libc.syscall(_SYSCALLS["unshare"], ctypes.c_int(flags)), f"unshare {flags:#x}")


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    ret = _libc.syscall(_SYSCALLS["setns"], ctypes.c_int(fd), ctypes.c_int(nstype))
    _check(ret, f"setns {what}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                      ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    return _check(ret, f"prctl {option}")


def close_range_cloexec(first: int = 3) -> None:
    """Mark every descriptor >= first close-on-exec (so exec leaves only 0, 1, 2)."""
    ret = _libc.syscall(_SYSCALLS["close_range"], ctypes.c_uint(first),
                        ctypes.c_uint(0xFFFFFFFF), ctypes.c_uint(CLOSE_RANGE_CLOEXEC))
    _check(ret, "close_range")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(bpf: bytes, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): install a BPF program (struct
    sock_filter[], 8 bytes each). Returns 0, or with TSYNC the id of a thread that refused."""
    insns = (ctypes.c_char * len(bpf)).from_buffer_copy(bpf)
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(insns, ctypes.c_void_p))
    ret = _libc.syscall(_SYSCALLS["seccomp"], 1, ctypes.c_ulong(flags), ctypes.byref(prog))
    return _check(ret, "seccomp")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), f"setdomainname {name}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread as 64-bit masks."""
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYSCALLS["capget"], ctypes.byref(hdr), data), "capget")
    return tuple(data[0].__getattribute__(f) | (data[1].__getattribute__(f) << 32)  # type: ignore[return-value]
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.syscall(_SYSCALLS["capset"], ctypes.byref(hdr), data), "capset")


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


CLONE_INTO_CGROUP = 0x200000000
_SYS_CLONE3 = 435
# pythonapi-style handle: calls keep the GIL, so nothing else runs between the fork hooks and
# the system call; use_errno so a failure reports its errno.
_capi = ctypes.PyDLL(None, use_errno=True)


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(), but the child starts inside the cgroup2 directory `cgroup_fd`
    (clone3 CLONE_INTO_CGROUP). Moving a process later takes the kernel's threadgroup lock,
    whose write side waits for an RCU grace period (5-30 ms here); being born there costs
    nothing. Python's own fork hooks run around the call, as os.fork runs them."""
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=17, cgroup=cgroup_fd)  # SIGCHLD
    _capi.PyOS_BeforeFork()
    pid = _capi.syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(args),
                        ctypes.c_size_t(ctypes.sizeof(args)))
    if pid == 0:
        _capi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _capi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3 into cgroup: {os.strerror(err)}")
    return int(pid)
