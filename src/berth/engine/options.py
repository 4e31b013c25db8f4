"""`run`/`create` flag values as docker reads them, and what an image's config makes of them.

Pure functions; each raises InvalidArgument naming the flag and value that are wrong:

    resolve_command(image_entrypoint, image_cmd, entrypoint_flag, args)  ENTRYPOINT + CMD
    merge_env(image_env, flags_env, host_env)     image env, then -e / --env-file, by key
    parse_env_file(text, name)                    docker's --env-file lines
    parse_bytes("512m")                           docker's RAMInBytes (binary units)
    parse_cpus("1.5")                             --cpus as (quota, period)
    parse_ulimit("nofile=1024:2048")              --ulimit as an OCI rlimit
    parse_volume("/host:/ctr:ro") / parse_mount("type=bind,src=..,dst=..") / parse_tmpfs
    resolve_user("app:staff", passwd, group)      names from the image's /etc/passwd and /etc/group
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from berth.errors import InvalidArgument

__all__ = ["BindMount", "DeviceMapping", "User", "merge_env", "parse_add_host", "parse_bytes",
           "parse_cpus", "parse_device", "parse_env_file", "parse_key_values", "parse_log_opts",
           "parse_mount", "parse_restart", "parse_sysctl", "parse_tmpfs", "parse_ulimit",
           "parse_volume", "resolve_command", "resolve_groups", "resolve_user"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_ULIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
            "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as"}


def resolve_command(image_entrypoint: Sequence[str] | None, image_cmd: Sequence[str] | None,
                    entrypoint: str | None, args: Sequence[str]) -> list[str]:
    """What the container runs (docker's table "Understand how CMD and ENTRYPOINT interact"):
    ENTRYPOINT followed by CMD, both as stored (a shell form is already `/bin/sh -c TEXT`).
    Arguments after the image replace CMD; `--entrypoint` replaces ENTRYPOINT and clears the
    image's CMD (`--entrypoint ""` clears ENTRYPOINT)."""
    if entrypoint is not None:
        ep = [entrypoint] if entrypoint else []
        cmd = list(args)
    else:
        ep = list(image_entrypoint or [])
        cmd = list(args) if args else list(image_cmd or [])
    argv = ep + cmd
    if not argv:
        raise InvalidArgument("no command specified: the image has no CMD or ENTRYPOINT; "
                              "give one after the image name")
    return argv


def _env_key(item: str) -> str:
    return item.partition("=")[0]


def merge_env(image_env: Sequence[str] | None, flags: Sequence[str],
              host_env: Mapping[str, str]) -> list[str]:
    """The image's Env, then each `-e` in order, replacing by key. `-e NAME` without `=` takes
    the value from `host_env`, or is dropped when the host has none (as docker does)."""
    out: list[str] = list(image_env or [])
    for item in flags:
        if not item or item.startswith("="):
            raise InvalidArgument(f"invalid environment variable: {item!r}")
        if "=" not in item:
            if item not in host_env:
                continue
            item = f"{item}={host_env[item]}"
        key = _env_key(item)
        at = next((i for i, e in enumerate(out) if _env_key(e) == key), None)
        if at is None:
            out.append(item)
        else:  # replaced where it was, as docker's ReplaceOrAppendEnvValues does
            out[at] = item
    return out


def parse_log_opts(items: Sequence[str]) -> dict[str, int]:
    """`--log-opt max-size=10m --log-opt max-file=3` (json-file's options)."""
    out = {"max_size": 0, "max_file": 1}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise InvalidArgument(f"invalid key value pair format in log options: {item!r}")
        if key == "max-size":
            out["max_size"] = parse_bytes(value, "--log-opt max-size")
        elif key == "max-file":
            if not value.isdigit() or int(value) < 1:
                raise InvalidArgument(f"invalid value for max-file: {value!r}")
            out["max_file"] = int(value)
        else:
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
    if out["max_file"] > 1 and not out["max_size"]:
        raise InvalidArgument("max-file cannot be set without max-size")
    return out


def parse_restart(text: str) -> dict[str, object]:
    """`--restart no|always|unless-stopped|on-failure[:N]`."""
    name, colon, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure") or (
            colon and name != "on-failure"):
        raise InvalidArgument(f"invalid restart policy format: {text!r}")
    policy: dict[str, object] = {"name": name}
    if colon:
        if not count.isdigit():
            raise InvalidArgument(f"invalid restart policy format: maximum retry count must be "
                                  f"an integer: {text!r}")
        policy["max"] = int(count)
    return policy


def parse_env_file(text: str, name: str) -> list[str]:
    """docker's --env-file: one VAR=value or VAR per line, `#` comments and blank lines skipped,
    leading whitespace of the name trimmed, the value taken as is (no quotes removed)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key, eq, value = stripped.partition("=")
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"{name}:{n}: variable {key!r} contains whitespaces")
        out.append(f"{key}={value}" if eq else key)
    return out


def parse_bytes(text: str, flag: str = "--memory") -> int:
    r"""docker's RAMInBytes, `^(\d+(\.\d+)*) ?([kmgtp])?i?b?$` without case: `512m`, `1.5g`,
    `1024`, `2GiB`, `10 kb`; binary units."""
    s = text.strip()
    i = 0
    while i < len(s) and (s[i].isdigit() or (s[i] == "." and i > 0)):
        i += 1
    num, rest = s[:i], s[i:].lower()
    rest = rest[1:] if rest.startswith(" ") else rest
    unit = rest[:1] if rest[:1] in ("k", "m", "g", "t", "p") else ""
    rest = rest[len(unit):]
    rest = rest[1:] if rest.startswith("i") else rest
    rest = rest[1:] if rest.startswith("b") else rest
    try:
        if rest or not num or num.endswith("."):
            raise ValueError
        value = float(num)
    except ValueError:
        raise InvalidArgument(f"invalid argument {text!r} for \"{flag}\" flag: invalid size: "
                              f"{text!r}") from None
    return int(value * _UNITS[unit])


def parse_cpus(text: str) -> tuple[int, int]:
    """--cpus N as a CFS (quota, period): period 100 ms, quota N × period."""
    try:
        cpus = float(text)
    except ValueError:
        raise InvalidArgument(f"invalid argument {text!r} for \"--cpus\" flag: failed to parse "
                              f"{text!r} as a rational number") from None
    if cpus <= 0:
        raise InvalidArgument(f"range of CPUs is from 0.01 to the number of CPUs; got {text}")
    period = 100_000
    return int(round(cpus * period)), period


def parse_ulimit(text: str) -> dict[str, object]:
    """`--ulimit name=soft[:hard]` as an OCI rlimit ({"type": "RLIMIT_NOFILE", ...})."""
    name, eq, values = text.partition("=")
    if not eq or not values:
        raise InvalidArgument(f"invalid ulimit argument: {text}")
    if name not in _ULIMITS:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = values.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {text}: values must be integers"
                              ) from None
    if soft > hard:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: "
                              f"{soft} > {hard}")
    return {"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard}


@dataclass(frozen=True)
class BindMount:
    kind: str  # "bind", "volume" or "tmpfs"
    source: str  # host path, volume name ("" for anonymous), or "" for tmpfs
    target: str
    readonly: bool = False
    create_source: bool = False  # `-v` creates a missing host path; `--mount` refuses it
    options: tuple[str, ...] = field(default_factory=tuple)


def _abs_target(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount config: {what}: the container path {path!r} must "
                              "be absolute")
    if path == "/" or posixpath.normpath(path) == "/":
        raise InvalidArgument(f"invalid mount config: {what}: cannot mount over /")
    return posixpath.normpath(path)


def parse_volume(text: str) -> BindMount:
    """`-v HOST:CONTAINER[:ro|rw]`, `-v NAME:CONTAINER`, `-v CONTAINER` (anonymous volume)."""
    parts = text.split(":")
    mode = ""
    if len(parts) == 3 or (len(parts) == 2 and parts[1] in ("ro", "rw") and
                           not parts[1].startswith("/")):
        *parts, mode = parts
    if mode and not set(mode.split(",")) <= {"ro", "rw", "z", "Z", "shared", "slave",
                                               "private", "rshared", "rslave", "rprivate",
                                               "nocopy"}:
        raise InvalidArgument(f"invalid mode: {mode}")
    readonly = "ro" in mode.split(",")
    vopts = ("nocopy",) if "nocopy" in mode.split(",") else ()
    if len(parts) == 1:
        return BindMount("volume", "", _abs_target(parts[0], f"-v {text}"), readonly,
                         options=vopts)
    if len(parts) != 2 or not parts[0]:
        raise InvalidArgument(f"invalid volume specification: {text!r}")
    src, dst = parts
    target = _abs_target(dst, f"-v {text}")
    if src.startswith("/"):
        return BindMount("bind", posixpath.normpath(src), target, readonly, create_source=True)
    if src.startswith("."):
        raise InvalidArgument(f"invalid volume specification: {text!r}: a host path must be "
                              "absolute")
    return BindMount("volume", src, target, readonly, options=vopts)


def parse_mount(text: str) -> BindMount:
    """`--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…]`."""
    fields: dict[str, str] = {}
    flags: set[str] = set()
    vopts: list[str] = []  # a volume's: nocopy, label:k=v, opt:k=v, driver:NAME
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key in ("volume-label", "volume-opt") and eq:
            if "=" not in value and key == "volume-opt":
                raise InvalidArgument(f"invalid argument {text!r} for \"--mount\" flag: "
                                      f"invalid volume-opt {value!r}: expected key=value")
            vopts.append(f"{key[7:]}:{value}")
            continue
        if key == "volume-nocopy":
            if not eq or value.lower() in ("1", "true"):
                vopts.append("nocopy")
            elif value.lower() not in ("0", "false"):
                raise InvalidArgument(f"invalid value for volume-nocopy: {value}")
            continue
        if key == "volume-driver" and eq:
            vopts.append(f"driver:{value}")
            continue
        if not eq:
            flags.add(key)
            continue
        fields[key] = value
    kind = fields.pop("type", "volume")
    src = fields.pop("source", fields.pop("src", ""))
    dst = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    ro_v = fields.pop("readonly", fields.pop("ro", None))
    readonly = "readonly" in flags or "ro" in flags or (ro_v is not None and ro_v.lower() in (
        "1", "true"))
    if not dst:
        raise InvalidArgument(f"invalid argument {text!r} for \"--mount\" flag: target is "
                              "required")
    target = _abs_target(dst, f"--mount {text}")
    if vopts and kind != "volume":
        raise InvalidArgument(f"invalid argument {text!r} for \"--mount\" flag: volume "
                              f"options are only for type=volume, not {kind}")
    if kind == "bind":
        if not src:
            raise InvalidArgument("invalid mount config for type \"bind\": field Source must "
                                  "not be empty")
        if not src.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: "
                                  f"{src!r} mount path must be absolute")
        return BindMount("bind", posixpath.normpath(src), target, readonly)
    if kind == "tmpfs":
        if src:
            raise InvalidArgument("invalid mount config for type \"tmpfs\": source must not be "
                                  "specified")
        opts = []
        if "tmpfs-size" in fields:
            opts.append(f"size={parse_bytes(fields.pop('tmpfs-size'), '--mount tmpfs-size')}")
        if "tmpfs-mode" in fields:
            opts.append(f"mode={int(fields.pop('tmpfs-mode'), 8):o}")
        return BindMount("tmpfs", "", target, readonly, options=tuple(opts))
    if kind == "volume":
        return BindMount("volume", src, target, readonly, options=tuple(vopts))
    raise InvalidArgument(f"invalid argument {text!r} for \"--mount\" flag: unknown mount "
                          f"type {kind!r}")


def parse_tmpfs(text: str) -> BindMount:
    """`--tmpfs /run[:size=64m,mode=1777,…]`."""
    path, _, opts = text.partition(":")
    target = _abs_target(path, f"--tmpfs {text}")
    options = tuple(o for o in opts.split(",") if o)
    return BindMount("tmpfs", "", target, options=options)


class User(NamedTuple):
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(spec: str, passwd: str | None, group: str | None) -> User:
    """`-u user[:group]` (names or numbers) against the image's /etc/passwd and /etc/group, as
    docker (runc's libcontainer/user) does: a number need not exist; a name must; the group
    defaults to the user's primary group; supplementary groups come from /etc/group."""
    user_s, _, group_s = (spec or "0").partition(":")
    users = _table(passwd or "")
    groups = _table(group or "")
    entry = None
    for u in users:
        if len(u) >= 4 and (u[0] == user_s or (user_s.isdigit() and u[2] == user_s)):
            entry = u
            break
    if entry is None:
        if not user_s.isdigit():
            raise InvalidArgument(f"unable to find user {user_s}: no matching entries in passwd "
                                  "file")
        uid, gid, name, home = int(user_s), 0, "", "/"
    else:
        uid, gid, name = int(entry[2]), int(entry[3]), entry[0]
        home = entry[5] if len(entry) > 5 and entry[5] else "/"
    if group_s:
        found = next((g for g in groups if len(g) >= 3 and (g[0] == group_s or
                                                            (group_s.isdigit() and
                                                             g[2] == group_s))), None)
        if found is not None:
            gid = int(found[2])
        elif group_s.isdigit():
            gid = int(group_s)
        else:
            raise InvalidArgument(f"unable to find group {group_s}: no matching entries in "
                                  "group file")
        extra: tuple[int, ...] = ()
    else:
        extra = tuple(sorted({int(g[2]) for g in groups if len(g) >= 4 and name and
                              name in g[3].split(",") and int(g[2]) != gid}))
    if uid < 0 or gid < 0 or uid > 0xFFFFFFFE or gid > 0xFFFFFFFE:
        raise InvalidArgument(f"invalid user {spec!r}: ids out of range")
    return User(uid, gid, extra, home)


def parse_key_values(items: Sequence[str], what: str) -> dict[str, str]:
    """`-o k=v` / `--label k=v` lists; a label may come without `=` (empty value)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or (not eq and what != "label"):
            raise InvalidArgument(f"invalid {what} format {item!r}: expected key=value")
        out[key] = value
    return out


HOST_GATEWAY = "host-gateway"  # --add-host NAME:host-gateway: the host, seen from a bridge


def parse_add_host(text: str) -> tuple[str, str]:
    """`--add-host NAME:IP` (or NAME=IP, docker 25+): the name and the address as written
    (an IPv6 one may be in brackets), or HOST_GATEWAY."""
    import ipaddress
    sep = "=" if "=" in text else ":"
    name, found, ip = text.partition(sep)
    if not found or not name or not ip or any(c.isspace() for c in text):
        raise InvalidArgument(f'invalid argument "{text}" for "--add-host" flag: bad format '
                              f"for add-host: {text!r}")
    if ip == HOST_GATEWAY:
        return name, ip
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f'invalid argument "{text}" for "--add-host" flag: invalid IP '
                              f"address in add-host: {ip!r}") from None
    return name, ip


class DeviceMapping(NamedTuple):
    host: str
    container: str
    permissions: str  # some of r, w, m


def parse_device(text: str) -> DeviceMapping:
    """`--device HOST[:CONTAINER][:PERMISSIONS]`, as docker's ParseDevice: CONTAINER defaults
    to HOST, PERMISSIONS to rwm; both paths absolute."""
    parts = text.split(":")
    perms = "rwm"
    if len(parts) in (2, 3) and parts[-1] and all(c in "rwm" for c in parts[-1]) and \
            not parts[-1].startswith("/"):
        perms = parts.pop()
    if len(parts) not in (1, 2) or not parts[0]:
        raise InvalidArgument(f"invalid device specification: {text}")
    host = parts[0]
    container = parts[1] if len(parts) == 2 and parts[1] else host
    for path in (host, container):
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid device specification: {text}: {path} is not an "
                                  "absolute path")
    return DeviceMapping(host, posixpath.normpath(container), perms)


# The sysctls a container may set (its own namespaces'), as docker's ValidateSysctl: IPC's
# kernel.* ones and fs.mqueue.*, and net.* (not with --network host).
_SYSCTLS_IPC = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def parse_sysctl(text: str, network: str) -> tuple[str, str]:
    """`--sysctl KEY=VALUE`: only a sysctl of the container's own namespaces, else docker's
    error (it would change the host)."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise InvalidArgument(f'invalid argument "{text}" for "--sysctl" flag: invalid value '
                              f"{text!r}: expected KEY=VALUE")
    if key in _SYSCTLS_IPC or key.startswith("fs.mqueue."):
        return key, value
    if key.startswith("net."):
        if network == "host":
            raise InvalidArgument(f"sysctl '{key}' not allowed in host network mode")
        return key, value
    raise InvalidArgument(f"sysctl '{text}' is not allowed: it is not namespaced")


def resolve_groups(names: Sequence[str], group: str | None) -> tuple[int, ...]:
    """`--group-add NAME|GID` against the image's /etc/group: a number need not exist there,
    a name must."""
    groups = _table(group or "")
    out = []
    for name in names:
        found = next((g for g in groups if len(g) >= 3 and g[0] == name), None)
        if found is not None and found[2].isdigit():
            out.append(int(found[2]))
        elif name.isdigit() and int(name) <= 0xFFFFFFFE:
            out.append(int(name))
        else:
            raise InvalidArgument(f"Unable to find group {name}: no matching entries in group "
                                  "file")
    return tuple(out)
