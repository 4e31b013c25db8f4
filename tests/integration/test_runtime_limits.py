"""linux.resources and process.rlimits hold on the real kernel (cgroup v1 on this host),
through the `berth-runtime` command line.

Each test puts a misbehaving workload in a container (a memory hog, a fork bomb, a busy loop,
a raw disk read) and measures from the host or from inside that the limit, and only the
limit, stopped it.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import pytest
from helpers.runtime import assert_nothing_left, controller_dir, facts, rt  # noqa: F401

MiB = 1024 * 1024


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_memory_hog_is_oom_killed_and_nothing_else(rt, bundle):
    """32 MiB of memory and no swap: `tail` buffering 200 MiB (one line, no newline) is
    killed by the OOM killer; the shell that ran it lives on and reports 128+9."""
    limits = {"memory": {"limit": 32 * MiB, "swap": 32 * MiB}}
    script = ('cg=/sys/fs/cgroup/memory; echo "limit=$(cat $cg/memory.limit_in_bytes)";'
              ' echo "memsw=$(cat $cg/memory.memsw.limit_in_bytes)";'
              # tail makes itself the OOM killer's first choice (raising one's own score
              # needs no privilege), so the shell, PID 1, is never the one picked by chance
              ' head -c 209715200 /dev/zero | sh -c "echo 1000 > /proc/self/oom_score_adj;'
              ' exec tail" > /dev/null; echo "status=$?";'
              ' grep "^oom_kill " $cg/memory.oom_control | sed "s/ /=/"; echo alive=yes')
    f = facts(rt.run_ok(bundle(sh(script), linux={"resources": limits}), "oom1", timeout=60))
    assert f["limit"] == str(32 * MiB) and f["memsw"] == str(32 * MiB)
    assert f["status"] == str(128 + 9)
    assert f["oom_kill"] == "1"  # exactly one process: tail
    assert f["alive"] == "yes"
    # The hog as the container's own process: `run` reports the kill as 128+9.
    proc = rt("run", "--bundle", str(bundle(["tail", "/dev/zero"], linux={"resources": limits})),
              "oom2", check=False, timeout=60)
    assert proc.returncode == 128 + 9, proc.stderr


def test_fork_bomb_stops_at_pids_limit(rt, bundle):
    limit = 16
    b = bundle(sh("bomb() { bomb | bomb & }; bomb; sleep 30"),
               linux={"resources": {"pids": {"limit": limit}}})
    rt("create", "--bundle", str(b), "bomb1")
    cg = controller_dir(rt.state("bomb1")["pid"], "pids")
    assert (cg / "pids.max").read_text().strip() == str(limit)
    rt("start", "bomb1")
    most = 0
    t0 = time.monotonic()
    while True:  # watch for 1 s at least, and until the limit has refused forks (5 s at most)
        most = max(most, int((cg / "pids.current").read_text()))
        events = (cg / "pids.events").read_text().split()
        elapsed = time.monotonic() - t0
        if elapsed > 5 or (elapsed > 1 and int(events[1]) > 0):
            break
        time.sleep(0.01)
    listed = json.loads(rt("ps", "--format", "json", "bomb1").stdout)
    rt("delete", "--force", "bomb1")
    assert most <= limit
    assert most >= limit - 2, f"the bomb never reached the limit (at most {most})"
    assert len(listed) <= limit
    assert events[0] == "max" and int(events[1]) > 0, "no fork was refused"
    assert not cg.exists()


def test_cpu_quota_and_cpuset(rt, bundle):
    """quota 50000 / period 100000 holds a busy loop at half a core (cpuacct.usage of the
    container's cgroup over 3 s); cpus "0" pins it to CPU 0."""
    b = bundle(sh("while :; do :; done"), linux={"resources": {"cpu": {
        "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}}})
    rt("create", "--bundle", str(b), "cpu1")
    pid = rt.state("cpu1")["pid"]
    rt("start", "cpu1")
    inside = facts(rt("exec", "cpu1", "sh", "-c",
                      'echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)";'
                      ' echo "period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)";'
                      ' echo "cpus=$(cat /sys/fs/cgroup/cpuset/cpuset.cpus)";'
                      ' grep Cpus_allowed_list /proc/1/status | tr -d "\\t" | sed "s/:/=/"'
                      ).stdout)
    usage = controller_dir(pid, "cpuacct") / "cpuacct.usage"
    cpu_stat = controller_dir(pid, "cpu") / "cpu.stat"
    time.sleep(0.3)  # let the loop run into its quota

    def share_over(seconds: float) -> float:
        u0, t0 = int(usage.read_text()), time.monotonic()
        time.sleep(seconds)
        u1, t1 = int(usage.read_text()), time.monotonic()
        return (u1 - u0) / 1e9 / (t1 - t0)

    shares = [share_over(3)]
    if shares[0] < 0.4:  # the quota caps, it cannot guarantee: measure again after a busy spell
        shares.append(share_over(3))
    throttled = dict(line.split() for line in cpu_stat.read_text().splitlines())
    host_status = Path(f"/proc/{pid}/status").read_text()
    rt("delete", "--force", "cpu1")
    assert max(shares) <= 0.6, f"the loop used {shares} of a core"
    assert 0.4 <= max(shares), f"the loop used {shares} of a core (a loaded machine?)"
    assert int(throttled["nr_throttled"]) > 0
    assert (inside["quota"], inside["period"]) == ("50000", "100000")
    assert inside["cpus"] == "0" and inside["Cpus_allowed_list"] == "0"
    assert "Cpus_allowed_list:\t0\n" in host_status


def test_device_cgroup_stops_a_raw_disk_read(rt, bundle):
    """With CAP_MKNOD a container can make a node for the host's disk, but the device cgroup
    (the default config denies all, then the runtime's default set) refuses to open it.

    On this host even the host cannot read its disk, so the EPERM for it proves little; an
    unbound loop device, which the host can open, is the control that shows the cgroup at work.
    """
    dev = os.stat("/").st_dev
    major, minor = os.major(dev), os.minor(dev)
    os.close(os.open("/dev/loop0", os.O_RDONLY))
    caps = ["CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_SYS_RAWIO"]
    script = (f'mknod /dev/vdx b {major} {minor} && echo mknod=ok;'
              ' head -c 512 /dev/vdx 2>/tmp/err | wc -c | sed "s/^/read=/";'
              ' echo "disk_err=$(cat /tmp/err)";'
              ' mknod /dev/lp0 b 7 0; head -c 1 /dev/lp0 2>/tmp/err >/dev/null;'
              ' echo "loop_err=$(cat /tmp/err)";'
              ' echo ok > /dev/null && echo null=ok;'
              ' echo "list=$(tr "\\n" "," < /sys/fs/cgroup/devices/devices.list)"')
    b = bundle(sh(script), root={"readonly": False}, process={
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")}})
    f = facts(rt.run_ok(b, "disk1"))
    assert f["mknod"] == "ok"
    assert f["read"] == "0" and "Operation not permitted" in f["disk_err"]
    assert "Operation not permitted" in f["loop_err"]
    assert f["null"] == "ok"
    rules = f["list"].rstrip(",").split(",")
    assert "a *:* rwm" not in rules and "c 1:3 rwm" in rules
    assert not any(r.startswith(("b 7:", f"b {major}:")) for r in rules)


def test_rlimit_above_the_hosts_hard_limit_is_a_clear_error(rt, bundle):
    host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert host_hard < 30000, "the test expects a host hard RLIMIT_NOFILE below 30000"
    b = bundle(["true"], process={"rlimits": [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 30000}]})
    proc = rt("create", "--bundle", str(b), "rlim-high", check=False)
    assert proc.returncode != 0
    assert "process.rlimits[0]" in proc.stderr and "RLIMIT_NOFILE" in proc.stderr
    assert "30000" in proc.stderr and "Traceback" not in proc.stderr
    assert_nothing_left(rt, "rlim-high", b)


@pytest.mark.parametrize("soft,hard", [(20000, 20000), (512, 4096)])
def test_rlimit_within_the_hosts_limit_works(rt, bundle, soft, hard):
    b = bundle(sh('echo "n=$(ulimit -n)"; echo "Hn=$(ulimit -H -n)"'), process={"rlimits": [
        {"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]})
    f = facts(rt.run_ok(b, f"rlim-{soft}"))
    assert (f["n"], f["Hn"]) == (str(soft), str(hard))
