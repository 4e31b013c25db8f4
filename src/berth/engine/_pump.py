"""The idle life of a container's monitor: copy its output to the json-file log, reap it.

Run as `python -S -I -c LAUNCHER OUT_FD ERR_FD LOG PID SYS_PATH ROOT RUN CID ATTACH_SOCKET
MAX_SIZE MAX_FILE DNS_FDS DNS_INDEX HANDOVER_FD [OUT_PARTIAL ERR_PARTIAL]` by engine/monitor.py
(LAUNCHER imports this module from its directory, so from cached bytecode, and calls `main`;
with a terminal, OUT_FD is the pty master, ERR_FD the socket listening at ATTACH_SOCKET for
clients; a stream already closed is -1, and the PARTIALs, in hex, are the unfinished last lines
the monitor read before the exec),
which exec()s into it once the container runs: the same process (still the container's parent
and subreaper) without the engine's modules, so an idle container costs an interpreter with
`os`, `select` and `time` and nothing else. When both pipes close and the container is reaped,
it offers the finish to the `run` waiting in the foreground (HANDOVER_FD, see `hand_over`), and
when nobody takes it puts SYS_PATH (os.pathsep-separated) on sys.path and calls
berth.engine.monitor.finish with the exit code: only then are the engine's modules imported.

On a user-defined network it also answers DNS: DNS_FDS is "UDP,TCP", sockets the monitor bound
to 127.0.0.11:53 in the container's network namespace, DNS_INDEX the file that names the name
tables of its networks (engine/dns.py). The answering code, _dnsd.py beside this file, is
imported at the first query (with the C `_socket` module); until then DNS costs two
descriptors in the poll set. DNS is served until the container is reaped, also after its
output closed.

Imports nothing from berth and nothing beyond the standard library's core.
"""

import os
import select
import sys
import time

_READ = 1 << 16
_SPLIT = 16384  # docker writes a partial line as an entry of its own at 16 KiB


def _esc(text: str) -> str:
    out = []
    for ch in text:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or ch in "<>&" or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _now() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _entry(data: bytes, stream: str) -> bytes:
    text = data.decode("utf-8", errors="replace")
    return f'{{"log":"{_esc(text)}","stream":"{stream}","time":"{_now()}"}}\n'.encode()


class Log:
    """The json-file log, rotated as docker's --log-opt max-size/max-file do: when a write
    would pass max_size, LOG becomes LOG.1 (LOG.1 becomes LOG.2 …, at most max_file files)."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.path, self.max_size, self.max_file = path, max_size, max(1, max_file)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.dropped, self.error = 0, ""

    def write(self, data: bytes) -> None:
        if self.max_size and self.size + len(data) > self.max_size and data.count(b"\n") > 1:
            for entry in data.splitlines(keepends=True):  # rotate between entries
                self.write(entry)
            return
        try:
            if self.fd < 0 or (self.max_size and self.size and
                               self.size + len(data) > self.max_size):
                self._rotate()
            os.write(self.fd, data)
            self.size += len(data)
        except OSError as e:  # the disk is full…: the entry is dropped, as docker drops it,
            self.dropped += data.count(b"\n") or 1  # and the next one tries again
            self.error = e.strerror or str(e)

    def _rotate(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.max_file == 1:
            os.truncate(self.path, 0)
        else:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                try:
                    os.rename(src, f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                          0o640)
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.dropped:  # said where a user looks, beside the log
            with contextlib_suppress(), open(os.path.join(os.path.dirname(self.path),
                                                          "monitor.log"), "a") as f:
                f.write(f"{self.dropped} log entries dropped: {self.error}\n")
            self.dropped = 0


class Dns:
    """The embedded DNS sockets; the server (_dnsd.Server) is loaded at the first query. A
    failure there closes the sockets (the container then gets no answers, as from a dead
    server): the log and the reaping go on."""

    def __init__(self, fds: list, index: str) -> None:
        self.fds, self.index, self.server = [fd for fd in fds if fd >= 0], index, None

    def register(self, poller: object) -> None:
        for fd in self.fds:
            poller.register(fd, select.POLLIN)

    def owns(self, fd: int) -> bool:
        return fd in self.fds or (self.server is not None and self.server.owns(fd))

    def handle(self, fd: int, poller: object) -> None:
        try:
            if self.server is None:
                here = os.path.dirname(os.path.abspath(__file__))
                sys.path.insert(0, here)
                try:
                    import _dnsd
                finally:
                    sys.path.remove(here)
                udp = self.fds[0] if self.fds else -1
                tcp = self.fds[1] if len(self.fds) > 1 else -1
                self.server = _dnsd.Server(udp, tcp, self.index)
            self.server.handle(fd, poller)
        except Exception:  # noqa: BLE001 - never the pump's end
            for f in list(self.fds):
                with contextlib_suppress():
                    poller.unregister(f)
            self.close()

    def close(self) -> None:
        if self.server is not None:
            for s in (self.server.udp, self.server.tcp, *(c[0] for c in
                                                          self.server.conns.values())):
                if s is not None:
                    with contextlib_suppress():
                        s.close()
            self.server.conns.clear()
        else:
            for fd in self.fds:
                with contextlib_suppress():
                    os.close(fd)
        self.fds = []

    def serve_until_exit(self, pid: int) -> None:
        """The container's output closed but it may still run: answer until it exits."""
        if not self.fds:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        self.register(poller)
        if self.server is not None:
            for fd in self.server.conns:
                poller.register(fd, select.POLLIN)
        done = False
        while not done and self.fds:
            for fd, _ev in poller.poll():
                if fd == pidfd:
                    done = True
                elif self.owns(fd):
                    self.handle(fd, poller)
        os.close(pidfd)


_DRAIN = 0.1  # seconds of quiet output after the init's exit that end the pump
_DRAIN_MAX = 1.0  # and the most it reads after that exit


class _InitWatch:
    """The container's init, watched through a pidfd: once it exited, the pump reads what
    is still coming and stops after _DRAIN seconds without output (at most _DRAIN_MAX after
    the exit), even if the streams stay open. In a PID namespace of its own the kernel kills
    every other process of the container with its init, so the streams close; with `--pid
    host` or `--pid container:` a process it left in the background may hold them open for
    ever (finish then kills the cgroup's processes, as containerd's shim does)."""

    def __init__(self, pid: "int | None", poller: object) -> None:
        self.fd = -1
        self.until: "float | None" = None
        self.last = 0.0
        if pid:
            try:
                self.fd = os.pidfd_open(pid)
            except OSError:  # gone already (reaped by an earlier pump): nothing to watch
                return
            poller.register(self.fd, select.POLLIN)

    def exited(self, fd: int, poller: object) -> bool:
        """Whether `fd` was the pidfd (now read: the init exited)."""
        if fd != self.fd or self.fd < 0:
            return False
        poller.unregister(self.fd)
        os.close(self.fd)
        self.fd = -1
        now = time.monotonic()
        self.until, self.last = now + _DRAIN, now + _DRAIN_MAX
        return True

    def quiet(self) -> None:
        """Output came: the drain after the init's exit starts again (up to _DRAIN_MAX)."""
        if self.until is not None:
            self.until = min(time.monotonic() + _DRAIN, self.last)

    def over(self) -> bool:
        return self.until is not None and time.monotonic() >= self.until

    def timeout(self, deadline: "float | None") -> "int | None":
        ends = [t for t in (deadline, self.until) if t is not None]
        return None if not ends else max(0, int((min(ends) - time.monotonic()) * 1000))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def pump(log: "Log", streams: dict, dns: "Dns | None" = None, partial: "dict | None" = None,
         deadline: "float | None" = None, init: "int | None" = None) -> dict:
    """Copy the streams ({fd: "stdout" or "stderr"}) to the log until they close, or, with
    `init` (the container's init's pid), until they are quiet after its exit (_InitWatch).
    `partial`: the unfinished line of each, carried over from an earlier pump. With
    `deadline` (a time.monotonic()) it stops then and returns the unfinished lines of the
    streams still open; else (and when all closed in time) it returns {}."""
    partial = {fd: (partial or {}).get(fd, b"") for fd in streams}
    out = log
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    if dns is not None:
        dns.register(poller)
    watch = _InitWatch(init, poller)
    live = set(streams)
    try:
        while live:
            if watch.over():  # the init is gone and its leftovers are quiet: done
                for fd in live:
                    os.close(fd)
                    if partial[fd]:
                        out.write(_entry(partial[fd], streams[fd]))
                return {}
            if deadline is not None and time.monotonic() >= deadline:
                return {fd: partial[fd] for fd in live}
            _pump_ready(poller.poll(watch.timeout(deadline)), out, streams, partial, live,
                        dns, poller, watch)
    finally:
        watch.close()
    return {}


def _pump_ready(ready: list, out: "Log", streams: dict, partial: dict, live: set,
                dns: "Dns | None", poller: object, watch: _InitWatch) -> None:
    for fd, _ev in ready:
        if watch.exited(fd, poller):
            continue
        if dns is not None and dns.owns(fd):
            dns.handle(fd, poller)
            continue
        watch.quiet()
        data = os.read(fd, _READ)
        if not data:
            poller.unregister(fd)
            live.discard(fd)
            os.close(fd)
            if partial[fd]:
                out.write(_entry(partial[fd], streams[fd]))
            continue
        partial[fd], chunk = _lines(partial[fd], data, streams[fd])
        if chunk:
            out.write(chunk)


def _lines(partial: bytes, data: bytes, stream: str) -> tuple:
    """(what is left unfinished, the json-file entries of the finished lines): a line that
    reaches docker's 16 KiB unfinished is an entry of its own."""
    lines = (partial + data).split(b"\n")
    partial = lines.pop()
    chunk = b"".join(_entry(line + b"\n", stream) for line in lines)
    if len(partial) >= _SPLIT:
        chunk += _entry(partial, stream)
        partial = b""
    return partial, chunk


_REPLAY = 1 << 16  # what a terminal printed before anyone attached, shown to the first client


def pump_tty(log: "Log", master: int, listen_fd: int, sock_path: str,
             dns: "Dns | None" = None, init: "int | None" = None) -> None:
    """With a terminal: the pty master carries the container's output (logged as stdout and
    sent to every client attached on `sock_path`) and its input (from the clients). Clients
    speak frames: b"d" + 4-byte length + bytes to type, b"r" + rows and cols (2 bytes each)
    to resize. `listen_fd` is the listening socket (bound to `sock_path` by the monitor). Only
    here are socket, fcntl and termios imported."""
    import fcntl
    import socket
    import termios
    out = log
    listener = socket.socket(fileno=listen_fd)
    clients: dict = {}  # fd -> [socket, pending input bytes]
    replay = b""
    attached_once = False
    partial = b""
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(listener.fileno(), select.POLLIN)
    if dns is not None:
        dns.register(poller)
    watch = _InitWatch(init, poller)  # as in pump(): a terminal held open by leftovers
    done = False
    while not done and not watch.over():
        for fd, ev in poller.poll(watch.timeout(None)):
            if watch.exited(fd, poller):
                continue
            if dns is not None and dns.owns(fd):
                dns.handle(fd, poller)
            elif fd == master:
                watch.quiet()
                try:
                    data = os.read(master, _READ)
                except OSError:  # EIO: every holder of the terminal's other side is gone
                    data = b""
                if not data:
                    done = True
                    break
                if not attached_once:
                    replay = (replay + data)[-_REPLAY:]
                for c in list(clients.values()):
                    try:
                        c[0].sendall(data)
                    except OSError:
                        pass
                partial, chunk = _lines(partial, data, "stdout")
                if chunk:
                    out.write(chunk)
            elif fd == listener.fileno():
                conn, _ = listener.accept()
                if not attached_once:
                    attached_once = True
                    with contextlib_suppress():
                        conn.sendall(replay)
                    replay = b""
                clients[conn.fileno()] = [conn, b""]
                poller.register(conn.fileno(), select.POLLIN)
            else:
                conn, buf = clients[fd]
                try:
                    data = conn.recv(_READ)
                except OSError:
                    data = b""
                if not data:
                    poller.unregister(fd)
                    conn.close()
                    del clients[fd]
                    continue
                buf += data
                while buf:
                    kind = buf[:1]
                    if kind == b"d" and len(buf) >= 5:
                        n = int.from_bytes(buf[1:5], "big")
                        if len(buf) < 5 + n:
                            break
                        with contextlib_suppress():
                            os.write(master, buf[5:5 + n])
                        buf = buf[5 + n:]
                    elif kind == b"r" and len(buf) >= 5:
                        rows, cols = int.from_bytes(buf[1:3], "big"), int.from_bytes(buf[3:5],
                                                                                     "big")
                        with contextlib_suppress():
                            fcntl.ioctl(master, termios.TIOCSWINSZ,
                                        rows.to_bytes(2, "little") + cols.to_bytes(2, "little")
                                        + b"\0\0\0\0")
                        buf = buf[5:]
                    elif kind in (b"d", b"r"):
                        break
                    else:  # not our protocol: drop the client
                        buf = b""
                        poller.unregister(fd)
                        conn.close()
                        del clients[fd]
                        break
                if fd in clients:
                    clients[fd][1] = buf
    watch.close()
    if partial:
        out.write(_entry(partial, "stdout"))
    for c in clients.values():
        c[0].close()
    listener.close()
    with contextlib_suppress():
        os.unlink(sock_path)
    os.close(master)


class contextlib_suppress:  # noqa: N801 - contextlib itself is not imported here
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


def reap(pid: int) -> int:
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


_CLAIM_WAIT = 2.0  # seconds the waiting CLI has to claim the finish before the pump does it


def hand_over(fd: int, code: int) -> bool:
    """Offer the finish to the CLI waiting on the other end of `fd` (a `run` or `start -a` in
    the foreground, which has the engine loaded: it saves this process importing it). The
    exchange: we send the exit code and a newline; the CLI answers b"c" (claim), we answer
    b"g" (go), and after finishing it sends b"d". True when it said "d". No claim within
    _CLAIM_WAIT, or the CLI gone before "d" (finish is safe to run again), is False: then
    this process finishes. A claim that comes after we gave up meets a closed socket and no
    "g", so exactly one side finishes."""
    if fd < 0:
        return False
    try:
        os.write(fd, b"%d\n" % code)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(_CLAIM_WAIT * 1000)) or os.read(fd, 1) != b"c":
            return False
        os.write(fd, b"g")
        return os.read(fd, 1) == b"d"
    except OSError:  # the CLI went away (EPIPE, ECONNRESET)
        return False
    finally:
        with contextlib_suppress():
            os.close(fd)


def main(argv: list) -> None:
    out_fd, err_fd, log, pid = int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    paths, root, run, cid = argv[5].split(os.pathsep), argv[6], argv[7], argv[8]
    attach = argv[9] if len(argv) > 9 else ""
    max_size = int(argv[10]) if len(argv) > 10 else 0
    max_file = int(argv[11]) if len(argv) > 11 else 1
    dns = None
    if len(argv) > 13 and argv[12]:
        dns = Dns([int(x) for x in argv[12].split(",")], argv[13])
    handover = int(argv[14]) if len(argv) > 14 else -1
    partial = {out_fd: bytes.fromhex(argv[15]) if len(argv) > 15 else b"",
               err_fd: bytes.fromhex(argv[16]) if len(argv) > 16 else b""}
    try:
        out = Log(log, max_size, max_file)
        if attach:
            pump_tty(out, out_fd, err_fd, attach, dns, init=pid)
        else:  # a stream the monitor saw close is -1
            pump(out, {fd: name for fd, name in ((out_fd, "stdout"), (err_fd, "stderr"))
                       if fd >= 0}, dns, partial, init=pid)
        out.close()
        if dns is not None:
            dns.serve_until_exit(pid)
            dns.close()
    except BaseException:  # whatever failed, the container is still reaped and finished
        _said(log)
    code = reap(pid)
    if hand_over(handover, code):
        os._exit(0)
    sys.path[:0] = [p for p in paths if p]
    from berth.engine.monitor import finish
    try:
        finish(root, run, cid, code)
    except BaseException:
        _said(log)
    finally:
        os._exit(0)


def _said(log: str) -> None:
    """The exception being handled, where a user looks: next to the container's log."""
    import traceback
    with contextlib_suppress(), open(os.path.join(os.path.dirname(log), "monitor.log"),
                                     "a") as f:
        f.write(traceback.format_exc())


if __name__ == "__main__":
    main(sys.argv)
