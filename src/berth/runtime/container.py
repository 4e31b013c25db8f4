"""The runtime's library interface: create, start, state, kill, delete, exec, pause, resume.

Each verb refreshes the status from the kernel, checks the transition on `Status`, acts, and
saves. The engine calls these in-process; `berth-runtime` is a thin CLI over them.
"""

from __future__ import annotations

import _socket
import os
import select
import time

from berth.errors import (BerthError, Conflict, InvalidArgument, InvalidConfig, NotFound,
                          RuntimeFailure)
from berth.oci.runtime_spec import Process, Spec, parse_process
from berth.runtime import _sys, process, rootfs
from berth.runtime.process import (NS_FLAGS, NS_ORDER, NS_PROC, Final, check_process,
                                   check_sysctl, child_main, recv, send)
from berth.runtime.state import State, Status, check_id, proc_start_time

SIGKILL = 9

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _run_hooks(kind: str, spec: Spec, state: dict[str, Any]) -> None:
    if spec.hooks.get(kind):
        from berth.runtime import hooks
        hooks.run_hooks(kind, spec.hooks[kind], state)


def _cgroups(path: str | None, cid: str) -> Any:
    from berth.runtime.cgroups import open_cgroups
    return open_cgroups(path, cid)


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_spec(bundle: str) -> Spec:
    try:
        raw = _read(os.path.join(bundle, "config.json"))
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: config.json not found") from None
    return Spec.from_json(raw)


class CreateOptions:
    """console_socket/pid_file as in the CLI; subreaper is set by `run` and by the engine's
    monitor (the init is re-parented to the caller, which can then wait for it); console_fd,
    for `run` with a terminal and no console socket, receives the pty for the caller to relay;
    preserve_fds passes the caller's fds 3..3+N-1 to the container process (runc's option)."""

    def __init__(self, console_socket: str | None = None, pid_file: str | None = None,
                 subreaper: bool = False, console_fd: int | None = None,
                 preserve_fds: int = 0) -> None:
        self.preserve_fds = preserve_fds
        self.console_socket = console_socket
        self.pid_file = pid_file
        self.subreaper = subreaper
        self.console_fd = console_fd


def _cgroup_view() -> rootfs.CgroupView:
    """Per-hierarchy view of our own cgroup, read in the intermediate child after it joined."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            paths[ctrls] = path
    v1: list[tuple[str, str, str]] = []
    v2_mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _src, super_opts = (right.split() + ["", ""])[:3]
            mountpoint = left.split()[4]
            if fstype == "cgroup":
                ctrls = ",".join(o for o in super_opts.split(",")
                                 if o not in ("rw", "ro") and not o.startswith("release_agent"))
                key = next((k for k in paths if k and set(k.split(",")) == set(ctrls.split(","))),
                           None)
                if key is not None:
                    v1.append((mountpoint, super_opts, paths[key]))
            elif fstype == "cgroup2":
                v2_mount = mountpoint
    pure_v2 = not v1 and v2_mount is not None
    return rootfs.CgroupView(tuple(v1), paths.get("", "/") if pure_v2 else None)


class Runtime:
    """berth's OCI runtime over one state root."""

    def __init__(self, root: str) -> None:
        self.root = str(root)

    # -- create ------------------------------------------------------------------------------

    def create(self, cid: str, bundle: str, opts: CreateOptions | None = None) -> State:
        opts = opts or CreateOptions()
        check_id(cid)
        bundle = os.path.realpath(bundle)
        spec = load_spec(bundle)
        if spec.process is None:
            raise InvalidConfig("process", "is required to create a container")
        if spec.process.terminal and opts.console_socket is None and opts.console_fd is None:
            raise InvalidArgument("process.terminal is true: give --console-socket to receive "
                                  "the terminal (or use `run`, which attaches it)")
        caps = check_process(spec.process)
        check_sysctl(spec)
        if spec.linux.mount_label and not process.lsm_state()[1]:
            process.warn_stderr(f"mountLabel {spec.linux.mount_label!r} skipped: SELinux is not "
                                "enabled on this host")
        if spec.hooks:
            # The init runs startContainer hooks after pivot_root, where the host's modules
            # are out of reach: import now, the fork carries it.
            from berth.runtime import hooks  # noqa: F401
        seccomp_spec = self._seccomp_program(spec.linux.seccomp)
        rootfs_path = os.path.join(bundle, spec.root_path)
        if not os.path.isdir(rootfs_path):
            raise InvalidConfig("root.path", f"{rootfs_path} is not a directory")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        sdir = os.path.join(self.root, cid)
        try:
            os.mkdir(sdir, 0o700)
        except FileExistsError:
            raise Conflict(f"container {cid} already exists") from None
        mgr = None
        init_pid = 0
        try:
            with open(os.path.join(sdir, "config.json"), "wb") as f:
                f.write(_read(os.path.join(bundle, "config.json")))
            mgr = _cgroups(spec.linux.cgroups_path, cid)
            mgr.create()
            mgr.apply(_with_default_device_rules(spec.linux.resources))
            os.mkfifo(os.path.join(sdir, "exec.fifo"), 0o622)
            state = State(id=cid, pid=0, pid_start=0, bundle=bundle, rootfs=rootfs_path,
                          created=_now(), cgroups_path=mgr.path, annotations=spec.annotations,
                          owner="root")
            init_pid = self._spawn(spec, state, caps, seccomp_spec, mgr, opts, sdir, bundle)
            state.pid = init_pid
            start = proc_start_time(init_pid)
            if start is None:
                raise RuntimeFailure(f"container {cid}: init exited during creation")
            state.pid_start = start
            state.save(self.root)
            if opts.pid_file:
                _write_atomic(opts.pid_file, f"{init_pid}")
            return state
        except BaseException as err:
            try:
                if init_pid:
                    _kill_quiet(init_pid, SIGKILL)
                if mgr is not None:
                    mgr.kill_all(SIGKILL)
                    mgr.destroy()
            except (OSError, BerthError) as cleanup:
                err.add_note(f"cleanup also failed: {cleanup}")
            _rmtree(sdir)
            raise

    def _spawn(self, spec: Spec, state: State, caps: Any, seccomp_spec: dict[str, Any] | None,
               mgr: Any, opts: CreateOptions, sdir: str, bundle: str) -> int:
        proc = spec.process
        assert proc is not None
        ns_fds: dict[str, int] = {}
        console = None
        parent, child = process.channel()
        try:
            for ns in spec.linux.namespaces:
                if ns.path:
                    try:
                        ns_fds[ns.type] = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                    except OSError as e:
                        raise InvalidConfig(f"linux.namespaces[{ns.type}].path",
                                            f"{ns.path}: {e.strerror}") from e
            if opts.console_socket:
                console = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    console.connect(opts.console_socket)
                except OSError as e:
                    raise InvalidArgument(f"console socket {opts.console_socket}: {e.strerror}") from e
            fifo_fd = os.open(os.path.join(sdir, "exec.fifo"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if opts.subreaper:
                _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)
            args = (spec, caps, seccomp_spec, mgr, child, ns_fds, fifo_fd, console,
                    opts.console_fd, bundle, state.id, opts.preserve_fds)
            init_pid = 0
            if not _needs_intermediate(spec):
                # Without a user or time namespace the init is our own child, born in its
                # pid namespace: one fork, no intermediate process.
                pid = init_pid = _fork_in(mgr, pid_ns=_pid_ns_target(spec, ns_fds))
                if pid == 0:
                    parent.close()
                    child_main(child, lambda: self._init_direct(*args))
            else:
                # A new user namespace must own the pid namespace (or the init could not
                # mount /proc), and a new time namespace holds only the children of whoever
                # made it: an intermediate enters them, then forks the init.
                pid = _fork_in(mgr)
                if pid == 0:
                    parent.close()
                    child_main(child, lambda: self._intermediate(*args))
            state.pid = init_pid
            os.close(fifo_fd)
            child.close()
            try:
                # The intermediate's "pid" and the init's messages share the socket and may
                # arrive in either order: the hooks (which get the pid) and the end wait for it.
                hooks_asked = ready = False
                while not (ready and init_pid):
                    msg = recv(parent)
                    if msg is None:
                        raise RuntimeFailure(f"container {state.id}: init exited during creation")
                    t = msg["t"]
                    if t == "error":
                        process.raise_child_error(msg)
                    elif t == "userns":
                        process.write_id_maps(msg["pid"], spec.linux.uid_mappings,
                                              spec.linux.gid_mappings)
                        send(parent, t="ok")
                    elif t == "pid":
                        init_pid = msg["pid"]
                        state.pid = init_pid
                    elif t == "hooks":
                        hooks_asked = True
                    elif t == "ready":
                        ready = True
                    if hooks_asked and init_pid:
                        hooks_asked = False
                        st = state.oci(Status.CREATING)
                        _run_hooks("prestart", spec, st)
                        _run_hooks("createRuntime", spec, st)
                        send(parent, t="ok")
                return init_pid
            except BaseException:
                if init_pid:
                    _kill_quiet(init_pid, SIGKILL)
                if pid != init_pid:
                    # The intermediate may be waiting for our answer: it must not outlive us.
                    _kill_quiet(pid, SIGKILL)
                raise
            finally:
                if pid != init_pid:
                    try:
                        os.waitpid(pid, 0)
                    except ChildProcessError:
                        pass
        finally:
            parent.close()
            for fd in ns_fds.values():
                os.close(fd)
            if console is not None:
                console.close()

    # The two children. Both run after fork; every failure is reported through `sock`.

    def _intermediate(self, spec: Spec, caps: Any, seccomp_spec: dict[str, Any] | None,
                      mgr: Any, sock: Any, ns_fds: dict[str, int], fifo_fd: int,
                      console: Any, console_fd: int | None, bundle: str, cid: str,
                      preserve_fds: int = 0) -> None:
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        # Join before the new cgroup and user namespaces: both would hide the host's tree.
        mgr.join_self()
        view = _cgroup_view()
        lx = spec.linux
        userns = lx.namespace("user") is not None
        if "user" in ns_fds:
            _sys.setns(ns_fds["user"], _sys.CLONE_NEWUSER, "user")
        elif userns:
            _sys.unshare(_sys.CLONE_NEWUSER)
            send(sock, t="userns", pid=os.getpid())
            if (recv(sock) or {}).get("t") != "ok":
                raise RuntimeFailure("uid/gid mapping was not written")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        _enter_namespaces(lx, ns_fds, with_pid=True)
        time_ns = lx.namespace("time")
        if time_ns is not None and not time_ns.path and lx.time_offsets:
            process.write_time_offsets(lx.time_offsets)
        pid = os.fork()
        if pid == 0:
            child_main(sock, lambda: self._init(spec, caps, seccomp_spec, sock, fifo_fd,
                                                console, console_fd, bundle, view, userns, cid,
                                                preserve_fds))
        send(sock, t="pid", pid=pid)

    def _init_direct(self, spec: Spec, caps: Any, seccomp_spec: dict[str, Any] | None,
                     mgr: Any, sock: Any, ns_fds: dict[str, int], fifo_fd: int,
                     console: Any, console_fd: int | None, bundle: str, cid: str,
                     preserve_fds: int = 0) -> None:
        """The init when there is no user namespace: already PID 1 of its pid namespace."""
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        mgr.join_self()  # before the cgroup namespace, which would hide the host's tree
        view = _cgroup_view()
        _enter_namespaces(spec.linux, ns_fds, with_pid=False)
        self._init(spec, caps, seccomp_spec, sock, fifo_fd, console, console_fd, bundle, view,
                   False, cid, preserve_fds)

    def _init(self, spec: Spec, caps: Any, seccomp_spec: dict[str, Any] | None,
              sock: Any, fifo_fd: int, console: Any,
              console_fd: int | None, bundle: str, view: rootfs.CgroupView, userns: bool,
              cid: str, preserve_fds: int = 0) -> None:
        proc = spec.process
        assert proc is not None
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        if spec.hostname:
            _socket.sethostname(spec.hostname)
        if spec.domainname:
            _sys.setdomainname(spec.domainname)
        root = os.path.join(bundle, spec.root_path)
        rootfs.prepare(spec, root, bundle, view, userns)
        send(sock, t="hooks")
        if (recv(sock) or {}).get("t") != "ok":
            raise RuntimeFailure("prestart hooks did not complete")
        # Hooks run in the container's namespaces see its pid as runc gives it there (1).
        st = {"ociVersion": spec.oci_version, "id": cid, "status": "creating", "pid": os.getpid(),
              "bundle": bundle, "annotations": spec.annotations}
        _run_hooks("createContainer", spec, st)
        rootfs.pivot(root)
        process.write_sysctls(spec.linux.sysctl)
        # A missing working directory is made now, before / may become read-only.
        os.makedirs(proc.cwd, exist_ok=True)
        rootfs.finish(spec)
        if proc.oom_score_adj is not None:
            process.set_oom_score_adj(proc.oom_score_adj)
        process.set_rlimits(proc)
        slave = None
        if proc.terminal:
            master, slave = process.open_console(proc.console_size, proc.user.uid)
            process.send_fd(console, console_fd, master)
            os.close(master)
        os.chdir(proc.cwd)
        process.check_cwd_inside(proc.cwd)
        env = process.process_env(proc)
        env.setdefault("HOME", process.home_of(proc.user.uid))
        program = process.find_program(proc.args[0], env)
        fin = Final(proc=proc, caps=caps, program=program, env=env, console_slave=slave,
                    userns=userns, preserve_fds=preserve_fds,
                    init=spec.annotations.get(process.INIT_ANNOTATION) == "true")
        fin.seccomp = seccomp_spec
        process.apply_lsm(proc, process.warn_stderr)
        send(sock, t="ready")
        sock.close()
        # Block until `start` writes to the exec fifo.
        poller = select.poll()
        poller.register(fifo_fd, select.POLLIN)
        while True:
            try:
                poller.poll()
            except InterruptedError:
                continue
            if os.read(fifo_fd, 1):
                break
            raise RuntimeFailure("exec fifo closed without start")
        os.close(fifo_fd)
        _run_hooks("startContainer", spec, {**st, "status": "created"})
        process.finalize_and_exec(fin)

    # -- the other verbs ----------------------------------------------------------------------

    def load(self, cid: str) -> tuple[State, Status]:
        st = State.load(self.root, cid)
        status = st.status(self.root)
        if status == Status.RUNNING:
            try:
                if _cgroups(st.cgroups_path, cid).frozen():
                    status = Status.PAUSED
            except (OSError, BerthError):
                pass
        return st, status

    def state(self, cid: str) -> dict[str, Any]:
        st, status = self.load(cid)
        return st.oci(status)

    def start(self, cid: str) -> None:
        st, status = self.load(cid)
        if not status.can_start():
            raise Conflict(f"container {cid} is {status}, not created: cannot start it")
        fifo = st.fifo(self.root)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise RuntimeFailure(f"container {cid}: init is gone ({e.strerror})") from e
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(fifo)
        spec = self._saved_spec(cid)
        try:
            _run_hooks("poststart", spec, st.oci(Status.RUNNING))
        except BerthError:
            # runtime.md, lifecycle: a failed poststart hook is an error and stops the container.
            _cgroups(st.cgroups_path, cid).kill_all(SIGKILL)
            _kill_quiet(st.pid, SIGKILL)
            wait_gone(st.pid, st.pid_start, 5.0)
            raise

    def kill(self, cid: str, sig: int, all_processes: bool = False) -> None:
        st, status = self.load(cid)
        if not status.can_kill():
            raise Conflict(f"container {cid} is {status}: nothing to kill")
        if all_processes:
            _cgroups(st.cgroups_path, cid).kill_all(sig)
        else:
            os.kill(st.pid, sig)

    def pause(self, cid: str) -> None:
        st, status = self.load(cid)
        if status != Status.RUNNING:
            raise Conflict(f"container {cid} is {status}, not running: cannot pause it")
        _cgroups(st.cgroups_path, cid).freeze()

    def resume(self, cid: str) -> None:
        st, status = self.load(cid)
        if status != Status.PAUSED:
            raise Conflict(f"container {cid} is {status}, not paused: cannot resume it")
        _cgroups(st.cgroups_path, cid).thaw()

    def delete(self, cid: str, force: bool = False) -> None:
        st, status = self.load(cid)
        if not status.can_delete() and not force:
            raise Conflict(f"container {cid} is {status}: stop it first or delete --force")
        mgr = _cgroups(st.cgroups_path, cid)
        if status != Status.STOPPED:
            if status == Status.PAUSED:
                mgr.thaw()
            mgr.kill_all(SIGKILL)
            _kill_quiet(st.pid, SIGKILL)
            wait_gone(st.pid, st.pid_start, 5.0)
        mgr.kill_all(SIGKILL)
        mgr.destroy()
        try:
            spec = self._saved_spec(cid)
        except BerthError:
            spec = None
        _rmtree(os.path.join(self.root, cid))
        if spec is not None:
            try:
                _run_hooks("poststop", spec, st.oci(Status.STOPPED))
            except BerthError as e:
                process.warn_stderr(str(e))

    def list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not os.path.isdir(self.root):
            return out
        for name in sorted(os.listdir(self.root)):
            try:
                st, status = self.load(name)
            except BerthError:
                continue
            out.append(st.oci(status))
        return out

    def pids(self, cid: str) -> list[int]:
        st, _ = self.load(cid)
        return sorted(_cgroups(st.cgroups_path, cid).pids())

    def _seccomp_program(self, profile: dict[str, Any] | None) -> Any:
        """The BPF program for a linux.seccomp object, validated, from a cache on disk.

        Generating the default profile with libseccomp costs ~17 ms and every `berth-runtime`
        is a new process, so programs are kept in <root>/.seccomp/<sha256>.bpf (root only);
        the key covers the profile, the kernel release and berth's version (not libseccomp's:
        asking it costs the import this cache avoids; any version's program for the same
        profile is equivalent). A hit costs one read and no import of the seccomp module;
        loading the program in the init is one seccomp(2) call.
        """
        if profile is None:
            return None
        from berth import __version__
        from berth.oci import fastjson
        try:
            from _sha256 import sha256  # hashlib would load OpenSSL: milliseconds
        except ImportError:
            from hashlib import sha256
        blob = fastjson.dumps(profile, sort_keys=True).encode()
        h = sha256(blob + f"|{os.uname().release}|{__version__}".encode())
        cache = os.path.join(self.root, ".seccomp")
        path = os.path.join(cache, h.hexdigest() + ".bpf")
        try:
            raw = _read(path)
            if len(raw) >= 8 and (len(raw) - 8) % 8 == 0:
                return process.Bpf(raw[8:], int.from_bytes(raw[:8], "little"))
        except FileNotFoundError:
            pass
        from berth.runtime import seccomp
        seccomp.validate(profile)
        prog = seccomp.program(profile)
        os.makedirs(cache, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(prog.flags.to_bytes(8, "little") + prog.bpf)
        os.replace(tmp, path)
        return prog

    def _saved_spec(self, cid: str) -> Spec:
        return Spec.from_json(_read(os.path.join(self.root, cid, "config.json")))

    # -- exec ---------------------------------------------------------------------------------

    def exec(self, cid: str, proc: Process, *, subreaper: bool = True,
             console_fd: int | None = None, console_socket: str | None = None) -> int:
        """Start `proc` inside running container `cid`; returns its host pid.

        The caller (made a subreaper here) can wait for it; the pty master goes to
        console_fd (a unix socket) or console_socket when proc.terminal is set.
        """
        st, status = self.load(cid)
        if not status.can_exec():
            raise Conflict(f"container {cid} is {status}: cannot exec in it")
        spec = self._saved_spec(cid)
        caps = check_process(proc)
        seccomp_spec = self._seccomp_program(spec.linux.seccomp)
        mgr = _cgroups(st.cgroups_path, cid)
        ns_fds: dict[str, int] = {}
        mine = {k: _ns_id("self", v) for k, v in NS_PROC.items()}
        for kind, name in NS_PROC.items():
            if _ns_id(str(st.pid), name) not in (None, mine[kind]):
                ns_fds[kind] = os.open(f"/proc/{st.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        userns = "user" in ns_fds
        console = None
        if proc.terminal and console_socket:
            console = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            console.connect(console_socket)
        parent, child = process.channel()
        if subreaper:
            _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)
        try:
            pid = _fork_in(mgr)
            if pid == 0:
                parent.close()
                child_main(child, lambda: self._exec_join(
                    proc, caps, seccomp_spec, mgr, ns_fds, child, console, console_fd, userns,
                    st.pid))
            child.close()
            target = 0
            ready = False
            try:
                # "pid" (from the joining child) and "ready" (from the process itself) come
                # in either order; the caller needs both.
                while not (ready and target):
                    msg = recv(parent)
                    if msg is None:
                        raise RuntimeFailure(f"exec in {cid}: the process exited before it started")
                    if msg["t"] == "error":
                        process.raise_child_error(msg)
                    elif msg["t"] == "pid":
                        target = msg["pid"]
                    elif msg["t"] == "ready":
                        ready = True
                return target
            finally:
                os.waitpid(pid, 0)
        finally:
            parent.close()
            for fd in ns_fds.values():
                os.close(fd)
            if console is not None:
                console.close()

    def _exec_join(self, proc: Process, caps: Any, seccomp_spec: dict[str, Any] | None,
                   mgr: Any, ns_fds: dict[str, int], sock: Any,
                   console: Any, console_fd: int | None, userns: bool,
                   init_pid: int) -> None:
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        mgr.join_self()
        for kind in NS_ORDER:
            if kind in ns_fds:
                _sys.setns(ns_fds[kind], NS_FLAGS[kind], kind)
        for fd in ns_fds.values():
            os.close(fd)
        if "mount" not in ns_fds:
            # setns(mnt) moves root and cwd into the container; without it, go there by hand.
            os.chroot(f"/proc/{init_pid}/root")
        os.chdir("/")
        pid = os.fork()
        if pid == 0:
            child_main(sock, lambda: self._exec_final(proc, caps, seccomp_spec, sock, console,
                                                      console_fd, userns))
        send(sock, t="pid", pid=pid)

    def _exec_final(self, proc: Process, caps: Any, seccomp_spec: dict[str, Any] | None,
                    sock: Any, console: Any, console_fd: int | None,
                    userns: bool) -> None:
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        process.set_rlimits(proc)
        if proc.oom_score_adj is not None:
            process.set_oom_score_adj(proc.oom_score_adj)
        slave = None
        if proc.terminal:
            master, slave = process.open_console(proc.console_size, proc.user.uid,
                                                 bind_console=False)
            process.send_fd(console, console_fd, master)
            os.close(master)
        try:
            os.chdir(proc.cwd)
        except OSError as e:
            raise InvalidArgument(f"exec: working directory {proc.cwd}: {e.strerror}") from e
        process.check_cwd_inside(proc.cwd, "--cwd")
        env = process.process_env(proc)
        env.setdefault("HOME", process.home_of(proc.user.uid))
        program = process.find_program(proc.args[0], env)
        fin = Final(proc=proc, caps=caps, program=program, env=env, console_slave=slave,
                    userns=userns)
        fin.seccomp = seccomp_spec
        process.apply_lsm(proc, process.warn_stderr)
        send(sock, t="ready")
        sock.close()
        process.finalize_and_exec(fin)


def _needs_intermediate(spec: Spec) -> bool:
    lx = spec.linux
    time_ns = lx.namespace("time")
    return lx.namespace("user") is not None or (time_ns is not None and not time_ns.path)


def _enter_namespaces(lx: Any, ns_fds: dict[str, int], with_pid: bool) -> None:
    """Join the namespaces given by path and unshare the new ones (user is done already;
    pid only when `with_pid`, else the caller forked us into it)."""
    flags = 0
    for kind in NS_ORDER:
        if kind == "user" or (kind == "pid" and not with_pid):
            continue
        ns = lx.namespace(kind)
        if ns is None:
            continue
        if ns.path:
            _sys.setns(ns_fds[kind], NS_FLAGS[kind], f"{kind} {ns.path}")
        else:
            flags |= NS_FLAGS[kind]
    if flags:
        _sys.unshare(flags)
    if flags & _sys.CLONE_NEWNET:
        process.loopback_up()


def _pid_ns_target(spec: Spec, ns_fds: dict[str, int]) -> int | None:
    """For _fork_in: -1 for a new pid namespace, an fd to join, or None to stay in ours."""
    ns = spec.linux.namespace("pid")
    if ns is None:
        return None
    return ns_fds["pid"] if ns.path else -1


def _fork_in(mgr: Any, pid_ns: int | None = None) -> int:
    """Fork a child that is born in the container's cgroup2 directory where the host has
    one (see _sys.fork_into_cgroup); it then joins the v1 hierarchies itself (join_self).

    pid_ns: None keeps the child in our pid namespace; -1 makes it PID 1 of a new one; an fd
    puts it in that one. Our own namespace for later children is restored at once, so hooks
    and later forks of the caller stay in the caller's namespace.
    """
    if pid_ns is None:
        return _fork_in_cgroup(mgr)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if pid_ns == -1:
            _sys.unshare(_sys.CLONE_NEWPID)
        else:
            _sys.setns(pid_ns, _sys.CLONE_NEWPID, "pid")
        pid = -1
        try:
            pid = _fork_in_cgroup(mgr)
        finally:
            if pid != 0:  # the parent (or a failed fork): children go where they went before
                _sys.setns(own, _sys.CLONE_NEWPID, "pid (back to our own)")
        return pid
    finally:
        os.close(own)


def _fork_in_cgroup(mgr: Any) -> int:
    path = mgr.unified_path
    if path is not None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                return _sys.fork_into_cgroup(fd)
            except OSError:
                pass  # an older kernel: fork, and join_self moves the child the slow way
            finally:
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
    return os.fork()


def _ns_id(pid: str, name: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{name}")
    except OSError:
        return None


# runc's default allowed devices (libcontainer/specconv AllowedDevices), in the OCI form.
_DEFAULT_DEVICE_RULES = (
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
)


def _with_default_device_rules(resources: dict[str, Any]) -> dict[str, Any]:
    out = dict(resources)
    rules = [dict(r) for r in resources.get("devices", [])]
    for r in _DEFAULT_DEVICE_RULES:
        out_rule = {k: v for k, v in r.items() if v is not None}
        rules.append(out_rule)
    out["devices"] = rules
    return out


def _kill_quiet(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pid: int, start: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_start_time(pid) != start:
            return True
        time.sleep(0.002)
    return False


def _rmtree(path: str) -> None:
    """Remove a container's state directory: flat files only (shutil costs 3 ms to import)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except IsADirectoryError:
            import shutil
            shutil.rmtree(os.path.join(path, name), ignore_errors=True)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def exec_process_from_args(spec: Spec, args: list[str], *, env: list[str], cwd: str | None,
                           user: str | None, tty: bool, process_file: str | None) -> Process:
    """The process for `exec`: a --process file, or the container's own with overrides."""
    import json
    if process_file:
        try:
            with open(process_file) as f:
                return parse_process(json.load(f), "process")
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--process {process_file}: {e}") from e
    base = spec.process
    if base is None:
        raise InvalidConfig("process", "missing in the container's config")
    if not args:
        raise InvalidArgument("exec needs a command to run")
    uid, gid = base.user.uid, base.user.gid
    if user:
        u, _, g = user.partition(":")
        try:
            uid = int(u)
            gid = int(g) if g else gid
        except ValueError:
            raise InvalidArgument(f"--user {user!r}: use UID[:GID] numbers") from None
    from berth.oci.runtime_spec import User
    return base._replace(args=tuple(args), env=base.env + tuple(env), cwd=cwd or base.cwd,
                   terminal=tty, user=User(uid, gid, base.user.additional_gids, base.user.umask))
