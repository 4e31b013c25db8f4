"""linux.resources validation: every error names its field. Pure, no root."""

from __future__ import annotations

import pytest

from berth.errors import InvalidConfig
from berth.runtime.cgroups.resources import (
    Cpu, DeviceRule, Memory, parse_resources, requested_controllers,
)


def test_empty_and_none_mean_no_limits() -> None:
    for raw in (None, {}):
        res = parse_resources(raw)
        assert res.memory is None and res.cpu is None and res.pids_limit is None
        assert res.devices is None and res.unified == ()
        assert requested_controllers(res) == {}


def test_full_parse() -> None:
    res = parse_resources({
        "memory": {"limit": 1 << 30, "reservation": 1 << 29, "swap": 2 << 30,
                   "kernel": 123, "swappiness": 60, "disableOOMKiller": True},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1, 3",
                "mems": "0", "realtimeRuntime": 1000, "realtimePeriod": 10000},
        "pids": {"limit": 100},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "wr"}],
        "unified": {"memory.high": "1G"},
    })
    assert res.memory == Memory(1 << 30, 1 << 29, 2 << 30, 60, True)
    assert res.cpu == Cpu(512, 50000, 100000, 1000, 10000, "0-1,3", "0", None, None)
    assert res.pids_limit == 100
    assert res.devices == (DeviceRule(False, "a", -1, -1, "rwm"),
                           DeviceRule(True, "c", 1, 3, "rw"))
    assert res.unified == (("memory.high", "1G"),)
    assert requested_controllers(res) == {
        "memory": "linux.resources.memory", "cpu": "linux.resources.cpu",
        "cpuset": "linux.resources.cpu.cpus", "pids": "linux.resources.pids.limit"}


@pytest.mark.parametrize("limit,expected", [(0, -1), (-1, -1), (1, 1), (4096, 4096)])
def test_pids_zero_and_minus_one_mean_max(limit: int, expected: int) -> None:
    assert parse_resources({"pids": {"limit": limit}}).pids_limit == expected


def test_swappiness_minus_one_is_unset() -> None:
    assert parse_resources({"memory": {"swappiness": -1}}).memory.swappiness is None


@pytest.mark.parametrize("raw,field", [
    ({"memory": []}, "linux.resources.memory"),
    ({"memory": {"limit": "1G"}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": True}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": -2}}, "linux.resources.memory.limit"),
    ({"memory": {"reservation": -5}}, "linux.resources.memory.reservation"),
    ({"memory": {"limit": 100 << 20, "swap": 50 << 20}}, "linux.resources.memory.swap"),
    ({"memory": {"swap": 50 << 20}}, "linux.resources.memory.swap"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"disableOOMKiller": 1}}, "linux.resources.memory.disableOOMKiller"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares"),
    ({"cpu": {"shares": 262145}}, "linux.resources.cpu.shares"),
    ({"cpu": {"quota": 999}}, "linux.resources.cpu.quota"),
    ({"cpu": {"quota": -7}}, "linux.resources.cpu.quota"),
    ({"cpu": {"period": 999}}, "linux.resources.cpu.period"),
    ({"cpu": {"period": 1000001}}, "linux.resources.cpu.period"),
    ({"cpu": {"cpus": "0-"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"cpus": "3-1"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"mems": "a"}}, "linux.resources.cpu.mems"),
    ({"cpu": {"idle": 2}}, "linux.resources.cpu.idle"),
    ({"pids": {"limit": -2}}, "linux.resources.pids.limit"),
    ({"pids": {"limit": "10"}}, "linux.resources.pids.limit"),
    ({"blockIO": {"weight": 5}}, "linux.resources.blockIO.weight"),
    ({"blockIO": {"weightDevice": [{"major": 8, "weight": 100}]}},
     "linux.resources.blockIO.weightDevice[0]"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0].rate"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize"),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, "linux.resources.hugepageLimits[0].limit"),
    ({"devices": {}}, "linux.resources.devices"),
    ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow"),
    ({"devices": [{"allow": True}, {"allow": True, "type": "x"}]},
     "linux.resources.devices[1].type"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "linux.resources.devices[0].access"),
    ({"devices": [{"allow": True, "access": "rr"}]}, "linux.resources.devices[0].access"),
    ({"devices": [{"allow": True, "major": -3}]}, "linux.resources.devices[0].major"),
    ({"unified": {"../memory.max": "1"}}, "linux.resources.unified.../memory.max"),
    ({"unified": {"memory.max": 1}}, "linux.resources.unified.memory.max"),
    ({"unified": {"nodot": "1"}}, "linux.resources.unified.nodot"),
    ({"network": {"classID": -1}}, "linux.resources.network.classID"),
])
def test_errors_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        parse_resources(raw)
    assert err.value.field == field


def test_device_defaults_and_access_order() -> None:
    (rule,) = parse_resources({"devices": [{"allow": True, "access": "mwr"}]}).devices
    assert rule == DeviceRule(True, "a", -1, -1, "rwm")
    assert rule.cgroup_string() == "a"
    assert DeviceRule(True, "b", 8, -1, "r").cgroup_string() == "b 8:* r"
