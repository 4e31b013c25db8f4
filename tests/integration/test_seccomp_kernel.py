"""Seccomp filters loaded into the real kernel.

Every filter is loaded in a forked child (a filter cannot be removed), which reports what it saw
through a pipe as JSON and leaves with os._exit; the parent reaps it before the test ends.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import pytest

from berth.runtime import seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root and the real kernel"),
    pytest.mark.skipif(os.uname().machine.startswith(("mips", "alpha")),
                       reason="syscall numbers below are the generic ones"),
]

DOCKER_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUSER = 0x10000000
NR_CLONE3 = 435  # the same on every architecture since 5.3
NR_STATMOUNT = 457  # since 6.8
READ_IMPLIES_EXEC = 0x0400000
AF_ALG, AF_VSOCK = 38, 40

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def call(fn: Callable[..., int], *args: Any) -> int:
    """0 or the positive result, or -errno."""
    ctypes.set_errno(0)
    rc = fn(*args)
    return -ctypes.get_errno() if rc == -1 else rc


def in_child(setup: Callable[[], None], probe: Callable[[], Any]) -> tuple[int, Any]:
    """Fork; in the child set no_new_privs, run `setup` (which loads a filter), then `probe`.
    Returns (wait status, what probe returned)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(r)
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            setup()
            result: Any = {"ok": probe()}
        except BaseException as e:  # noqa: BLE001 - report everything to the parent
            result = {"error": f"{type(e).__name__}: {e}"}
            code = 1
        try:
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not data:
        return status, None
    out = json.loads(data)
    if "error" in out:
        raise AssertionError(f"child failed: {out['error']}")
    return status, out["ok"]


def loader(kind: str, prof: dict[str, Any]) -> Callable[[], None]:
    """The two ways to install: libseccomp's seccomp_load, or a prepared Program."""
    if kind == "seccomp_load":
        return lambda: seccomp.compile(prof).load()
    prog = seccomp.program(prof)  # generated in the parent, as the runtime does
    return prog.load


def status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def kernel() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()))


@pytest.fixture(params=["seccomp_load", "program"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_default_profile(kind: str) -> None:
    prof = seccomp.default_profile(DOCKER_CAPS)

    def probe() -> dict[str, Any]:
        def sock(family: int) -> int:
            try:
                socket.socket(family, socket.SOCK_SEQPACKET if family == AF_ALG
                              else socket.SOCK_STREAM).close()
                return 0
            except OSError as e:
                return -(e.errno or 0)

        return {
            "seccomp": status_field("Seccomp"),
            "filters": status_field("Seccomp_filters"),
            "getpid": os.getpid(),
            "unshare_user": call(libc.unshare, CLONE_NEWUSER),
            "clone3": call(libc.syscall, NR_CLONE3, None, 0),
            "personality_query": call(libc.personality, ctypes.c_ulong(0xFFFFFFFF)),
            "personality_rie": call(libc.personality, ctypes.c_ulong(READ_IMPLIES_EXEC)),
            "af_unix": sock(socket.AF_UNIX),
            "af_vsock": sock(AF_VSOCK),
            "af_alg": sock(AF_ALG),
            "statmount": call(libc.syscall, NR_STATMOUNT, None, None, 0, 0),
            "cwd": os.getcwd(),
        }

    status, seen = in_child(loader(kind, prof), probe)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert seen["seccomp"] == "2"
    assert seen["filters"] == "1"
    assert seen["getpid"] > 1
    assert seen["unshare_user"] == -errno.EPERM
    assert seen["clone3"] == -errno.ENOSYS  # so libc falls back to clone, which is filtered
    assert seen["personality_query"] >= 0
    assert seen["personality_rie"] == -errno.EPERM
    assert seen["af_unix"] == 0
    assert seen["af_vsock"] == -errno.EPERM
    assert seen["af_alg"] == -errno.EPERM
    assert seen["cwd"] == os.getcwd()
    if kernel() >= (6, 8):
        # allowed by the profile even where libseccomp has no name for it
        assert seen["statmount"] in (-errno.EFAULT, -errno.EINVAL)


def test_default_profile_lets_processes_and_threads_start(kind: str) -> None:
    # glibc tries clone3 first and falls back to clone on ENOSYS; both paths must work.
    prof = seccomp.default_profile(DOCKER_CAPS)

    def probe() -> list[int]:
        import subprocess
        import threading

        box: list[int] = []
        t = threading.Thread(target=lambda: box.append(os.getpid()))
        t.start()
        t.join()
        done = subprocess.run(["/bin/sh", "-c", "exit 7"], check=False)
        return [len(box), done.returncode]

    status, seen = in_child(loader(kind, prof), probe)
    assert os.WIFEXITED(status) and seen == [1, 7]


def test_default_profile_with_sys_admin_allows_namespaces(kind: str) -> None:
    prof = seccomp.default_profile([*DOCKER_CAPS, "CAP_SYS_ADMIN"])
    status, seen = in_child(loader(kind, prof),
                            lambda: call(libc.unshare, CLONE_NEWUSER))
    assert os.WIFEXITED(status) and seen == 0


def test_errno_rule_makes_getcwd_fail_with_enosys(kind: str) -> None:
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}

    def probe() -> int:
        try:
            os.getcwd()
        except OSError as e:
            return e.errno or 0
        return 0

    status, seen = in_child(loader(kind, prof), probe)
    assert os.WIFEXITED(status) and seen == errno.ENOSYS


def test_repeated_argument_conditions_are_alternatives(kind: str) -> None:
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
                          "args": [{"index": 0, "value": 1000, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": 1001, "op": "SCMP_CMP_EQ"}]}]}
    status, seen = in_child(loader(kind, prof),
                            lambda: [call(libc.dup, fd) for fd in (1000, 1001, 1002)])
    assert os.WIFEXITED(status)
    assert seen == [-errno.EXDEV, -errno.EXDEV, -errno.EBADF]


def test_kill_process_action(kind: str) -> None:
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    status, seen = in_child(loader(kind, prof), os.getppid)
    assert seen is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
