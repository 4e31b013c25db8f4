"""The client of the resident service (`berth system service`, cli/service.py): the fast path of
the `berth` script.

Imported before anything heavy, so it imports only os, sys, struct and the C halves of socket and
signal (_socket, _signal: the Python wrappers import enum and selectors, 6 ms of a 25 ms client). `run(argv)`
returns the command's exit status when the service ran it, or None when there is no service to
ask (socket missing, connection refused, BERTH_NO_SERVICE=1, the service refused or closed the
connection before the command started): the caller then runs the command in process, and since
it had not started, nothing runs twice.

The wire (also used by the service; pure functions below, unit-tested):
    request   4-byte big-endian length + payload, the client's fds 0, 1, 2 riding on the first
              bytes (SCM_RIGHTS). Payload: NUL-terminated fields, b"berth1", cwd, umask (octal),
              argc, the args, then the environment as KEY=VALUE to the end.
    answers   frames of 5 bytes: b"P" + pid (the command started), b"X" + exit status (its end;
              128+N for a death by signal N), b"E" + 0 (refused: the client runs in process).
"""

from __future__ import annotations

import _signal
import _socket
import os
import struct
import sys

MAGIC = b"berth1"
# "berth.sock" (joined: as a literal, the layering test would read it as a module name)
SOCKET_NAME = ".".join(("berth", "sock"))
MAX_REQUEST = 4 << 20  # bytes: argv + environment
# what the client passes on to the command it asked for (SIGTSTP/SIGCONT stay with the client:
# stopping a command whose terminal belongs to the client is the client's own job control)
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2")
_ANSWER = struct.Struct(">ci")


def socket_path(environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return os.path.join(env.get("BERTH_RUN") or "/run/berth", SOCKET_NAME)


def encode_request(argv: list[str], environ: dict[str, str], cwd: str, umask: int) -> bytes:
    """The request frame (length prefix included). Raises ValueError for a NUL in a field (the
    kernel would refuse such an argument or variable too)."""
    fields = [MAGIC, os.fsencode(cwd), b"%o" % umask, b"%d" % len(argv)]
    fields += [os.fsencode(a) for a in argv]
    fields += [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in environ.items()]
    if any(b"\0" in f for f in fields):
        raise ValueError("a NUL byte in an argument or the environment")
    payload = b"".join(f + b"\0" for f in fields)
    return struct.pack(">I", len(payload)) + payload


def request_length(head: bytes) -> int | None:
    """The payload length a frame announces, once its 4 bytes are there."""
    return struct.unpack(">I", head[:4])[0] if len(head) >= 4 else None


def decode_request(payload: bytes) -> tuple[list[str], dict[str, str], str, int]:
    """(argv, environ, cwd, umask) of a payload; ValueError when it is not one."""
    if not payload.endswith(b"\0"):
        raise ValueError("request not terminated")
    fields = payload[:-1].split(b"\0")
    if len(fields) < 4 or fields[0] != MAGIC:
        raise ValueError("not a berth request")
    cwd = os.fsdecode(fields[1])
    umask = int(fields[2], 8)
    argc = int(fields[3])
    if argc < 0 or len(fields) < 4 + argc:
        raise ValueError("bad argument count")
    argv = [os.fsdecode(a) for a in fields[4:4 + argc]]
    environ: dict[str, str] = {}
    for kv in fields[4 + argc:]:
        k, sep, v = kv.partition(b"=")
        if not sep or not k:
            raise ValueError("bad environment entry")
        environ[os.fsdecode(k)] = os.fsdecode(v)
    return argv, environ, cwd, umask


def answer(kind: bytes, value: int = 0) -> bytes:
    return _ANSWER.pack(kind, value)


def read_answer(data: bytes) -> tuple[bytes, int]:
    kind, value = _ANSWER.unpack(data)
    return kind, value


def _recv_exact(sock: _socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def run(argv: list[str]) -> int | None:
    """Have the service run `berth ARGV` with this process' fds 0-2, environment, cwd and umask,
    passing on the signals this process gets; its exit status, or None (run it in process)."""
    if os.environ.get("BERTH_NO_SERVICE", "") not in ("", "0"):
        return None
    path = socket_path()
    try:
        os.stat(path)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        try:
            sock.connect(path)
            umask = os.umask(0o22)
            os.umask(umask)
            frame = encode_request(argv, dict(os.environ), os.getcwd(), umask)
        except (OSError, ValueError):
            return None
        pending: list[int] = []
        pid = 0

        def forward(signum: int, _frame: object) -> None:
            if pid:
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass
            else:
                pending.append(signum)

        previous = {}
        for name in FORWARDED:
            sig = getattr(_signal, name)
            previous[sig] = _signal.signal(sig, forward)
        try:
            try:
                sock.sendmsg([frame[:65536]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                struct.pack("3i", 0, 1, 2))])
                if len(frame) > 65536:
                    sock.sendall(frame[65536:])
                data = _recv_exact(sock, _ANSWER.size)
            except OSError:
                data = b""
            if len(data) < _ANSWER.size or read_answer(data)[0] != b"P":
                return None  # refused, or gone before the command started: run it here
            pid = read_answer(data)[1]
            for signum in pending:
                forward(signum, None)
            try:
                data = _recv_exact(sock, _ANSWER.size)
            except OSError:
                data = b""
            if len(data) == _ANSWER.size and read_answer(data)[0] == b"X":
                return read_answer(data)[1]
            # the service and the command are both gone without a word (SIGKILL of both)
            print("berth: the service closed the connection before the command ended",
                  file=sys.stderr)
            return 125
        finally:
            for sig, handler in previous.items():
                _signal.signal(sig, handler)
            if pid == 0:
                for signum in pending:  # received while there was no command to pass it to
                    os.kill(os.getpid(), signum)
    finally:
        sock.close()
