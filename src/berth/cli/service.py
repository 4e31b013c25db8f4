"""`berth system service`: the resident, preloaded process that runs CLI commands for the
`berth` script (the client: cli/client.py, whose docstring holds the wire format).

One process per BERTH_RUN, listening on $BERTH_RUN/berth.sock (mode 0600). At start it imports
every module a command may need, opens no database and no engine (a forked child starts clean:
SQLite connections never cross a fork), then gc.freeze()s so the pages stay shared. Per
connection: the peer's uid (SO_PEERCRED) must be its own, else the connection is closed; it
receives the client's argv, environment, cwd, umask and fds 0-2, forks a child that takes them on
and runs `berth.cli.main.main(argv)` as the `berth` script would, sends the client the child's pid
at once and its exit status when it reaps it (never blocking on one client: children are reaped
on SIGCHLD in the select loop). The child also writes its status itself before it exits, so a
client still gets it when the service died meanwhile. SIGTERM/SIGINT: the socket is removed and
the service exits; children (commands still running) are left alone.
"""

from __future__ import annotations

import gc
import importlib
import io
import os
import pkgutil
import selectors
import signal
import socket
import struct
import sys
import traceback

from berth.cli import client

# modules the preload skips: scripts run by path or -m, which act when imported
_NOT_PRELOADED = ("berth.engine._pump", "berth.engine._dnsd", "berth.runtime.cli")
_UCRED = struct.Struct("3i")


def preload() -> list[str]:
    """Import every berth module (and so what they import at top level); the names that failed
    (an optional dependency missing: the command that needs it will say so itself)."""
    import berth
    failed = []
    for info in pkgutil.walk_packages(berth.__path__, "berth."):
        if info.name in _NOT_PRELOADED or info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - reported, the service still serves
            failed.append(info.name)
    try:  # data every container start reads, parsed once here (pure, cached, no fd held)
        from berth.runtime import seccomp
        seccomp._packaged_default()
    except Exception:  # noqa: BLE001 - the child parses it itself then
        pass
    return failed


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []
        self.pid = 0

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.sock.close()


class Service:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}  # by fd, while reading the request
        self.children: dict[int, _Conn] = {}  # by pid
        self.stop = False

    # --- set-up ---------------------------------------------------------------------------
    def listen(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError:
            pass
        else:
            probe.close()
            from berth.errors import Conflict
            raise Conflict(f"a berth service already listens on {self.path}")
        finally:
            probe.close()
        try:
            os.unlink(self.path)  # left by a service that was killed
        except FileNotFoundError:
            pass
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.lsock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.lsock.listen(128)
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_stop(self, *_: object) -> None:
        self.stop = True

    # --- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        try:
            while not self.stop:
                for key, _ in self.sel.select():
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            while os.read(self.wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                    else:
                        self._read(key.data)
                self._reap()
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            signal.set_wakeup_fd(-1)
            self.lsock.close()
            for conn in [*self.conns.values(), *self.children.values()]:
                conn.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            _pid, uid, _gid = _UCRED.unpack(creds)
            if uid != os.getuid():  # only its own user: this service runs commands as itself
                try:
                    sock.send(client.answer(b"E"))
                except OSError:
                    pass
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: _Conn) -> None:
        self.sel.unregister(conn.sock)
        del self.conns[conn.sock.fileno()]
        conn.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn.sock, 65536, 3)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        conn.fds += fds
        conn.buf += data
        want = client.request_length(conn.buf)
        if not data or len(conn.fds) > 3 or (want is not None and want > client.MAX_REQUEST):
            self._drop(conn)  # gone, or not a client: nothing started
            return
        if want is None or len(conn.buf) < 4 + want:
            return
        try:
            argv, environ, cwd, umask = client.decode_request(conn.buf[4:4 + want])
        except ValueError:
            self._drop(conn)
            return
        if len(conn.fds) != 3:
            self._drop(conn)
            return
        self.sel.unregister(conn.sock)
        del self.conns[conn.sock.fileno()]
        conn.sock.setblocking(True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(conn, argv, environ, cwd, umask)  # never returns
        conn.pid = pid
        for fd in conn.fds:
            os.close(fd)
        conn.fds = []
        self.children[pid] = conn
        try:
            conn.sock.sendall(client.answer(b"P", pid))
        except OSError:
            pass  # the client is gone; the command runs on, as it would have without us

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            if os.WIFSIGNALED(status):  # the child could not say it: 128+N as a shell would
                try:
                    conn.sock.sendall(client.answer(b"X", 128 + os.WTERMSIG(status)))
                except OSError:
                    pass
            conn.close()

    # --- the child ------------------------------------------------------------------------
    def _child(self, conn: _Conn, argv: list[str], environ: dict[str, str], cwd: str,
               umask: int) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any python
            self.lsock.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            for other in self.conns.values():
                other.sock.close()
            for other in self.children.values():
                other.sock.close()
            os.setsid()  # out of the service's session: its terminal's signals are not ours
            for target, fd in enumerate(conn.fds):
                os.dup2(fd, target)
                os.close(fd)
            conn.fds = []
            os.set_inheritable(conn.sock.fileno(), False)
            os.chdir(cwd)
            os.umask(umask)
            os.environ.clear()
            os.environ.update(environ)
            _fresh_stdio()
            sys.argv = ["berth", *argv]
            code = _run_main(argv)
        except BaseException:  # noqa: BLE001 - set-up failed: said on the client's stderr
            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
                pass
        try:
            conn.sock.sendall(client.answer(b"X", code))
        except OSError:
            pass
        os._exit(code)


_SERVICE_STDIO: list[object] = []


def _fresh_stdio() -> None:
    """sys.stdin/stdout/stderr on the new fds 0-2, buffered as the interpreter would have made
    them for these files (line-buffered stdout on a terminal)."""
    enc = sys.stdout.encoding
    # the service's own streams own fds 0-2 (closefd): kept referenced, never finalized, so
    # that dropping them cannot close the client's descriptors now in their place
    _SERVICE_STDIO.extend({id(s): s for s in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__,
                                              sys.__stdout__, sys.__stderr__)}.values())

    def stream(fd: int, mode: str, errors: str, line: bool) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        buf = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buf, encoding=enc, errors=errors, line_buffering=line)

    sys.stdin = sys.__stdin__ = stream(0, "r", "strict", False)
    sys.stdout = sys.__stdout__ = stream(1, "w", "strict", os.isatty(1))
    sys.stderr = sys.__stderr__ = stream(2, "w", "backslashreplace", True)


def _run_main(argv: list[str]) -> int:
    """`sys.exit(main())` of the berth script, its exit status as the interpreter computes it."""
    from berth.cli.main import main
    try:
        sys.exit(main(argv))
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code & 0xFF
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - as the interpreter: traceback, status 1
        traceback.print_exc()
        return 1
    return 0


def main(path: str) -> int:
    """Run the service on `path` until SIGTERM/SIGINT."""
    failed = preload()
    service = Service(path)
    service.listen()
    gc.collect()
    gc.freeze()
    note = f" (not preloaded: {', '.join(failed)})" if failed else ""
    print(f"berth service listening on {path}{note}", file=sys.stderr, flush=True)
    service.serve()
    return 0
