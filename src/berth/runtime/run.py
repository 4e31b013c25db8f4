"""Foreground verbs of the CLI: `run` and `exec` wait for their process, forward signals to
it, and, when it has a terminal and nobody else takes the pty, relay it to our own terminal."""

from __future__ import annotations

import _signal
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from berth.runtime.container import CreateOptions, Runtime, exec_process_from_args

# _signal rather than signal: the latter imports enum (milliseconds on every `run`).
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH)


def run(rt: Runtime, cid: str, bundle: str, *, detach: bool, console_socket: str | None,
        pid_file: str | None, keep: bool = False, preserve_fds: int = 0) -> int:
    from berth.runtime.container import load_spec
    spec = load_spec(os.path.realpath(bundle))
    relay = spec.process is not None and spec.process.terminal and not console_socket
    ours = theirs = None
    if relay:
        ours, theirs = _pty_channel()
    try:
        st = rt.create(cid, bundle, CreateOptions(
            console_socket=console_socket, pid_file=pid_file, subreaper=not detach,
            console_fd=theirs.fileno() if theirs else None, preserve_fds=preserve_fds))
    finally:
        if theirs is not None:
            theirs.close()
    master = None
    if ours is not None:
        import socket
        _msg, fds, _flags, _addr = socket.recv_fds(ours, 16, 1)
        master = fds[0]
        ours.close()
    try:
        rt.start(cid)
    except BaseException:
        rt.delete(cid, force=True)
        raise
    if detach:
        return 0
    try:
        return wait_process(st.pid, master)
    finally:
        if not keep:
            rt.delete(cid, force=True)


def exec_cli(rt: Runtime, a: dict[str, Any]) -> int:
    """`exec` from parsed CLI options (see cli._COMMANDS["exec"])."""
    cid = a["id"]
    rt.load(cid)  # a clear "does not exist" before anything else
    spec = rt._saved_spec(cid)
    proc = exec_process_from_args(spec, list(a.get("command", [])), env=a.get("env", []),
                                  cwd=a.get("cwd"), user=a.get("user"),
                                  tty=a.get("tty", False), process_file=a.get("process"))
    detach = a.get("detach", False)
    console_socket = a.get("console_socket")
    relay = proc.terminal and not console_socket
    ours = theirs = None
    if relay:
        ours, theirs = _pty_channel()
    try:
        pid = rt.exec(cid, proc, subreaper=not detach,
                      console_fd=theirs.fileno() if theirs else None,
                      console_socket=console_socket)
    finally:
        if theirs is not None:
            theirs.close()
    master = None
    if ours is not None:
        import socket
        _msg, fds, _flags, _addr = socket.recv_fds(ours, 16, 1)
        master = fds[0]
        ours.close()
    if a.get("pid_file"):
        with open(a["pid_file"], "w") as f:
            f.write(str(pid))
    if detach:
        return 0
    return wait_process(pid, master)


def _pty_channel() -> tuple[Any, Any]:
    """A socket pair on which the init sends the pty master for us to relay."""
    import socket
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def _status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def wait_process(pid: int, master: int | None) -> int:
    """Wait for our (re-parented) child pid, forwarding signals; relay a pty if given."""
    def forward(sig: int, _frame: Any) -> None:
        if sig == _signal.SIGWINCH and master is not None:
            _copy_winsize(master)
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    old = {s: _signal.signal(s, forward) for s in FORWARDED}
    try:
        if master is not None:
            _relay(master, pid)
        while True:
            try:
                wpid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 255
            except InterruptedError:
                continue
            if wpid == pid:
                return _status_code(status)
    finally:
        for s, h in old.items():
            _signal.signal(s, h)
        if master is not None:
            os.close(master)


def _copy_winsize(master: int) -> None:
    import fcntl
    import termios
    if os.isatty(0):
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


def _relay(master: int, pid: int) -> None:
    import select
    import termios
    import tty
    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_winsize(master)
    try:
        fds = [master, 0]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
