"""The engine's runtime boundary: one small interface, two implementations.

    open_runtime(run, name)        the runtime a container was created with
      create(cid, bundle, console=None) -> pid    the init, waiting for start
      start / state / kill / delete(force=) / pause / resume / pids
      exec(cid, args, env=, cwd=, user=, wait=) -> its pid (with `wait`, the caller's to reap)
      cgroups_path(cid)            linux.cgroupsPath for berth's cgroup reader (stats, OOM)

`InProcess` is berth's own runtime (berth.runtime.container) called in this process: the
default, with no extra interpreter or binary on the hot path; its state is under `<run>/runtime`.
`OCIBinary` drives any runtime that follows the OCI runtime command line (runc, crun, berth's own
`berth-runtime`) with `--root <run>/runtimes/<name>`. Its stdio is passed through: the binary
hands its own stdin/stdout/stderr to the container (runc's pass-through mode), so the caller
sets fds 0-2 before `create`, as it does for the in-process runtime. With a terminal the binary
sends the pty master over `--console-socket`; `create` returns it on the `console` socket the
caller gave, the same way the in-process runtime does. The caller is made a subreaper before the
binary runs, so the container's init, re-parented when `runc create` exits, is the caller's to
reap.

`resolve(name)` checks a `--runtime` value: `berth` (the default), `runc`, `crun`, or an absolute
path to an executable. This module imports nothing beyond `os` until a runtime is used.

Raises: InvalidArgument (unknown runtime), RuntimeFailure (the binary failed: its message),
NotFound (no such container in the runtime).
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgument, NotFound, RuntimeFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any, Protocol

    class ContainerRuntime(Protocol):
        name: str

        def create(self, cid: str, bundle: str,
                   console: socket.socket | None = None) -> int: ...
        def start(self, cid: str) -> None: ...
        def state(self, cid: str) -> dict[str, Any]: ...
        def kill(self, cid: str, sig: int) -> None: ...
        def delete(self, cid: str, force: bool = False) -> None: ...
        def pause(self, cid: str) -> None: ...
        def resume(self, cid: str) -> None: ...
        def pids(self, cid: str) -> list[int]: ...
        def exec(self, cid: str, args: list[str], *, env: list[str], cwd: str | None,
                 user: str | None, wait: bool) -> int: ...
        def cgroups_path(self, cid: str) -> str | None: ...

__all__ = ["BUILTIN", "InProcess", "OCIBinary", "available", "open_runtime", "resolve"]

BUILTIN = "berth"
KNOWN = ("runc", "crun")


def _which(name: str) -> str | None:
    for d in os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
                            "/bin").split(os.pathsep):
        p = os.path.join(d or ".", name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def resolve(name: str) -> str:
    """A `--runtime` value as recorded: "berth", "runc", "crun" or an absolute path. Unknown
    names, runtimes that are not installed and paths that are not executables are refused."""
    if name in ("", BUILTIN):
        return BUILTIN
    if name in KNOWN:
        if _which(name) is None:
            raise InvalidArgument(f"unknown or invalid runtime name: {name} (not installed: "
                                  f"{name} is not on PATH)")
        return name
    if os.path.isabs(name):
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            raise InvalidArgument(f"unknown or invalid runtime name: {name} (not an "
                                  "executable file)")
        return os.path.normpath(name)
    raise InvalidArgument(f"unknown or invalid runtime name: {name}")


def available() -> dict[str, str]:
    """The runtimes this machine has: name -> path (berth's own is in-process)."""
    out = {BUILTIN: "berth-runtime"}  # in-process: the library behind that CLI
    for name in KNOWN:
        p = _which(name)
        if p:
            out[name] = p
    return out


def open_runtime(run: str | os.PathLike[str], name: str | None = None) -> ContainerRuntime:
    """The runtime recorded for a container (`None` or "berth": the in-process one)."""
    if not name or name == BUILTIN:
        return InProcess(str(run))
    return OCIBinary(str(run), name)


class InProcess:
    """berth's runtime (berth.runtime.container) in this process; state under <run>/runtime."""

    name = BUILTIN

    def __init__(self, run: str) -> None:
        from berth.runtime.container import Runtime
        self.rt = Runtime(os.path.join(run, "runtime"))

    def create(self, cid: str, bundle: str, console: socket.socket | None = None) -> int:
        from berth.runtime.container import CreateOptions
        state = self.rt.create(cid, bundle, CreateOptions(
            subreaper=True, console_fd=console.fileno() if console is not None else None))
        return int(state.pid)

    def start(self, cid: str) -> None:
        self.rt.start(cid)

    def state(self, cid: str) -> dict[str, Any]:
        return self.rt.state(cid)

    def kill(self, cid: str, sig: int) -> None:
        self.rt.kill(cid, sig)

    def delete(self, cid: str, force: bool = False) -> None:
        self.rt.delete(cid, force=force)

    def pause(self, cid: str) -> None:
        self.rt.pause(cid)

    def resume(self, cid: str) -> None:
        self.rt.resume(cid)

    def pids(self, cid: str) -> list[int]:
        return list(self.rt.pids(cid))

    def cgroups_path(self, cid: str) -> str | None:
        st, _ = self.rt.load(cid)
        return st.cgroups_path

    def exec(self, cid: str, args: list[str], *, env: list[str], cwd: str | None,
             user: str | None, wait: bool) -> int:
        from berth.runtime.container import exec_process_from_args
        proc = exec_process_from_args(self.rt._saved_spec(cid), list(args), env=list(env),
                                      cwd=cwd, user=user, tty=False, process_file=None)
        return int(self.rt.exec(cid, proc, subreaper=wait))

    def exec_tty(self, cid: str, args: list[str], *, env: list[str], cwd: str | None,
                 user: str | None) -> tuple[int, int]:
        """`exec -t`: the process on a new pty of the container's; (its pid, the pty master)
        for the caller to relay and wait for (the caller is its subreaper)."""
        import socket

        from berth.runtime.container import exec_process_from_args
        proc = exec_process_from_args(self.rt._saved_spec(cid), list(args), env=list(env),
                                      cwd=cwd, user=user, tty=True, process_file=None)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = int(self.rt.exec(cid, proc, subreaper=True, console_fd=theirs.fileno()))
            theirs.close()
            _msg, fds, _flags, _addr = socket.recv_fds(ours, 16, 1)
        finally:
            theirs.close()
            ours.close()
        if not fds:
            raise RuntimeFailure(f"exec in {cid[:12]}: no terminal came back")
        return pid, fds[0]


def _dirname(name: str) -> str:
    """The state directory's name under <run>/runtimes: the name, or for a path its base name
    and a short hash of the path (two binaries of one name keep apart)."""
    if not os.path.isabs(name):
        return name
    import hashlib
    return f"{os.path.basename(name)}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class OCIBinary:
    """A runtime binary with the OCI runtime command line (runc, crun, berth-runtime)."""

    def __init__(self, run: str, name: str) -> None:
        self.name = name
        path = name if os.path.isabs(name) else _which(name)
        if path is None:
            raise InvalidArgument(f"unknown or invalid runtime name: {name} (not installed)")
        self.path = path
        self.root = os.path.join(run, "runtimes", _dirname(name))

    def _argv(self, *args: str) -> list[str]:
        return [self.path, "--root", self.root, *args]

    def _call(self, *args: str) -> str:
        """Run one verb with its output captured; its error message on failure."""
        import subprocess
        try:
            r = subprocess.run(self._argv(*args), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{self.name} {args[0]}: no answer in 60 s") from None
        if r.returncode != 0:
            text = (r.stderr or r.stdout).decode(errors="replace").strip()
            if "does not exist" in text or "not found" in text or "No such" in text:
                raise NotFound(f"{self.name} {args[0]} {args[-1]}: {text}")
            raise RuntimeFailure(f"{self.name} {args[0]} {args[-1]}: {text}")
        return r.stdout.decode(errors="replace")

    def create(self, cid: str, bundle: str, console: socket.socket | None = None) -> int:
        """`RUNTIME create` with the caller's fds 0-2 passed through to the container (or a
        console socket when `console` is given: the pty master arrives on it)."""
        import subprocess
        import tempfile

        from berth.runtime import _sys
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)  # the init is re-parented to us
        pid_file = os.path.join(self.root, f".{cid}.pid")
        log = os.path.join(self.root, f".{cid}.log")
        sock_dir = listener = None
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        try:
            if console is not None:
                import socket as _socket
                # a socket path must fit in 108 bytes: a short directory of its own
                sock_dir = tempfile.mkdtemp(prefix="berth-console-")
                sock = os.path.join(sock_dir, "s")
                listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                listener.bind(sock)
                listener.listen(1)
                args += ["--console-socket", sock]
            r = subprocess.run([self.path, "--root", self.root, "--log", log,
                                "--log-format", "json", *args, cid], close_fds=True)
            if r.returncode != 0:
                why = _log_error(log) or f"exit status {r.returncode}"
                raise RuntimeFailure(_exec_error(why) or f"{self.name} create: {why}")
            with open(pid_file) as f:
                pid = int(f.read().strip())
            if listener is not None and console is not None:
                import socket as _socket
                listener.settimeout(10)
                conn, _ = listener.accept()
                with conn:
                    _msg, fds, _flags, _addr = _socket.recv_fds(conn, 4096, 1)
                if not fds:
                    raise RuntimeFailure(f"{self.name} create: no terminal on the console "
                                         "socket")
                _socket.send_fds(console, [b"t"], fds)
                for fd in fds:
                    os.close(fd)
            return pid
        finally:
            if listener is not None:
                listener.close()
            if sock_dir is not None:
                import shutil
                shutil.rmtree(sock_dir, ignore_errors=True)
            for p in (pid_file, log):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass

    def start(self, cid: str) -> None:
        self._call("start", cid)

    def state(self, cid: str) -> dict[str, Any]:
        import json
        return dict(json.loads(self._call("state", cid)))

    def kill(self, cid: str, sig: int) -> None:
        self._call("kill", cid, str(int(sig)))

    def delete(self, cid: str, force: bool = False) -> None:
        self._call("delete", *(["--force"] if force else []), cid)
        # The binary removes the container's own cgroup; what it leaves (a hierarchy it does
        # not manage, the shared /berth parent once empty) berth's cgroup code removes, as
        # for its own containers.
        from berth.errors import BerthError
        from berth.runtime.cgroups import open_cgroups
        try:
            open_cgroups(cgroups_path(cid), cid).destroy()
        except (BerthError, OSError):
            pass

    def pause(self, cid: str) -> None:
        self._call("pause", cid)

    def resume(self, cid: str) -> None:
        self._call("resume", cid)

    def pids(self, cid: str) -> list[int]:
        import json
        return sorted(int(p) for p in json.loads(self._call("ps", "--format", "json", cid)))

    def cgroups_path(self, cid: str) -> str | None:
        return cgroups_path(cid)

    def exec_tty(self, cid: str, args: list[str], *, env: list[str], cwd: str | None,
                 user: str | None) -> tuple[int, int]:
        raise InvalidArgument(f"exec -t is not supported yet with --runtime {self.name} (it "
                              "is with berth's own runtime)")

    def exec(self, cid: str, args: list[str], *, env: list[str], cwd: str | None,
             user: str | None, wait: bool) -> int:
        """`RUNTIME exec --detach --process` with the caller's stdio passed through; the
        process's pid. With `wait` the caller is made a subreaper first, so the process,
        re-parented when the binary exits, is the caller's to reap (as with berth's runtime).
        The process document goes over a pipe."""
        import json
        import subprocess
        st = self.state(cid)
        if st.get("status") != "running":
            raise RuntimeFailure(f"container {cid} is {st.get('status')}: cannot exec in it")
        with open(os.path.join(st.get("bundle") or "", "config.json")) as f:
            base = dict(json.load(f)["process"])
        if not args:
            raise InvalidArgument("exec needs a command to run")
        proc = {**base, "args": list(args), "env": [*base.get("env", []), *env],
                "cwd": cwd or base.get("cwd", "/"), "terminal": False}
        if user:
            u, _, g = user.partition(":")
            proc["user"] = {**base.get("user", {}), "uid": int(u),
                            "gid": int(g) if g else base.get("user", {}).get("gid", 0)}
        doc = json.dumps(proc).encode()
        if len(doc) > 60000:  # more than a pipe holds before the binary reads it
            raise InvalidArgument("exec: the process document is too large")
        if wait:
            from berth.runtime import _sys
            _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)
        pid_file = os.path.join(self.root, f".{cid}.exec-{os.getpid()}.pid")
        log = os.path.join(self.root, f".{cid}.exec-{os.getpid()}.log")
        r, w = os.pipe()
        try:
            os.write(w, doc)
            os.close(w)
            w = -1
            code = subprocess.run([self.path, "--root", self.root, "--log", log,
                                   "--log-format", "json", "exec", "--process",
                                   f"/proc/self/fd/{r}", "--detach", "--pid-file", pid_file,
                                   cid], pass_fds=(r,), close_fds=True).returncode
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        try:
            why = _log_error(log)
            if code != 0:
                why = why or f"exit status {code}"
                raise RuntimeFailure(_exec_error(why) or f"{self.name} exec: {why}")
            with open(pid_file) as f:
                return int(f.read().strip())
        finally:
            for p in (pid_file, log):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass


def cgroups_path(cid: str) -> str:
    """linux.cgroupsPath given to a runtime binary: where berth's own runtime puts it, so
    berth's cgroup reader (stats, update, OOM) finds the container's cgroup either way."""
    return f"/berth/{cid}"


def _exec_error(why: str) -> str:
    """A binary's "cannot exec the command" said as berth's own runtime says it (`exec 'CMD':
    REASON`), so that run exits 127 or 126 as with docker. "" for other errors."""
    import re
    m = re.search(r'exec: "([^"]*)": (?:stat [^:]*: )?(.*)$', why)  # runc
    if m:
        return f"exec '{m.group(1)}': {m.group(2)}"
    m = re.search(r"executable file `([^`]*)` not found", why)  # crun
    if m:
        return f"exec '{m.group(1)}': executable file not found in $PATH"
    return ""


def _log_error(path: str) -> str:
    """The last error a binary wrote to its --log (JSON lines: runc's logrus, crun's)."""
    import json
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    msgs = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                msgs.append(line.strip())
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            msgs.append(str(entry.get("msg", "")))
    return msgs[-1] if msgs else ""
