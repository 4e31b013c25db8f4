"""From an image and `run` options to the OCI config.json docker would give the container.

    container_spec(image_config, opts, rootfs=…, passwd=…, group=…) -> dict (config.json)

What docker's daemon does (daemon/oci_linux.go, oci/defaults.go), as data:
- process: ENTRYPOINT + CMD (engine.options.resolve_command), env = PATH and HOSTNAME (and TERM
  with a tty), then the image's Env, then `-e`, by key; cwd = `-w`, else the image's WorkingDir,
  else /; user from `-u` or the image's User, resolved in the image's /etc/passwd and /etc/group.
- docker's 14 default capabilities, `--cap-add`/`--cap-drop` (ALL understood), `--privileged`
  (every capability of the host's bounding set, every device, no seccomp, no masked paths);
  no_new_privileges only with `--security-opt no-new-privileges`; docker's seccomp profile
  unless `seccomp=unconfined` or a profile file.
- mounts: /proc, /dev, /dev/pts, /dev/shm (64 MiB, or `--shm-size`), /dev/mqueue, /sys (ro),
  /sys/fs/cgroup (ro), then the caller's (binds, tmpfs, /etc/hostname, /etc/hosts,
  /etc/resolv.conf).
- linux.resources from `--memory`, `--memory-swap`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`,
  `--pids-limit`; rlimits from `--ulimit`; namespaces pid, ipc, uts, mount, and network unless
  `--network host`; `--sysctl` (the container's own namespaces' only); `--group-add` among
  the process's groups; `--device` nodes (the caller stats them) in linux.devices, allowed in
  the device cgroup with their permissions.
- `--pid`, `--ipc`, `--uts host`: no namespace of that kind (the host's); `--pid
  container:ID`: one whose path is filled in at each start (engine/sharing.py); `--ipc host`
  binds the host's /dev/shm, `--ipc none` mounts none.
Pure; raises InvalidArgument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument

from .options import (
    DEFAULT_PATH,
    BindMount,
    merge_env,
    parse_bytes,
    parse_cpus,
    parse_sysctl,
    parse_ulimit,
    resolve_command,
    resolve_groups,
    resolve_user,
)

__all__ = ["DEFAULT_CAPS", "CreateOptions", "container_spec"]

DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
MASKED = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# docker's default device cgroup: deny all, allow mknod of any, the standard devices rwm
_DEVICE_RULES: tuple[tuple[str, int | None, int | None], ...] = (
    ("c", None, None), ("b", None, None), ("c", 1, 3), ("c", 1, 8), ("c", 1, 7), ("c", 5, 0),
    ("c", 1, 5), ("c", 1, 9), ("c", 136, None), ("c", 5, 2), ("c", 10, 200))


@dataclass
class CreateOptions:
    args: list[str] = field(default_factory=list)  # after the image name
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    tty: bool = False
    interactive: bool = False
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    memory: str = ""
    memory_swap: str = ""
    cpus: str = ""
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    pids_limit: int = 0
    ulimits: list[str] = field(default_factory=list)
    network: str = "bridge"  # none, host, container:NAME, or a bridge network (networks.py)
    more_networks: list[str] = field(default_factory=list)  # --network given again
    ip: str = ""  # --ip: an address on that network, reserved at create
    network_aliases: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)  # -p specs (engine/ports.py)
    publish_all: bool = False  # -P
    expose: list[str] = field(default_factory=list)  # --expose
    mounts: list[BindMount] = field(default_factory=list)
    restart: str = "no"
    init: bool = False
    log_opts: list[str] = field(default_factory=list)  # max-size=10m, max-file=3
    health: dict[str, Any] = field(default_factory=dict)  # cmd, interval, … no_healthcheck
    labels: list[str] = field(default_factory=list)
    stop_signal: str = ""
    stop_timeout: int | None = None
    image_volumes: bool = True  # the image's VOLUMEs as anonymous volumes (not for RUN steps)
    runtime: str = ""  # --runtime: berth (in-process, the default), runc, crun, /abs/path
    add_hosts: list[str] = field(default_factory=list)  # --add-host NAME:IP
    shm_size: str = ""  # --shm-size: /dev/shm's size (64m when not given)
    sysctls: list[str] = field(default_factory=list)  # --sysctl KEY=VALUE
    group_add: list[str] = field(default_factory=list)  # --group-add NAME|GID
    devices: list[str] = field(default_factory=list)  # --device HOST[:CONTAINER][:PERMS]
    pid_mode: str = ""  # --pid: "" (its own), host, container:ID (joined at each start)
    ipc_mode: str = ""  # --ipc: "" (private, shareable), none, host
    uts_mode: str = ""  # --uts: "" or host


def _cap_name(name: str) -> str:
    n = name.strip().upper()
    return n if n.startswith("CAP_") else f"CAP_{n}"


def capabilities(add: Sequence[str], drop: Sequence[str], privileged: bool,
                 host: Sequence[str]) -> list[str]:
    """docker's TweakCapabilities: defaults, minus drops, plus adds; ALL means the host's set."""
    if privileged:
        return sorted(host)
    adds = [_cap_name(c) for c in add]
    drops = [_cap_name(c) for c in drop]
    for c in adds + drops:
        if c != "CAP_ALL" and c not in host:
            raise InvalidArgument(f"unknown capability: {c!r}")
    caps = list(DEFAULT_CAPS) if "CAP_ALL" not in drops else []
    if "CAP_ALL" in adds:
        caps = list(host)
    caps = [c for c in caps if c not in drops]
    for c in adds:
        if c != "CAP_ALL" and c not in caps:
            caps.append(c)
    return caps


def _security(opts: CreateOptions) -> tuple[bool, str | None]:
    """(no_new_privileges, seccomp: None = docker's default, "" = unconfined, else a path)."""
    nnp = False
    seccomp: str | None = None
    for item in opts.security_opt:
        key, sep, value = item.partition("=" if "=" in item else ":")
        if key == "no-new-privileges":
            nnp = value.lower() in ("", "true", "1") if sep else True
        elif key == "seccomp":
            seccomp = "" if value == "unconfined" else value
            if not value:
                raise InvalidArgument(f"invalid --security-opt: {item!r}")
        elif key in ("apparmor", "label"):
            continue  # no LSM on these machines: accepted, as docker does without one
        else:
            raise InvalidArgument(f"invalid --security-opt: {item!r}")
    return nnp, seccomp


DEFAULT_SHM_SIZE = 64 << 20


def shm_size(opts: CreateOptions) -> int:
    """/dev/shm's size in bytes: `--shm-size`, else docker's 64 MiB (0 too, as docker)."""
    if not opts.shm_size:
        return DEFAULT_SHM_SIZE
    size = parse_bytes(opts.shm_size, "--shm-size")
    return size or DEFAULT_SHM_SIZE


def _resources(opts: CreateOptions) -> dict[str, Any]:
    res: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    if opts.memory:
        mem["limit"] = parse_bytes(opts.memory, "--memory")
        if mem["limit"] < 6 << 20:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if opts.memory_swap:
        if opts.memory_swap == "-1":
            mem["swap"] = -1
        else:
            if not opts.memory:
                raise InvalidArgument("You should always set the Memory limit when using "
                                      "Memoryswap limit, see usage")
            mem["swap"] = parse_bytes(opts.memory_swap, "--memory-swap")
            if mem["swap"] < mem["limit"]:
                raise InvalidArgument("Minimum memoryswap limit should be larger than memory "
                                      "limit, see usage")
    elif "limit" in mem:
        mem["swap"] = mem["limit"] * 2  # docker: swap defaults to twice the memory
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if opts.cpus:
        cpu["quota"], cpu["period"] = parse_cpus(opts.cpus)
    if opts.cpu_shares:
        cpu["shares"] = opts.cpu_shares
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if opts.pids_limit:
        res["pids"] = {"limit": opts.pids_limit if opts.pids_limit > 0 else -1}
    if opts.privileged:
        res["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        res["devices"] = [{"allow": False, "access": "rwm"}] + [
            {"allow": True, "type": t, "major": ma, "minor": mi,
             "access": "m" if ma is None else "rwm"} for t, ma, mi in _DEVICE_RULES]
        for d in res["devices"][1:]:
            if d["major"] is None:
                del d["major"]
            if d["minor"] is None:
                del d["minor"]
    return res


def _shm_mount(ipc_mode: str, size: int) -> list[dict[str, Any]]:
    """/dev/shm as docker gives it for each --ipc mode."""
    if ipc_mode == "none":
        return []
    if ipc_mode == "host":
        return [{"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                 "options": ["rbind", "rprivate", "rw"]}]
    return [{"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]}]


def _mount(m: BindMount) -> dict[str, Any]:
    if m.kind == "tmpfs":
        options = ["nosuid", "nodev", "noexec"] + list(m.options)
        if m.readonly:
            options.append("ro")
        return {"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                "options": options}
    options = ["rbind", "ro" if m.readonly else "rw"]
    return {"destination": m.target, "type": "bind", "source": m.source, "options": options}


def container_spec(image_config: Mapping[str, Any] | None, opts: CreateOptions, *,
                   rootfs: str, hostname: str, passwd: str | None = None,
                   group: str | None = None, host_env: Mapping[str, str] | None = None,
                   host_caps: Sequence[str] = DEFAULT_CAPS,
                   extra_mounts: Sequence[Mapping[str, Any]] = (),
                   volume_mounts: Sequence[Mapping[str, Any]] = (),
                   devices: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """config.json for a container of an image (`image_config` is the config's `config`).
    The caller's mounts (`volume_mounts`, binds, tmpfs) come in docker's order: by depth of
    the destination, so a volume at /a is mounted before a bind at /a/b. `devices`: the
    `--device` nodes as linux.devices entries, each with its cgroup `access` besides."""
    ic = dict(image_config or {})
    argv = resolve_command(ic.get("Entrypoint"), ic.get("Cmd"), opts.entrypoint, opts.args)
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if opts.tty
                                                               else [])
    env = merge_env(base, [*(ic.get("Env") or []), *opts.env], host_env or {})
    user = resolve_user(opts.user or ic.get("User") or "", passwd, group)
    gids = list(dict.fromkeys([*user.additional_gids, *resolve_groups(opts.group_add, group)]))
    sysctl = dict(parse_sysctl(s, opts.network) for s in opts.sysctls)
    shm = shm_size(opts)
    env_keys = {e.partition("=")[0] for e in env}
    if "HOME" not in env_keys:
        env.append(f"HOME={user.home}")
    cwd = opts.workdir or ic.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory {cwd!r} is invalid, it needs to be an "
                              "absolute path")
    caps = capabilities(opts.cap_add, opts.cap_drop, opts.privileged, host_caps)
    nnp, seccomp = _security(opts)
    rlimits = [parse_ulimit(u) for u in opts.ulimits]
    process: dict[str, Any] = {
        "terminal": opts.tty,
        "user": {"uid": user.uid, "gid": user.gid,
                 **({"additionalGids": gids} if gids else {})},
        "args": argv, "env": env, "cwd": cwd,
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": nnp,
    }
    if rlimits:
        process["rlimits"] = rlimits
    modes = {"pid": opts.pid_mode, "ipc": opts.ipc_mode, "uts": opts.uts_mode}
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")
                  if modes.get(t) != "host"]
    if opts.network != "host":
        namespaces.append({"type": "network"})
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        *_shm_mount(opts.ipc_mode, shm),
        *[dict(m) for m in extra_mounts],
        *sorted([*(dict(m) for m in volume_mounts),
                 *(_mount(m) for m in opts.mounts if m.kind != "volume")],
                key=lambda m: len([p for p in m["destination"].split("/") if p])),
    ]
    linux: dict[str, Any] = {"resources": _resources(opts), "namespaces": namespaces}
    if sysctl:
        linux["sysctl"] = sysctl
    if devices:
        linux["devices"] = [{k: v for k, v in d.items() if k != "access"} for d in devices]
        if not opts.privileged:  # privileged allows every device already
            linux["resources"]["devices"] += [
                {"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
                 "access": d["access"]} for d in devices]
    if not opts.privileged:
        linux["maskedPaths"] = list(MASKED)
        linux["readonlyPaths"] = list(READONLY)
        if seccomp is None:
            from berth.runtime.seccomp import default_profile
            linux["seccomp"] = default_profile(caps)
        elif seccomp:
            from berth.runtime.seccomp import load_profile_file
            linux["seccomp"] = load_profile_file(seccomp, caps)
    out = {"ociVersion": "1.0.2", "process": process,
           "root": {"path": rootfs, "readonly": opts.read_only},
           **({"hostname": hostname} if opts.uts_mode != "host" else {}),
           "mounts": mounts, "linux": linux}
    if opts.init:  # berth's runtime stays PID 1 as a tiny init (runtime/process.py)
        out["annotations"] = {"org.berth.init": "true"}
    return out
