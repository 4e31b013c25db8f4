"""OCI `linux.resources` as validated, typed data: the one edge where that section is checked.

`parse_resources(raw)` raises InvalidConfig naming the field (`linux.resources.memory.limit`,
`linux.resources.devices[2].access`). The v1 and v2 planners below it trust the types.

Zero means "unset" for the numeric fields runc treats that way (memory limit, reservation and
swap, cpu shares, quota and period): Go's zero value and OCI's optional field mean the same
thing there, and config files written for runc rely on it.
"""

from __future__ import annotations

from collections import namedtuple

from berth.errors import InvalidConfig

# typing and dataclasses cost milliseconds at start-up and this module is on the container
# start path: named tuples, and typing only for checkers (as in berth.oci.runtime_spec).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

F = "linux.resources"

# Patterns are compiled on first use: `re` costs milliseconds of start-up, and most
# containers set none of these fields.
_CPULIST = r"^\d+(-\d+)?(,\d+(-\d+)?)*$"
_PAGESIZE = r"^[1-9]\d*[KMG]B$"
_UNIFIED_KEY = r"^[a-z_][a-z0-9_]*\.[A-Za-z0-9_.]+$"


def _match(pattern: str, text: str) -> bool:
    import re
    return re.match(pattern, text) is not None
_ACCESS = "rwm"
WILDCARD = -1

# Kernel bounds (kernel/sched/core.c, cgroup v1 cpu controller).
MIN_SHARES, MAX_SHARES = 2, 262144
MIN_CFS_US, MAX_CFS_PERIOD_US = 1000, 1000000


class Memory(namedtuple("Memory", "limit reservation swap swappiness disable_oom_killer",
                        defaults=(0, 0, 0, None, False))):
    __slots__ = ()
    limit: int            # bytes; -1 unlimited, 0 unset
    reservation: int      # bytes; -1 unlimited, 0 unset
    swap: int             # memory+swap in bytes (v1 semantics); -1 unlimited, 0 unset
    swappiness: int | None
    disable_oom_killer: bool


class Cpu(namedtuple("Cpu", "shares quota period realtime_runtime realtime_period cpus mems "
                     "idle burst", defaults=(0, 0, 0, 0, 0, "", "", None, None))):
    __slots__ = ()
    shares: int
    quota: int            # microseconds; -1 unlimited, 0 unset
    period: int
    realtime_runtime: int
    realtime_period: int
    cpus: str
    mems: str
    idle: int | None
    burst: int | None


class WeightDevice(namedtuple("WeightDevice", "major minor weight")):
    __slots__ = ()
    major: int
    minor: int
    weight: int


class ThrottleDevice(namedtuple("ThrottleDevice", "major minor rate")):
    __slots__ = ()
    major: int
    minor: int
    rate: int


class BlockIO(namedtuple("BlockIO", "weight weight_device read_bps write_bps read_iops "
                         "write_iops", defaults=(0, (), (), (), (), ()))):
    __slots__ = ()
    weight: int
    weight_device: tuple[WeightDevice, ...]
    read_bps: tuple[ThrottleDevice, ...]
    write_bps: tuple[ThrottleDevice, ...]
    read_iops: tuple[ThrottleDevice, ...]
    write_iops: tuple[ThrottleDevice, ...]


class HugepageLimit(namedtuple("HugepageLimit", "page_size limit")):
    __slots__ = ()
    page_size: str        # "2MB", "1GB": the spelling of the kernel's file names
    limit: int


class DeviceRule(namedtuple("DeviceRule", "allow type major minor access")):
    """One `linux.resources.devices` entry. type "a" means every device; -1 is a wildcard."""

    __slots__ = ()
    allow: bool
    type: str
    major: int
    minor: int
    access: str           # a subset of "rwm", in that order

    def cgroup_string(self) -> str:
        if self.type == "a":
            return "a"
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


class Network(namedtuple("Network", "class_id priorities")):
    __slots__ = ()
    class_id: int | None
    priorities: tuple[tuple[str, int], ...]


class Rdma(namedtuple("Rdma", "device hca_handles hca_objects")):
    __slots__ = ()
    device: str
    hca_handles: int | None
    hca_objects: int | None


class Resources(namedtuple("Resources", "memory cpu pids_limit block_io hugepage_limits "
                           "devices network rdma unified",
                           defaults=(None, None, None, None, (), None, None, (), ()))):
    """devices is None when the config has no devices list (the rules are still applied: the
    runtime's defaults follow an empty list). unified keeps the config's order."""

    __slots__ = ()
    memory: Memory | None
    cpu: Cpu | None
    pids_limit: int | None    # -1 for "max" (the config's 0 and -1 both mean no limit)
    block_io: BlockIO | None
    hugepage_limits: tuple[HugepageLimit, ...]
    devices: tuple[DeviceRule, ...] | None
    network: Network | None
    rdma: tuple[Rdma, ...]
    unified: tuple[tuple[str, str], ...]


# -- small typed readers: each names the field it reads --------------------------------------

from berth.oci.fields import (read_bool as _bool, read_int as _int,  # noqa: E402
                              read_list as _list, read_obj as _obj, read_str as _str)


def _opt_int(d: dict[str, Any], key: str, f: str, lo: int | None = None,
             hi: int | None = None, default: int = 0) -> int:
    v = d.get(key)
    return default if v is None else _int(v, f"{f}.{key}", lo, hi)


def _limit(d: dict[str, Any], key: str, f: str) -> int:
    """A byte or time limit where -1 means unlimited and 0 (or absent) means unset."""
    v = _opt_int(d, key, f)
    if v < -1:
        raise InvalidConfig(f"{f}.{key}", f"must be -1 (unlimited), 0 (unset) or positive, got {v}")
    return v


def _cpulist(d: dict[str, Any], key: str, f: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    s = _str(v, f"{f}.{key}").replace(" ", "")
    if s and not _match(_CPULIST, s):
        raise InvalidConfig(f"{f}.{key}", f"must be a list like '0-3,5', got {v!r}")
    for part in s.split(",") if s else ():
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise InvalidConfig(f"{f}.{key}", f"range {part!r} runs backwards")
    return s


# -- sections --------------------------------------------------------------------------------

def _memory(raw: Any, f: str) -> Memory:
    d = _obj(raw, f)
    limit = _limit(d, "limit", f)
    reservation = _limit(d, "reservation", f)
    swap = _limit(d, "swap", f)
    # kernel and kernelTCP are deprecated by the spec and ignored (kernel >= 5.4 dropped
    # kmem limits); they are still checked to be numbers.
    _limit(d, "kernel", f)
    _limit(d, "kernelTCP", f)
    swappiness = d.get("swappiness")
    if swappiness is not None:
        # uint64 in the spec; docker writes -1 for "unset".
        swappiness = _int(swappiness, f"{f}.swappiness", -1, 100)
        if swappiness == -1:
            swappiness = None
    oom = d.get("disableOOMKiller")
    if swap > 0:
        if limit == 0:
            raise InvalidConfig(f"{f}.swap", "a memory+swap limit needs memory.limit as well")
        if limit > 0 and swap < limit:
            raise InvalidConfig(f"{f}.swap", f"memory+swap ({swap}) must be >= memory.limit "
                                f"({limit}); it counts memory and swap together")
    return Memory(limit, reservation, swap, swappiness,
                  False if oom is None else _bool(oom, f"{f}.disableOOMKiller"))


def _cpu(raw: Any, f: str) -> Cpu:
    d = _obj(raw, f)
    shares = _opt_int(d, "shares", f)
    if shares and not MIN_SHARES <= shares <= MAX_SHARES:
        raise InvalidConfig(f"{f}.shares", f"must be between {MIN_SHARES} and {MAX_SHARES}, "
                            f"got {shares}")
    quota = _limit(d, "quota", f)
    if quota > 0 and quota < MIN_CFS_US:
        raise InvalidConfig(f"{f}.quota", f"must be at least {MIN_CFS_US} microseconds or -1, "
                            f"got {quota}")
    period = _opt_int(d, "period", f, 0)
    if period and not MIN_CFS_US <= period <= MAX_CFS_PERIOD_US:
        raise InvalidConfig(f"{f}.period", f"must be between {MIN_CFS_US} and "
                            f"{MAX_CFS_PERIOD_US} microseconds, got {period}")
    rt_runtime = _limit(d, "realtimeRuntime", f)
    rt_period = _opt_int(d, "realtimePeriod", f, 0)
    idle = d.get("idle")
    if idle is not None:
        idle = _int(idle, f"{f}.idle", 0, 1)
    burst = d.get("burst")
    if burst is not None:
        burst = _int(burst, f"{f}.burst", 0)
    return Cpu(shares, quota, period, rt_runtime, rt_period, _cpulist(d, "cpus", f),
               _cpulist(d, "mems", f), idle, burst)


def _pids(raw: Any, f: str) -> int | None:
    d = _obj(raw, f)
    if "limit" not in d:
        return None
    limit = _int(d["limit"], f"{f}.limit", -1)
    return -1 if limit == 0 else limit


def _major_minor(d: dict[str, Any], f: str) -> tuple[int, int]:
    if "major" not in d or "minor" not in d:
        raise InvalidConfig(f, "needs major and minor")
    return _int(d["major"], f"{f}.major", 0), _int(d["minor"], f"{f}.minor", 0)


def _throttle(d: dict[str, Any], key: str, f: str) -> tuple[ThrottleDevice, ...]:
    out = []
    for i, e in enumerate(_list(d.get(key, []), f"{f}.{key}")):
        g = f"{f}.{key}[{i}]"
        e = _obj(e, g)
        major, minor = _major_minor(e, g)
        if "rate" not in e:
            raise InvalidConfig(f"{g}.rate", "is required")
        out.append(ThrottleDevice(major, minor, _int(e["rate"], f"{g}.rate", 0)))
    return tuple(out)


def _block_io(raw: Any, f: str) -> BlockIO:
    d = _obj(raw, f)
    weight = _opt_int(d, "weight", f)
    if weight and not 10 <= weight <= 1000:
        raise InvalidConfig(f"{f}.weight", f"must be between 10 and 1000, got {weight}")
    # leafWeight has no equivalent since kernel 5.0 (CFQ is gone): ignored, like runc.
    devices = []
    for i, e in enumerate(_list(d.get("weightDevice", []), f"{f}.weightDevice")):
        g = f"{f}.weightDevice[{i}]"
        e = _obj(e, g)
        major, minor = _major_minor(e, g)
        w = e.get("weight")
        if w is None:
            continue          # only leafWeight given: nothing to do on current kernels
        devices.append(WeightDevice(major, minor, _int(w, f"{g}.weight", 10, 1000)))
    return BlockIO(weight, tuple(devices), _throttle(d, "throttleReadBpsDevice", f),
                   _throttle(d, "throttleWriteBpsDevice", f),
                   _throttle(d, "throttleReadIOPSDevice", f),
                   _throttle(d, "throttleWriteIOPSDevice", f))


def _hugepages(raw: Any, f: str) -> tuple[HugepageLimit, ...]:
    out = []
    for i, e in enumerate(_list(raw, f)):
        g = f"{f}[{i}]"
        e = _obj(e, g)
        size = _str(e.get("pageSize"), f"{g}.pageSize")
        if not _match(_PAGESIZE, size):
            raise InvalidConfig(f"{g}.pageSize", f"must look like 2MB or 1GB, got {size!r}")
        if "limit" not in e:
            raise InvalidConfig(f"{g}.limit", "is required")
        out.append(HugepageLimit(size, _int(e["limit"], f"{g}.limit", 0)))
    return tuple(out)


def _device(raw: Any, f: str) -> DeviceRule:
    d = _obj(raw, f)
    if "allow" not in d:
        raise InvalidConfig(f"{f}.allow", "is required")
    allow = _bool(d["allow"], f"{f}.allow")
    kind = _str(d.get("type", "a"), f"{f}.type") or "a"
    if kind not in ("a", "b", "c"):
        raise InvalidConfig(f"{f}.type", f"must be a, b or c, got {kind!r}")
    major = d.get("major")
    minor = d.get("minor")
    major = WILDCARD if major is None else _int(major, f"{f}.major", -1)
    minor = WILDCARD if minor is None else _int(minor, f"{f}.minor", -1)
    access = _str(d.get("access", _ACCESS), f"{f}.access") or _ACCESS
    if any(c not in _ACCESS for c in access) or len(set(access)) != len(access):
        raise InvalidConfig(f"{f}.access", f"must be a combination of r, w and m, got {access!r}")
    return DeviceRule(allow, kind, major, minor, "".join(c for c in _ACCESS if c in access))


def _network(raw: Any, f: str) -> Network:
    d = _obj(raw, f)
    class_id = d.get("classID")
    if class_id is not None:
        class_id = _int(class_id, f"{f}.classID", 0, 2**32 - 1)
    prios = []
    for i, e in enumerate(_list(d.get("priorities", []), f"{f}.priorities")):
        g = f"{f}.priorities[{i}]"
        e = _obj(e, g)
        name = _str(e.get("name"), f"{g}.name")
        if not name or "/" in name or " " in name:
            raise InvalidConfig(f"{g}.name", f"is not an interface name: {name!r}")
        prios.append((name, _int(e.get("priority"), f"{g}.priority", 0, 2**32 - 1)))
    return Network(class_id, tuple(prios))


def _rdma(raw: Any, f: str) -> tuple[Rdma, ...]:
    out = []
    for name, e in _obj(raw, f).items():
        g = f"{f}.{name}"
        if not name or "/" in name or " " in name:
            raise InvalidConfig(g, "is not an RDMA device name")
        e = _obj(e, g)
        handles, objects = e.get("hcaHandles"), e.get("hcaObjects")
        out.append(Rdma(name,
                        None if handles is None else _int(handles, f"{g}.hcaHandles", 0),
                        None if objects is None else _int(objects, f"{g}.hcaObjects", 0)))
    return tuple(out)


def _unified(raw: Any, f: str) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in _obj(raw, f).items():
        g = f"{f}.{key}"
        # The key becomes a file name in the container's cgroup directory: no path tricks.
        if not _match(_UNIFIED_KEY, key) or ".." in key:
            raise InvalidConfig(g, "must be a cgroup v2 file name like memory.high")
        out.append((key, _str(value, g)))
    return tuple(out)


def parse_resources(raw: Any, field: str = F) -> Resources:
    """Validate a `linux.resources` object (None or {} mean no limits)."""
    if raw is None:
        return Resources()
    d = _obj(raw, field)
    devices = d.get("devices")
    return Resources(
        memory=None if d.get("memory") is None else _memory(d["memory"], f"{field}.memory"),
        cpu=None if d.get("cpu") is None else _cpu(d["cpu"], f"{field}.cpu"),
        pids_limit=None if d.get("pids") is None else _pids(d["pids"], f"{field}.pids"),
        block_io=None if d.get("blockIO") is None else _block_io(d["blockIO"],
                                                                 f"{field}.blockIO"),
        hugepage_limits=_hugepages(d.get("hugepageLimits") or [], f"{field}.hugepageLimits"),
        devices=None if devices is None else tuple(
            _device(e, f"{field}.devices[{i}]")
            for i, e in enumerate(_list(devices, f"{field}.devices"))),
        network=None if d.get("network") is None else _network(d["network"],
                                                               f"{field}.network"),
        rdma=_rdma(d.get("rdma") or {}, f"{field}.rdma"),
        unified=_unified(d.get("unified") or {}, f"{field}.unified"),
    )


def requested_controllers(res: Resources) -> dict[str, str]:
    """Controller (v1 name) -> the field that asks for it. Used to place each controller on
    its hierarchy and to name the field when the host lacks the controller."""
    out: dict[str, str] = {}
    m = res.memory
    if m is not None and (m.limit or m.reservation or m.swap or m.swappiness is not None
                          or m.disable_oom_killer):
        out["memory"] = f"{F}.memory"
    c = res.cpu
    if c is not None:
        if (c.shares or c.quota or c.period or c.realtime_runtime or c.realtime_period
                or c.idle is not None or c.burst is not None):
            out["cpu"] = f"{F}.cpu"
        if c.cpus or c.mems:
            out["cpuset"] = f"{F}.cpu.{'cpus' if c.cpus else 'mems'}"
    if res.pids_limit is not None:
        out["pids"] = f"{F}.pids.limit"
    b = res.block_io
    if b is not None and (b.weight or b.weight_device or b.read_bps or b.write_bps
                          or b.read_iops or b.write_iops):
        out["blkio"] = f"{F}.blockIO"
    if res.hugepage_limits:
        out["hugetlb"] = f"{F}.hugepageLimits"
    if res.network is not None:
        if res.network.class_id is not None:
            out["net_cls"] = f"{F}.network.classID"
        if res.network.priorities:
            out["net_prio"] = f"{F}.network.priorities"
    if res.rdma:
        out["rdma"] = f"{F}.rdma"
    return out
