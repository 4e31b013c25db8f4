"""The create sequence: parent, intermediate child, container init; and the final exec.

    parent (create)          intermediate                 init (PID 1 of the new pid ns)
    validate, cgroup,   fork  join cgroup, (userns ->
    fifo, socketpair  ------> parent writes maps),
                              setns/unshare the rest  fork  rootfs mounts, /dev
      <-- pid -------------- report init's pid, exit  ----> ask parent to run hooks
      run prestart/createRuntime hooks  <--------------------
      -------------------------------------------------------> createContainer hooks,
                                                              pivot_root, sysctl, masks,
      <-- ready --------------------------------------------- console, resolve program
    save state, exit                                          wait on exec fifo (start)
                                                              user, caps, nnp, seccomp,
                                                              exec
Messages are marshalled dicts over a SOCK_SEQPACKET pair (marshal, _socket and _signal
rather than json, socket and signal: those pull in re and enum, milliseconds per start). A failure in a child is sent as
{"t": "error", "kind": ..., "msg": ...} and re-raised in the parent with its class, so the
caller sees the same typed error whether it failed before or after the fork.
"""

from __future__ import annotations

import _signal
import _socket
import fcntl
import marshal
import os
import struct
import sys
import termios

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from berth import errors
from berth.errors import BerthError, InvalidConfig, ResourceLimit, RuntimeFailure
from berth.oci.runtime_spec import IdMapping, Process, Spec
from berth.runtime import _sys
from berth.runtime.capabilities import CapSets, host_bounding, names_of

NS_FLAGS = {
    "mount": _sys.CLONE_NEWNS, "uts": _sys.CLONE_NEWUTS, "ipc": _sys.CLONE_NEWIPC,
    "network": _sys.CLONE_NEWNET, "pid": _sys.CLONE_NEWPID, "cgroup": _sys.CLONE_NEWCGROUP,
    "user": _sys.CLONE_NEWUSER, "time": _sys.CLONE_NEWTIME,
}
NS_PROC = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "network": "net", "pid": "pid",
           "cgroup": "cgroup", "user": "user", "time": "time"}
# setns order: user first (it grants rights over the others), mount last.
NS_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")

_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
CAP_SYS_RESOURCE = 24
NAMESPACED_SYSCTL_PREFIXES = ("kernel.msg", "kernel.shm", "fs.mqueue.")
NAMESPACED_SYSCTLS = ("kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                      "kernel.shm_rmid_forced")


# -- messages ---------------------------------------------------------------------------------

def channel() -> tuple[Any, Any]:
    """A (parent end, child end) pair for the create and exec sequences."""
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)


def send(sock: Any, **msg: Any) -> None:
    sock.send(marshal.dumps(msg))


def recv(sock: Any) -> dict[str, Any] | None:
    raw = sock.recv(65536)
    return marshal.loads(raw) if raw else None


class Bpf:
    """A seccomp program ready to install (from the runtime's cache or from libseccomp)."""

    __slots__ = ("bpf", "flags")

    def __init__(self, bpf: bytes, flags: int) -> None:
        self.bpf = bpf
        self.flags = flags

    def load(self) -> None:
        try:
            rc = _sys.seccomp_set_filter(self.bpf, self.flags)
        except OSError as e:
            raise RuntimeFailure(f"seccomp: loading the filter: {e.strerror}") from e
        if rc > 0:
            raise RuntimeFailure(f"seccomp: thread {rc} cannot take the filter (TSYNC)")


def send_fd(console: Any, console_fd: int | None, fd: int) -> None:
    """Hand a pty master over the console socket (connected) or socket fd, as runc does."""
    sock = console if console is not None else _socket.socket(fileno=os.dup(console_fd or 0))
    try:
        sock.sendmsg([b"console"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                     struct.pack("i", fd))])
    finally:
        sock.close()


def error_message(e: BaseException) -> dict[str, Any]:
    kind = type(e).__name__ if isinstance(e, BerthError) else "RuntimeFailure"
    if isinstance(e, OSError) and not isinstance(e, BerthError):
        text = e.strerror if e.filename is None else f"{e.strerror}: {e.filename}"
        text = str(e) if text is None else text
    else:
        text = str(e)
    return {"t": "error", "kind": kind, "msg": text}


def raise_child_error(msg: dict[str, Any]) -> None:
    cls = getattr(errors, msg.get("kind", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, BerthError)) or cls is InvalidConfig:
        cls = RuntimeFailure if cls is not InvalidConfig else errors.InvalidArgument
    raise cls(msg.get("msg", "container init failed"))


def child_main(sock: Any, body: Callable[[], None]) -> None:
    """Run body in a forked child; any failure goes to the parent; never returns."""
    code = 0
    try:
        body()
    except BaseException as e:  # noqa: BLE001 - a child must report everything and exit
        code = 1
        try:
            sock.send(marshal.dumps(error_message(e)))
        except OSError:
            print(f"berth-runtime: {e}", file=sys.stderr)
    finally:
        os._exit(code)


# -- checks made before any fork (clear errors, nothing to undo) -----------------------------

def check_process(proc: Process, field: str = "process") -> CapSets:
    caps = CapSets(proc.capabilities, f"{field}.capabilities")
    missing = caps.bounding & ~host_bounding()
    if missing:
        raise ResourceLimit(
            f"{field}.capabilities.bounding: {', '.join(names_of(missing))} not in this host's "
            "bounding set, so no container here can have them")
    eff = _sys.capget()[0]
    for i, rl in enumerate(proc.rlimits):
        import resource
        _, cur_hard = resource.getrlimit(RLIMITS[rl.type])
        if cur_hard != resource.RLIM_INFINITY and (rl.hard > cur_hard or rl.hard == 2**64 - 1) \
                and not eff >> CAP_SYS_RESOURCE & 1:
            raise ResourceLimit(
                f"{field}.rlimits[{i}]: {rl.type} hard limit {rl.hard} is above this host's "
                f"limit {cur_hard}, and the runtime lacks CAP_SYS_RESOURCE to raise it")
    return caps


def check_sysctl(spec: Spec) -> None:
    netns = spec.linux.namespace("network")
    uts = spec.linux.namespace("uts")
    for key in spec.linux.sysctl:
        ok = key in NAMESPACED_SYSCTLS or key.startswith(NAMESPACED_SYSCTL_PREFIXES)
        ok = ok or (key.startswith("net.") and netns is not None)
        ok = ok or (key in ("kernel.hostname", "kernel.domainname") and uts is not None)
        if not ok:
            raise InvalidConfig(f"linux.sysctl.{key}",
                                "not namespaced here: it would change the host")


# -- pieces the children use -----------------------------------------------------------------

def write_id_maps(pid: int, uid_maps: tuple[IdMapping, ...], gid_maps: tuple[IdMapping, ...]) -> None:
    def text(maps: tuple[IdMapping, ...]) -> str:
        return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
    try:
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(text(uid_maps))
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(text(gid_maps))
    except OSError as e:
        raise InvalidConfig("linux.uidMappings", f"the kernel refused the mapping: {e.strerror}") from e


def check_cwd_inside(cwd: str, field: str = "process.cwd") -> None:
    """After chdir into the container: the working directory must be inside its root (a cwd
    through /proc/self/fd/N could name a host directory: CVE-2024-21626)."""
    try:
        real = os.getcwd()
    except FileNotFoundError:  # not reachable from our root at all
        real = ""
    if not real.startswith("/"):
        raise InvalidConfig(field, f"{cwd!r} leads outside the container")


def write_time_offsets(offsets: dict[str, tuple[int, int]]) -> None:
    """Clock offsets of the time namespace we just made (before any process is in it)."""
    text = "".join(f"{clock} {secs} {nsecs}\n" for clock, (secs, nsecs) in offsets.items())
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(text)
    except OSError as e:
        raise InvalidConfig("linux.timeOffsets", f"the kernel refused them: {e.strerror}") from e


def loopback_up() -> None:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    finally:
        s.close()


def write_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise InvalidConfig(f"linux.sysctl.{key}", f"cannot be set: {e.strerror}") from e


def set_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise ResourceLimit(f"process.oomScoreAdj {value}: {e.strerror}") from e


def set_rlimits(proc: Process) -> None:
    if not proc.rlimits:
        # Runs after pivot_root, where the host's stdlib is out of reach: `resource` is only
        # importable here because check_process imported it before the fork, when there are
        # rlimits to check.
        return
    import resource
    for rl in proc.rlimits:
        soft = resource.RLIM_INFINITY if rl.soft >= 2**64 - 1 else rl.soft
        hard = resource.RLIM_INFINITY if rl.hard >= 2**64 - 1 else rl.hard
        try:
            resource.setrlimit(RLIMITS[rl.type], (soft, hard))
        except (OSError, ValueError) as e:
            raise ResourceLimit(f"process.rlimits {rl.type} {rl.soft}/{rl.hard}: {e}") from e


def find_program(args0: str, env: dict[str, str]) -> str:
    """Resolve the program inside the container (after pivot_root), as execvp would."""
    if "/" in args0:
        candidates = [args0]
    else:
        path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [os.path.join(d or ".", args0) for d in path.split(":")]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    if "/" in args0:
        if os.path.exists(args0):
            raise RuntimeFailure(f"exec {args0!r}: permission denied")
        raise errors.NotFound(f"exec {args0!r}: no such file or directory in the container")
    raise errors.NotFound(f"exec {args0!r}: executable file not found in $PATH")


def process_env(proc: Process, env_extra: tuple[str, ...] = ()) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in (*proc.env, *env_extra):
        k, _, v = item.partition("=")
        env[k] = v
    return env


def home_of(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def open_console(size: tuple[int, int] | None, uid: int,
                 bind_console: bool = True) -> tuple[int, int]:
    """(master, slave) of a pty from the container's own devpts; for the init,
    /dev/console is bound to the slave."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
    slave_path = f"/dev/pts/{n}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    os.fchown(slave, uid, -1)
    if size and size[0] and size[1]:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    if not bind_console:
        return master, slave
    if not os.path.lexists("/dev/console"):
        os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    _sys.mount(slave_path, "/dev/console", None, _sys.MS_BIND)
    return master, slave


def lsm_state() -> tuple[bool, bool]:
    """(apparmor enabled, selinux enabled) on this host."""
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            apparmor = f.read().strip() == "Y"
    except OSError:
        apparmor = False
    return apparmor, os.path.exists("/sys/fs/selinux/enforce")


def apply_lsm(proc: Process, warn: Callable[[str], None]) -> None:
    if not proc.apparmor_profile and not proc.selinux_label:
        return
    apparmor, selinux = lsm_state()
    if proc.apparmor_profile:
        if apparmor:
            with open("/proc/self/attr/apparmor/exec", "w") as f:
                f.write(f"exec {proc.apparmor_profile}")
        else:
            warn(f"apparmorProfile {proc.apparmor_profile!r} skipped: AppArmor is not enabled on this host")
    if proc.selinux_label:
        if selinux:
            with open("/proc/self/attr/exec", "w") as f:
                f.write(proc.selinux_label)
        else:
            warn(f"selinuxLabel {proc.selinux_label!r} skipped: SELinux is not enabled on this host")


def warn_stderr(text: str) -> None:
    print(f"berth-runtime: warning: {text}", file=sys.stderr, flush=True)


class Final:
    """What the last step needs, prepared before `ready` so that little can fail after it."""

    def __init__(self, proc: Process, caps: CapSets, program: str, env: dict[str, str],
                 console_slave: int | None = None, userns: bool = False,
                 preserve_fds: int = 0, init: bool = False) -> None:
        self.preserve_fds = preserve_fds
        self.init = init  # stay as PID 1, reaping and forwarding signals (annotation below)
        self.proc = proc
        self.caps = caps
        self.program = program
        self.env = env
        self.console_slave = console_slave
        self.userns = userns
        self.seccomp: Any = None  # a compiled filter with .load(), or None


def finalize_and_exec(fin: Final) -> None:
    """Become the container's process: terminal, user, capabilities, nnp, seccomp, exec."""
    proc = fin.proc
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT, _signal.SIGTERM,
                _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    if fin.console_slave is not None:
        os.setsid()
        fcntl.ioctl(fin.console_slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(fin.console_slave, fd)
        if fin.console_slave > 2:
            os.close(fin.console_slave)
    os.umask(proc.user.umask if proc.user.umask is not None else 0o022)
    if fin.seccomp is not None and not proc.no_new_privileges:
        fin.seccomp.load()  # needs CAP_SYS_ADMIN, which is about to go
    fin.caps.apply_bounding()
    if not fin.userns or proc.user.additional_gids:
        os.setgroups(list(proc.user.additional_gids))
    os.setresgid(proc.user.gid, proc.user.gid, proc.user.gid)
    _sys.prctl(_sys.PR_SET_KEEPCAPS, 1)
    os.setresuid(proc.user.uid, proc.user.uid, proc.user.uid)
    _sys.prctl(_sys.PR_SET_KEEPCAPS, 0)
    fin.caps.apply_sets()
    if proc.no_new_privileges:
        _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)
        if fin.seccomp is not None:
            fin.seccomp.load()
    # Nothing of the runtime may reach the container: only 0, 1, 2 survive exec
    # (CVE-2024-21626 leaked a host directory fd this way).
    # --preserve-fds N passes the caller's fds 3 .. 3+N-1 on, as runc does.
    for fd in range(3, 3 + fin.preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    _sys.close_range_cloexec(3 + fin.preserve_fds)
    check_cwd_inside(proc.cwd)
    if fin.init:
        _become_init(fin)
    os.execve(fin.program, list(proc.args), fin.env)


# The annotation that asks for an init (docker's --init): the runtime's own init process stays
# PID 1, after every restriction above applies to it, and forks the container's program.
INIT_ANNOTATION = "org.berth.init"
_INIT_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT,
                 _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT)


def _become_init(fin: Final) -> None:
    """Fork the program; as PID 1, reap every process that ends and forward signals to the
    program; exit with its status. Nothing of the runtime stays open here: every descriptor
    above 2 is closed (a host fd in PID 1 would be reachable through /proc/1/fd)."""
    child = os.fork()
    if child == 0:
        if fin.console_slave is not None:
            os.setpgid(0, 0)
        os.execve(fin.program, list(fin.proc.args), fin.env)
    os.closerange(3, 1 << 16)
    try:  # what `ps -o comm` and top show for PID 1
        with open("/proc/self/comm", "w") as f:
            f.write("berth-init")
    except OSError:
        pass
    if fin.console_slave is not None:
        try:  # the program's group gets the terminal's Ctrl-C, as tini arranges
            os.setpgid(child, child)
            os.tcsetpgrp(0, child)
        except OSError:
            pass

    def forward(sig: int, _frame: Any) -> None:
        try:
            os.kill(child, sig)
        except OSError:
            pass

    _signal.signal(_signal.SIGTTOU, _signal.SIG_IGN)
    for sig in _INIT_SIGNALS:
        _signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                     else os.WEXITSTATUS(status))
