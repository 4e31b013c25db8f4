"""`berth container …` and the top-level forms (run, create, start, ps, logs, stop, kill, rm,
wait): docker's grammar and output over engine/containers.py.

`run` removes a container it created but could not start. Without `-d` it follows the container's log (stdout to stdout, stderr to stderr), forwards
SIGINT/SIGTERM/SIGHUP/SIGQUIT to the container, and exits with the container's code; 125 when
berth fails, 126 when the command cannot be invoked, 127 when it is not found; `create` exits
125 when it fails too. Every other command exits 1 when it fails, as docker's CLI does (125 only
for a flag that does not parse); commands on named containers (rm, stop, kill, start, wait, …)
go on past a failed name and exit 1 at the end; `rm -f` of a name that does not exist is no
failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from typing import Any

from berth.cli.args import Command, Flag, UsageError
from berth.errors import BerthError, InvalidArgument

from .common import for_each

SUBCOMMANDS = {
    "run": "Create and run a new container from an image",
    "create": "Create a new container",
    "start": "Start one or more stopped containers",
    "ls": "List containers",
    "logs": "Fetch the logs of a container",
    "stop": "Stop one or more running containers",
    "restart": "Restart one or more containers",
    "kill": "Kill one or more running containers",
    "rm": "Remove one or more containers",
    "wait": "Block until one or more containers stop, then print their exit codes",
    "inspect": "Display detailed information on one or more containers",
    "exec": "Execute a command in a running container",
    "update": "Update configuration of one or more containers",
    "stats": "Display a live stream of container(s) resource usage statistics",
    "attach": "Attach local standard input, output, and error streams to a running container",
    "pause": "Pause all processes within one or more containers",
    "unpause": "Unpause all processes within one or more containers",
    "top": "Display the running processes of a container",
    "rename": "Rename a container",
    "export": "Export a container's filesystem as a tar archive",
    "port": "List port mappings or a specific mapping for the container",
    "diff": "Inspect changes to files or directories on a container's filesystem",
    "commit": "Create a new image from a container's changes",
    "prune": "Remove all stopped containers",
    "cp": "Copy files/folders between a container and the local filesystem",
}
ALIASES = {"ps": "ls", "list": "ls", "remove": "rm"}

# the limits `run`/`create` and `update` take alike
_RESOURCE_FLAGS = [
    Flag("memory", "m", "bytes", help="Memory limit"),
    Flag("memory-swap", value="bytes", help="Swap limit equal to memory plus swap: '-1' "
         "to enable unlimited swap"),
    Flag("cpus", value="decimal", help="Number of CPUs"),
    Flag("cpu-shares", "c", "int", help="CPU shares (relative weight)"),
    Flag("cpuset-cpus", value="string", help="CPUs in which to allow execution (0-3, "
         "0,1)"),
    Flag("pids-limit", value="int", help="Tune container pids limit (set -1 for "
         "unlimited)"),
]

_CREATE_FLAGS = [
    Flag("detach", "d", help="Run container in background and print container ID"),
    Flag("interactive", "i", help="Keep STDIN open even if not attached"),
    Flag("tty", "t", help="Allocate a pseudo-TTY"),
    Flag("rm", help="Automatically remove the container when it exits"),
    Flag("init", help="Run an init inside the container that forwards signals and reaps "
         "processes"),
    Flag("name", value="string", help="Assign a name to the container"),
    Flag("env", "e", "list", repeat=True, help="Set environment variables"),
    Flag("env-file", value="list", repeat=True, help="Read in a file of environment variables"),
    Flag("workdir", "w", "string", help="Working directory inside the container"),
    Flag("user", "u", "string", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag("entrypoint", value="string", help="Overwrite the default ENTRYPOINT of the image"),
    Flag("hostname", "h", "string", help="Container host name"),
    Flag("label", "l", "list", repeat=True, help="Set meta data on a container"),
    Flag("stop-signal", value="string", help="Signal to stop the container"),
    Flag("health-cmd", value="string", help="Command to run to check health"),
    Flag("health-interval", value="duration", help="Time between running the check"),
    Flag("health-timeout", value="duration", help="Maximum time to allow one check to run"),
    Flag("health-retries", value="int", help="Consecutive failures needed to report unhealthy"),
    Flag("health-start-period", value="duration", help="Start period for the container to "
         "initialize before starting health-retries countdown"),
    Flag("no-healthcheck", help="Disable any container-specified HEALTHCHECK"),
    Flag("log-opt", value="list", repeat=True, help="Log driver options (json-file: max-size, "
         "max-file)"),
    Flag("stop-timeout", value="int", help="Timeout (in seconds) to stop a container"),
    Flag("volume", "v", "list", repeat=True, help="Bind mount a volume"),
    Flag("mount", value="mount", repeat=True, help="Attach a filesystem mount to the container"),
    Flag("tmpfs", value="list", repeat=True, help="Mount a tmpfs directory"),
    Flag("read-only", help="Mount the container's root filesystem as read only"),
    *_RESOURCE_FLAGS,
    Flag("ulimit", value="ulimit", repeat=True, help="Ulimit options"),
    Flag("cap-add", value="list", repeat=True, help="Add Linux capabilities"),
    Flag("cap-drop", value="list", repeat=True, help="Drop Linux capabilities"),
    Flag("privileged", help="Give extended privileges to this container"),
    Flag("security-opt", value="list", repeat=True, help="Security Options"),
    Flag("restart", value="string", default="no", help="Restart policy to apply when a "
         "container exits (no, on-failure[:max-retries], always, unless-stopped)"),
    Flag("network", value="network", repeat=True,
         help="Connect a container to a network: bridge (the default), none, host, "
         "container:NAME (share its network namespace), or a network made with `network "
         "create`; given again, the container is on each network"),
    Flag("network-alias", value="list", repeat=True,
         help="Add network-scoped alias for the container"),
    Flag("ip", value="string", help="IPv4 address (e.g., 172.30.100.104)"),
    Flag("runtime", value="string", help="Runtime to use for this container: berth (the "
         "default, in-process), runc, crun, or the absolute path of an OCI runtime binary"),
    Flag("publish", "p", "list", repeat=True, help="Publish a container's port(s) to the host "
         "([HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO], on a bridge network)"),
    Flag("publish-all", "P", help="Publish all exposed ports to random ports"),
    Flag("expose", value="list", repeat=True, help="Expose a port or a range of ports"),
    Flag("add-host", value="list", repeat=True,
         help="Add a custom host-to-IP mapping (host:ip, or host:host-gateway)"),
    Flag("cidfile", value="string", help="Write the container ID to the file"),
    Flag("device", value="list", repeat=True, help="Add a host device to the container"),
    Flag("group-add", value="list", repeat=True, help="Add additional groups to join"),
    Flag("shm-size", value="bytes", help="Size of /dev/shm"),
    Flag("sysctl", value="map", repeat=True, help="Sysctl options"),
    Flag("pid", value="string", help="PID namespace to use (host, or container:NAME)"),
    Flag("ipc", value="string", help="IPC mode to use (private, shareable, none, or host)"),
    Flag("uts", value="string", help="UTS namespace to use (host)"),
]


def _engine() -> Any:
    from berth.engine.context import engine
    return engine()


def run(args: list[str]) -> int:
    """`berth container SUBCOMMAND`."""
    from berth.cli.main import run_group
    return run_group("container", "Manage containers", SUBCOMMANDS, ALIASES, args, dispatch)


def dispatch(name: str, args: list[str], path: str) -> int:
    from berth.cli.main import EXIT_FAILED, EXIT_RUN_FAILED, guarded
    if name == "prune":  # with the other prunes (cli/commands/prune.py)
        from .prune import container_prune
        return guarded(lambda: container_prune(args, path))
    failed = EXIT_RUN_FAILED if name in ("run", "create") else EXIT_FAILED
    return guarded(lambda: _HANDLERS[name](args, path), failed)


# --- create / run --------------------------------------------------------------------------------

def _create_options(opts: dict[str, Any], rest: list[str]) -> Any:
    from berth.engine import options as o
    from berth.engine.spec import CreateOptions
    env = []
    for path in opts["env_file"]:
        try:
            text = open(path).read()
        except OSError as e:
            raise InvalidArgument(f"open {path}: {e.strerror.lower()}") from None
        env += o.parse_env_file(text, path)
    env += opts["env"]

    def num(key: str, flag: str) -> int:
        if not opts[key]:
            return 0
        try:
            return int(opts[key])
        except ValueError:
            raise InvalidArgument(f'invalid argument "{opts[key]}" for "{flag}" flag: '
                                  "strconv.ParseInt: parsing: invalid syntax") from None

    mounts = [o.parse_volume(v) for v in opts["volume"]]
    mounts += [o.parse_mount(m) for m in opts["mount"]]
    mounts += [o.parse_tmpfs(t) for t in opts["tmpfs"]]
    return CreateOptions(
        tty=opts["tty"], interactive=opts["interactive"],
        args=rest, entrypoint=opts["entrypoint"] if opts["entrypoint_given"] else None,
        env=env, workdir=opts["workdir"], user=opts["user"], hostname=opts["hostname"],
        read_only=opts["read_only"], privileged=opts["privileged"], cap_add=opts["cap_add"],
        cap_drop=opts["cap_drop"], security_opt=opts["security_opt"], memory=opts["memory"],
        memory_swap=opts["memory_swap"], cpus=opts["cpus"],
        cpu_shares=num("cpu_shares", "--cpu-shares"), cpuset_cpus=opts["cpuset_cpus"],
        pids_limit=num("pids_limit", "--pids-limit"), ulimits=opts["ulimit"],
        network=(opts["network"] or ["bridge"])[0], more_networks=opts["network"][1:],
        ip=opts["ip"], network_aliases=opts["network_alias"],
        publish=opts["publish"], publish_all=opts["publish_all"], expose=opts["expose"],
        mounts=mounts, restart=opts["restart"],
        labels=opts["label"], stop_signal=opts["stop_signal"], init=opts["init"],
        log_opts=opts["log_opt"], runtime=opts["runtime"] or "",
        health={"cmd": opts["health_cmd"], "interval": opts["health_interval"],
                "timeout": opts["health_timeout"], "retries": opts["health_retries"],
                "start_period": opts["health_start_period"],
                "no_healthcheck": opts["no_healthcheck"]},
        stop_timeout=num("stop_timeout", "--stop-timeout") if opts["stop_timeout"] else None,
        add_hosts=opts["add_host"], shm_size=opts["shm_size"], sysctls=opts["sysctl"],
        group_add=opts["group_add"], devices=opts["device"], pid_mode=opts["pid"] or "",
        ipc_mode=opts["ipc"] or "", uts_mode=opts["uts"] or "")


def _parse_create(args: list[str], path: str, summary: str) -> tuple[dict[str, Any], list[str]]:
    cmd = Command(path, "[OPTIONS] IMAGE [COMMAND] [ARG...]", summary, _CREATE_FLAGS,
                  min_args=1, interspersed=False)
    opts, rest = cmd.parse(args)
    opts["entrypoint_given"] = any(a == "--entrypoint" or a.startswith("--entrypoint=")
                                   for a in args[:len(args) - len(rest)])
    return opts, rest


def _warn_ports(opts: dict[str, Any]) -> None:
    """docker discards published ports on the host network, with this warning; berth says
    the same for `none`."""
    network = (opts["network"] or ["bridge"])[0]
    if (opts["publish"] or opts["publish_all"]) and network in ("host", "none"):
        print(f"WARNING: Published ports are discarded when using {network} network mode",
              file=sys.stderr)


class _CidFile:
    """docker's --cidfile: refused when the file exists (another container's, maybe running),
    made before the container, given its id once it is made, removed when that failed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        if path:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                  0o644)
            except FileExistsError:
                raise InvalidArgument("container ID file found, make sure the other container "
                                      f"isn't running or delete {path}") from None
            except OSError as e:
                raise InvalidArgument(f"failed to create the container ID file: {e}") from None

    def write(self, cid: str) -> None:
        if self.fd >= 0:
            os.write(self.fd, cid.encode())
            os.close(self.fd)
            self.fd = -1

    def failed(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _create_with_cidfile(eng: Any, opts: dict[str, Any], rest: list[str]) -> Any:
    cidfile = _CidFile(opts["cidfile"])
    try:
        c = eng.create(rest[0], _create_options(opts, rest[1:]), name=opts["name"],
                       auto_remove=opts["rm"])
    except BaseException:
        cidfile.failed()
        raise
    cidfile.write(c.id)
    return c


def _create(args: list[str], path: str) -> int:
    opts, rest = _parse_create(args, path, SUBCOMMANDS["create"])
    _warn_ports(opts)
    c = _create_with_cidfile(_engine(), opts, rest)
    print(c.id)
    return 0


def _run(args: list[str], path: str) -> int:
    from berth.engine.monitor import CommandNotFound, CommandNotInvokable
    opts, rest = _parse_create(args, path, SUBCOMMANDS["run"])
    _warn_ports(opts)
    eng = _engine()
    # Ctrl-C and the like wait until the container runs, and then go to it (see
    # _start_with_stdin): none leaves a container half made, half started or unseen.
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    try:
        c = _create_with_cidfile(eng, opts, rest)
    except BaseException:
        _let_signals_in()
        raise
    # A container this `run` made but could not start is removed again (docker leaves it
    # behind in the "created" state, where nobody asked for it).
    feed = None
    stdin_r = None
    if opts["interactive"] and not opts["detach"] and not opts["tty"]:
        stdin_r, feed = os.pipe()  # the container reads what we copy from our stdin
    log_fd = None
    if not opts["detach"] and not opts["tty"]:
        # open the log before the start: a --rm container may be gone, log and all, before
        # we look; an open descriptor still reads what it wrote
        log_fd = os.open(eng.log_path(c.id), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        _start_with_stdin(eng, c.id, stdin_r, wait_here=log_fd is not None)
    except (CommandNotFound, CommandNotInvokable) as e:
        print(f"Error: failed to start container {c.short_id}: {e}", file=sys.stderr)
        eng.destroy(c.id, volumes=True)
        _let_signals_in()
        return e.exit_code
    except BaseException:
        if log_fd is not None:
            os.close(log_fd)
        eng.destroy(c.id, volumes=True)
        _let_signals_in()
        raise
    if opts["detach"]:
        print(c.id)
        _let_signals_in()  # it runs on, as docker leaves a started -d container
        return 0
    if opts["tty"]:
        _let_signals_in()  # in raw mode Ctrl-C is a key for the container
        return _attach_tty(eng, c.id, interactive=opts["interactive"])
    if feed is not None:
        _feed_stdin(feed)
    return _follow_until_exit(eng, c.id, log_fd=log_fd)


DETACH_KEYS = b"\x10\x11"  # Ctrl-P Ctrl-Q, docker's default


def _attach_tty(eng: Any, cid: str, *, interactive: bool = True) -> int:
    """Be the terminal of a container started with -t: our terminal in raw mode, keys to it,
    its output to us, our window size to it (and on SIGWINCH). Ctrl-P Ctrl-Q detaches and
    leaves it running; otherwise we stay until it exits and return its exit code."""
    import socket
    import struct

    from berth.engine.containers import attach_path
    from berth.errors import NoSuchContainer
    c = eng.get(cid)
    if c.status != "running":
        raise InvalidArgument("You cannot attach to a stopped container, start it first")
    if not c.config.get("tty"):
        raise InvalidArgument(f"container {c.name} has no terminal (run it with -t to attach)")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(attach_path(eng.run, c.id)))
    except OSError as e:
        raise InvalidArgument(f"cannot attach to {c.name}: {e.strerror}") from None
    tty_in = os.isatty(0)

    def send_size(*_: Any) -> None:
        if not tty_in:
            return
        import fcntl
        import termios
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        try:
            sock.sendall(b"r" + rows.to_bytes(2, "big") + cols.to_bytes(2, "big"))
        except OSError:
            pass

    saved = None
    if tty_in:
        import termios
        import tty
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        signal.signal(signal.SIGWINCH, send_size)
        send_size()
    detached = False
    pending = b""
    try:
        inputs = [sock, 0] if interactive else [sock]
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if sock in ready:
                try:
                    data = sock.recv(1 << 16)
                except ConnectionResetError:  # the monitor closed us with input unread: the
                    data = b""  # container is gone, as at end of file
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 1 << 16)
                if not data:
                    inputs = [sock]
                    continue
                data = pending + data
                pending = b""
                if DETACH_KEYS in data:
                    before = data[:data.index(DETACH_KEYS)]
                    if before:
                        sock.sendall(b"d" + len(before).to_bytes(4, "big") + before)
                    detached = True
                    break
                if data.endswith(DETACH_KEYS[:1]):  # maybe the start of the sequence
                    data, pending = data[:-1], data[-1:]
                if data:
                    sock.sendall(b"d" + len(data).to_bytes(4, "big") + data)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()
    if detached:
        sys.stderr.write("read escape sequence\n")
        return 0
    try:
        return int(eng.wait(cid, 30))
    except NoSuchContainer:
        return eng.removed_exit_code(cid)


def _feed_stdin(fd: int) -> None:
    """Copy our stdin to the container's in a thread; its end closes the container's stdin."""
    import threading

    def copy() -> None:
        try:
            while True:
                data = os.read(0, 1 << 16)
                if not data:
                    break
                os.write(fd, data)
        except OSError:
            pass  # the container closed its stdin, or exited
        finally:
            os.close(fd)

    threading.Thread(target=copy, daemon=True).start()


def _follow_until_exit(eng: Any, cid: str, pos: int = 0, log_fd: int | None = None) -> int:
    """Print the container's output as its monitor logs it (from byte `pos` of the log, or
    from the start of the already open `log_fd`), forward signals, return its exit code."""
    from berth.errors import NoSuchContainer

    def forward(sig: int, _frame: Any) -> None:
        try:
            eng.kill(cid, sig)
        except BerthError:
            pass

    for s in _FORWARDED:
        signal.signal(s, forward)
    _let_signals_in()  # held since the start (_start_with_stdin): now they reach it
    follow = _LogFollower(eng.log_path(cid), log_fd, pos)
    c = eng.get(cid)
    pidfd = None
    if c.status == "running" and c.monitor_pid:
        try:  # the monitor's exit is the end: wait on it, not on a timer
            pidfd = os.pidfd_open(c.monitor_pid)
        except OSError:
            pidfd = None
    claim = _Claim(eng, cid) if eng.handover(cid) is not None else None
    try:
        while True:
            follow.copy()
            waits = [w for w in (pidfd, claim and claim.ready_fd) if w is not None]
            if waits:
                ready = select.select(waits, [], [], 0.05)[0]
                done = pidfd is not None and pidfd in ready
            else:
                time.sleep(0.02)
                ready, done = [], False
            if claim is not None and claim.ready_fd in ready:
                code, claim = claim.result(), None
                if code is not None:  # ours: all of it is written; read it before an --rm
                    follow.copy()  # removes it, then finish
                    if eng.finish_claimed(cid, code):
                        return code
                continue
            try:
                c = eng.get(cid)
            except NoSuchContainer:
                follow.copy()
                return eng.removed_exit_code(cid)
            if c.status != "running" and (done or pidfd is None):
                follow.copy()
                return c.exit_code
    finally:
        follow.close()
        if pidfd is not None:
            os.close(pidfd)


class _Claim:
    """The monitor's offer of its finish, claimed by a thread of its own the moment it comes
    (Engine.claim_finish): the main thread may be blocked writing the output to a slow
    reader (`run … | less`) for longer than the monitor waits for a claim, and the monitor
    would then finish itself and an --rm remove the log files not read yet. `ready_fd`
    becomes readable when the claim is decided."""

    def __init__(self, eng: Any, cid: str) -> None:
        import threading
        self._r, self._w = os.pipe()
        self.ready_fd = self._r
        self._code: int | None = None

        def take() -> None:
            try:
                self._code = eng.claim_finish(cid)
            finally:
                os.write(self._w, b"x")

        threading.Thread(target=take, daemon=True).start()

    def result(self) -> int | None:
        os.close(self._r)
        os.close(self._w)
        return self._code


def _log_text(doc: dict[str, Any], timestamps: bool = False, details: bool = False) -> bytes:
    """One json-file entry as `logs` prints it: docker's `--details` puts the entry's attrs
    first (k=v,… sorted, query-escaped, then a space), `-t` its time before that."""
    text = doc["log"]
    if details:
        from urllib.parse import quote_plus
        attrs = doc.get("attrs") or {}
        text = ",".join(f"{quote_plus(k)}={quote_plus(str(attrs[k]))}"
                        for k in sorted(attrs)) + " " + text
    if timestamps:
        text = doc.get("time", "") + " " + text
    return text.encode()


class _LogFollower:
    """Reads a json-file log as it grows, through one open descriptor (so a removed
    container's last lines are still read), moving on when the log rotates: to every file
    the monitor began since the one it was reading (several, when the log rotated more than
    once between two reads), oldest first, each from its start. `text(doc)` is how an entry
    prints."""

    def __init__(self, path: Any, fd: int | None, pos: int = 0,
                 text: Any = _log_text) -> None:
        self.path = str(path)
        self.fd = fd
        self.pos = pos
        self.rest = b""
        self.text = text

    def _open(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        os.lseek(self.fd, self.pos, os.SEEK_SET)

    def copy(self) -> None:
        if self.fd is None:
            self._open()
            if self.fd is None:
                return
        while True:
            self._drain()
            try:
                rotated = os.stat(self.path).st_ino != os.fstat(self.fd).st_ino
            except FileNotFoundError:
                rotated = False
            if not rotated:
                return
            # The monitor writes whole entries and rotates between them: what it wrote to the
            # old file between our read and the rotation is read now (the file is whole
            # since); the ones begun after it are those whose first entry is later.
            self._drain()
            # Open them all before reading any (a file renamed or deleted meanwhile is still
            # read through its descriptor).
            begun = _first_time(self.fd)
            os.close(self.fd)
            self.fd = None
            self.rest = b""
            newer = []
            from berth.engine.containers import rotated_logs
            for name in [self.path, *rotated_logs(self.path)]:
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                first = _first_time(fd) or "~"  # just made, still empty: the newest
                if first > begun:
                    newer.append((first, fd))
                else:
                    os.close(fd)
            if not newer:
                self.pos = 0
                self._open()
                if self.fd is None:
                    return
                continue
            newer.sort()
            for _, fd in newer[:-1]:
                self.fd = fd
                self._drain()
                os.close(fd)
                self.rest = b""
            self.fd = newer[-1][1]

    def _drain(self) -> bytes:
        assert self.fd is not None
        if os.fstat(self.fd).st_size < os.lseek(self.fd, 0, os.SEEK_CUR):
            # truncated: with max-file=1 the log restarts in the same file (as docker's);
            # what it held past our reading is gone, the rest is read from its start
            os.lseek(self.fd, 0, os.SEEK_SET)
            self.rest = b""
        chunks = []
        while chunk := os.read(self.fd, 1 << 16):
            chunks.append(chunk)
        data = self.rest + b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self.rest = data[end:]
        for line in data[:end].splitlines():
            doc = json.loads(line)
            out = sys.stdout if doc.get("stream") == "stdout" else sys.stderr
            out.buffer.write(self.text(doc))
            out.flush()
        return data

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _first_time(fd: int) -> str:
    """The time of a json-file log's first entry ("" when it has none yet): docker's
    RFC 3339 times with nine digits, which sort as text."""
    head = b""
    while b"\n" not in head:
        chunk = os.pread(fd, 1 << 16, len(head))
        if not chunk:
            return ""
        head += chunk
    try:
        return str(json.loads(head[:head.index(b"\n")]).get("time", ""))
    except ValueError:
        return ""


# --- start / stop / kill / rm / wait -------------------------------------------------------------

def _start(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] CONTAINER [CONTAINER...]", SUBCOMMANDS["start"], [
        Flag("attach", "a", help="Attach STDOUT/STDERR and forward signals"),
        Flag("interactive", "i", help="Attach container's STDIN"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    eng = _engine()
    if not (opts["attach"] or opts["interactive"]):
        return for_each(names, lambda n: (eng.start(n), n)[1])
    if len(names) > 1:
        raise InvalidArgument("you cannot start and attach multiple containers at once")
    c = eng.get(names[0])
    if c.status in ("running", "restarting"):  # docker attaches to a running one
        if c.config.get("tty"):
            return _attach_tty(eng, c.id, interactive=opts["interactive"])
        return _follow_until_exit(eng, c.id, pos=_log_end(eng, c.id))
    if c.config.get("tty"):
        eng.start(c.id)
        return _attach_tty(eng, c.id, interactive=opts["interactive"])
    # as `run`: the log opened (at its end: earlier runs' output is not shown again) before
    # the start, stdin copied in with -i when the container was made with -i
    log_fd = os.open(eng.log_path(c.id), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    os.lseek(log_fd, 0, os.SEEK_END)
    feed = stdin_r = None
    if opts["interactive"] and c.config.get("interactive"):
        stdin_r, feed = os.pipe()
    try:
        _start_with_stdin(eng, c.id, stdin_r, wait_here=True)
    except BaseException:
        os.close(log_fd)
        _let_signals_in()
        raise
    if feed is not None:
        _feed_stdin(feed)
    return _follow_until_exit(eng, c.id, log_fd=log_fd)


# What a user sends the CLI that `run` passes on to the container (Ctrl-C, kill, a hang-up).
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _start_with_stdin(eng: Any, cid: str, stdin_r: int | None, wait_here: bool = False) -> None:
    """Start `cid` with `stdin_r` (the read end of our pipe, or None) as its stdin; our copy
    of the read end is closed either way (the monitor holds its own). `wait_here`: we follow
    it to its end (Engine.start).
    The signals in _FORWARDED are held from here on, until `_let_signals_in`: one that came
    while the monitor (in a session of its own, which it does not reach) starts the container
    would make us remove the records of a container that then runs on, out of every berth
    command's sight. Once it runs they go to it (_follow_until_exit); after a failed start,
    once it is cleaned up, they act on us."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    try:
        eng.start(cid, stdin=stdin_r, wait_here=wait_here)
    finally:
        if stdin_r is not None:
            os.close(stdin_r)


def _let_signals_in() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)


def _log_end(eng: Any, cid: str) -> int:
    try:
        return os.stat(eng.log_path(cid)).st_size
    except OSError:
        return 0


def _stop_or_restart(what: str, args: list[str], path: str) -> int:
    """`stop` and `restart`: the same flags, docker's output (each name as given)."""
    cmd = Command(path, "[OPTIONS] CONTAINER [CONTAINER...]", SUBCOMMANDS[what], [
        Flag("time", "t", "int", help="Seconds to wait before killing it (default: the "
             "container's --stop-timeout, else 10)"),
        Flag("signal", "s", "string", help="Signal to send to the container"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    try:
        timeout = float(opts["time"]) if opts["time"] else None
    except ValueError:
        raise InvalidArgument(f'invalid argument "{opts["time"]}" for "-t, --time" flag') \
            from None
    sig = _signal(opts["signal"]) if opts["signal"] else None
    eng = _engine()
    act = eng.stop if what == "stop" else eng.restart
    return for_each(names, lambda n: (act(n, timeout, sig), n)[1])


def _stop(args: list[str], path: str) -> int:
    return _stop_or_restart("stop", args, path)


def _restart(args: list[str], path: str) -> int:
    return _stop_or_restart("restart", args, path)


def _signal(text: str) -> int:
    from berth.engine.containers import signal_number
    return signal_number(text)


def _kill(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] CONTAINER [CONTAINER...]", SUBCOMMANDS["kill"], [
        Flag("signal", "s", "string", default="KILL", help="Signal to send to the container"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    sig = _signal(opts["signal"])
    eng = _engine()
    return for_each(names, lambda n: (eng.kill(n, sig), n)[1])


def _rm(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] CONTAINER [CONTAINER...]", SUBCOMMANDS["rm"], [
        Flag("force", "f", help="Force the removal of a running container (uses SIGKILL)"),
        Flag("volumes", "v", help="Remove anonymous volumes associated with the container"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    eng = _engine()
    return for_each(names, lambda n: (eng.remove(n, force=opts["force"],
                                                 volumes=opts["volumes"]), n)[1],
                    missing_ok=opts["force"])


def _wait(args: list[str], path: str) -> int:
    cmd = Command(path, "CONTAINER [CONTAINER...]", SUBCOMMANDS["wait"], min_args=1)
    _, names = cmd.parse(args)
    eng = _engine()
    return for_each(names, lambda n: eng.wait(n))


# --- ps, logs, inspect ---------------------------------------------------------------------------

_PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
               "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
               "CreatedAt": "CREATED AT", "Labels": "LABELS", "Size": "SIZE",
               "State": "STATE"}


def _status_text(c: Any, now: float) -> str:
    from berth.cli.format import human_duration
    if c.status == "running":
        up = "Up " + human_duration(now - c.started_ns / 1e9)
        if _engine().paused(c):
            return up + " (Paused)"
        if c.config.get("healthcheck"):
            status = (json.loads(c.health) if c.health else {}).get("Status", "starting")
            return up + (" (health: starting)" if status == "starting" else f" ({status})")
        return up
    if c.status == "exited":
        return f"Exited ({c.exit_code}) {human_duration(now - c.finished_ns / 1e9)} ago"
    if c.status == "dead":
        return "Dead"
    if c.status == "restarting":
        return f"Restarting ({c.exit_code}) {human_duration(now - c.finished_ns / 1e9)} ago"
    return "Created"


def _ps(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    cmd = Command(path, "[OPTIONS]", SUBCOMMANDS["ls"], [
        Flag("all", "a", help="Show all containers (default shows just running)"),
        Flag("filter", "f", "filter", repeat=True, help="Filter output based on conditions "
             "provided"),
        Flag("format", value="string", help="Format output using a custom template"),
        Flag("last", "n", "int", default="-1", help="Show n last created containers"),
        Flag("latest", "l", help="Show the latest created container"),
        Flag("no-trunc", help="Don't truncate output"),
        Flag("quiet", "q", help="Only display container IDs"),
        Flag("size", "s", help="Display total file sizes"),
    ], max_args=0, aliases=("berth container ls", "berth container ps", "berth ps"))
    opts, _ = cmd.parse(args)
    filters = fmt.parse_filters(opts["filter"], {"status", "name", "id", "ancestor", "exited",
                                                 "label"})
    eng = _engine()
    try:
        last = int(opts["last"])
    except ValueError:
        raise InvalidArgument(f'invalid argument "{opts["last"]}" for "-n, --last" flag') \
            from None
    if opts["latest"]:
        last = 1
    show_all = opts["all"] or last > 0 or bool(filters)
    items = eng.list(all=show_all)
    for v in filters.get("status", []):
        if v not in ("created", "restarting", "running", "removing", "paused", "exited",
                     "dead"):
            raise InvalidArgument(f"invalid filter 'status={v}'")
    items = [c for c in items if _matches(c, filters, _engine())]
    if last > 0:
        items = items[:last]
    now = time.time()
    rows = []
    # docker asks for sizes with -s, or when the template uses .Size
    sizes = opts["size"] or ".Size" in (opts["format"] or "")
    for c in items:
        command = " ".join(c.command)
        rows.append({
            "ID": c.id if opts["no_trunc"] else c.short_id,
            "Image": c.image_ref,
            "Command": json.dumps(command if opts["no_trunc"] else fmt.ellipsis(command, 20),
                                  ensure_ascii=False),
            "RunningFor": fmt.since(c.created_ns / 1e9, now),
            "CreatedAt": fmt.created_at(c.created_ns / 1e9),
            "Status": _status_text(c, now), "State": _state(eng, c),
            "Ports": _ps_ports(c), "Names": c.name,
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(
                (c.config.get("labels") or {}).items())),
            "Size": _size_text(*eng.sizes(c.id)) if sizes else ""})
    if opts["quiet"]:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    default = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
               "{{.Ports}}\t{{.Names}}" + ("\t{{.Size}}" if opts["size"] else ""))
    sys.stdout.write(fmt.render(rows, opts["format"], default_table=default,
                                headers=_PS_HEADERS))
    return 0


def _ps_ports(c: Any) -> str:
    """docker's PORTS column: a running container's published and exposed ports (docker
    fills NetworkSettings.Ports at start: a created or exited container shows none)."""
    if not c.config.get("exposed") or c.status not in ("running", "restarting"):
        return ""
    from berth.engine.ports import ps_ports
    return ps_ports(c.config["exposed"], c.config.get("ports_bound") or [])


def _state(eng: Any, c: Any) -> str:
    """docker's State.Status: a running container whose cgroup is frozen is "paused"."""
    return "paused" if c.status == "running" and eng.paused(c) else c.status


def _size_text(size_rw: int, size_root_fs: int) -> str:
    """docker's SIZE column: "2B (virtual 1.24MB)"."""
    from berth.cli.format import human_size
    if size_root_fs > 0:
        return f"{human_size(size_rw)} (virtual {human_size(size_root_fs)})"
    return human_size(size_rw)


def _matches(c: Any, filters: dict[str, list[str]], eng: Any = None) -> bool:
    if "status" in filters:  # a frozen running container is "paused", as docker shows it
        status = _state(eng, c) if eng is not None else c.status
        if status not in filters["status"]:
            return False
    if "name" in filters and not any(v.removeprefix("/") in c.name for v in filters["name"]):
        return False
    if "id" in filters and not any(c.id.startswith(v) for v in filters["id"]):
        return False
    if "ancestor" in filters and not any(v in (c.image_ref, c.image_id, c.image_id[7:19])
                                         for v in filters["ancestor"]):
        return False
    labels = c.config.get("labels") or {}
    for want in filters.get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    if "exited" in filters and not (c.status == "exited" and
                                    str(c.exit_code) in filters["exited"]):
        return False
    return True


def _logs(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] CONTAINER", SUBCOMMANDS["logs"], [
        Flag("details", help="Show extra details provided to logs"),
        Flag("follow", "f", help="Follow log output"),
        Flag("since", value="string", help="Show logs since timestamp (e.g. "
             "\"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)"),
        Flag("tail", "n", "string", default="all", help="Number of lines to show from the end"),
        Flag("timestamps", "t", help="Show timestamps"),
        Flag("until", value="string", help="Show logs before a timestamp (e.g. "
             "\"2013-01-02T13:23:37Z\") or relative (e.g. \"42m\" for 42 minutes)"),
    ], min_args=1, max_args=1)
    opts, (name,) = cmd.parse(args)
    since = _since_ts(opts["since"]) if opts["since"] else None
    until = _since_ts(opts["until"], "until") if opts["until"] else None
    tail = None
    if opts["tail"] != "all":
        try:
            tail = int(opts["tail"])
        except ValueError:
            raise InvalidArgument(f"invalid value for \"tail\": {opts['tail']!r}") from None
    eng = _engine()
    c = eng.get(name)
    base = eng.log_path(c.id)

    def text(doc: dict[str, Any]) -> bytes:
        return _log_text(doc, opts["timestamps"], opts["details"])

    # The current file through a descriptor opened first, then followed from where this read
    # ended: no line between the two is lost, and a rotation meanwhile is seen (_LogFollower).
    try:
        fd: int | None = os.open(base, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    try:
        from berth.engine.containers import rotated_logs
        lines = []
        for p in rotated_logs(base):
            try:
                with open(p, "rb") as f:
                    lines += f.read().splitlines()
            except FileNotFoundError:
                continue
        data = b""
        if fd is not None:
            while chunk := os.read(fd, 1 << 16):
                data += chunk
        end = data.rfind(b"\n") + 1
        docs = [json.loads(ln) for ln in lines + data[:end].splitlines()]
        if since is not None or until is not None:
            lo, hi = since or 0.0, until if until is not None else float("inf")
            docs = [d for d in docs if lo <= fmt_parse_rfc3339(d.get("time", "")) < hi]
        if tail is not None:
            docs = docs[-tail:] if tail > 0 else []
        for doc in docs:
            (sys.stdout if doc.get("stream") == "stdout" else sys.stderr).buffer.write(text(doc))
        sys.stdout.flush()
        sys.stderr.flush()
        if not opts["follow"] or c.status != "running" or \
                (until is not None and time.time() >= until):
            return 0
        follow = _LogFollower(base, fd, end, text)
        fd = None  # the follower's now
        follow.rest = data[end:]
        try:
            while until is None or time.time() < until:
                follow.copy()
                try:
                    if eng.get(c.id).status != "running":
                        follow.copy()
                        return 0
                except BerthError:
                    return 0
                time.sleep(0.05)
        finally:
            follow.close()
        return 0
    finally:
        if fd is not None:
            os.close(fd)


def fmt_parse_rfc3339(text: str) -> float:
    from berth.cli.format import parse_rfc3339
    return parse_rfc3339(text)


def _since_ts(text: str, flag: str = "since") -> float:
    """docker's --since/--until: an RFC 3339 time, a Unix timestamp, or a duration ago
    ("42m")."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    if "T" in t or t.count("-") >= 2:
        ts = fmt_parse_rfc3339(t if ("Z" in t or "+" in t[10:]) else t + "Z")
        if ts:
            return ts
    from berth.image.changes import parse_duration
    try:
        return time.time() - parse_duration(t, f"--{flag}") / 1e9
    except InvalidArgument:
        raise InvalidArgument(f"invalid value for \"{flag}\": {text!r}") from None


def _shm_size(spec: dict[str, Any]) -> int:
    """/dev/shm's size in bytes, from the container's config.json."""
    for m in spec.get("mounts", []):
        if m.get("destination") == "/dev/shm":
            for o in m.get("options", []):
                if o.startswith("size=") and o[5:].isdigit():
                    return int(o[5:])
    return 0


def _inspect(args: list[str], path: str) -> int:
    from berth.image.images import rfc3339_nano

    from .common import emit_inspect
    cmd = Command(path, "[OPTIONS] CONTAINER [CONTAINER...]", SUBCOMMANDS["inspect"], [
        Flag("format", "f", "string", help="Format output using a custom template"),
        Flag("size", "s", help="Display total file sizes"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    eng = _engine()

    from berth.engine.networks import settings as network_settings
    from berth.engine.volumes import container_mounts
    from berth.engine.ports import port_bindings_doc, ports_doc

    def describe(name: str) -> dict[str, Any]:
        c = eng.get(name)
        spec = json.loads((eng.container_dir(c.id) / "config.json").read_text())
        # docker counts a restarting container as running (its State.Running stays true)
        running = c.status in ("running", "restarting")
        sizes = {}
        if opts["size"]:
            rw, rootfs = eng.sizes(c.id)
            sizes = {"SizeRw": rw, "SizeRootFs": rootfs}
        return {
            "Id": c.id, "Created": rfc3339_nano(c.created_ns), "Path": c.command[0],
            "Args": c.command[1:],
            "State": {"Status": _state(eng, c), "Running": running,
                      "Paused": c.status == "running" and eng.paused(c),
                      "Restarting": c.status == "restarting", "OOMKilled": c.oom_killed,
                      "Dead": c.status == "dead", "Pid": c.pid if running else 0,
                      "ExitCode": c.exit_code, "Error": "",
                      **({"Health": json.loads(c.health) if c.health else
                          {"Status": "starting", "FailingStreak": 0, "Log": []}}
                         if c.config.get("healthcheck") else {}),
                      "StartedAt": rfc3339_nano(c.started_ns),
                      "FinishedAt": rfc3339_nano(c.finished_ns)},
            "Image": c.image_id, "LogPath": str(eng.log_path(c.id)), "Name": "/" + c.name,
            "RestartCount": c.restart_count,
            "Mounts": container_mounts(eng.root, c.config),
            "Driver": "overlay2", **sizes,
            "NetworkSettings": {**network_settings(eng.db, c.id, running),
                                "Ports": ports_doc(c.config.get("exposed") or [],
                                                   c.config.get("ports_bound", []) if running
                                                   else None)},
            "HostConfig": {"AutoRemove": c.auto_remove,
                           "NetworkMode": c.config.get("network") or "none",
                           "Runtime": c.config.get("runtime") or "berth",
                           "PortBindings": port_bindings_doc(c.config.get("ports") or []),
                           "PublishAllPorts": bool(c.config.get("publish_all")),
                           "ExtraHosts": c.config.get("extra_hosts") or None,
                           "GroupAdd": c.config.get("group_add") or None,
                           "Devices": [{"PathOnHost": h, "PathInContainer": p,
                                        "CgroupPermissions": a}
                                       for h, p, a in c.config.get("devices") or []],
                           "ShmSize": _shm_size(spec),
                           "Sysctls": spec["linux"].get("sysctl") or {},
                           "PidMode": c.config.get("pid_mode") or "",
                           "IpcMode": c.config.get("ipc_mode") or "private",
                           "UTSMode": c.config.get("uts_mode") or "",
                           "Privileged": "CAP_SYS_ADMIN" in spec["process"]["capabilities"][
                               "bounding"]},
            "Config": {"Hostname": c.config.get("hostname", ""),
                       "Env": spec["process"]["env"], "Cmd": c.command,
                       "Image": c.image_ref, "WorkingDir": spec["process"]["cwd"],
                       "Labels": c.config.get("labels") or {},
                       "StopSignal": c.config.get("stop_signal", "SIGTERM"),
                       "User": f"{spec['process']['user']['uid']}:"
                               f"{spec['process']['user']['gid']}",
                       **({"ExposedPorts": {k: {} for k in c.config["exposed"]}}
                          if c.config.get("exposed") else {})},
        }

    return emit_inspect(names, describe, opts["format"])


def _exec(args: list[str], path: str) -> int:
    from berth.engine.monitor import CommandNotFound, CommandNotInvokable
    cmd = Command(path, "[OPTIONS] CONTAINER COMMAND [ARG...]", SUBCOMMANDS["exec"], [
        Flag("detach", "d", help="Detached mode: run command in the background"),
        Flag("env", "e", "list", repeat=True, help="Set environment variables"),
        Flag("interactive", "i", help="Keep STDIN open even if not attached"),
        Flag("tty", "t", help="Allocate a pseudo-TTY"),
        Flag("user", "u", "string", help="Username or UID (format: <name|uid>[:<group|gid>])"),
        Flag("workdir", "w", "string", help="Working directory inside the container"),
    ], min_args=2, interspersed=False)
    opts, rest = cmd.parse(args)
    if not opts["interactive"]:  # docker gives the process no stdin without -i
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    try:
        return int(_engine().exec(rest[0], rest[1:], env=opts["env"], user=opts["user"],
                                  workdir=opts["workdir"], detach=opts["detach"],
                                  tty=opts["tty"]))
    except BerthError as e:
        text = str(e)
        if text.startswith("exec ") and ("no such file" in text or "not found" in text):
            print(f"Error: {text}", file=sys.stderr)
            return CommandNotFound.exit_code
        if text.startswith("exec ") and "permission denied" in text:
            print(f"Error: {text}", file=sys.stderr)
            return CommandNotInvokable.exit_code
        raise


_STATS_HEADERS = {"Container": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                  "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                  "BlockIO": "BLOCK I/O", "PIDs": "PIDS", "ID": "CONTAINER ID"}


def _stats(args: list[str], path: str) -> int:
    """docker's stats: CPU % over an interval (1 s live, ~0.5 s for --no-stream's one sample),
    memory usage / limit (the host's memory when unlimited), pids. Network and block I/O are
    not measured yet (shown as --)."""
    from berth.cli import format as fmt
    cmd = Command(path, "[OPTIONS] [CONTAINER...]", SUBCOMMANDS["stats"], [
        Flag("all", "a", help="Show all containers (default shows just running)"),
        Flag("format", value="string", help="Format output using a custom template"),
        Flag("no-stream", help="Disable streaming stats and only pull the first result"),
        Flag("no-trunc", help="Do not truncate output"),
    ])
    opts, names = cmd.parse(args)
    eng = _engine()
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ncpu = os.cpu_count() or 1
    default = ("table {{.Container}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")

    def sample() -> dict[str, tuple[Any, dict[str, Any]]]:
        out = {}
        for c in ([eng.get(n) for n in names] if names else eng.list()):
            try:
                out[c.id] = (c, eng.stats(c.id))
            except BerthError:
                continue
        return out

    first, t0 = sample(), time.monotonic()
    while True:
        time.sleep(0.5 if opts["no_stream"] else 1.0)
        second, t1 = sample(), time.monotonic()
        rows = []
        for cid, (c, st) in second.items():
            before = first.get(cid, (c, st))[1]
            used = st.get("cpu", {}).get("usage_ns", 0) - before.get("cpu", {}).get(
                "usage_ns", 0)
            cpu = 100.0 * used / ((t1 - t0) * 1e9) if t1 > t0 else 0.0
            mem = st.get("memory", {})
            usage = int(mem.get("usage") or 0)
            limit = int(mem.get("limit") or mem_total)
            limit = min(limit, mem_total)
            rows.append({
                "Container": cid if opts["no_trunc"] else cid[:12], "ID": cid[:12],
                "Name": c.name, "CPUPerc": f"{min(cpu, 100.0 * ncpu):.2f}%",
                "MemUsage": f"{fmt.bytes_size(usage)} / {fmt.bytes_size(limit)}",
                "MemPerc": f"{100.0 * usage / limit:.2f}%" if limit else "0.00%",
                "NetIO": _io_pair(st.get("net"), "rx_bytes", "tx_bytes"),
                "BlockIO": _io_pair(st.get("blkio"), "read_bytes", "write_bytes"),
                "PIDs": str((st.get("pids") or {}).get("current", 0))})
        text = fmt.render(rows, opts["format"], default_table=default, headers=_STATS_HEADERS)
        if opts["no_stream"]:
            sys.stdout.write(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text)
        sys.stdout.flush()
        first, t0 = second, t1


def _io_pair(counters: Any, a: str, b: str) -> str:
    """docker's "1.2kB / 0B" (go-units, decimal)."""
    from berth.cli.format import human_size
    c = counters or {}
    return f"{human_size(int(c.get(a, 0)))} / {human_size(int(c.get(b, 0)))}"


def _attach(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] CONTAINER", SUBCOMMANDS["attach"], [
        Flag("no-stdin", help="Do not attach STDIN"),
    ], min_args=1, max_args=1)
    opts, (name,) = cmd.parse(args)
    eng = _engine()
    c = eng.get(name)
    if c.config.get("tty"):
        return _attach_tty(eng, c.id, interactive=not opts["no_stdin"])
    if c.status != "running":
        raise InvalidArgument("You cannot attach to a stopped container, start it first")
    log = eng.log_path(c.id)  # without a terminal: follow its output from now on
    return _follow_until_exit(eng, c.id, log.stat().st_size if log.exists() else 0)


def _update(args: list[str], path: str) -> int:
    from berth.engine.spec import CreateOptions
    cmd = Command(path, "[OPTIONS] CONTAINER [CONTAINER...]", SUBCOMMANDS["update"],
                  list(_RESOURCE_FLAGS), min_args=1)
    opts, names = cmd.parse(args)
    # A value that does not parse is a flag error (125), as docker's typed flags make it, and
    # the command's own, not each container's.
    try:
        shares = int(opts["cpu_shares"]) if opts["cpu_shares"] else 0
        pids = int(opts["pids_limit"]) if opts["pids_limit"] else 0
        new = CreateOptions(memory=opts["memory"], memory_swap=opts["memory_swap"],
                            cpus=opts["cpus"], cpu_shares=shares,
                            cpuset_cpus=opts["cpuset_cpus"], pids_limit=pids)
        eng = _engine()
        eng.update_limits(new)
    except (ValueError, InvalidArgument) as e:
        raise UsageError(f"invalid argument: {e}\nSee '{path} --help'.") from None
    return for_each(names, lambda n: (eng.update(n, new), n)[1])


def _pause(args: list[str], path: str) -> int:
    cmd = Command(path, "CONTAINER [CONTAINER...]", SUBCOMMANDS["pause"], min_args=1)
    _, names = cmd.parse(args)
    eng = _engine()
    return for_each(names, lambda n: (eng.pause(n), n)[1])


def _unpause(args: list[str], path: str) -> int:
    cmd = Command(path, "CONTAINER [CONTAINER...]", SUBCOMMANDS["unpause"], min_args=1)
    _, names = cmd.parse(args)
    eng = _engine()
    return for_each(names, lambda n: (eng.unpause(n), n)[1])


def _top(args: list[str], path: str) -> int:
    """docker's top: `ps -ef` (or the ps options given) filtered to the container's pids."""
    import subprocess
    cmd = Command(path, "CONTAINER [ps OPTIONS]", SUBCOMMANDS["top"], min_args=1,
                  interspersed=False)
    _, rest = cmd.parse(args)
    pids = set(_engine().pids(rest[0]))
    ps_args = rest[1:] or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise InvalidArgument(f"ps {' '.join(ps_args)}: {e}") from None
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidArgument(f"Couldn't find PID field in ps output ({' '.join(ps_args)})")
    col = header.index("PID")
    keep = [lines[0]] + [ln for ln in lines[1:] if len(ln.split()) > col and
                         ln.split()[col].isdigit() and int(ln.split()[col]) in pids]
    sys.stdout.write("".join(ln + "\n" for ln in keep))
    return 0


def _rename(args: list[str], path: str) -> int:
    cmd = Command(path, "CONTAINER NEW_NAME", SUBCOMMANDS["rename"], min_args=2, max_args=2)
    _, (old, new) = cmd.parse(args)
    _engine().rename(old, new)
    return 0


def _export(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] CONTAINER", SUBCOMMANDS["export"], [
        Flag("output", "o", "string", help="Write to a file, instead of STDOUT"),
    ], min_args=1, max_args=1)
    opts, (name,) = cmd.parse(args)
    eng = _engine()
    if opts["output"]:
        with open(opts["output"], "wb") as out:
            eng.export(name, out)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or "
                              "redirect")
    sys.stdout.flush()
    with os.fdopen(os.dup(1), "wb") as out:
        eng.export(name, out)
    return 0


def _cp(args: list[str], path: str) -> int:
    """docker's cp (engine/cp.py). Progress is said on stderr only when it is a terminal."""
    from berth.engine import cp
    from berth.engine.cp_rules import split_cp_arg
    from berth.cli.format import human_size
    cmd = Command(path, "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\t" + path +
                  " [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH", SUBCOMMANDS["cp"] + "\n\nUse '-' as the "
                  "source to read a tar archive from stdin\nand extract it to a directory "
                  "destination in a container.\nUse '-' as the destination to stream a tar "
                  "archive of a\ncontainer source to stdout.", [
        Flag("archive", "a", help="Archive mode (copy all uid/gid information)"),
        Flag("follow-link", "L", help="Always follow symbol link in SRC_PATH"),
        Flag("quiet", "q", help="Suppress progress output during copy. Progress output is "
             "automatically suppressed if no terminal is attached"),
    ], min_args=2, max_args=2)
    opts, (source, destination) = cmd.parse(args)
    if not source:
        raise InvalidArgument("source can not be empty")
    if not destination:
        raise InvalidArgument("destination can not be empty")
    src_container, src_path = split_cp_arg(source)
    dst_container, dst_path = split_cp_arg(destination)
    if src_container and dst_container:
        raise InvalidArgument("copying between containers is not supported")
    if not src_container and not dst_container:
        raise InvalidArgument("must specify at least one container source")
    eng = _engine()
    flags = {"follow_link": opts["follow_link"], "archive": opts["archive"]}
    say = not opts["quiet"] and sys.stderr.isatty()
    if src_container:
        if dst_path == "-":
            sys.stdout.flush()
            with os.fdopen(os.dup(1), "wb") as out:
                cp.copy_from_container(eng, src_container, src_path, out, **flags)
            return 0
        n = cp.copy_from_container(eng, src_container, src_path, dst_path, **flags)
        where = os.path.abspath(dst_path)
    elif src_path == "-":
        with os.fdopen(os.dup(0), "rb") as stdin:
            n = cp.copy_to_container(eng, dst_container, stdin, dst_path, **flags)
        where = f"{dst_container}:{dst_path}"
    else:
        n = cp.copy_to_container(eng, dst_container, src_path, dst_path, **flags)
        where = f"{dst_container}:{dst_path}"
    if say:
        print(f"Successfully copied {human_size(n, 4)} to {where}", file=sys.stderr)
    return 0


def _port(args: list[str], path: str) -> int:
    """docker's `port`: a running container's published ports (`80/tcp -> 0.0.0.0:8080`), or
    the host addresses of one (`0.0.0.0:8080`)."""
    from berth.engine.ports import port_lines
    cmd = Command(path, "CONTAINER [PRIVATE_PORT[/PROTO]]", SUBCOMMANDS["port"], min_args=1,
                  max_args=2)
    _, rest = cmd.parse(args)
    c = _engine().get(rest[0])
    bound = c.config.get("ports_bound") or [] if c.status in ("running", "restarting") else []
    lines = port_lines(bound, rest[1] if len(rest) > 1 else "")
    if len(rest) > 1 and not lines:
        private = rest[1] if "/" in rest[1] else f"{rest[1]}/tcp"
        raise InvalidArgument(f"No public port '{private}' published for {rest[0]}")
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def _diff(args: list[str], path: str) -> int:
    cmd = Command(path, "CONTAINER", SUBCOMMANDS["diff"], min_args=1, max_args=1)
    _, (name,) = cmd.parse(args)
    sys.stdout.write("".join(f"{k} {p}\n" for k, p in _engine().changes(name)))
    return 0


def _commit(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", SUBCOMMANDS["commit"], [
        Flag("author", "a", "string", help='Author (e.g., "John Hannibal Smith '
             '<hannibal@a-team.com>")'),
        Flag("change", "c", "list", repeat=True, help="Apply Dockerfile instruction to the "
             "created image"),
        Flag("message", "m", "string", help="Commit message"),
        Flag("pause", "p", default=True, help="Pause container during commit (default true)"),
    ], min_args=1, max_args=2)
    opts, rest = cmd.parse(args)
    image_id = _engine().commit(rest[0], rest[1] if len(rest) > 1 else None,
                                message=opts["message"], author=opts["author"],
                                changes=opts["change"])
    print(image_id)
    return 0


_HANDLERS = {"run": _run, "create": _create, "start": _start, "ls": _ps, "logs": _logs,
             "stop": _stop, "restart": _restart, "kill": _kill, "rm": _rm, "wait": _wait, "inspect": _inspect,
             "diff": _diff, "commit": _commit, "exec": _exec,
             "pause": _pause, "unpause": _unpause, "top": _top, "rename": _rename,
             "export": _export, "port": _port, "update": _update,
             "attach": _attach, "stats": _stats, "cp": _cp}

