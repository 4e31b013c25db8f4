"""Containers: records in berth.db, a bundle per container, and a monitor per running one.

    Engine(root, run)                            the containers of one BERTH_ROOT / BERTH_RUN
      create(image, opts, name=, auto_remove=)   record + bundle (config.json, hostname, hosts…)
      start(ref)                                 fork the container's monitor (engine/monitor.py)
      get / list / stop / kill / remove / wait / log_path

Layout: `<root>/containers/<id>/` holds config.json (root.path = the snapshot's merged dir),
`hostname`, `hosts`, `resolv.conf` (bind-mounted, so `diff` and `commit` never see them) and the
json-file log `<id>-json.log`. The writable layer is the snapshot `<root>/snapshots/<id>/`. The
monitor mounts the overlay, creates and starts the container with the in-process runtime
(state under `<run>/runtime`; or `--runtime runc|crun|PATH`, engine/runtimes.py), logs its output, reaps it, records exit code and time, unmounts,
and removes an `--rm` container. It runs in its own session: the CLI that started it may go.

Raises: NoSuchContainer, Conflict (name in use, wrong state), InvalidArgument, NoSuchImage.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from berth.errors import BerthError, Conflict, InvalidArgument, NoSuchContainer

from . import procs
from .options import merge_env, parse_log_opts, parse_restart
from .spec import CreateOptions, container_spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.store.db import Database

__all__ = ["Container", "Engine"]

_NAME_FIRST = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | set("_.-")
_ADJ = ("brave", "calm", "eager", "fond", "keen", "lucid", "merry", "quiet", "sharp", "tender",
        "bold", "clever", "gentle", "jolly", "nifty", "proud", "wise", "zen", "vivid", "happy")
_NOUN = ("hopper", "lovelace", "turing", "ritchie", "thompson", "liskov", "knuth", "curie",
         "noether", "hamilton", "babbage", "dijkstra", "shannon", "wirth", "kay", "torvalds")
_COLUMNS = ("id", "name", "image_id", "image_ref", "created_ns", "status", "pid", "exit_code",
            "started_ns", "finished_ns", "monitor_pid", "auto_remove", "restart_count",
            "stopped_by_user", "health", "config", "size_rw", "log_size", "oom_killed")


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image_id: str
    image_ref: str
    created_ns: int
    status: str  # created | running | exited | dead
    pid: int
    exit_code: int
    started_ns: int
    finished_ns: int
    monitor_pid: int
    auto_remove: bool
    restart_count: int
    stopped_by_user: bool
    health: str  # JSON of docker's State.Health, "" without a health check
    config: dict[str, Any]
    size_rw: int = 0  # the writable layer's apparent size when last measured (exit, ps -s)
    log_size: int = 0  # bytes of its json-file logs at exit
    oom_killed: bool = False  # the OOM killer struck in its cgroup during the last run

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def command(self) -> list[str]:
        return list(self.config.get("args", []))


def check_name(name: str) -> str:
    n = name.removeprefix("/")
    if not n or n[0] not in _NAME_FIRST or not set(n) <= _NAME_REST or len(n) < 2:
        raise InvalidArgument(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                              "are allowed")
    return n


def _hosts(hostname: str, entries: Sequence[Sequence[str]] = ()) -> str:
    """/etc/hosts as docker writes it: the defaults, `--add-host` entries ([ip, name]), then
    the container's own name."""
    extra = "".join(f"{ip}\t{name}\n" for ip, name in entries)
    return ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
            f"ff02::2\tip6-allrouters\n{extra}127.0.1.1\t{hostname}\n")


def _host_device(m: Any) -> dict[str, Any]:
    """A `--device` (options.DeviceMapping) as a linux.devices entry of the host's node, with
    its cgroup permissions as `access`."""
    what = f'error gathering device information while adding custom device "{m.host}"'
    try:
        st = os.stat(m.host)
    except OSError as e:
        raise InvalidArgument(f"{what}: {(e.strerror or str(e)).lower()}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidArgument(f"{what}: not a device node")
    return {"path": m.container, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            "access": m.permissions}


class Engine:
    def __init__(self, root: str | os.PathLike[str], run: str | os.PathLike[str]) -> None:
        from berth.store.db import Database
        self.root = Path(root)
        self.run = Path(run)
        self.db = Database(self.root)
        self._images: Any = None
        self.dir = self.root / "containers"
        self._handovers: dict[str, Any] = {}  # cid -> our end of monitor.spawn's pair

    @property
    def images(self) -> Any:
        """The image store, on the engine's database; opened at first use (`ps`, `logs`,
        `stop`… never import it: a fifth of a command's start-up)."""
        if self._images is None:
            from berth.image.images import ImageStore
            self._images = ImageStore(self.root, in_use=self.users_of, db=self.db)
        return self._images

    def close(self) -> None:
        for sock in self._handovers.values():
            sock.close()
        self._handovers.clear()
        if self._images is not None:
            self._images.close()
        self.db.close()

    # -- records --------------------------------------------------------------------------------

    def users_of(self, image_id: str) -> list[str]:
        return [r[0] for r in self.db.read("SELECT id FROM containers WHERE image_id = ?",
                                           (image_id,))]

    def _rows(self, where: str = "", params: Sequence[Any] = ()) -> list[Container]:
        rows = self.db.read(f"SELECT {', '.join(_COLUMNS)} FROM containers {where} "
                            "ORDER BY created_ns DESC", params)
        out = []
        for r in rows:
            d = dict(zip(_COLUMNS, r))
            d["config"] = json.loads(d["config"])
            d["auto_remove"] = bool(d["auto_remove"])
            d["oom_killed"] = bool(d["oom_killed"])
            out.append(Container(**d))
        return out

    def get(self, ref: str) -> Container:
        """By full id, name (with or without a leading /), or unique id prefix."""
        if not ref:
            raise NoSuchContainer("", "No such container: ")
        found = self._rows("WHERE id = ? OR name = ?", (ref, ref.removeprefix("/")))
        if not found and all(c in "0123456789abcdef" for c in ref):
            found = self._rows("WHERE substr(id, 1, ?) = ?", (len(ref), ref))
            if len(found) > 1:
                raise InvalidArgument(f"multiple containers found with provided prefix: {ref}")
        if not found:
            raise NoSuchContainer(ref, f"No such container: {ref}")
        return self.refresh(found[0])

    def refresh(self, c: Container) -> Container:
        """A running record whose monitor is gone (killed, or the machine rebooted) is dead."""
        if c.status in ("running", "restarting") and c.monitor_pid and \
                not procs.alive(c.monitor_pid):
            with self.db.transaction() as tx:
                tx.execute("UPDATE containers SET status = 'dead', finished_ns = ? WHERE id = ? "
                           "AND status IN ('running', 'restarting')", (time.time_ns(), c.id))
            return self.get(c.id)
        return c

    def list(self, all: bool = False) -> list[Container]:
        out = [self.refresh(c) for c in self._rows()]
        return out if all else [c for c in out if c.status == "running"]

    def container_dir(self, cid: str) -> Path:
        return self.dir / cid

    def log_path(self, cid: str) -> Path:
        return log_path(self.root, cid)

    # -- create ---------------------------------------------------------------------------------

    def create(self, image: str, opts: CreateOptions, *, name: str = "",
               auto_remove: bool = False) -> Container:
        img = self.images.get(image)
        from .runtimes import BUILTIN, cgroups_path, resolve
        runtime = resolve(opts.runtime)  # --runtime: a clear error before anything is made
        if opts.init and runtime != BUILTIN:
            raise InvalidArgument(f"--init needs berth's own runtime (runtime {runtime} would "
                                  "ignore the annotation that asks for it)")
        from .sharing import parse_mode
        modes = {}  # --pid, --ipc, --uts: "", host, none, or container:<the owner's id>
        for kind, text, allowed in (("pid", opts.pid_mode, ("host",)),
                                    ("ipc", opts.ipc_mode, ("host", "none", "private",
                                                            "shareable")),
                                    ("uts", opts.uts_mode, ("host",))):
            mode, ref = parse_mode(text, f"--{kind}", allowed, joinable=kind == "pid")
            if mode == "container":
                mode = "container:" + self.get(ref).id
            modes[kind] = "" if mode in ("private", "shareable") else mode
        if modes["uts"] == "host" and opts.hostname:
            raise InvalidArgument("conflicting options: hostname and the UTS mode")
        if modes["uts"] == "host" and (opts.network or "").startswith("container:"):
            raise InvalidArgument("conflicting options: the UTS mode and the network mode")
        opts = replace(opts, pid_mode=modes["pid"], ipc_mode=modes["ipc"],
                       uts_mode=modes["uts"])
        cid = os.urandom(32).hex()
        auto_name = not name
        name = check_name(name) if name else self._free_name()
        cdir = self.container_dir(cid)
        hostname = opts.hostname or (os.uname().nodename if opts.uts_mode == "host"
                                     else cid[:12])
        resolv_conf = "# berth: no DNS on this network\n"
        network, shared_hostname = opts.network or "bridge", ""
        if network.startswith("container:"):
            from .networks import shared_with
            if opts.hostname:
                raise InvalidArgument("conflicting options: hostname and the network mode")
            if opts.ip or opts.network_aliases or opts.more_networks:
                raise InvalidArgument("conflicting options: --ip, --network-alias or another "
                                      "--network and the network mode container:")
            if opts.add_hosts:
                raise InvalidArgument("conflicting options: custom host-to-IP mapping and the "
                                      "network mode")
            owner, shared_hostname = shared_with(self.db, network[len("container:"):])
            network = f"container:{owner}"
            hostname = shared_hostname
        elif network not in ("none", "host"):
            from .networks import Networks
            nets = Networks(self.db)
            first = nets.get(network)  # a clear error before anything is made
            for n in opts.more_networks:
                nets.get(n)
            from . import dns  # DNS: a user-defined network's containers ask 127.0.0.11
            if dns.wants_dns(first.driver, first.name):
                resolv_conf = dns.RESOLV_CONF
        elif opts.more_networks:
            raise InvalidArgument(f"container cannot be connected to multiple networks with "
                                  f"one of the networks in {network} mode")
        elif opts.ip:
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")
        elif opts.network_aliases:
            raise InvalidArgument("network-scoped alias is supported only for containers in "
                                  "user defined networks")
        from .options import HOST_GATEWAY, parse_add_host, parse_device
        host_entries = []
        for item in opts.add_hosts:
            host, ip = parse_add_host(item)
            if ip == HOST_GATEWAY:  # as docker: the default bridge's address on the host
                from .networks import Networks
                ip = Networks(self.db).get("bridge").gateway
            host_entries.append([ip, host])
        mappings = [parse_device(d) for d in opts.devices]
        devices = [_host_device(m) for m in mappings]
        cfg = img.config.doc.get("config") or {}
        from berth.image.unpack import prepare_rootfs
        [mount] = prepare_rootfs(self.images, img, cid)
        from . import volumes
        vol_uses = volumes.plan_uses(cfg.get("Volumes") if opts.image_volumes else None,
                                     opts.mounts)
        passwd, group = self._image_file(img, "etc/passwd"), self._image_file(img, "etc/group")
        for m in opts.mounts:
            if m.kind == "bind" and not os.path.exists(m.source):
                if not m.create_source:
                    raise InvalidArgument(f"invalid mount config for type \"bind\": bind source "
                                          f"path does not exist: {m.source}")
        etc_dir = self.container_dir(network[len("container:"):]) if shared_hostname else cdir
        etc = [{"destination": f"/etc/{n}", "type": "bind", "source": str(etc_dir / n),
                "options": ["rbind", "rprivate", "rw"]}
               for n in ("hostname", "hosts", "resolv.conf")]
        spec = container_spec(cfg, opts, rootfs=mount.target, hostname=hostname, passwd=passwd,
                              group=group, host_env=os.environ, host_caps=_host_caps(),
                              extra_mounts=etc, devices=devices,
                              volume_mounts=volumes.spec_mounts(self.root, vol_uses))
        if runtime != BUILTIN:  # a binary puts the cgroup where berth's cgroup reader looks
            spec["linux"]["cgroupsPath"] = cgroups_path(cid)
        if opts.entrypoint is not None:
            ep, cmd = ([opts.entrypoint] if opts.entrypoint else []), list(opts.args)
        else:
            ep, cmd = list(cfg.get("Entrypoint") or []), list(opts.args or cfg.get("Cmd") or [])
        restart = parse_restart(opts.restart or "no")
        if auto_remove and restart["name"] != "no":
            raise InvalidArgument("Conflicting options: --restart and --rm")
        labels = dict(cfg.get("Labels") or {})
        for item in opts.labels:
            key, _, value = item.partition("=")
            if not key:
                raise InvalidArgument(f"invalid label: {item!r}")
            labels[key] = value
        stop_signal = opts.stop_signal or cfg.get("StopSignal") or "SIGTERM"
        signal_number(stop_signal)  # a clear error now, not at `stop`
        from .health import health_config
        record = {"args": spec["process"]["args"], "hostname": hostname, "tty": opts.tty,
                  "restart": restart,
                  "healthcheck": health_config(cfg.get("Healthcheck"), opts.health),
                  "log": parse_log_opts(opts.log_opts), "labels": labels, "stop_signal": stop_signal,
                  "stop_timeout": opts.stop_timeout,
                  "entrypoint": ep or None, "cmd": cmd or None,
                  "env": merge_env(cfg.get("Env"), opts.env, os.environ),
                  "workdir": opts.workdir or cfg.get("WorkingDir") or "",
                  "user": opts.user or cfg.get("User") or "",
                  "mount_points": sorted(m["destination"].strip("/") for m in spec["mounts"]),
                  "interactive": opts.interactive, "image": image, "network": network,
                  "binds": [m.source for m in opts.mounts if m.kind == "bind" and
                            m.create_source],
                  "volumes": [u.record() for u in vol_uses], "runtime": runtime,
                  "extra_hosts": list(opts.add_hosts), "host_entries": host_entries,
                  "group_add": list(opts.group_add), "pid_mode": opts.pid_mode,
                  "ipc_mode": opts.ipc_mode, "uts_mode": opts.uts_mode,
                  "devices": [[m.host, m.container, m.permissions] for m in mappings]}
        from .ports import plan_bindings, record as ports_record  # -p, -P, --expose
        bindings, exposed = plan_bindings(opts.publish, opts.expose,
                                          cfg.get("ExposedPorts") or {}, opts.publish_all)
        record["publish_all"] = opts.publish_all
        record["exposed"] = exposed  # published only on a bridge network (the CLI warns)
        if network.startswith("container:") and (opts.publish or opts.publish_all):
            raise InvalidArgument("conflicting options: port publishing and the container type "
                                  "network mode")
        record["ports"] = ports_record(bindings) if network not in ("none", "host") else []
        cdir.mkdir(parents=True)
        try:
            (cdir / "config.json").write_text(json.dumps(spec))
            (cdir / "hostname").write_text(hostname + "\n")
            (cdir / "hosts").write_text(_hosts(hostname, host_entries))
            (cdir / "resolv.conf").write_text(resolv_conf)
            with self.db.transaction() as tx:
                while auto_name and tx.execute("SELECT 1 FROM containers WHERE name = ?",
                                               (name,)).fetchone():
                    name = self._free_name()  # another CLI took it meanwhile: draw again
                if tx.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone():
                    other = tx.execute("SELECT id FROM containers WHERE name = ?",
                                       (name,)).fetchone()[0]
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use '
                                   f'by container "{other}". You have to remove (or rename) '
                                   "that container to be able to reuse that name.")
                tx.execute("INSERT INTO containers (id, name, image_id, image_ref, created_ns, "
                           "auto_remove, config) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (cid, name, img.id, image, time.time_ns(), int(auto_remove),
                            json.dumps(record)))
                volumes.claim(tx, self.db, self.root, vol_uses)
                if network not in ("none", "host") and not shared_hostname:
                    from .networks import join
                    join(tx, self.db, cid, network, ip=opts.ip, aliases=opts.network_aliases)
                    for more in opts.more_networks:  # docker 25+: --network more than once
                        join(tx, self.db, cid, more)
                self.db.record_event("container", "create", cid,
                                     {"name": name, "image": image})
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        return self.get(cid)

    def _free_name(self) -> str:
        used = {r[0] for r in self.db.read("SELECT name FROM containers")}
        for _ in range(100):
            a, b = os.urandom(2)
            n = f"{_ADJ[a % len(_ADJ)]}_{_NOUN[b % len(_NOUN)]}"
            if n not in used:
                return n
        return f"berth_{os.urandom(4).hex()}"

    def _image_file(self, img: Any, rel: str) -> str | None:
        for d in reversed(self.images.layer_dirs(img)):
            p = Path(d) / rel
            if p.is_file() and not p.is_symlink():
                return p.read_text(errors="replace")
            if os.path.lexists(p):
                return None
        return None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, ref: str, stdin: int | None = None, wait_here: bool = False) -> Container:
        """Start the container under a new monitor; `stdin`: see monitor.spawn. `wait_here`:
        this process waits for the container's end (`run`, `start -a`) and offers to do the
        monitor's finish then (`claim_finish`); not with a restart policy, whose finish may
        start the container again and must stay the monitor's."""
        c = self.get(ref)
        if c.status == "running":
            return c
        with self.db.transaction() as tx:
            # restarting (its monitor waits out the back-off): it goes ahead, also after a
            # `stop` meanwhile (`restart` of a restarting container is stop, then this)
            if tx.execute("UPDATE containers SET stopped_by_user = 0 WHERE id = ? AND "
                          "status = 'restarting'", (c.id,)).rowcount:
                return self.get(c.id)
            tx.execute("UPDATE containers SET stopped_by_user = 0, restart_count = 0 "
                       "WHERE id = ?", (c.id,))
        from .monitor import spawn
        policy = (c.config.get("restart") or {}).get("name", "no")
        sock = spawn(self, c, stdin, handover=wait_here and policy == "no")
        if sock is not None:
            self._handovers[c.id] = sock
        return self.get(c.id)

    def handover(self, cid: str) -> Any:
        """The socket on which the monitor of a container we started with `wait_here` offers
        its finish (readable when the container is gone), or None."""
        return self._handovers.get(cid)

    def claim_finish(self, cid: str) -> int | None:
        """Wait for the finish the monitor offers (see _pump.hand_over) and claim it, to do
        it in this process, which has the engine loaded (the monitor would import it: tens
        of ms on every `run`). The exit code, then call `finish_claimed`; None when the
        monitor keeps the finish (then wait for it as usual). Only socket traffic: the CLI
        runs it in a thread of its own, so that a claim is never late behind a blocked
        write (the monitor waits for it 2 s only, and for "done" as long as it takes)."""
        from .monitor import take_exit
        code = take_exit(self._handovers[cid])
        if code is None:
            self._handovers.pop(cid).close()
        return code

    def finish_claimed(self, cid: str, code: int) -> bool:
        """The finish claimed by `claim_finish`, done here. False when it failed: the
        monitor, let go without "done", does it itself."""
        from .monitor import finish, finished
        sock = self._handovers.pop(cid)
        try:
            finish(str(self.root), str(self.run), cid, code)
        except Exception:  # noqa: BLE001 - the monitor, seeing no "done", finishes instead
            sock.close()
            return False
        finished(sock)
        with contextlib.suppress(FileNotFoundError):  # an --rm container's code: we have it
            self.exit_file(cid).unlink()
        return True

    def run_attached(self, ref: str, *, stdout: int, stderr: int) -> int:
        """Run a created container in this process until it exits, with stdin on /dev/null
        and stdout/stderr on the given descriptors, without a monitor: the builder's RUN
        steps. The record says running (this process as its monitor, so a killed build is
        seen as dead) and then exited with the code returned; the rootfs is unmounted after."""
        from berth.image.unpack import prepare_rootfs
        from berth.runtime.container import CreateOptions as RuntimeOptions
        from berth.runtime.container import Runtime
        from berth.runtime.run import wait_process
        from berth.store import mount as mnt
        c = self.get(ref)
        if c.status != "created":
            raise Conflict(f"container {c.short_id} is {c.status}, not created")
        [plan] = prepare_rootfs(self.images, c.image_id, c.id)
        rt = Runtime(str(self.run / "runtime"))
        mnt.mount_all([plan])
        code = 125
        try:
            saved = [os.dup(fd) for fd in (0, 1, 2)]
            devnull = os.open(os.devnull, os.O_RDONLY)
            try:  # the container's init inherits 0-2 when the runtime forks it
                os.dup2(devnull, 0)
                os.dup2(stdout, 1)
                os.dup2(stderr, 2)
                state = rt.create(c.id, str(self.container_dir(c.id)),
                                  RuntimeOptions(subreaper=True))
            finally:
                for fd, old in enumerate(saved):
                    os.dup2(old, fd)
                    os.close(old)
                os.close(devnull)
            try:
                rt.start(c.id)
                with self.db.transaction() as tx:
                    tx.execute("UPDATE containers SET status = 'running', pid = ?, "
                               "started_ns = ?, monitor_pid = ? WHERE id = ?",
                               (state.pid, time.time_ns(), os.getpid(), c.id))
                    self.db.record_event("container", "start", c.id, {"name": c.name})
                code = wait_process(state.pid, None)
            finally:
                with contextlib.suppress(BerthError, OSError):
                    rt.delete(c.id, force=True)
        finally:
            with contextlib.suppress(OSError):
                mnt.unmount(plan.target)
            with self.db.transaction() as tx:
                tx.execute("UPDATE containers SET status = 'exited', exit_code = ?, "
                           "finished_ns = ?, pid = 0, monitor_pid = 0 WHERE id = ?",
                           (code, time.time_ns(), c.id))
                self.db.record_event("container", "die", c.id,
                                     {"name": c.name, "exitCode": str(code)})
        return code

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        c = self.get(ref)
        if c.status != "running" or not c.pid:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        self._stopped_by_user(c.id)
        if sig == signal.SIGKILL:
            self._thaw(c)
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, sig)
        self.db.record_event("container", "kill", c.id,
                             {"name": c.name, "signal": str(int(sig))})
        return c

    def exec(self, ref: str, args: Sequence[str], *, env: Sequence[str] = (), user: str = "",
             workdir: str = "", detach: bool = False, tty: bool = False) -> int:
        """docker's `exec`: the process joins the running container with the caller's
        stdin/stdout/stderr, or with `tty` on a new pty the caller relays (raw mode, window
        size and SIGWINCH, as `run -t`); returns its exit code (0 at once with `detach`).
        `user` names are resolved in the container's own /etc/passwd and /etc/group."""
        from berth.runtime.run import wait_process

        from .options import resolve_user
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        rt = self._runtime(c)
        uid_gid = None
        if user:
            rootfs = Path(json.loads((self.container_dir(c.id) / "config.json").read_text())
                          ["root"]["path"])

            def read(rel: str) -> str | None:
                try:
                    return (rootfs / rel).read_text(errors="replace")
                except OSError:
                    return None
            u = resolve_user(user, read("etc/passwd"), read("etc/group"))
            uid_gid = f"{u.uid}:{u.gid}"
        if workdir and not workdir.startswith("/"):
            raise InvalidArgument(f"the working directory {workdir!r} is invalid, it needs to "
                                  "be an absolute path")
        master = None
        if tty and not detach:
            pid, master = rt.exec_tty(c.id, list(args), env=list(env), cwd=workdir or None,
                                      user=uid_gid)
        else:
            pid = rt.exec(c.id, list(args), env=list(env), cwd=workdir or None, user=uid_gid,
                          wait=not detach)
        self.db.record_event("container", "exec_start", c.id,
                             {"name": c.name, "execID": str(pid)})
        return 0 if detach else wait_process(pid, master)

    def _runtime(self, c: Container) -> Any:
        """The runtime `c` was created with (--runtime; engine/runtimes.py)."""
        from .runtimes import open_runtime
        return open_runtime(self.run, c.config.get("runtime"))

    def paused(self, c: Container) -> bool:
        if c.status != "running":
            return False
        try:
            return bool(self._runtime(c).state(c.id).get("status") == "paused")
        except Exception:  # noqa: BLE001 - gone meanwhile: not paused
            return False

    def _thaw(self, c: Container) -> None:
        """stop, kill and rm of a paused container: docker unpauses it first."""
        if self.paused(c):
            with contextlib.suppress(BerthError, OSError):
                self._runtime(c).resume(c.id)

    def pause(self, ref: str) -> Container:
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        if self.paused(c):
            raise Conflict(f"Container {c.id} is already paused")
        self._runtime(c).pause(c.id)
        self.db.record_event("container", "pause", c.id, {"name": c.name})
        return c

    def unpause(self, ref: str) -> Container:
        c = self.get(ref)
        if not self.paused(c):
            raise Conflict(f"Container {c.id} is not paused")
        self._runtime(c).resume(c.id)
        self.db.record_event("container", "unpause", c.id, {"name": c.name})
        return c

    def pids(self, ref: str) -> list[int]:
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        return list(self._runtime(c).pids(c.id))

    def rename(self, ref: str, new: str) -> None:
        c = self.get(ref)
        name = check_name(new)
        with self.db.transaction() as tx:
            other = tx.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
            if other is not None:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{other[0]}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
            tx.execute("UPDATE containers SET name = ? WHERE id = ?", (name, c.id))
            self.db.record_event("container", "rename", c.id,
                                 {"name": name, "oldName": "/" + c.name})
        if self.db.read("SELECT 1 FROM endpoints WHERE container_id = ? LIMIT 1", (c.id,)):
            from . import dns  # DNS: its new name in its networks' tables
            from .networks import locked, root_lock
            with locked(root_lock(str(self.run))):
                dns.refresh_container(self.db, str(self.run), c.id)

    def export(self, ref: str, out: Any) -> None:
        """docker's `export`: the container's filesystem (image layers and its changes) as a
        tar on the binary stream `out`, through a read-only overlay view."""
        import tempfile

        from berth.store import mount as mnt
        from berth.store.layers import pack
        from berth.store.snapshots import Snapshots
        c = self.get(ref)
        lowers, upper = self._layer_paths(c)
        key = f"export-{c.id[:12]}-{os.getpid()}"
        parents = [*reversed(lowers), *([str(upper)] if upper.is_dir() else [])]
        snaps = Snapshots(self.root)
        mounts = snaps.view(key, parents)
        mnt.mount_all(mounts)
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".export-", dir=self.root)
            os.close(fd)
            os.unlink(tmp)
            pack(mounts[0].target, tmp)
            with open(tmp, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
        finally:
            mnt.unmount(mounts[0].target)
            for p in snaps.remove(key):
                shutil.rmtree(p, ignore_errors=True)
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        self.db.record_event("container", "export", c.id, {"name": c.name})

    def update_limits(self, opts: CreateOptions) -> dict[str, Any]:
        """The cgroup resources `update` would set from `opts`; InvalidArgument for a bad value
        or none given (checked once, before any container is touched)."""
        from .spec import _resources
        res = _resources(opts)
        res.pop("devices", None)
        if not res:
            raise InvalidArgument("you must provide one or more flags when using this command")
        return res

    def update(self, ref: str, opts: CreateOptions) -> Container:
        """docker's `update`: new memory/cpu/pids limits for a running container's cgroup (and
        its config.json, so a restart keeps them)."""
        from berth.runtime.cgroups import open_cgroups
        c = self.get(ref)
        res = self.update_limits(opts)
        cfg_path = self.container_dir(c.id) / "config.json"
        spec = json.loads(cfg_path.read_text())
        merged = dict(spec["linux"].get("resources") or {})
        for key, value in res.items():
            merged[key] = {**(merged.get(key) or {}), **value}
        if c.status == "running":
            open_cgroups(self._runtime(c).cgroups_path(c.id), c.id).apply(
                {k: v for k, v in merged.items() if k != "devices"})
        spec["linux"]["resources"] = merged
        tmp = cfg_path.with_name(".config.json.tmp")
        tmp.write_text(json.dumps(spec))
        os.rename(tmp, cfg_path)
        self.db.record_event("container", "update", c.id, {"name": c.name})
        return c

    def stats(self, ref: str) -> dict[str, Any]:
        """The cgroup's counters now (runtime/cgroups: memory, cpu usage_ns, pids)."""
        from berth.runtime.cgroups import open_cgroups
        c = self.get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        cg_path = self._runtime(c).cgroups_path(c.id)
        out = dict(open_cgroups(cg_path, c.id).stats())
        rx = tx = 0
        try:  # docker shows no I/O for a container on the host's network
            shared = os.stat(f"/proc/{c.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
        except OSError:
            shared = True
        if not shared:
            rx, tx = net_io(c.pid)
        out["net"] = {"rx_bytes": rx, "tx_bytes": tx}
        read, written = block_io(cg_path)
        out["blkio"] = {"read_bytes": read, "write_bytes": written}
        return out

    def _stopped_by_user(self, cid: str) -> None:
        """stop and kill: the restart policy does not bring it back (docker's rule)."""
        with self.db.transaction() as tx:
            tx.execute("UPDATE containers SET stopped_by_user = 1 WHERE id = ?", (cid,))

    def wait(self, ref: str, timeout: float | None = None) -> int:
        """Block until the container is not running; its exit code."""
        c = self.get(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while c.status in ("running", "restarting"):
            if deadline is not None and time.monotonic() > deadline:
                raise Conflict(f"container {c.short_id} still running after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            try:
                c = self.get(c.id)
            except NoSuchContainer:  # an --rm container removed itself: its monitor left
                return self.removed_exit_code(c.id)  # the exit code behind
        return c.exit_code

    def exit_file(self, cid: str) -> Path:
        return exit_file(self.run, cid)

    def removed_exit_code(self, cid: str) -> int:
        path = self.exit_file(cid)
        try:
            code = int(path.read_text())
        except (OSError, ValueError):
            raise NoSuchContainer(cid, f"No such container: {cid}") from None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return code

    def stop(self, ref: str, timeout: float | None = None, sig: int | None = None) -> Container:
        """SIGTERM (or the container's stop signal), then SIGKILL after the timeout (the
        container's --stop-timeout, else 10 s)."""
        c = self.get(ref)
        if sig is None:
            sig = signal_number(c.config.get("stop_signal") or "SIGTERM")
        if timeout is None:
            stored = c.config.get("stop_timeout")
            timeout = 10.0 if stored is None else float(stored)
        self._stopped_by_user(c.id)
        if c.status != "running":
            return c
        self._thaw(c)
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, sig)
        try:
            self.wait(c.id, timeout)
        except Conflict:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, signal.SIGKILL)
            with contextlib.suppress(NoSuchContainer):
                self.wait(c.id, 10)
        self.db.record_event("container", "stop", c.id, {"name": c.name})
        return c

    def restart(self, ref: str, timeout: float | None = None,
                sig: int | None = None) -> Container:
        """docker's `restart`: stop (as `stop` does, when it runs), then start."""
        c = self.stop(ref, timeout, sig)
        c = self.start(c.id)
        self.db.record_event("container", "restart", c.id, {"name": c.name})
        return c

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        """`volumes` (rm -v): its anonymous volumes go too (named ones stay)."""
        c = self.get(ref)
        if c.status in ("running", "restarting"):
            self._stopped_by_user(c.id)
            c = self.get(c.id)  # a restart may have recorded its pid meanwhile
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            self._thaw(c)  # a frozen process cannot die
            if c.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.pid, signal.SIGKILL)
            with contextlib.suppress(NoSuchContainer):
                self.wait(c.id, 15)
        # Whatever the record says (a dead monitor leaves processes without a parent), the
        # runtime kills what is left in the container's cgroup and removes its state.
        with contextlib.suppress(BerthError, OSError):
            self._runtime(c).delete(c.id, force=True)
        if c.config.get("ports"):
            from .ports import unpublish  # a monitor that died left its DNAT rules
            unpublish(self.db, c.id)
        if self.db.read("SELECT 1 FROM endpoints WHERE container_id = ? LIMIT 1", (c.id,)):
            from .networks import detach  # a monitor that died left its veths and address
            detach(self.db, str(self.run), c.id, events=False)
        self.destroy(c.id, volumes=volumes)
        return c.id

    # -- the writable layer ----------------------------------------------------------------------

    def sizes(self, ref: str) -> tuple[int, int]:
        """docker's SizeRw and SizeRootFs: the writable layer's apparent size (walked now
        for a running container, as docker does, and recorded; else the size recorded when
        it exited or was last written by `cp`) and that plus the image's size."""
        c = self.get(ref)
        size_rw = self.record_size(c.id) if c.status in ("running", "restarting") \
            else c.size_rw
        try:
            image = self.images.get(c.image_id).size
        except BerthError:
            image = 0
        return size_rw, image + size_rw

    def record_size(self, cid: str) -> int:
        """Walk the writable layer now and record its size (containers.size_rw)."""
        size = writable_size(self.root, cid)
        with self.db.transaction() as tx:
            tx.execute("UPDATE containers SET size_rw = ? WHERE id = ?", (size, cid))
        return size

    def _layer_paths(self, c: Container) -> tuple[list[str], Path]:
        from berth.store.snapshots import Snapshots
        lowers = list(reversed(self.images.layer_dirs(c.image_id)))  # top first
        return lowers, Snapshots(self.root).path(c.id) / "upper"

    def _mount_points(self, c: Container, lowers: Sequence[str]) -> set[str]:
        """Mount points the runtime made in the upper directory (absent from the image): not
        changes of the container, as docker's init layer keeps them out of `diff`."""
        return {p for p in c.config.get("mount_points", [])
                if not any(os.path.lexists(os.path.join(lo, p)) for lo in lowers)}

    def changes(self, ref: str) -> list[tuple[str, str]]:
        """docker's `diff`: ("A"|"C"|"D", "/path"), sorted by path."""
        c = self.get(ref)
        lowers, upper = self._layer_paths(c)
        skip = self._mount_points(c, lowers)
        out: list[tuple[str, str]] = []
        if not upper.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(upper):
            rel_dir = os.path.relpath(dirpath, upper)
            for name in sorted(dirnames + filenames):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if rel in skip:
                    continue
                st = os.lstat(os.path.join(dirpath, name))
                in_lower = any(os.path.lexists(os.path.join(lo, rel)) for lo in lowers)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    out.append(("D", "/" + rel))
                elif in_lower:
                    out.append(("C", "/" + rel))
                else:
                    out.append(("A", "/" + rel))
        return sorted(out, key=lambda x: x[1])

    def pack_changes(self, ref: str, out: Path) -> Any:
        """The container's changes as a layer tar at `out` (docker's whiteouts for deletions,
        the runtime's mount points left out): a store.layers.PackedLayer."""
        from berth.store.layers import diff
        c = self.get(ref)
        lowers, upper = self._layer_paths(c)
        return diff(lowers, upper, out, exclude=sorted(self._mount_points(c, lowers)))

    def take_changes(self, ref: str, directory: Path) -> tuple[Any, Path]:
        """For the builder, after the container exited: its changes packed as
        `directory/layer.tar` (a PackedLayer) and its upper directory moved to
        `directory/upper`, without the runtime's mount points — the new layer's content,
        moved instead of unpacked again. The container keeps no changes afterwards."""
        c = self.get(ref)
        if c.status == "running":
            raise Conflict(f"container {c.short_id} is running")
        lowers, upper = self._layer_paths(c)
        points = sorted(self._mount_points(c, lowers), key=len, reverse=True)
        packed = self.pack_changes(c.id, directory / "layer.tar")
        moved = directory / "upper"
        os.rename(upper, moved)
        for rel in points:  # empty files and directories the runtime made to mount on
            p = moved / rel
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()
                elif p.is_file() and p.stat().st_size == 0:
                    p.unlink()
            parent = p.parent
            while parent != moved:  # and the directories made only to hold them
                with contextlib.suppress(OSError):
                    if not any(os.path.lexists(os.path.join(lo, os.path.relpath(parent, moved)))
                               for lo in lowers):
                        parent.rmdir()
                parent = parent.parent
        return packed, moved

    def commit(self, ref: str, reference: str | None = None, *, message: str = "",
               author: str = "", changes: Sequence[str] = ()) -> str:
        """docker's `commit`: the container's changes as one new layer on its image, with the
        container's command, env and workdir as the config and a history entry saying how."""
        import tempfile

        from berth.image.changes import apply_changes
        from berth.image.images import LayerSource, rfc3339_nano
        from berth.oci.image_spec import History
        c = self.get(ref)
        img = self.images.get(c.image_id)
        rec = c.config
        base = dict(img.config.doc.get("config") or {})
        base.update({"Env": rec.get("env") or None, "Cmd": rec.get("cmd"),
                     "Entrypoint": rec.get("entrypoint"), "WorkingDir": rec.get("workdir", ""),
                     "User": rec.get("user", ""), "Hostname": rec.get("hostname", "")})
        config = apply_changes(base, changes)
        tmpdir = Path(tempfile.mkdtemp(prefix=".commit-", dir=self.images.layers_dir))
        try:
            packed = self.pack_changes(c.id, tmpdir / "layer.tar")
            now = rfc3339_nano(time.time_ns())
            hist = History(created=now, created_by=" ".join(c.command), author=author,
                           comment=message, empty_layer=False)
            new = img.config.add_layer(str(packed.diff_id), hist).derive(
                config=config, created=now, author=author or None, container=c.id,
                comment=message or None)
            doc = {k: v for k, v in new.doc.items() if v is not None}
            from berth.oci.image_spec import ImageConfig
            cfg = ImageConfig.from_doc(doc)
            layer_sources = [LayerSource(d, (lambda ch=ch: open(self.images.blobs.path(
                self.images.layer_blob(ch)[0]), "rb"))) for d, ch in
                zip(img.config.diff_ids, img.layers)]
            layer_sources.append(LayerSource(str(packed.diff_id),
                                             lambda: open(packed.path, "rb")))
            out = self.images.add_image(cfg.raw, layer_sources,
                                        tags=[reference] if reference else [], event="commit")
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self.db.record_event("container", "commit", c.id, {"name": c.name,
                                                            "imageID": out.id})
        return out.id

    def destroy(self, cid: str, volumes: bool | None = None) -> None:
        """Remove the records and files of a container that is not running (and its
        anonymous volumes with `volumes`; None: when it is an --rm container)."""
        destroy(self.db, self.root, cid, volumes=volumes)


def net_io(pid: int) -> tuple[int, int]:
    """Bytes received and sent by the interfaces of `pid`'s network namespace, loopback left
    out (docker's NET I/O)."""
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def block_io(cgroups_path: str) -> tuple[int, int]:
    """Bytes read and written by the cgroup (docker's BLOCK I/O): cgroup v1's blkio
    io_service_bytes, or v2's io.stat, whichever this machine has for the cgroup."""
    rel = cgroups_path.strip("/")
    read = written = 0
    for f in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
        try:
            with open(f"/sys/fs/cgroup/blkio/{rel}/{f}") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Read":
                        read += int(parts[2])
                    elif len(parts) == 3 and parts[1] == "Write":
                        written += int(parts[2])
            return read, written
        except (OSError, ValueError):
            continue
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            with open(f"{base}/{rel}/io.stat") as fh:
                for line in fh:
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        if k == "rbytes":
                            read += int(v)
                        elif k == "wbytes":
                            written += int(v)
            return read, written
        except (OSError, ValueError):
            continue
    return 0, 0


def signal_number(text: str) -> int:
    """`SIGTERM`, `TERM`, `term` or `15` as a signal number."""
    t = str(text).strip().upper().removeprefix("SIG")
    if t.isdigit() and 0 < int(t) < 65:
        return int(t)
    try:
        return int(signal.Signals["SIG" + t])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {text}") from None


def attach_path(run: str | os.PathLike[str], cid: str) -> Path:
    """The unix socket where a terminal container's monitor takes clients (`attach`, `run -it`):
    short, for the 108-byte limit of socket paths."""
    return Path(run) / "attach" / f"{cid[:16]}.sock"


def log_path(root: str | os.PathLike[str], cid: str) -> Path:
    """The container's json-file log."""
    return Path(root) / "containers" / cid / f"{cid}-json.log"


def writable_size(root: str | os.PathLike[str], cid: str) -> int:
    """The apparent size of the container's writable layer, as docker's directory.Size: the
    lstat size of everything but directories, each inode once (0 when it has none)."""
    upper = os.path.join(root, "snapshots", cid, "upper")
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in filenames + [d for d in dirnames
                                 if os.path.islink(os.path.join(dirpath, d))]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_size and key not in seen:
                seen.add(key)
                total += st.st_size
    return total


def rotated_logs(log: str | os.PathLike[str]) -> list[str]:
    """The files a json-file log rotated into, oldest first: LOG.N … LOG.1."""
    where, base = os.path.split(str(log))
    try:
        names = os.listdir(where)
    except FileNotFoundError:  # the container is gone (--rm)
        return []
    numbered = [(int(n[len(base) + 1:]), n) for n in names
                if n.startswith(base + ".") and n[len(base) + 1:].isdigit()]
    return [os.path.join(where, n) for _, n in sorted(numbered, reverse=True)]


def logs_size(root: str | os.PathLike[str], cid: str) -> int:
    """Bytes of the container's json-file log and its rotated files."""
    base = log_path(root, cid)
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(base.parent):
            if entry.name == base.name or entry.name.startswith(base.name + "."):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def exit_file(run: str | os.PathLike[str], cid: str) -> Path:
    """Where the monitor of an --rm container leaves its exit code for `run` and `wait`."""
    return Path(run) / "exits" / cid


def destroy(db: Database, root: str | os.PathLike[str], cid: str, *,
            volumes: bool | None = None) -> None:
    """Remove the records and files of a container that is not running (light on imports:
    the monitor calls it on its way out). Its anonymous volumes go too with `volumes` (None:
    when it was made with --rm, as docker's `run --rm` removes them)."""
    from . import volumes as vol
    from berth.store import mount as mnt
    from berth.store.snapshots import Snapshots
    snaps = Snapshots(root)
    target = snaps.path(cid) / "merged"
    if mnt.is_mounted(target):
        mnt.unmount(target, detach=True)
    with db.transaction() as tx:
        row = tx.execute("SELECT name FROM containers WHERE id = ?", (cid,)).fetchone()
        if row is None:
            return
        dropped = vol.release(tx, db, root, cid, volumes)
        tx.execute("DELETE FROM containers WHERE id = ?", (cid,))
        db.record_event("container", "destroy", cid, {"name": row[0]})
    vol.discard(dropped)
    for p in snaps.remove(cid):
        shutil.rmtree(p, ignore_errors=True)
    shutil.rmtree(Path(root) / "containers" / cid, ignore_errors=True)



def _host_caps() -> list[str]:
    from berth.runtime import capabilities
    return capabilities.names_of(capabilities.host_bounding())
