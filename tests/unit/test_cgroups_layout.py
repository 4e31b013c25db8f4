"""Host layout discovery, the cgroup path, and placing controllers. Pure, no root."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument, InvalidConfig, ResourceLimit
from berth.runtime.cgroups.layout import (
    Layout, cgroup_path, parse_layout, parse_mountinfo, parse_proc_cgroups,
)
from berth.runtime.cgroups.plan import place, plan_writes
from berth.runtime.cgroups.resources import parse_resources

HYBRID_MOUNTINFO = """\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
blkio\t7\t1\t1
memory\t4\t24\t1
devices\t5\t1\t1
freezer\t6\t1\t1
net_cls\t0\t1\t1
perf_event\t0\t1\t1
net_prio\t0\t1\t1
hugetlb\t0\t1\t1
pids\t8\t1\t1
rdma\t0\t1\t0
"""

V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"

COMOUNTED = ("40 31 0:37 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup "
             "rw,cpu,cpuacct,clone_children\n"
             "41 31 0:38 / /sys/fs/cgroup/my\\040cgroups rw - cgroup cgroup rw,memory\n"
             "42 31 0:37 / /mnt/again rw - cgroup cgroup rw,cpu,cpuacct\n")


def hybrid(v2: str = "hugetlb") -> Layout:
    return parse_layout(HYBRID_MOUNTINFO, PROC_CGROUPS, v2)


def test_hybrid_layout() -> None:
    lay = hybrid()
    assert lay.mode == "hybrid"
    assert lay.unified == "/sys/fs/cgroup/unified"
    assert lay.v1["memory"] == "/sys/fs/cgroup/memory"
    assert lay.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert "rw" not in lay.v1 and "net_cls" not in lay.v1
    assert lay.where("memory") == 1
    assert lay.where("hugetlb") == 2               # on cgroup2, no v1 hierarchy
    assert lay.where("net_cls") == 0               # on no hierarchy at all
    assert lay.where("freezer") == 1
    assert lay.hierarchies()[-1] == "/sys/fs/cgroup/unified"
    assert len(lay.hierarchies()) == 10
    assert hybrid("").where("hugetlb") == 0        # hugetlb moved away from cgroup2


def test_disabled_controllers_are_ignored() -> None:
    assert parse_proc_cgroups(PROC_CGROUPS) >= {"memory", "hugetlb"}
    assert "rdma" not in parse_proc_cgroups(PROC_CGROUPS)


def test_pure_v2_layout() -> None:
    lay = parse_layout(V2_MOUNTINFO, PROC_CGROUPS, "cpuset cpu io memory pids")
    assert lay.mode == "v2" and lay.v1 == {}
    assert lay.where("blkio") == 2 and lay.where("freezer") == 2 and lay.where("devices") == 2
    assert lay.where("hugetlb") == 0
    assert lay.hierarchies() == ["/sys/fs/cgroup"]


def test_pure_v1_layout_and_comounts() -> None:
    v1, unified = parse_mountinfo(COMOUNTED, parse_proc_cgroups(PROC_CGROUPS))
    assert unified is None
    assert v1 == {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                  "memory": "/sys/fs/cgroup/my cgroups"}
    lay = Layout(v1, None, frozenset())
    assert lay.mode == "v1"
    assert lay.hierarchies() == ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/my cgroups"]
    assert lay.where("freezer") == 0


def test_only_unified() -> None:
    lay = hybrid().only_unified()
    assert lay.mode == "v2" and lay.hierarchies() == ["/sys/fs/cgroup/unified"]
    with pytest.raises(InvalidArgument):
        Layout({}, None, frozenset()).only_unified()


@pytest.mark.parametrize("given,expected", [
    (None, "/berth/c1"),
    ("/a/b", "/a/b"),
    ("a/b", "/a/b"),                  # relative: from the hierarchy root too
    ("//a/./b/", "/a/b"),
    ("/system.slice:docker:x", "/system.slice:docker:x"),
])
def test_cgroup_path(given: str | None, expected: str) -> None:
    assert cgroup_path(given, "c1") == expected


@pytest.mark.parametrize("given", ["/a/../b", "..", "../x", "/", "", ".", "a/\0", "/" + "x" * 256])
def test_cgroup_path_refused(given: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        cgroup_path(given, "c1")
    assert err.value.field == "linux.cgroupsPath"


@pytest.mark.parametrize("cid", ["", "a/b", "..", "."])
def test_default_path_needs_a_plain_id(cid: str) -> None:
    with pytest.raises(InvalidArgument):
        cgroup_path(None, cid)


# -- placement -------------------------------------------------------------------------------

def test_hybrid_splits_a_config_across_hierarchies() -> None:
    res = parse_resources({"memory": {"limit": 1 << 20},
                           "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    p = place(res, hybrid())
    assert p.v1 == {"memory", "devices"} and p.v2 == {"hugetlb"}
    writes = plan_writes(res, hybrid())
    assert [(w.version, w.file) for w in writes if w.controller != "devices"] == [
        (1, "memory.limit_in_bytes"), (2, "hugetlb.2MB.max")]


def test_optional_controllers_are_skipped() -> None:
    res = parse_resources({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                           "network": {"classID": 1}, "blockIO": {"weight": 100}})
    lay = Layout({"devices": "/d"}, None, frozenset())
    assert place(res, lay).v1 == {"devices"} and place(res, lay).v2 == frozenset()


@pytest.mark.parametrize("raw,field", [
    ({"memory": {"limit": 1 << 20}}, "linux.resources.memory"),
    ({"pids": {"limit": 10}}, "linux.resources.pids.limit"),
    ({"cpu": {"cpus": "0"}}, "linux.resources.cpu.cpus"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}},
     "linux.resources.blockIO"),
])
def test_missing_controller_is_a_resource_limit(raw: dict, field: str) -> None:
    lay = Layout({"devices": "/d"}, None, frozenset())
    with pytest.raises(ResourceLimit, match=field.replace(".", r"\.")):
        place(parse_resources(raw), lay)


def test_unified_only_on_v2_controllers() -> None:
    ok = parse_resources({"unified": {"hugetlb.2MB.max": "0", "cgroup.max.depth": "2"}})
    place(ok, hybrid())
    for key in ("memory.high", "cgroup.procs", "cgroup.kill"):
        with pytest.raises(InvalidConfig) as err:
            place(parse_resources({"unified": {key: "1"}}), hybrid())
        assert err.value.field == f"linux.resources.unified.{key}"
    with pytest.raises(InvalidConfig):
        place(ok, Layout({"memory": "/m"}, None, frozenset()))


def test_devices_on_pure_v2() -> None:
    lay = parse_layout(V2_MOUNTINFO, PROC_CGROUPS, "memory pids")
    place(parse_resources({"devices": [{"allow": False, "access": "rwm"}]}), lay)
    with pytest.raises(ResourceLimit, match="linux.resources.devices"):
        place(parse_resources({"devices": [{"allow": False, "access": "rwm"},
                                           {"allow": True, "type": "c", "major": 10,
                                            "minor": 229, "access": "rwm"}]}), lay)
    assert plan_writes(parse_resources({}), lay) == []
