"""cgroup v1: OCI resources -> the files of each v1 controller. Pure: `plan` returns Writes.

What the planner needs to know about the host (swap accounting present? the current memory
limit, to order memory and memory+swap writes? which blkio weight file exists?) comes in as
`HostV1`, probed by the manager, so the mapping is testable without root.
"""

from __future__ import annotations

from collections import namedtuple

from berth.errors import InvalidConfig

from . import devices as dev
from .files import Write
from .resources import F

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

    from .resources import Resources


class HostV1(namedtuple("HostV1", "memsw memory_limit blkio_weight_file "
                        "blkio_weight_device_file cpuset_prefix devices",
                        defaults=(True, None, "blkio.weight", "blkio.weight_device",
                                  "cpuset.", None))):
    __slots__ = ()
    memsw: bool                        # memory.memsw.* exist (swap accounting is on)
    memory_limit: int | None           # current memory.limit_in_bytes; None: a new cgroup
    blkio_weight_file: str | None      # blkio.bfq.weight, blkio.weight, or None (skip)
    blkio_weight_device_file: str | None
    cpuset_prefix: str                 # "cpuset." ("" on a noprefix mount)
    devices: dev.DeviceState | None    # current devices.list; None: a new cgroup (allow all)


def _w(controller: str, file: str, value: object, field: str, retry: bool = False) -> Write:
    return Write(controller, file, str(value), field, 1, retry)


def _memory(res: Resources, host: HostV1) -> list[Write]:
    m = res.memory
    if m is None:
        return []
    f = f"{F}.memory"
    limit, swap = m.limit, m.swap
    if limit == -1 and swap == 0 and host.memsw:
        swap = -1                      # "no memory limit" means no memory+swap limit either
    if limit == -1 and swap > 0:
        raise InvalidConfig(f"{f}.swap", "cgroup v1 cannot limit memory+swap while memory is "
                            "unlimited (memory.memsw.limit_in_bytes must be >= the memory limit)")
    out: list[Write] = []
    mem = _w("memory", "memory.limit_in_bytes", limit, f"{f}.limit") if limit else None
    # Without swap accounting there is no memsw file, and no swap to limit separately.
    sw = (_w("memory", "memory.memsw.limit_in_bytes", swap, f"{f}.swap")
          if swap and host.memsw else None)
    # The kernel keeps memory <= memory+swap at every step: raise memsw first when growing,
    # lower memory first when shrinking.
    if mem and sw and (swap == -1 or (host.memory_limit is not None
                                      and host.memory_limit < swap)):
        out += [sw, mem]
    else:
        out += [w for w in (mem, sw) if w]
    if m.reservation:
        out.append(_w("memory", "memory.soft_limit_in_bytes", m.reservation,
                      f"{f}.reservation"))
    if m.swappiness is not None:
        out.append(_w("memory", "memory.swappiness", m.swappiness, f"{f}.swappiness"))
    if m.disable_oom_killer:
        out.append(_w("memory", "memory.oom_control", 1, f"{f}.disableOOMKiller"))
    return out


def _pair(controller: str, first: tuple[str, int, str], second: tuple[str, int, str]
          ) -> list[Write]:
    """Two values the kernel checks against each other (period and quota/runtime): write the
    first tolerating EINVAL, the second, then the first again, so any order of old and new
    values gets through (what runc does)."""
    (f1, v1, fld1), (f2, v2, fld2) = first, second
    if v1 and v2:
        return [_w(controller, f1, v1, fld1, retry=True), _w(controller, f2, v2, fld2),
                _w(controller, f1, v1, fld1)]
    if v1:
        return [_w(controller, f1, v1, fld1)]
    if v2:
        return [_w(controller, f2, v2, fld2)]
    return []


def _cpu(res: Resources) -> list[Write]:
    c = res.cpu
    if c is None:
        return []
    f = f"{F}.cpu"
    out = []
    if c.shares:
        out.append(_w("cpu", "cpu.shares", c.shares, f"{f}.shares"))
    out += _pair("cpu", ("cpu.cfs_period_us", c.period, f"{f}.period"),
                 ("cpu.cfs_quota_us", c.quota, f"{f}.quota"))
    if c.burst is not None:
        out.append(_w("cpu", "cpu.cfs_burst_us", c.burst, f"{f}.burst"))
    if c.idle is not None:
        out.append(_w("cpu", "cpu.idle", c.idle, f"{f}.idle"))
    out += _pair("cpu", ("cpu.rt_period_us", c.realtime_period, f"{f}.realtimePeriod"),
                 ("cpu.rt_runtime_us", c.realtime_runtime, f"{f}.realtimeRuntime"))
    return out


def _cpuset(res: Resources, host: HostV1) -> list[Write]:
    c = res.cpu
    if c is None:
        return []
    out = []
    if c.cpus:
        out.append(_w("cpuset", f"{host.cpuset_prefix}cpus", c.cpus, f"{F}.cpu.cpus"))
    if c.mems:
        out.append(_w("cpuset", f"{host.cpuset_prefix}mems", c.mems, f"{F}.cpu.mems"))
    return out


def _pids(res: Resources) -> list[Write]:
    if res.pids_limit is None:
        return []
    value = "max" if res.pids_limit == -1 else res.pids_limit
    return [_w("pids", "pids.max", value, f"{F}.pids.limit")]


def _blkio(res: Resources, host: HostV1) -> list[Write]:
    b = res.block_io
    if b is None:
        return []
    f = f"{F}.blockIO"
    out = []
    # Weights exist only with a proportional scheduler (BFQ, or CFQ before 5.0). Without the
    # file there is nothing to weigh against: skipped, as runc does.
    if b.weight and host.blkio_weight_file:
        out.append(_w("blkio", host.blkio_weight_file, b.weight, f"{f}.weight"))
    if host.blkio_weight_device_file:
        for i, d in enumerate(b.weight_device):
            out.append(_w("blkio", host.blkio_weight_device_file,
                          f"{d.major}:{d.minor} {d.weight}", f"{f}.weightDevice[{i}]"))
    for key, file, entries in (
            ("throttleReadBpsDevice", "blkio.throttle.read_bps_device", b.read_bps),
            ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", b.write_bps),
            ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", b.read_iops),
            ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", b.write_iops)):
        for i, t in enumerate(entries):
            out.append(_w("blkio", file, f"{t.major}:{t.minor} {t.rate}", f"{f}.{key}[{i}]"))
    return out


def _hugetlb(res: Resources) -> list[Write]:
    return [_w("hugetlb", f"hugetlb.{h.page_size}.limit_in_bytes", h.limit,
               f"{F}.hugepageLimits[{i}]") for i, h in enumerate(res.hugepage_limits)]


def _devices(res: Resources, host: HostV1) -> list[Write]:
    current = host.devices if host.devices is not None else dev.DeviceState(default_allow=True)
    target = dev.target_state(res.devices, f"{F}.devices")
    return [_w("devices", "devices.allow" if r.allow else "devices.deny", r.cgroup_string(),
               f"{F}.devices") for r in dev.transition(current, target)]


def _network(res: Resources) -> list[Write]:
    n = res.network
    if n is None:
        return []
    out = []
    if n.class_id is not None:
        out.append(_w("net_cls", "net_cls.classid", n.class_id, f"{F}.network.classID"))
    for i, (name, prio) in enumerate(n.priorities):
        out.append(_w("net_prio", "net_prio.ifpriomap", f"{name} {prio}",
                      f"{F}.network.priorities[{i}]"))
    return out


def rdma_writes(res: Resources, version: int) -> list[Write]:
    """rdma.max has the same syntax on v1 and v2."""
    out = []
    for r in res.rdma:
        handles = "max" if r.hca_handles is None else r.hca_handles
        objects = "max" if r.hca_objects is None else r.hca_objects
        out.append(Write("rdma", "rdma.max",
                         f"{r.device} hca_handle={handles} hca_object={objects}",
                         f"{F}.rdma.{r.device}", version))
    return out


def plan(res: Resources, host: HostV1, only: Collection[str] | None = None) -> list[Write]:
    """The v1 writes for `res`, limited to the controllers in `only` (all when None).

    `unified` is not handled here: it is v2-only, and the manager sends it to v2.plan.
    Devices are always planned (the runtime's default rules apply to every container).
    """
    def want(name: str) -> bool:
        return only is None or name in only

    out: list[Write] = []
    if want("cpuset"):
        out += _cpuset(res, host)
    if want("memory"):
        out += _memory(res, host)
    if want("cpu"):
        out += _cpu(res)
    if want("pids"):
        out += _pids(res)
    if want("blkio"):
        out += _blkio(res, host)
    if want("hugetlb"):
        out += _hugetlb(res)
    for name in ("net_cls", "net_prio"):
        if want(name):
            out += [w for w in _network(res) if w.controller == name]
    if want("rdma"):
        out += rdma_writes(res, 1)
    if want("devices"):
        out += _devices(res, host)
    return out
