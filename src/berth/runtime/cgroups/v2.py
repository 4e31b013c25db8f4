"""cgroup v2: OCI resources (written for v1) -> the unified hierarchy's files. Pure.

The spec's resources are v1 quantities; the conversions live here: memory+swap becomes swap
alone, cpu shares become a weight, blkio weights become io weights. `unified` entries are
written verbatim, last, so they override anything mapped.

Devices are not files on v2 (they need an eBPF program attached to the cgroup); the manager
decides what to do about them, see manager._check_v2_devices.
"""

from __future__ import annotations

from collections import namedtuple

from berth.errors import InvalidConfig, ResourceLimit

from .files import Write
from .resources import F
from .v1 import rdma_writes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

    from .resources import Resources

DEFAULT_PERIOD = 100000


class HostV2(namedtuple("HostV2", "swap io_weight_file", defaults=(True, "io.weight"))):
    __slots__ = ()
    swap: bool                   # memory.swap.max exists (swap accounting is on)
    io_weight_file: str | None   # io.bfq.weight, io.weight, or None (no weights: skip)


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], linearly (the OCI/crun mapping)."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000], linearly."""
    return 1 + ((weight - 10) * 9999) // 990


def swap_only(memory_swap: int, memory: int) -> int:
    """OCI swap is memory+swap (v1's memsw); memory.swap.max is swap alone.

    -1 is unlimited and 0 unset on both sides. An unlimited memory with no swap value means
    unlimited swap too, as v1 does.
    """
    if memory == -1 and memory_swap == 0:
        return -1
    if memory_swap in (-1, 0) or memory == -1:
        return memory_swap
    if memory == 0:
        raise InvalidConfig(f"{F}.memory.swap", "a memory+swap limit needs memory.limit as well")
    if memory_swap < memory:
        raise InvalidConfig(f"{F}.memory.swap", f"memory+swap ({memory_swap}) must be >= "
                            f"memory.limit ({memory})")
    return memory_swap - memory


def _num(v: int) -> str:
    return "max" if v == -1 else str(v)


def _w(controller: str, file: str, value: object, field: str) -> Write:
    return Write(controller, file, str(value), field, 2)


def _memory(res: Resources, host: HostV2) -> list[Write]:
    m = res.memory
    if m is None:
        return []
    f = f"{F}.memory"
    out = []
    if m.limit or m.swap:
        swap = swap_only(m.swap, m.limit)
        if swap or m.swap > 0:          # 0 swap is a real value when memory+swap == memory
            if host.swap:
                out.append(_w("memory", "memory.swap.max", _num(swap), f"{f}.swap"))
            elif swap not in (-1, 0):
                raise ResourceLimit(f"{f}.swap: this kernel has no swap accounting "
                                    "(no memory.swap.max), so swap cannot be limited")
    if m.limit:
        out.append(_w("memory", "memory.max", _num(m.limit), f"{f}.limit"))
    if m.reservation:
        out.append(_w("memory", "memory.low", _num(m.reservation), f"{f}.reservation"))
    # swappiness and disableOOMKiller have no v2 file (there is no per-cgroup swappiness,
    # and the OOM killer cannot be turned off): ignored, as runc does on v2.
    return out


def _cpu(res: Resources) -> list[Write]:
    c = res.cpu
    if c is None:
        return []
    f = f"{F}.cpu"
    if c.realtime_runtime or c.realtime_period:
        key = "realtimeRuntime" if c.realtime_runtime else "realtimePeriod"
        raise InvalidConfig(f"{f}.{key}", "cgroup v2 has no real-time bandwidth control")
    out = []
    if c.shares:
        out.append(_w("cpu", "cpu.weight", shares_to_weight(c.shares), f"{f}.shares"))
    if c.idle is not None:
        out.append(_w("cpu", "cpu.idle", c.idle, f"{f}.idle"))
    if c.quota or c.period:
        quota = str(c.quota) if c.quota > 0 else "max"
        out.append(_w("cpu", "cpu.max", f"{quota} {c.period or DEFAULT_PERIOD}",
                      f"{f}.quota" if c.quota else f"{f}.period"))
    if c.burst is not None:
        out.append(_w("cpu", "cpu.max.burst", c.burst, f"{f}.burst"))
    return out


def _cpuset(res: Resources) -> list[Write]:
    c = res.cpu
    if c is None:
        return []
    out = []
    if c.cpus:
        out.append(_w("cpuset", "cpuset.cpus", c.cpus, f"{F}.cpu.cpus"))
    if c.mems:
        out.append(_w("cpuset", "cpuset.mems", c.mems, f"{F}.cpu.mems"))
    return out


def _pids(res: Resources) -> list[Write]:
    if res.pids_limit is None:
        return []
    return [_w("pids", "pids.max", _num(res.pids_limit), f"{F}.pids.limit")]


def _io(res: Resources, host: HostV2) -> list[Write]:
    b = res.block_io
    if b is None:
        return []
    f = f"{F}.blockIO"
    out = []
    bfq = host.io_weight_file == "io.bfq.weight"

    def weight(w: int) -> int:
        return w if bfq else blkio_to_io_weight(w)

    # No weight file: no proportional io control on this kernel; skipped, as on v1.
    if host.io_weight_file:
        if b.weight:
            out.append(_w("io", host.io_weight_file, weight(b.weight), f"{f}.weight"))
        for i, d in enumerate(b.weight_device):
            out.append(_w("io", host.io_weight_file, f"{d.major}:{d.minor} {weight(d.weight)}",
                          f"{f}.weightDevice[{i}]"))
    for key, name, entries in (("throttleReadBpsDevice", "rbps", b.read_bps),
                               ("throttleWriteBpsDevice", "wbps", b.write_bps),
                               ("throttleReadIOPSDevice", "riops", b.read_iops),
                               ("throttleWriteIOPSDevice", "wiops", b.write_iops)):
        for i, t in enumerate(entries):
            out.append(_w("io", "io.max", f"{t.major}:{t.minor} {name}={t.rate}",
                          f"{f}.{key}[{i}]"))
    return out


def _hugetlb(res: Resources) -> list[Write]:
    return [_w("hugetlb", f"hugetlb.{h.page_size}.max", h.limit, f"{F}.hugepageLimits[{i}]")
            for i, h in enumerate(res.hugepage_limits)]


def unified_writes(res: Resources) -> list[Write]:
    return [_w(key.partition(".")[0], key, value, f"{F}.unified.{key}")
            for key, value in res.unified]


def plan(res: Resources, host: HostV2, only: Collection[str] | None = None,
         unified: bool = True) -> list[Write]:
    """The v2 writes for `res`, limited to the controllers in `only` (v2 names; all when
    None), followed by the `unified` map when `unified` is true."""
    def want(name: str) -> bool:
        return only is None or name in only

    out: list[Write] = []
    if want("cpuset"):
        out += _cpuset(res)
    if want("memory"):
        out += _memory(res, host)
    if want("cpu"):
        out += _cpu(res)
    if want("pids"):
        out += _pids(res)
    if want("io"):
        out += _io(res, host)
    if want("hugetlb"):
        out += _hugetlb(res)
    if want("rdma"):
        out += rdma_writes(res, 2)
    if unified:
        out += unified_writes(res)
    return out
