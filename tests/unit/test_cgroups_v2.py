"""cgroup v2 mapping and the v1 -> v2 conversions. Pure, no root."""

from __future__ import annotations

import pytest

from berth.errors import InvalidConfig, ResourceLimit
from berth.runtime.cgroups import v2
from berth.runtime.cgroups.resources import parse_resources


def table(raw: dict, host: v2.HostV2 = v2.HostV2()) -> list[tuple[str, str, str]]:
    return [(w.controller, w.file, w.value) for w in v2.plan(parse_resources(raw), host)]


@pytest.mark.parametrize("shares,weight", [
    (2, 1), (1, 1), (1024, 39), (512, 20), (262144, 10000), (300000, 10000), (100, 4)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert v2.shares_to_weight(shares) == weight
    assert v2.shares_to_weight(shares) == 1 + ((min(max(shares, 2), 262144) - 2) * 9999) // 262142


@pytest.mark.parametrize("swap,memory,expected", [
    (0, -1, -1),                   # unlimited memory, swap unset: unlimited swap
    (0, 100, 0),                   # swap unset
    (-1, 100, -1),                 # unlimited
    (300, -1, 300),                # memory unlimited: swap as is
    (300, 100, 200),               # memory+swap 300, memory 100: swap 200
    (100, 100, 0),                 # no swap at all
])
def test_swap_arithmetic(swap: int, memory: int, expected: int) -> None:
    assert v2.swap_only(swap, memory) == expected


def test_swap_arithmetic_refusals() -> None:
    for swap, memory in ((300, 0), (100, 300)):
        with pytest.raises(InvalidConfig) as err:
            v2.swap_only(swap, memory)
        assert err.value.field == "linux.resources.memory.swap"


@pytest.mark.parametrize("raw,expected", [
    ({"memory": {"limit": 64 << 20}}, [("memory", "memory.max", str(64 << 20))]),
    ({"memory": {"limit": -1}}, [("memory", "memory.swap.max", "max"),
                                 ("memory", "memory.max", "max")]),
    ({"memory": {"limit": 64 << 20, "swap": 96 << 20}},
     [("memory", "memory.swap.max", str(32 << 20)), ("memory", "memory.max", str(64 << 20))]),
    ({"memory": {"limit": 64 << 20, "swap": 64 << 20}},
     [("memory", "memory.swap.max", "0"), ("memory", "memory.max", str(64 << 20))]),
    ({"memory": {"reservation": 1 << 20}}, [("memory", "memory.low", str(1 << 20))]),
    ({"memory": {"swappiness": 10, "disableOOMKiller": True}}, []),
    ({"cpu": {"shares": 1024}}, [("cpu", "cpu.weight", "39")]),
    ({"cpu": {"quota": 50000, "period": 100000}}, [("cpu", "cpu.max", "50000 100000")]),
    ({"cpu": {"quota": 50000}}, [("cpu", "cpu.max", "50000 100000")]),
    ({"cpu": {"quota": -1, "period": 50000}}, [("cpu", "cpu.max", "max 50000")]),
    ({"cpu": {"period": 50000}}, [("cpu", "cpu.max", "max 50000")]),
    ({"cpu": {"idle": 1, "burst": 500}}, [("cpu", "cpu.idle", "1"),
                                          ("cpu", "cpu.max.burst", "500")]),
    ({"cpu": {"cpus": "1", "mems": "0"}}, [("cpuset", "cpuset.cpus", "1"),
                                           ("cpuset", "cpuset.mems", "0")]),
    ({"pids": {"limit": 20}}, [("pids", "pids.max", "20")]),
    ({"pids": {"limit": 0}}, [("pids", "pids.max", "max")]),
    ({"blockIO": {"weight": 10}}, [("io", "io.weight", "1")]),
    ({"blockIO": {"weight": 1000}}, [("io", "io.weight", "10000")]),
    ({"blockIO": {"weight": 500}}, [("io", "io.weight", str(1 + (490 * 9999) // 990))]),
    ({"blockIO": {"throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 10}]}},
     [("io", "io.max", "8:0 wbps=10")]),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]},
     [("hugetlb", "hugetlb.2MB.max", str(2 << 20))]),
    ({"rdma": {"mlx4": {"hcaHandles": 2, "hcaObjects": 5}}},
     [("rdma", "rdma.max", "mlx4 hca_handle=2 hca_object=5")]),
    ({"network": {"classID": 5}}, []),
])
def test_field_to_file(raw: dict, expected: list) -> None:
    assert table(raw) == expected


def test_bfq_weight_is_not_converted() -> None:
    raw = {"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 20}]}}
    assert table(raw, v2.HostV2(io_weight_file="io.bfq.weight")) == [
        ("io", "io.bfq.weight", "500"), ("io", "io.bfq.weight", "8:0 20")]
    assert table(raw, v2.HostV2(io_weight_file=None)) == []


def test_unified_written_verbatim_and_last() -> None:
    raw = {"memory": {"limit": 1 << 20}, "unified": {"memory.max": "2M", "cgroup.max.depth": "3"}}
    assert table(raw) == [("memory", "memory.max", str(1 << 20)),
                          ("memory", "memory.max", "2M"),
                          ("cgroup", "cgroup.max.depth", "3")]
    assert v2.plan(parse_resources(raw), v2.HostV2())[-1].field == \
        "linux.resources.unified.cgroup.max.depth"


def test_realtime_is_refused_on_v2() -> None:
    with pytest.raises(InvalidConfig) as err:
        table({"cpu": {"realtimeRuntime": 1000}})
    assert err.value.field == "linux.resources.cpu.realtimeRuntime"


def test_swap_without_swap_accounting() -> None:
    host = v2.HostV2(swap=False)
    assert table({"memory": {"limit": -1}}, host) == [("memory", "memory.max", "max")]
    assert table({"memory": {"limit": 100, "swap": 100}}, host) == [
        ("memory", "memory.max", "100")]
    with pytest.raises(ResourceLimit):
        table({"memory": {"limit": 100, "swap": 200}}, host)


def test_writes_are_v2() -> None:
    assert {w.version for w in v2.plan(parse_resources({"pids": {"limit": 1}}), v2.HostV2())} \
        == {2}
