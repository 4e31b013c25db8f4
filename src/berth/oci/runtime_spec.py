"""The OCI runtime configuration (config.json) as validated, typed data.

`Spec.from_json` is the one edge where a bundle's config is checked; every error names the field
(`process.args`, `mounts[2].destination`, `linux.namespaces[1].type`). Below it the runtime trusts
the types. Sections the runtime hands to a dedicated module (linux.resources to cgroups,
linux.seccomp to seccomp) are kept as plain dicts and validated by that module.
"""

from __future__ import annotations

from collections import namedtuple

from berth.errors import InvalidConfig
from berth.oci import fastjson

# typing and dataclasses cost milliseconds at start-up, and this module is on the path of
# every container start: the model is made of named tuples, and typing is only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

RLIMIT_NAMES = (
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
    "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
)

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")



# Typed readers, each naming the field it reads (shared with cgroups/resources.py).
from berth.oci.fields import (read_abs as _abs, read_bool as _bool,  # noqa: E402
                              read_int as _int, read_list as _list, read_obj as _obj,
                              read_str as _str, read_strs as _strs)


# -- the model -------------------------------------------------------------------------------

class User(namedtuple("User", "uid gid additional_gids umask", defaults=(0, 0, (), None))):
    __slots__ = ()
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    umask: int | None


class Capabilities(namedtuple("Capabilities", "bounding effective permitted inheritable ambient",
                               defaults=((), (), (), (), ()))):
    __slots__ = ()
    bounding: tuple[str, ...]
    effective: tuple[str, ...]
    permitted: tuple[str, ...]
    inheritable: tuple[str, ...]
    ambient: tuple[str, ...]


class Rlimit(namedtuple("Rlimit", "type soft hard")):
    __slots__ = ()
    type: str
    soft: int
    hard: int


class Process(namedtuple(
        "Process", "args cwd env user terminal console_size capabilities rlimits "
        "no_new_privileges oom_score_adj apparmor_profile selinux_label",
        defaults=((), User(), False, None, None, (), False, None, "", ""))):
    __slots__ = ()
    args: tuple[str, ...]
    cwd: str
    env: tuple[str, ...]
    user: User
    terminal: bool
    console_size: tuple[int, int] | None  # (height, width)
    capabilities: Capabilities | None
    rlimits: tuple[Rlimit, ...]
    no_new_privileges: bool
    oom_score_adj: int | None
    apparmor_profile: str
    selinux_label: str


class Mount(namedtuple("Mount", "destination type source options", defaults=("", "", ()))):
    __slots__ = ()
    destination: str
    type: str
    source: str
    options: tuple[str, ...]


class Hook(namedtuple("Hook", "path args env timeout", defaults=((), (), None))):
    __slots__ = ()
    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: int | None


class Namespace(namedtuple("Namespace", "type path", defaults=("",))):
    __slots__ = ()
    type: str
    path: str


class IdMapping(namedtuple("IdMapping", "container_id host_id size")):
    __slots__ = ()
    container_id: int
    host_id: int
    size: int


class Device(namedtuple("Device", "path type major minor file_mode uid gid",
                         defaults=(0o666, 0, 0))):
    __slots__ = ()
    path: str
    type: str
    major: int
    minor: int
    file_mode: int
    uid: int
    gid: int


class Linux(namedtuple(
        "Linux", "namespaces uid_mappings gid_mappings devices cgroups_path resources sysctl "
        "seccomp masked_paths readonly_paths rootfs_propagation mount_label time_offsets",
        defaults=((), (), (), (), None, {}, {}, None, (), (), "", "", {}))):
    __slots__ = ()
    namespaces: tuple[Namespace, ...]
    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]
    devices: tuple[Device, ...]
    cgroups_path: str | None
    resources: dict[str, Any]
    sysctl: dict[str, str]
    seccomp: dict[str, Any] | None
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    rootfs_propagation: str
    mount_label: str
    time_offsets: dict[str, tuple[int, int]]  # clock -> (secs, nanosecs)

    def namespace(self, kind: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == kind), None)


class Spec(namedtuple(
        "Spec", "oci_version root_path root_readonly process hostname domainname mounts hooks "
        "linux annotations", defaults=("", "", (), {}, Linux(), {}))):
    __slots__ = ()
    oci_version: str
    root_path: str
    root_readonly: bool
    process: Process | None
    hostname: str
    domainname: str
    mounts: tuple[Mount, ...]
    hooks: dict[str, tuple[Hook, ...]]
    linux: Linux
    annotations: dict[str, str]

    @classmethod
    def from_json(cls, text: str | bytes) -> Spec:
        try:
            raw = fastjson.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidConfig("config.json", f"not valid JSON: {e}") from e
        return parse_spec(raw)


PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                "unbindable", "runbindable")


def parse_spec(raw: Any) -> Spec:
    top = _obj(raw, "config.json")
    if "ociVersion" not in top:
        raise InvalidConfig("ociVersion", "is required")
    version = _str(top["ociVersion"], "ociVersion", empty=False)
    if not version.startswith("1."):
        raise InvalidConfig("ociVersion", f"unsupported version {version!r} (berth runs 1.x)")
    if "root" not in top:
        raise InvalidConfig("root", "is required")
    root = _obj(top["root"], "root")
    root_path = _str(root.get("path"), "root.path", empty=False)
    readonly = _bool(root.get("readonly", False), "root.readonly")
    process = _parse_process(top["process"], "process") if "process" in top else None
    mounts = tuple(_parse_mount(m, f"mounts[{i}]")
                   for i, m in enumerate(_list(top.get("mounts", []), "mounts")))
    hooks: dict[str, tuple[Hook, ...]] = {}
    for kind, items in _obj(top.get("hooks", {}), "hooks").items():
        if kind not in HOOK_KINDS:
            raise InvalidConfig(f"hooks.{kind}", f"unknown hook kind (one of {', '.join(HOOK_KINDS)})")
        hooks[kind] = tuple(_parse_hook(h, f"hooks.{kind}[{i}]")
                            for i, h in enumerate(_list(items, f"hooks.{kind}")))
    annotations = {k: _str(v, f"annotations.{k}")
                   for k, v in _obj(top.get("annotations", {}), "annotations").items()}
    linux = _parse_linux(top.get("linux", {}), "linux")
    hostname = _str(top.get("hostname", ""), "hostname")
    domainname = _str(top.get("domainname", ""), "domainname")
    if (hostname or domainname) and linux.namespace("uts") is None:
        which = "hostname" if hostname else "domainname"
        raise InvalidConfig(which, "needs a uts namespace in linux.namespaces")
    return Spec(oci_version=version, root_path=root_path, root_readonly=readonly,
                process=process, hostname=hostname, domainname=domainname, mounts=mounts,
                hooks=hooks, linux=linux, annotations=annotations)


def parse_process(raw: Any, f: str = "process") -> Process:
    """Parse a process object alone (as `exec --process FILE` takes it)."""
    return _parse_process(raw, f)


def _parse_process(raw: Any, f: str) -> Process:
    p = _obj(raw, f)
    args = _strs(p.get("args", []), f"{f}.args")
    if not args:
        raise InvalidConfig(f"{f}.args", "must name the program to run")
    cwd = _abs(p.get("cwd"), f"{f}.cwd") if "cwd" in p else None
    if cwd is None:
        raise InvalidConfig(f"{f}.cwd", "is required")
    env = _strs(p.get("env", []), f"{f}.env")
    for i, e in enumerate(env):
        if e.find("=") < 1:
            raise InvalidConfig(f"{f}.env[{i}]", f"must be KEY=value, got {e!r}")
    u = _obj(p.get("user", {}), f"{f}.user")
    user = User(
        uid=_int(u.get("uid", 0), f"{f}.user.uid", 0, 2**32 - 2),
        gid=_int(u.get("gid", 0), f"{f}.user.gid", 0, 2**32 - 2),
        additional_gids=tuple(_int(g, f"{f}.user.additionalGids[{i}]", 0, 2**32 - 2)
                              for i, g in enumerate(_list(u.get("additionalGids", []),
                                                          f"{f}.user.additionalGids"))),
        umask=_int(u["umask"], f"{f}.user.umask", 0, 0o777) if "umask" in u else None,
    )
    caps = None
    if "capabilities" in p:
        c = _obj(p["capabilities"], f"{f}.capabilities")
        for k in c:
            if k not in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                raise InvalidConfig(f"{f}.capabilities.{k}", "unknown capability set")
        caps = Capabilities(**{k: _strs(c.get(k, []), f"{f}.capabilities.{k}")
                               for k in ("bounding", "effective", "permitted", "inheritable",
                                         "ambient")})
    rlimits = []
    seen: set[str] = set()
    for i, r in enumerate(_list(p.get("rlimits", []), f"{f}.rlimits")):
        rf = f"{f}.rlimits[{i}]"
        r = _obj(r, rf)
        kind = _str(r.get("type"), f"{rf}.type")
        if kind not in RLIMIT_NAMES:
            raise InvalidConfig(f"{rf}.type", f"unknown rlimit {kind!r}")
        if kind in seen:
            raise InvalidConfig(f"{rf}.type", f"{kind} is given twice")
        seen.add(kind)
        soft = _int(r.get("soft"), f"{rf}.soft", 0, 2**64 - 1)
        hard = _int(r.get("hard"), f"{rf}.hard", 0, 2**64 - 1)
        if soft > hard:
            raise InvalidConfig(rf, f"soft limit {soft} is above hard limit {hard}")
        rlimits.append(Rlimit(kind, soft, hard))
    size = None
    if "consoleSize" in p:
        cs = _obj(p["consoleSize"], f"{f}.consoleSize")
        size = (_int(cs.get("height", 0), f"{f}.consoleSize.height", 0, 65535),
                _int(cs.get("width", 0), f"{f}.consoleSize.width", 0, 65535))
    return Process(
        args=args, cwd=cwd, env=env, user=user,
        terminal=_bool(p.get("terminal", False), f"{f}.terminal"),
        console_size=size, capabilities=caps, rlimits=tuple(rlimits),
        no_new_privileges=_bool(p.get("noNewPrivileges", False), f"{f}.noNewPrivileges"),
        oom_score_adj=(_int(p["oomScoreAdj"], f"{f}.oomScoreAdj", -1000, 1000)
                       if "oomScoreAdj" in p else None),
        apparmor_profile=_str(p.get("apparmorProfile", ""), f"{f}.apparmorProfile"),
        selinux_label=_str(p.get("selinuxLabel", ""), f"{f}.selinuxLabel"),
    )


def _parse_mount(raw: Any, f: str) -> Mount:
    m = _obj(raw, f)
    return Mount(destination=_abs(m.get("destination"), f"{f}.destination"),
                 type=_str(m.get("type", ""), f"{f}.type"),
                 source=_str(m.get("source", ""), f"{f}.source"),
                 options=_strs(m.get("options", []), f"{f}.options"))


def _parse_hook(raw: Any, f: str) -> Hook:
    h = _obj(raw, f)
    return Hook(path=_abs(h.get("path"), f"{f}.path"),
                args=_strs(h.get("args", []), f"{f}.args"),
                env=_strs(h.get("env", []), f"{f}.env"),
                timeout=_int(h["timeout"], f"{f}.timeout", 1) if "timeout" in h else None)


def _parse_mappings(raw: Any, f: str) -> tuple[IdMapping, ...]:
    out = []
    for i, m in enumerate(_list(raw, f)):
        mf = f"{f}[{i}]"
        m = _obj(m, mf)
        out.append(IdMapping(_int(m.get("containerID"), f"{mf}.containerID", 0),
                             _int(m.get("hostID"), f"{mf}.hostID", 0),
                             _int(m.get("size"), f"{mf}.size", 1)))
    return tuple(out)


def _parse_linux(raw: Any, f: str) -> Linux:
    lx = _obj(raw, f)
    namespaces = []
    seen: set[str] = set()
    for i, n in enumerate(_list(lx.get("namespaces", []), f"{f}.namespaces")):
        nf = f"{f}.namespaces[{i}]"
        n = _obj(n, nf)
        kind = _str(n.get("type"), f"{nf}.type")
        if kind not in NAMESPACE_TYPES:
            raise InvalidConfig(f"{nf}.type", f"unknown namespace type {kind!r}")
        if kind in seen:
            raise InvalidConfig(f"{nf}.type", f"namespace {kind} is listed twice")
        seen.add(kind)
        path = n.get("path", "")
        namespaces.append(Namespace(kind, _abs(path, f"{nf}.path") if path else ""))
    uid_maps = _parse_mappings(lx.get("uidMappings", []), f"{f}.uidMappings")
    gid_maps = _parse_mappings(lx.get("gidMappings", []), f"{f}.gidMappings")
    user_ns = next((n for n in namespaces if n.type == "user"), None)
    if (uid_maps or gid_maps) and (user_ns is None or user_ns.path):
        raise InvalidConfig(f"{f}.uidMappings", "mappings need a new user namespace")
    if user_ns is not None and not user_ns.path and not (uid_maps and gid_maps):
        raise InvalidConfig(f"{f}.uidMappings", "a new user namespace needs uid and gid mappings")
    devices = []
    for i, d in enumerate(_list(lx.get("devices", []), f"{f}.devices")):
        df = f"{f}.devices[{i}]"
        d = _obj(d, df)
        kind = _str(d.get("type"), f"{df}.type")
        if kind not in ("c", "b", "u", "p"):
            raise InvalidConfig(f"{df}.type", f"must be c, b, u or p, got {kind!r}")
        need = kind != "p"
        devices.append(Device(
            path=_abs(d.get("path"), f"{df}.path"), type=kind,
            major=_int(d.get("major", 0 if not need else None), f"{df}.major", 0),
            minor=_int(d.get("minor", 0 if not need else None), f"{df}.minor", 0),
            file_mode=_int(d.get("fileMode", 0o666), f"{df}.fileMode", 0, 0o7777),
            uid=_int(d.get("uid", 0), f"{df}.uid", 0), gid=_int(d.get("gid", 0), f"{df}.gid", 0)))
    cgroups_path = lx.get("cgroupsPath")
    if cgroups_path is not None:
        cgroups_path = _str(cgroups_path, f"{f}.cgroupsPath") or None
    sysctl = {k: _str(v, f"{f}.sysctl.{k}") for k, v in _obj(lx.get("sysctl", {}), f"{f}.sysctl").items()}
    propagation = _str(lx.get("rootfsPropagation", ""), f"{f}.rootfsPropagation")
    if propagation not in PROPAGATIONS:
        raise InvalidConfig(f"{f}.rootfsPropagation", f"unknown propagation {propagation!r}")
    offsets: dict[str, tuple[int, int]] = {}
    for clock, off in _obj(lx.get("timeOffsets", {}), f"{f}.timeOffsets").items():
        of = f"{f}.timeOffsets.{clock}"
        if clock not in ("monotonic", "boottime"):
            raise InvalidConfig(of, "unknown clock (monotonic or boottime)")
        off = _obj(off, of)
        offsets[clock] = (_int(off.get("secs", 0), f"{of}.secs"),
                          _int(off.get("nanosecs", 0), f"{of}.nanosecs", 0, 999_999_999))
    if offsets:
        time_ns = next((n for n in namespaces if n.type == "time"), None)
        if time_ns is None or time_ns.path:
            raise InvalidConfig(f"{f}.timeOffsets", "needs a new time namespace")
    seccomp = lx.get("seccomp")
    if seccomp is not None:
        seccomp = _obj(seccomp, f"{f}.seccomp")
    return Linux(
        namespaces=tuple(namespaces), uid_mappings=uid_maps, gid_mappings=gid_maps,
        devices=tuple(devices), cgroups_path=cgroups_path,
        resources=_obj(lx.get("resources", {}), f"{f}.resources"), sysctl=sysctl,
        seccomp=seccomp,
        masked_paths=tuple(_abs(p, f"{f}.maskedPaths[{i}]")
                           for i, p in enumerate(_list(lx.get("maskedPaths", []), f"{f}.maskedPaths"))),
        readonly_paths=tuple(_abs(p, f"{f}.readonlyPaths[{i}]")
                             for i, p in enumerate(_list(lx.get("readonlyPaths", []), f"{f}.readonlyPaths"))),
        rootfs_propagation=propagation,
        mount_label=_str(lx.get("mountLabel", ""), f"{f}.mountLabel"),
        time_offsets=offsets,
    )
