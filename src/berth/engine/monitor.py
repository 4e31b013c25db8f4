"""The monitor of one running container (the role of containerd-shim or conmon).

`spawn(engine, container)` forks twice: the monitor runs in a session of its own (the CLI that
started it may exit, and a Ctrl-C in the CLI's terminal does not reach it) and tells the CLI over
a pipe that the container started, or why it did not. The monitor then

  1. mounts the container's overlay (planned by the CLI before the fork),
  2. creates and starts the container with berth's in-process runtime, with stdin on /dev/null
     and stdout/stderr on two pipes it holds (so the two streams stay apart),
  3. writes what the container prints to docker's json-file log
     (`{"log":"…\\n","stream":"stdout","time":"…"}` per line),
  4. reaps it (the monitor is its subreaper), records exit code and time and a `die` event,
     deletes the runtime state, unmounts, and removes an `--rm` container (leaving its exit code
     in `<run>/exits/<id>` for the `run` that waits on it).

After the fork the monitor opens the database afresh and never touches the CLI's connection,
and it ends with os._exit: nothing of the parent's is finalised twice.
"""

from __future__ import annotations

import json
import os
import select
import time
import traceback
from typing import Any

from berth.errors import BerthError, InvalidArgument, NotFound, RuntimeFailure

__all__ = ["spawn"]

_READ = 1 << 16


class CommandNotFound(NotFound):
    exit_code = 127


class CommandNotInvokable(RuntimeFailure):
    exit_code = 126


def spawn(engine: Any, c: Any) -> None:
    from berth.image.unpack import prepare_rootfs
    from berth.runtime.container import CreateOptions, Runtime  # loaded before the fork
    from berth.store import mount as mnt
    [plan] = prepare_rootfs(engine.images, c.image_id, c.id)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            # SQLite keeps per-process lock state for the database file: close the CLI's
            # connection properly here, before any descriptor of it is closed under it
            engine.close()
            os.setsid()
            if os.fork() == 0:
                _monitor(str(engine.root), str(engine.run), c, plan, w, mnt, Runtime,
                         CreateOptions)
                code = 0
            else:
                code = 0
        except BaseException:
            with _suppress():
                os.write(w, ("error:" + traceback.format_exc(limit=3)).encode())
        os._exit(code)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while True:
        data = os.read(r, _READ)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    msg = b"".join(chunks).decode(errors="replace")
    if msg == "ok":
        return
    kind, _, text = msg.partition(":")
    if kind == "notfound":
        raise CommandNotFound(text)
    if kind == "noexec":
        raise CommandNotInvokable(text)
    if kind == "invalid":
        raise InvalidArgument(text)
    raise RuntimeFailure(f"container {c.short_id} did not start: {text or 'monitor died'}")


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _now_rfc3339() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _close_others(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with _suppress():
                os.close(fd)


def _monitor(root: str, run: str, c: Any, plan: Any, status_fd: int, mnt: Any,
             Runtime: Any, CreateOptions: Any) -> None:  # noqa: N803 - classes passed in
    with _suppress(), open("/proc/self/comm", "w") as comm:  # `ps -o comm`, top, pgrep
        comm.write("berth-monitor")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    _close_others({status_fd, out_r, out_w, err_r, err_w, devnull})
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    from .containers import Engine
    eng = Engine(root, run)
    cid = c.id
    rt = Runtime(os.path.join(run, "runtime"))
    mounted = False
    try:
        mnt.mount_all([plan])
        mounted = True
        state = rt.create(cid, str(eng.container_dir(cid)), CreateOptions(subreaper=True))
        rt.start(cid)
    except BaseException as e:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with _suppress():
            rt.delete(cid, force=True)
        if mounted:
            with _suppress():
                mnt.unmount(plan.target, detach=True)
        text = str(e) if isinstance(e, BerthError) else f"{type(e).__name__}: {e}"
        kind = "error"
        if text.startswith("exec ") and ("no such file" in text or "not found" in text):
            kind = "notfound"
        elif text.startswith("exec ") and "permission denied" in text:
            kind = "noexec"
        elif isinstance(e, InvalidArgument):
            kind = "invalid"
        with eng.db.transaction() as tx:
            tx.execute("UPDATE containers SET status = 'created' WHERE id = ?", (cid,))
        os.write(status_fd, f"{kind}:{text}".encode())
        os._exit(0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    with eng.db.transaction() as tx:
        tx.execute("UPDATE containers SET status = 'running', pid = ?, started_ns = ?, "
                   "monitor_pid = ?, exit_code = 0, finished_ns = 0 WHERE id = ?",
                   (state.pid, time.time_ns(), os.getpid(), cid))
        eng.db.record_event("container", "start", cid, {"name": c.name})
    os.write(status_fd, b"ok")
    os.close(status_fd)
    _pump(eng.log_path(cid), {out_r: "stdout", err_r: "stderr"})
    code = _reap(state.pid)
    with _suppress():
        rt.delete(cid, force=True)
    with _suppress():
        mnt.unmount(plan.target)
    with eng.db.transaction() as tx:
        tx.execute("UPDATE containers SET status = 'exited', exit_code = ?, finished_ns = ?, "
                   "pid = 0, monitor_pid = 0 WHERE id = ?", (code, time.time_ns(), cid))
        eng.db.record_event("container", "die", cid, {"name": c.name, "exitCode": str(code)})
    if c.auto_remove:
        exits = eng.exit_file(cid)
        exits.parent.mkdir(parents=True, exist_ok=True)
        tmp = exits.with_name(f".{cid}.tmp")
        tmp.write_text(str(code))
        os.rename(tmp, exits)
        eng.destroy(cid)
    os._exit(0)


def _pump(log: Any, streams: dict[int, str]) -> None:
    """Copy the container's output into its json-file log, line by line, until both pipes
    close (the container and everything it started are gone)."""
    partial = {fd: b"" for fd in streams}
    with open(log, "ab", buffering=0) as out:
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        open_fds = set(streams)
        while open_fds:
            for fd, _ev in poller.poll():
                data = os.read(fd, _READ)
                if not data:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
                    if partial[fd]:
                        _write(out, partial[fd], streams[fd])
                    continue
                buf = partial[fd] + data
                *lines, partial[fd] = buf.split(b"\n")
                for line in lines:
                    _write(out, line + b"\n", streams[fd])
                if len(partial[fd]) >= 16384:  # docker splits long lines at 16 KiB
                    _write(out, partial[fd], streams[fd])
                    partial[fd] = b""


def _write(out: Any, data: bytes, stream: str) -> None:
    doc = {"log": data.decode("utf-8", errors="replace"), "stream": stream,
           "time": _now_rfc3339()}
    out.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")


def _reap(pid: int) -> int:
    """Wait for the container's init (reaping any orphan handed to us meanwhile); docker's exit
    code: the status, or 128 + the signal."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)
