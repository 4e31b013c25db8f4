"""Which hierarchy serves each requested controller, and the combined plan. Pure.

On a hybrid host one config can land on both kinds: memory on v1, hugetlb on cgroup2. Each
controller asked for is placed where the layout has it; v1.plan and v2.plan write their part,
v1 first, then v2, then the `unified` map (which overrides anything mapped).

A controller the host lacks is an error naming the field, except where skipping loses nothing
enforceable or is the documented behaviour: blkio weights (no proportional scheduler), hugetlb
(no huge pages to limit), net_cls/net_prio (v1-only, as runc ignores them on v2).
"""

from __future__ import annotations

from collections import namedtuple

from berth.errors import InvalidConfig, ResourceLimit

from . import devices as dev
from . import v1, v2
from .resources import F, requested_controllers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .files import Write
    from .layout import Layout
    from .resources import Resources

_V2_NAME = {"blkio": "io"}
_OPTIONAL = ("hugetlb", "net_cls", "net_prio")
# cgroup core files a config must not write: they move or kill processes.
_FORBIDDEN_UNIFIED = ("cgroup.procs", "cgroup.threads", "cgroup.kill")


class Placement(namedtuple("Placement", "v1 v2")):
    __slots__ = ()
    v1: frozenset[str]    # v1 controller names to plan on v1 hierarchies
    v2: frozenset[str]    # v2 controller names to plan on the cgroup2 hierarchy


def place(res: Resources, layout: Layout) -> Placement:
    on_v1, on_v2 = set(), set()
    for ctrl, field in requested_controllers(res).items():
        where = layout.where(ctrl)
        if where == 1:
            on_v1.add(ctrl)
        elif where == 2:
            on_v2.add(_V2_NAME.get(ctrl, ctrl))
        elif ctrl in _OPTIONAL:
            continue
        elif ctrl == "blkio":
            b = res.block_io
            if b is not None and (b.read_bps or b.write_bps or b.read_iops or b.write_iops):
                raise ResourceLimit(f"{field}: no blkio/io cgroup controller on this host "
                                    "to throttle devices with")
        else:
            raise ResourceLimit(f"{field}: the {ctrl} cgroup controller is not available on "
                                "this host")
    devices_at = layout.where("devices")
    if devices_at == 1:
        on_v1.add("devices")
    elif not dev.is_default(res.devices):
        # cgroup v2 filters devices with an eBPF program attached to the cgroup, which berth
        # does not build. Default rules are skipped (the container sees the devices its
        # /dev holds); anything more specific must not be silently dropped.
        raise ResourceLimit(f"{F}.devices: device rules beyond the defaults need the cgroup "
                            "v2 eBPF device filter, which berth does not implement")
    _check_unified(res, layout)
    return Placement(frozenset(on_v1), frozenset(on_v2))


def _check_unified(res: Resources, layout: Layout) -> None:
    for key, _ in res.unified:
        field = f"{F}.unified.{key}"
        prefix = key.partition(".")[0]
        if key in _FORBIDDEN_UNIFIED:
            raise InvalidConfig(field, "moves or kills processes; not a resource setting")
        if layout.unified is None:
            raise InvalidConfig(field, "unified resources need cgroup v2; this host has "
                                "only cgroup v1")
        if prefix != "cgroup" and prefix not in layout.v2_controllers:
            where = ("is on a cgroup v1 hierarchy here" if prefix in layout.v1
                     else "is not available")
            raise InvalidConfig(field, f"unified resources need cgroup v2 and the {prefix} "
                                f"controller {where}")


def plan_writes(res: Resources, layout: Layout, host1: v1.HostV1 | None = None,
                host2: v2.HostV2 | None = None,
                placement: Placement | None = None) -> list[Write]:
    p = placement if placement is not None else place(res, layout)
    out = v1.plan(res, host1 or v1.HostV1(), p.v1) if p.v1 else []
    return out + v2.plan(res, host2 or v2.HostV2(), p.v2, unified=True)
