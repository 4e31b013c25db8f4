"""docker's `run`/`create` flags for the container's host entries, devices, groups, /dev/shm,
sysctls, --cidfile, and the PID, IPC and UTS namespaces it shares (--pid, --ipc, --uts), on
the real kernel: what the process inside sees, what `inspect` says, and a clear error (exit
125, nothing made) for each bad value."""

from __future__ import annotations

import json
import os

import pytest

from helpers.cli import berth, pids_running

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def test_what_the_container_sees(image: str, berth_env: BerthEnv) -> None:
    cidfile = berth_env.tmp / "cid"
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host_port_start = f.read()
    script = ("cat /etc/hosts; echo ---; stat -c '%t %T' /dev/myzero; head -c 3 /dev/myzero "
              "| od -An -c; echo x > /dev/rolc && echo wrote || echo refused; id -G; "
              "grep ' /dev/shm ' /proc/mounts; cat /proc/sys/kernel/shmmax "
              "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    # on a bridge: /etc/hosts is written again with the address, the entries stay
    r = berth("run", "--name", "flags", "--add-host", "db:10.1.2.3", "--add-host", "v6=[::1]",
              "--add-host", "gw:host-gateway", "--cidfile", str(cidfile),
              "--device", "/dev/zero:/dev/myzero", "--device", "/dev/loop-control:/dev/rolc:r",
              "--group-add", "app", "--group-add", "4242", "--shm-size", "8m",
              "--sysctl", "kernel.shmmax=123456",
              "--sysctl", "net.ipv4.ip_unprivileged_port_start=80", image, "sh", "-c", script)
    hosts, rest = r.stdout.split("---\n")
    gateway = json.loads(berth("network", "inspect", "bridge").stdout)[0][
        "IPAM"]["Config"][0]["Gateway"]
    lines = hosts.splitlines()
    assert lines[6:9] == ["10.1.2.3\tdb", "::1\tv6", f"{gateway}\tgw"]
    cid = cidfile.read_text()
    assert len(cid) == 64 and lines[9].endswith(f"\t{cid[:12]}")
    assert not lines[9].startswith("127.0.1.1")  # the container's address took its place
    out = rest.splitlines()
    assert out[0] == "1 5"  # the host's /dev/zero, major 1 minor 5
    assert out[1].split() == ["\\0", "\\0", "\\0"]
    assert out[2] == "refused"  # r only: the device cgroup refuses the write
    assert set(out[3].split()) == {"0", "1000", "4242"}  # app is gid 1000 in the image
    assert "size=8192k" in out[4]
    assert out[5:] == ["123456", "80"]
    host_config = json.loads(berth("inspect", "flags").stdout)[0]["HostConfig"]
    assert host_config["ExtraHosts"] == ["db:10.1.2.3", "v6=[::1]", "gw:host-gateway"]
    assert host_config["GroupAdd"] == ["app", "4242"]
    assert host_config["ShmSize"] == 8 << 20
    assert host_config["Sysctls"] == {"kernel.shmmax": "123456",
                                      "net.ipv4.ip_unprivileged_port_start": "80"}
    assert host_config["Devices"] == [
        {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/loop-control", "PathInContainer": "/dev/rolc",
         "CgroupPermissions": "r"}]
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert f.read() == host_port_start  # the container's namespace only
    # docker refuses a second container with the same --cidfile, and makes nothing
    r = berth("create", "--cidfile", str(cidfile), image, "true", check=False)
    assert r.returncode == 125 and "container ID file found" in r.stderr
    assert cidfile.read_text() == cid
    berth("rm", "flags")
    default = berth("run", "--rm", "--network", "none", image, "sh", "-c",
                    "grep ' /dev/shm ' /proc/mounts").stdout
    assert "size=65536k" in default


def test_shared_namespaces(image: str) -> None:
    def ns(pid: int | str, kind: str) -> str:
        return os.readlink(f"/proc/{pid}/ns/{kind}")

    berth("run", "-d", "--name", "owner", "--network", "none", image, "sleep", "60")
    # --pid container: sees the owner's processes, the owner's init as its PID 1
    out = berth("run", "--rm", "--network", "none", "--pid", "container:owner", image,
                "ps", "-o", "pid,args").stdout.split("\n")[1:]
    assert out[0].split() == ["1", "sleep", "60"], out
    doc = json.loads(berth("inspect", "owner").stdout)[0]
    sharer = berth("create", "--name", "sharer", "--network", "none", "--pid", "container:owner",
                   image, "sleep", "60").stdout.strip()
    assert json.loads(berth("inspect", "sharer").stdout)[0]["HostConfig"]["PidMode"] == \
        f"container:{doc['Id']}"
    # joined as the owner runs at each start: after the owner's restart, its new namespace
    berth("restart", "-t", "0", "owner")
    berth("start", "sharer")
    owner_pid = json.loads(berth("inspect", "owner").stdout)[0]["State"]["Pid"]
    sharer_pid = json.loads(berth("inspect", sharer).stdout)[0]["State"]["Pid"]
    assert ns(sharer_pid, "pid") == ns(owner_pid, "pid") != ns("self", "pid")
    assert ns(sharer_pid, "ipc") != ns(owner_pid, "ipc")  # only what was asked is shared
    berth("rm", "-f", "sharer")
    berth("stop", "-t", "0", "owner")
    r = berth("run", "--rm", "--pid", "container:owner", image, "true", check=False)
    assert r.returncode == 125 and "non running container" in r.stderr
    berth("rm", "owner")
    # the host's: its processes, its hostname, its /dev/shm; none: no /dev/shm at all
    out = berth("run", "--rm", "--network", "none", "--pid", "host", "--uts", "host", "--ipc",
                "host", image, "sh", "-c", "hostname; grep -c ' /dev/shm ' /proc/mounts; "
                "for n in pid uts ipc; do readlink /proc/self/ns/$n; done").stdout.split()
    assert out[0] == os.uname().nodename and out[1] == "1"
    assert out[2:] == [ns("self", "pid"), ns("self", "uts"), ns("self", "ipc")]
    r = berth("run", "--rm", "--network", "none", "--ipc", "none", image, "sh", "-c",
              "grep -c ' /dev/shm ' /proc/mounts", check=False)
    assert r.stdout.strip() == "0"


@pytest.mark.parametrize("tty", [[], ["-t"]])
def test_a_shared_pid_namespace_ends_with_its_init(image: str, tty: list[str]) -> None:
    """Without a PID namespace of its own nothing kills what the init left behind: the
    container still ends with its init (what it left is killed, as containerd does), even
    when a leftover holds its output open."""
    seconds = str(os.getpid() % 1000 + 7000)
    r = berth("run", "--rm", *tty, "--network", "none", "--pid", "host", image, "sh", "-c",
              f"sleep {seconds} & echo out; exit 3", check=False, timeout=20)
    assert (r.returncode, r.stdout.strip()) == (3, "out")
    assert berth("ps", "-aq").stdout == ""
    assert pids_running("sleep", seconds) == []



@pytest.mark.parametrize("args, message", [
    (["--add-host", "db"], "bad format for add-host"),
    (["--add-host", "db:1.2.3"], "invalid IP address in add-host"),
    (["--device", "/dev/nonexistent-berth"], 'adding custom device "/dev/nonexistent-berth"'),
    (["--device", "/etc/passwd"], "not a device node"),
    (["--device", "relative"], "invalid device specification"),
    (["--group-add", "nosuch"], "Unable to find group nosuch"),
    (["--shm-size", "12x"], "invalid size"),
    (["--sysctl", "kernel.panic=1"], "is not namespaced"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "not allowed in host network"),
    (["--network", "container:x", "--add-host", "a:1.2.3.4"], "custom host-to-IP mapping"),
    (["--pid", "bogus"], "invalid --pid value 'bogus'"),
    (["--pid", "container:nosuch"], "No such container: nosuch"),
    (["--ipc", "container:x"], "--ipc container:NAME is not supported"),
    (["--uts", "host", "--hostname", "x"], "hostname and the UTS mode"),
    (["--uts", "container:x"], "invalid --uts value"),
])
def test_bad_values_make_nothing(image: str, berth_env: BerthEnv, args: list[str],
                                 message: str) -> None:
    cidfile = berth_env.tmp / "cid-bad"
    r = berth("run", "--rm", "--cidfile", str(cidfile), *args, image, "true", check=False)
    assert r.returncode == 125 and message in r.stderr, r.stderr
    assert not cidfile.exists()  # made for the container, removed when it was not
    assert berth("ps", "-aq").stdout == ""
    assert not (berth_env.root / "containers").exists() or \
        os.listdir(berth_env.root / "containers") == []
