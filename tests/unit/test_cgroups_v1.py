"""cgroup v1 mapping: each OCI field -> (controller, file, value). Pure, no root."""

from __future__ import annotations

import pytest

from berth.errors import InvalidConfig
from berth.runtime.cgroups import v1
from berth.runtime.cgroups.devices import DEFAULT_RULES, DeviceState
from berth.runtime.cgroups.resources import parse_resources

NO_DEVICES = ("cpuset", "memory", "cpu", "pids", "blkio", "hugetlb", "net_cls", "net_prio",
              "rdma")


def table(raw: dict, host: v1.HostV1 = v1.HostV1(), only=NO_DEVICES) -> list[tuple[str, str, str]]:
    return [(w.controller, w.file, w.value) for w in v1.plan(parse_resources(raw), host, only)]


@pytest.mark.parametrize("raw,expected", [
    ({"memory": {"limit": 64 << 20}}, [("memory", "memory.limit_in_bytes", str(64 << 20))]),
    # unlimited memory lifts memory+swap too, memsw first so memory never exceeds it
    ({"memory": {"limit": -1}}, [("memory", "memory.memsw.limit_in_bytes", "-1"),
                                 ("memory", "memory.limit_in_bytes", "-1")]),
    ({"memory": {"reservation": 1 << 20}},
     [("memory", "memory.soft_limit_in_bytes", str(1 << 20))]),
    ({"memory": {"kernel": 1 << 20}}, []),
    ({"memory": {"swappiness": 0}}, [("memory", "memory.swappiness", "0")]),
    ({"memory": {"disableOOMKiller": True}}, [("memory", "memory.oom_control", "1")]),
    ({"memory": {"disableOOMKiller": False}}, []),
    ({"cpu": {"shares": 512}}, [("cpu", "cpu.shares", "512")]),
    ({"cpu": {"quota": 50000}}, [("cpu", "cpu.cfs_quota_us", "50000")]),
    ({"cpu": {"quota": -1}}, [("cpu", "cpu.cfs_quota_us", "-1")]),
    ({"cpu": {"period": 20000}}, [("cpu", "cpu.cfs_period_us", "20000")]),
    ({"cpu": {"quota": 50000, "period": 100000}},
     [("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "50000"),
      ("cpu", "cpu.cfs_period_us", "100000")]),
    ({"cpu": {"realtimeRuntime": 5000, "realtimePeriod": 10000}},
     [("cpu", "cpu.rt_period_us", "10000"), ("cpu", "cpu.rt_runtime_us", "5000"),
      ("cpu", "cpu.rt_period_us", "10000")]),
    ({"cpu": {"burst": 1000, "idle": 1}},
     [("cpu", "cpu.cfs_burst_us", "1000"), ("cpu", "cpu.idle", "1")]),
    ({"cpu": {"cpus": "0-1", "mems": "0"}},
     [("cpuset", "cpuset.cpus", "0-1"), ("cpuset", "cpuset.mems", "0")]),
    ({"pids": {"limit": 20}}, [("pids", "pids.max", "20")]),
    ({"pids": {"limit": 0}}, [("pids", "pids.max", "max")]),
    ({"pids": {"limit": -1}}, [("pids", "pids.max", "max")]),
    ({"blockIO": {"weight": 300}}, [("blkio", "blkio.weight", "300")]),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}},
     [("blkio", "blkio.weight_device", "8:0 200")]),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                  "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]}},
     [("blkio", "blkio.throttle.read_bps_device", "8:0 1048576"),
      ("blkio", "blkio.throttle.write_iops_device", "8:16 100")]),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20},
                         {"pageSize": "1GB", "limit": 0}]},
     [("hugetlb", "hugetlb.2MB.limit_in_bytes", str(4 << 20)),
      ("hugetlb", "hugetlb.1GB.limit_in_bytes", "0")]),
    ({"network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]}},
     [("net_cls", "net_cls.classid", str(0x100001)),
      ("net_prio", "net_prio.ifpriomap", "eth0 5")]),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}},
     [("rdma", "rdma.max", "mlx5_1 hca_handle=3 hca_object=max")]),
])
def test_field_to_file(raw: dict, expected: list) -> None:
    assert table(raw) == expected


def test_writes_name_their_field() -> None:
    writes = v1.plan(parse_resources({"memory": {"limit": 1 << 20}, "pids": {"limit": 3}}),
                     v1.HostV1(), NO_DEVICES)
    assert [w.field for w in writes] == ["linux.resources.memory.limit",
                                         "linux.resources.pids.limit"]
    assert all(w.version == 1 for w in writes)


def test_memory_and_swap_order_on_a_new_cgroup() -> None:
    # Unlimited memsw and memory: memory is lowered first, then memsw down to it.
    raw = {"memory": {"limit": 64 << 20, "swap": 64 << 20}}
    assert table(raw) == [("memory", "memory.limit_in_bytes", str(64 << 20)),
                          ("memory", "memory.memsw.limit_in_bytes", str(64 << 20))]


def test_memory_and_swap_order_when_raising() -> None:
    # Current limit 64M, new memsw 2G: memsw must grow first or memory > memsw for a moment.
    raw = {"memory": {"limit": 1 << 30, "swap": 2 << 30}}
    assert table(raw, v1.HostV1(memory_limit=64 << 20)) == [
        ("memory", "memory.memsw.limit_in_bytes", str(2 << 30)),
        ("memory", "memory.limit_in_bytes", str(1 << 30))]
    # ... and when lowering, memory first.
    assert table(raw, v1.HostV1(memory_limit=4 << 30))[0][1] == "memory.limit_in_bytes"


def test_unlimited_swap_goes_first() -> None:
    assert table({"memory": {"limit": 1 << 30, "swap": -1}})[0] == (
        "memory", "memory.memsw.limit_in_bytes", "-1")


def test_swap_skipped_without_swap_accounting() -> None:
    host = v1.HostV1(memsw=False)
    assert table({"memory": {"limit": 64 << 20, "swap": 64 << 20}}, host) == [
        ("memory", "memory.limit_in_bytes", str(64 << 20))]
    assert table({"memory": {"limit": -1}}, host) == [("memory", "memory.limit_in_bytes", "-1")]


def test_swap_limit_with_unlimited_memory_is_refused_on_v1() -> None:
    with pytest.raises(InvalidConfig) as err:
        table({"memory": {"limit": -1, "swap": 1 << 30}})
    assert err.value.field == "linux.resources.memory.swap"


def test_pair_tolerates_einval_only_on_the_first_write() -> None:
    writes = v1.plan(parse_resources({"cpu": {"quota": 50000, "period": 100000}}),
                     v1.HostV1(), ["cpu"])
    assert [w.retry_einval for w in writes] == [True, False, False]


def test_blkio_weight_file_choice() -> None:
    raw = {"blockIO": {"weight": 300}}
    assert table(raw, v1.HostV1(blkio_weight_file="blkio.bfq.weight")) == [
        ("blkio", "blkio.bfq.weight", "300")]
    assert table(raw, v1.HostV1(blkio_weight_file=None)) == []


def test_cpuset_noprefix_mount() -> None:
    assert table({"cpu": {"cpus": "1"}}, v1.HostV1(cpuset_prefix="")) == [
        ("cpuset", "cpus", "1")]


def test_only_limits_controllers() -> None:
    raw = {"memory": {"limit": 1 << 20}, "pids": {"limit": 3}}
    assert table(raw, only=["pids"]) == [("pids", "pids.max", "3")]


def test_devices_on_a_new_cgroup_deny_all_then_allow_in_order() -> None:
    raw = {"devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]}
    got = table(raw, only=["devices"])
    assert got[0] == ("devices", "devices.deny", "a")
    assert got[1] == ("devices", "devices.allow", "b 8:0 r")
    assert got[2:] == [("devices", "devices.allow", r.cgroup_string()) for r in DEFAULT_RULES]


def test_devices_planned_even_without_a_list() -> None:
    got = table({}, only=["devices"])
    assert got[0] == ("devices", "devices.deny", "a")
    assert len(got) == 1 + len(DEFAULT_RULES)


def test_devices_update_writes_only_the_difference() -> None:
    current = DeviceState(False, {("c", 1, 3): "rwm", ("c", 10, 229): "rwm"})
    target_raw = {"devices": [{"allow": False, "access": "rwm"}]}
    got = table(target_raw, v1.HostV1(devices=current), only=["devices"])
    # /dev/fuse (10:229) loses its grant; every default not yet held is granted; nothing reset.
    assert ("devices", "devices.deny", "c 10:229 rwm") in got
    assert ("devices", "devices.deny", "a") not in got
    assert ("devices", "devices.allow", "c 1:3 rwm") not in got
    assert ("devices", "devices.allow", "c 1:5 rwm") in got
