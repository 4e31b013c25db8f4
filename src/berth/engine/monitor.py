"""The monitor of one running container (the role of containerd-shim or conmon).

`spawn(engine, container)` forks twice: the monitor runs in a session of its own (the CLI that
started it may exit, and a Ctrl-C in the CLI's terminal does not reach it) and tells the CLI over
a pipe that the container started, or why it did not. The monitor then

  1. mounts the container's overlay (planned by the CLI before the fork),
  2. creates and starts the container with berth's in-process runtime (or the binary named by
     --runtime: engine/runtimes.py), with stdin on /dev/null
     and stdout/stderr on two pipes it holds (so the two streams stay apart),
  3. on a first start without a terminal, pumps the output itself for _GRACE seconds: a
     container over by then is reaped here, and its finish (step 5) offered to the CLI
     waiting in the foreground or done here, loaded (`_grace`), else
  4. exec()s into engine/_pump.py (a bare interpreter: the idle cost of a container), which
     writes what the container prints to docker's json-file log
     (`{"log":"…\\n","stream":"stdout","time":"…"}` per line) and, on a user-defined network,
     answers DNS on 127.0.0.11:53 in the container's network namespace (engine/dns.py), and
  5. reaps it (the monitor is its subreaper), offers `finish` to the CLI waiting in the
     foreground (`take_exit`, _pump.hand_over), and else imports and calls it: `finish`
     deletes the runtime state, unmounts, records exit code, time and a `die` event, and
     removes an `--rm` container (leaving its exit code in `<run>/exits/<id>` for the `run`
     that waits on it).

After the fork the monitor closes the CLI's database connection before anything else (SQLite
keeps per-process lock state) and opens its own; it leaves by exec or os._exit, so nothing of
the parent's is finalised twice. The process keeps one pid from fork to finish, so a record
whose monitor pid is gone is a container whose monitor died (`Engine.refresh` marks it dead).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from berth.errors import BerthError, InvalidArgument, NotFound, RuntimeFailure

__all__ = ["spawn"]

_READ = 1 << 16
MONITOR_NAME = "berth-monitor"


class CommandNotFound(NotFound):
    exit_code = 127


class CommandNotInvokable(RuntimeFailure):
    exit_code = 126


def spawn(engine: Any, c: Any, stdin: int | None = None,
          handover: bool = False) -> socket.socket | None:
    """Start the container's monitor; `stdin` (the read end of a pipe the CLI writes to, for
    `run -i`) becomes the container's stdin, else /dev/null. With `handover` it returns our
    end of a socket pair over which the monitor offers us its `finish` when the container
    exits (`take_exit`): a CLI waiting in the foreground has the engine loaded already."""
    from berth.image.unpack import prepare_rootfs
    from berth.runtime import container  # noqa: F401 - loaded once, before the fork
    from berth.store import mount  # noqa: F401
    [plan] = prepare_rootfs(engine.images, c.image_id, c.id)
    ours = theirs = None
    if handover:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _spawn(engine, c, plan, stdin, theirs.fileno() if theirs is not None else None)
    except BaseException:
        if ours is not None:
            ours.close()
        raise
    finally:
        if theirs is not None:
            theirs.close()
    return ours


def take_exit(sock: socket.socket) -> int | None:
    """The CLI's side of _pump.hand_over: wait for the exit code the monitor offers and claim
    the finish. The code when it is ours to finish (call `finish`, then `finished`); None when
    the monitor keeps it (it offered nothing, or gave up waiting for our claim)."""
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(16)
            if not chunk:
                return None
            data += chunk
        code = int(data)
        sock.sendall(b"c")
        if sock.recv(1) != b"g":
            return None
    except (OSError, ValueError):
        return None
    return code


def finished(sock: socket.socket) -> None:
    """Tell the monitor that the finish it handed over is done: it exits without one."""
    with _suppress():
        sock.sendall(b"d")
    sock.close()


def _spawn(engine: Any, c: Any, plan: Any, stdin: int | None, handover: int | None) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            # the CLI holds Ctrl-C and the like while it starts a container (see
            # cli/commands/container.py, _start_with_stdin): the monitor takes signals again
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.close(r)
            # SQLite keeps per-process lock state for the database file: close the CLI's
            # connection properly here, before any descriptor of it is closed under it
            engine.close()
            os.setsid()
            if os.fork() == 0:
                with _suppress():  # ps, top and pgrep say what it is from the first moment
                    with open("/proc/self/comm", "w") as f:
                        f.write(MONITOR_NAME)
                _launch(str(engine.root), str(engine.run), c.id, c.name, plan, w, stdin,
                        handover)
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


def _close_others(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with _suppress():
                os.close(fd)


def _launch(root: str, run: str, cid: str, name: str, plan: Any, status_fd: int | None,
            stdin: int | None = None, handover: int | None = None) -> None:
    """Mount, create and start the container, record it running, and exec into _pump.py.
    `status_fd` gets "ok" or "KIND:why" for the CLI waiting on the first start; a restart has
    no one waiting (None), so a failure there is recorded as exit code 125. `handover`: the
    monitor's end of spawn's socket pair, for _pump.hand_over."""
    from berth.store import mount as mnt
    from berth.store.db import Database

    from .containers import attach_path, log_path
    os.chdir("/")  # hold no directory, and never import from the CLI's working directory
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    _close_others({fd for fd in (status_fd, out_r, out_w, err_r, err_w, devnull, stdin,
                                 handover) if fd is not None})
    os.dup2(devnull if stdin is None else stdin, 0)
    if stdin is not None:
        os.close(stdin)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    db = Database(root)
    # the container's options, read once: runtime, terminal, network mode, ports, health, log
    record = json.loads(db.read("SELECT config FROM containers WHERE id = ?", (cid,))[0][0])
    tty = bool(record.get("tty"))
    netmode = record.get("network") or ""
    from .runtimes import open_runtime  # --runtime: in-process (default) or a binary
    rt = open_runtime(run, record.get("runtime"))
    master = -1
    mounted = False
    dns = None  # DNS: sockets on 127.0.0.11:53 in its netns, for the pump (engine/dns.py)
    try:
        mnt.mount_all([plan])
        mounted = True
        from .volumes import attach as attach_volumes
        attach_volumes(db, root, run, cid, plan.target)  # typed volumes, copy-up
        ours = theirs = None
        if tty:  # the init sends the pty master over this pair; we keep it and relay it
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        owners = {kind: mode[len("container:"):] for kind, mode in (
            ("network", netmode), ("pid", record.get("pid_mode") or ""))
            if mode.startswith("container:")}
        if owners:
            from .sharing import join  # the owners' namespaces as they run now
            join(db, root, cid, owners)
        try:
            init_pid = rt.create(cid, os.path.join(root, "containers", cid), theirs)
        finally:
            if theirs is not None:
                theirs.close()
        if db.read("SELECT 1 FROM endpoints WHERE container_id = ? LIMIT 1", (cid,)):
            from .networks import attach as attach_networks  # veths, addresses (bridge)
            attach_networks(db, root, run, cid, init_pid)
            from .dns import listen as listen_dns  # DNS: on a user-defined network
            dns = listen_dns(db, run, cid, init_pid)
        held = []  # published ports: the host ports' sockets, held until the monitor exits
        if record.get("ports"):
            from .ports import publish
            held = publish(db, cid)
            for sock in held:
                os.set_inheritable(sock.fileno(), True)
        if ours is not None:
            _msg, fds, _flags, _addr = socket.recv_fds(ours, 16, 1)
            master = fds[0]
            ours.close()
        rt.start(cid)
    except BaseException as e:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        if dns is not None:
            dns.close()
        with _suppress():
            rt.delete(cid, force=True)
        with _suppress():
            from .ports import unpublish
            unpublish(db, cid)
        with _suppress():
            from .networks import detach as detach_networks
            detach_networks(db, run, cid, events=False)
        with _suppress():
            from .volumes import detach as detach_volumes
            detach_volumes(db, root, run, cid)
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
        with db.transaction() as tx:
            if status_fd is None:
                tx.execute("UPDATE containers SET status = 'exited', exit_code = 125, "
                           "finished_ns = ?, pid = 0, monitor_pid = 0 WHERE id = ?",
                           (time.time_ns(), cid))
            else:
                tx.execute("UPDATE containers SET status = 'created' WHERE id = ?", (cid,))
        if status_fd is not None:
            os.write(status_fd, f"{kind}:{text}".encode())
        os._exit(0)
    os.dup2(devnull, 0)  # the container holds its stdin; the monitor lets go of it
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    with db.transaction() as tx:
        tx.execute("UPDATE containers SET status = 'running', pid = ?, started_ns = ?, "
                   "monitor_pid = ?, exit_code = 0, oom_killed = 0, health = '' WHERE id = ?",
                   (init_pid, time.time_ns(), os.getpid(), cid))
        db.record_event("container", "start", cid, {"name": name})
        stopped = tx.execute("SELECT stopped_by_user FROM containers WHERE id = ?",
                             (cid,)).fetchone()
    if status_fd is None and stopped and stopped[0]:  # stopped or removed while it restarted:
        os.kill(init_pid, 9)  # it dies at once (finish then keeps it down)
    check = record.get("healthcheck")
    log_opts = record.get("log") or {}
    db.close()
    attach = str(attach_path(run, cid))
    if master >= 0:  # with a terminal the pty carries both streams, and clients attach on a
        # socket that listens before "ok", so `run -it` finds it at once
        os.makedirs(os.path.dirname(attach), exist_ok=True)
        with _suppress():
            os.unlink(attach)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(attach)
        os.chmod(attach, 0o600)
        listener.listen(8)
        os.close(out_r)
        os.close(err_r)
        out_r, err_r = master, listener.detach()
    if check:  # the checker holds none of the container's streams, or they would never end
        if os.fork() == 0:
            for fd in (out_r, err_r, status_fd, handover,
                       *((dns.udp, dns.tcp) if dns else ())):
                if fd is not None and fd >= 0:
                    with _suppress():
                        os.close(fd)
            for sock in held:  # the published ports are the monitor's to hold
                sock.close()
            try:
                from .health import run_checks
                run_checks(root, run, cid, check)
            except BaseException:  # said where a user looks, as the pump does
                with _suppress(), open(os.path.join(root, "containers", cid, "monitor.log"),
                                       "a") as f:
                    f.write(traceback.format_exc())
            finally:
                os._exit(0)
    partial: dict[int, bytes] = {}
    dns_argv = dns.argv() if dns else ["", ""]
    if status_fd is not None:
        os.write(status_fd, b"ok")
        os.close(status_fd)
        if master < 0:  # a first start: maybe it is over before an exec would be
            code, out_r, err_r, partial, served = _grace(
                str(log_path(root, cid)), log_opts, init_pid, out_r, err_r,
                dns.udp if dns else -1, dns.tcp if dns else -1, dns.argv()[1] if dns else "")
            if code is not None:
                # offered to the `run` waiting in the foreground, as the bare pump does: it
                # reads the whole log before the finish (an --rm removes the files the log
                # rotated into, which it may not have read yet)
                from . import _pump
                if handover is not None and _pump.hand_over(handover, code):
                    os._exit(0)
                _finish_logged(root, run, cid, code)
            if served is not None and not served.fds:  # its server failed and closed them
                dns_argv = ["", ""]
    # The idle part needs none of the engine: become a bare interpreter running _pump.py (the
    # same process, still the container's parent and subreaper), which calls `finish` below
    # when the container is gone. It is started through a link named berth-monitor, so that
    # ps, top and pgrep show what it is.
    for fd in (out_r, err_r, handover, *((dns.udp, dns.tcp) if dns else ())):
        if fd is not None and fd >= 0:
            os.set_inheritable(fd, True)
    py = sys.executable
    if not py or os.path.basename(py) == MONITOR_NAME:  # a restart, from inside _pump.py
        py = os.readlink(os.path.join(run, MONITOR_NAME))
    # _pump.py is imported, not run as a script: from its cached bytecode, where a script is
    # compiled at every exec (1.4 MB more of the idle process's memory, and start-up time).
    # Its directory leaves sys.path at once (engine modules there would shadow top-level ones).
    here = os.path.dirname(os.path.abspath(__file__))
    launcher = (f"import sys; sys.path.insert(0, {here!r}); import _pump; del sys.path[0]; "
                "_pump.main(sys.argv)")
    paths = os.pathsep.join(p for p in sys.path if p and os.path.isabs(p))
    args = [str(out_r), str(err_r), str(log_path(root, cid)), str(init_pid), paths, root, run,
            cid, attach if master >= 0 else "", str(log_opts.get("max_size", 0)),
            str(log_opts.get("max_file", 1)), *dns_argv,
            str(-1 if handover is None else handover), partial.get(out_r, b"").hex(),
            partial.get(err_r, b"").hex()]
    for exe in (_named_link(run, py), py):  # the link, else the interpreter by its own name
        with _suppress():
            os.execv(exe, [MONITOR_NAME, "-S", "-I", "-c", launcher, *args])
    # no exec at all (the interpreter gone since, out of memory…): pump here, loaded as we
    # are; the container still gets its log, its reaping and its finish
    from . import _pump
    _pump.main(["-c", *args])


_GRACE = 0.25  # seconds a first start keeps the loaded monitor before the exec


def _grace(log: str, log_opts: dict[str, Any], pid: int, out_r: int, err_r: int,
           dns_udp: int, dns_tcp: int, dns_index: str,
           ) -> tuple[int | None, int, int, dict[int, bytes], Any]:
    """The first _GRACE seconds of a container, pumped by this process as _pump.py would
    (DNS answered too): a container that is over by then (`run --rm IMG true`, a short job)
    is reaped and finished here (or by the CLI it offers the finish to), without the exec and
    the re-import of the engine for `finish` (both on the path of a `run` waiting for it). Its
    exit code (or None), the streams still open (else -1) and their unfinished lines, for the
    exec, and the DNS server used here, to be held until the exec (its sockets would close
    the descriptors the exec passes on). A terminal is pumped by _pump.py from the start (its
    clients stay on)."""
    import select

    from . import _pump
    deadline = time.monotonic() + _GRACE
    dns = _pump.Dns([dns_udp, dns_tcp], dns_index) if dns_index else None
    out = _pump.Log(log, int(log_opts.get("max_size", 0)), int(log_opts.get("max_file", 1)))
    try:
        left = _pump.pump(out, {out_r: "stdout", err_r: "stderr"}, dns, None, deadline)
    finally:
        out.close()
    out_r, err_r = (out_r if out_r in left else -1), (err_r if err_r in left else -1)
    over = False
    if not left:  # its output closed in time: has it exited too? (DNS waits meanwhile: not
        pidfd = os.pidfd_open(pid)  # for long, as the output closes when a process exits)
        try:
            wait = max(0.0, deadline - time.monotonic())
            over = bool(select.select([pidfd], [], [], wait if dns is None
                                      else min(wait, 0.05))[0])
        finally:
            os.close(pidfd)
    return (_pump.reap(pid) if over else None), out_r, err_r, left, dns


def _finish_logged(root: str, run: str, cid: str, code: int) -> None:
    """`finish` as the monitor's last act: a failure is written next to the container's log
    (where _pump.py writes its own), and the process ends here either way."""
    try:
        finish(root, run, cid, code)
    except BaseException:
        with _suppress(), open(os.path.join(root, "containers", cid, "monitor.log"), "a") as f:
            f.write(traceback.format_exc())
    finally:
        os._exit(0)


def should_restart(policy: dict[str, Any], code: int, count: int, stopped: bool) -> bool:
    """docker's restart policies: `no`; `always` and `unless-stopped` unless the user stopped
    it; `on-failure[:N]` after a non-zero exit, at most N times (N=0: no limit)."""
    name = policy.get("name", "no")
    if stopped or name == "no":
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        limit = int(policy.get("max", 0))
        return code != 0 and (limit == 0 or count < limit)
    return False


def restart_delay(count: int) -> float:
    """docker's back-off: 100 ms, doubling, at most a minute."""
    return min(0.1 * (2 ** count), 60.0)


def _named_link(run: str, py: str) -> str:
    link = os.path.join(run, MONITOR_NAME)
    try:
        if os.readlink(link) == py:
            return link
    except OSError:
        pass
    tmp = f"{link}.{os.getpid()}"  # replaced by a rename: never missing for another monitor
    try:
        os.makedirs(run, exist_ok=True)
        os.symlink(py, tmp)
        os.rename(tmp, link)
        return link
    except OSError:
        return py


def _oom_killed(rt: Any, cid: str) -> bool:
    """Whether the OOM killer struck in the container's cgroup (read before it is removed)."""
    try:
        from berth.runtime.cgroups import open_cgroups
        mem = open_cgroups(rt.cgroups_path(cid), cid).stats().get("memory") or {}
        return int(mem.get("oom_kill") or 0) > 0
    except Exception:  # noqa: BLE001 - no cgroup left, no memory controller: not known
        return False


def finish(root: str, run: str, cid: str, code: int) -> None:
    """After the container exited: delete its runtime state, unmount its root filesystem,
    record the exit, and remove it when it was started with --rm. Imports only what that
    needs (no image store): `run` waits for it."""
    from berth.store import mount as mnt
    from berth.store.db import Database
    from berth.store.snapshots import Snapshots

    from .containers import destroy, exit_file, logs_size, writable_size
    from .runtimes import open_runtime
    db = Database(root)
    rt_row = db.read("SELECT json_extract(config, '$.runtime') FROM containers WHERE id = ?",
                     (cid,))
    rt = open_runtime(run, rt_row[0][0] if rt_row else None)  # the one it was created with
    oom = _oom_killed(rt, cid)
    with _suppress():
        rt.delete(cid, force=True)
    target = Snapshots(root).path(cid) / "merged"
    with _suppress():
        if mnt.is_mounted(target):
            mnt.unmount(target)
    try:
        with _suppress():  # unmount typed volumes, record their sizes
            from .volumes import detach as detach_volumes
            detach_volumes(db, root, run, cid)
        if db.read("SELECT 1 FROM containers WHERE id = ? AND json_array_length(config, "
                   "'$.ports') > 0", (cid,)):
            with _suppress():  # its DNAT rules, before its bridge may go
                from .ports import unpublish
                unpublish(db, cid)
        if db.read("SELECT 1 FROM endpoints WHERE container_id = ? LIMIT 1", (cid,)):
            with _suppress():  # veths, the address (not a --ip one), an unused bridge
                from .networks import detach as detach_networks
                detach_networks(db, run, cid)
        row = db.read("SELECT name, auto_remove, restart_count, stopped_by_user, config, "
                      "image_id FROM containers WHERE id = ?", (cid,))
        if not row:
            return
        name, auto_remove, count, stopped, config, image_id = row[0]
        policy = json.loads(config).get("restart") or {}
        again = not auto_remove and should_restart(policy, code, count, bool(stopped))
        size_rw = log_size = 0
        with _suppress():  # recorded for `ps -s`, `inspect --size` and `system df`
            size_rw, log_size = writable_size(root, cid), logs_size(root, cid)
        with db.transaction() as tx:
            tx.execute("UPDATE containers SET status = ?, exit_code = ?, finished_ns = ?, "
                       "pid = 0, size_rw = ?, log_size = ?, oom_killed = ? WHERE id = ?",
                       ("restarting" if again else "exited", code, time.time_ns(), size_rw,
                        log_size, int(oom), cid))
            if not again:
                tx.execute("UPDATE containers SET monitor_pid = 0 WHERE id = ?", (cid,))
            db.record_event("container", "die", cid, {"name": name, "exitCode": str(code)})
        if again:
            time.sleep(restart_delay(count))
            with db.transaction() as tx:  # stopped meanwhile (and not started again since:
                # Engine.start clears the mark of a restarting container), or removed
                kept_down = tx.execute(
                    "UPDATE containers SET status = 'exited', monitor_pid = 0 WHERE id = ? "
                    "AND stopped_by_user = 1", (cid,)).rowcount or not tx.execute(
                    "SELECT 1 FROM containers WHERE id = ?", (cid,)).fetchone()
            if kept_down:
                return
            with db.transaction() as tx:
                tx.execute("UPDATE containers SET restart_count = restart_count + 1 "
                           "WHERE id = ?", (cid,))
                db.record_event("container", "restart", cid, {"name": name})
            from berth.image.images import ImageStore
            from berth.image.unpack import prepare_rootfs
            store = ImageStore(root)
            [plan] = prepare_rootfs(store, image_id, cid)
            store.close()
            db.close()
            _launch(root, run, cid, name, plan, None)  # does not return
        if auto_remove:
            exits = exit_file(run, cid)
            exits.parent.mkdir(parents=True, exist_ok=True)
            tmp = exits.with_name(f".{cid}.tmp")
            tmp.write_text(str(code))
            os.rename(tmp, exits)
            destroy(db, root, cid)
    finally:
        db.close()
