"""The idle life of a container's monitor: copy its output to the json-file log, reap it.

Run as `python -S -I _pump.py OUT_FD ERR_FD LOG PID SYS_PATH ROOT RUN CID` by engine/monitor.py,
which exec()s into it once the container runs: the same process (still the container's parent
and subreaper) without the engine's modules, so an idle container costs an interpreter with
`os`, `select` and `time` and nothing else. When both pipes close and the container is reaped,
it puts SYS_PATH (os.pathsep-separated) on sys.path and calls berth.engine.monitor.finish with
the exit code: only then are the engine's modules imported.

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


def pump(log: str, streams: dict) -> None:
    partial = {fd: b"" for fd in streams}
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    live = set(streams)
    while live:
        for fd, _ev in poller.poll():
            data = os.read(fd, _READ)
            if not data:
                poller.unregister(fd)
                live.discard(fd)
                os.close(fd)
                if partial[fd]:
                    os.write(out, _entry(partial[fd], streams[fd]))
                continue
            lines = (partial[fd] + data).split(b"\n")
            partial[fd] = lines.pop()
            chunk = b"".join(_entry(line + b"\n", streams[fd]) for line in lines)
            if len(partial[fd]) >= _SPLIT:
                chunk += _entry(partial[fd], streams[fd])
                partial[fd] = b""
            if chunk:
                os.write(out, chunk)
    os.close(out)


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


def main(argv: list) -> None:
    out_fd, err_fd, log, pid = int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    paths, root, run, cid = argv[5].split(os.pathsep), argv[6], argv[7], argv[8]
    pump(log, {out_fd: "stdout", err_fd: "stderr"})
    code = reap(pid)
    sys.path[:0] = [p for p in paths if p]
    from berth.engine.monitor import finish
    try:
        finish(root, run, cid, code)
    except BaseException:  # said where a user looks: next to the container's log
        import traceback
        with open(os.path.join(os.path.dirname(log), "monitor.log"), "a") as f:
            f.write(traceback.format_exc())
    finally:
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
