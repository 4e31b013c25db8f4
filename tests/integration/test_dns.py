"""The embedded DNS of user-defined networks on the real kernel: containers resolve each other
by name, alias and short id (busybox's nslookup and ping, through /etc/resolv.conf), an
unknown name is NXDOMAIN at once (nothing is forwarded), another network's containers are not
known, a removed container's name goes, a rename is seen. Every address used is a container's
own (nothing is sent off this machine)."""

from __future__ import annotations

import json
import os
import time

from helpers.cli import berth

IDLE = "sleep 1000"


def ip_of(container: str, network: str) -> str:
    doc = json.loads(berth("network", "inspect", network).stdout)[0]
    for c in doc["Containers"].values():
        if c["Name"] == container:
            return c["IPv4Address"].split("/")[0]
    raise AssertionError(f"{container} not on {network}: {doc['Containers']}")


def sh(container: str, script: str, check: bool = True) -> str:
    r = berth("exec", container, "sh", "-c", script, check=check)
    return r.stdout


def resolves(container: str, name: str) -> str | None:
    """The address busybox's nslookup gets for `name` in `container`, None for NXDOMAIN."""
    out = sh(container, f"nslookup -type=a {name}; echo rc=$?", check=False)
    if "NXDOMAIN" in out:
        return None
    lines = out.splitlines()
    assert lines[0].split() == ["Server:", "127.0.0.11"], out
    addrs = [line.split()[-1] for line in lines if line.startswith("Address:")][1:]
    assert len(addrs) == 1 and lines[-1] == "rc=0", out
    return addrs[0]


def test_containers_of_a_user_network_resolve_each_other(image: str) -> None:
    berth("network", "create", "--subnet", "10.241.0.0/24", "front")
    berth("network", "create", "--subnet", "10.242.0.0/24", "back")
    srv = berth("run", "-d", "--name", "srv", "--network", "front", "--network-alias", "db",
                "--network-alias", "Primary", image, "sh", "-c", IDLE).stdout.strip()
    berth("run", "-d", "--name", "cli", "--network", "front", image, "sh", "-c", IDLE)
    berth("run", "-d", "--name", "other", "--network", "back", image, "sh", "-c", IDLE)
    ip = ip_of("srv", "front")
    assert sh("cli", "cat /etc/resolv.conf").splitlines()[-2:] == [
        "nameserver 127.0.0.11", "options ndots:0"]
    for name in ("srv", "db", "primary", "PRIMARY", "srv.", srv[:12], "srv.front", "cli"):
        want = ip_of("cli", "front") if name == "cli" else ip
        assert resolves("cli", name) == want, name
    assert "1 packets received" in sh("cli", "ping -c1 -W2 srv")
    assert "1 packets received" in sh("cli", "ping -c1 -W2 db")
    # unknown: NXDOMAIN at once, never forwarded; AAAA of a known name: no error, no answer
    t0 = time.monotonic()
    assert resolves("cli", "nosuchname") is None
    assert resolves("cli", "example.com") is None
    assert resolves("cli", "srv.back") is None
    assert time.monotonic() - t0 < 5
    out = sh("cli", "nslookup -type=aaaa srv; echo rc=$?", check=False)
    assert "NXDOMAIN" not in out and "rc=0" in out and ip not in out, out
    # another network's container knows neither srv nor its alias
    assert resolves("other", "srv") is None
    assert resolves("other", "db") is None
    assert resolves("other", "other") == ip_of("other", "back")
    # a rename is seen; a removed container's name goes
    berth("rename", "srv", "srv2")
    assert resolves("cli", "srv2") == ip and resolves("cli", "srv") is None
    berth("rm", "-f", "srv2")
    assert resolves("cli", "srv2") is None and resolves("cli", "db") is None
    assert os.path.exists(os.path.join(os.environ["BERTH_RUN"], "dns"))


def test_bridge_none_and_host_keep_no_nameserver(image: str) -> None:
    for net in ("bridge", "none", "host"):
        out = berth("run", "--rm", "--network", net, image, "cat", "/etc/resolv.conf").stdout
        assert "nameserver" not in out, (net, out)


def test_a_container_stopped_and_started_again_answers_again(image: str) -> None:
    berth("network", "create", "--subnet", "10.243.0.0/24", "net1")
    berth("run", "-d", "--name", "one", "--network", "net1", image, "sh", "-c", IDLE)
    berth("run", "-d", "--name", "two", "--network", "net1", image, "sh", "-c", IDLE)
    berth("stop", "-t", "0", "one")
    assert resolves("two", "one") is None
    berth("start", "one")
    assert resolves("two", "one") == ip_of("one", "net1")
    assert resolves("one", "two") == ip_of("two", "net1")
