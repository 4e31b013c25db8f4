"""Bridge networks on the real kernel: containers of one network reach each other and the host,
not another network; `--internal` has no default route; IPAM; the firewall table; the
`network` commands and their errors. Every address used here is a container's or this
machine's own (nothing is sent off the machine)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers.cli import berth, ip_of

SERVE = "echo hello-from-srv > /tmp/i; while true; do nc -l -p 80 < /tmp/i; done"


def bridges() -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if os.path.isdir(f"/sys/class/net/{n}/bridge")}


def nft_table() -> str:
    r = subprocess.run(["nft", "list", "table", "ip", "berth"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def host_address() -> str | None:
    """An IPv4 address of this machine that is not loopback nor a berth bridge's."""
    import socket

    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for a in ipr.get_addr(family=socket.AF_INET):
            name = names.get(a["index"], "")
            addr = a.get_attr("IFA_ADDRESS")
            if addr and not addr.startswith("127.") and not name.startswith("br-"):
                return str(addr)
    return None


def test_containers_of_a_network_reach_each_other_and_nothing_else(image: str) -> None:
    before = bridges()
    nid = berth("network", "create", "--subnet", "10.231.0.0/24", "front").stdout.strip()
    berth("network", "create", "--subnet", "10.232.0.0/24", "back")
    assert bridges() == before and not nft_table()  # made when a container joins
    berth("run", "-d", "--name", "srv", "--network", "front", image, "sh", "-c", SERVE)
    ip = ip_of("srv", "front")
    assert ip == "10.231.0.2"
    assert bridges() - before == {f"br-{nid[:12]}"}
    table = nft_table()
    assert "drop" in table and "masquerade" not in table and "nat" not in table
    assert f'"br-{nid[:12]}"' in table
    r = berth("run", "--rm", "--network", "front", image, "sh", "-c",
              f"nc -w 3 {ip} 80 </dev/null; ping -c1 -W2 10.231.0.1 >/dev/null && echo gw; "
              "ip route; cat /etc/hosts; hostname")
    lines = [line.rstrip() for line in r.stdout.splitlines()]
    assert lines[:2] == ["hello-from-srv", "gw"]
    assert "default via 10.231.0.1 dev eth0" in lines
    assert f"10.231.0.3\t{lines[-1]}" in lines  # its own address for its hostname
    r = berth("run", "--rm", "--network", "back", image, "sh", "-c",
              f"nc -w 2 {ip} 80 </dev/null; echo rc=$?")
    assert "hello" not in r.stdout
    berth("rm", "-f", "srv")
    assert bridges() == before  # the last container gone: the bridge and the table go too
    assert not nft_table()
    with __import__("berth.store.db", fromlist=["Database"]).Database(
            os.environ["BERTH_ROOT"]) as db:
        actions = [(e.action, e.attributes.get("name")) for e in db.events()
                   if e.type == "network"]
    assert ("create", "front") in actions and ("connect", "front") in actions
    assert ("disconnect", "front") in actions


def test_internal_network_has_no_default_route(image: str) -> None:
    berth("network", "create", "--internal", "--subnet", "10.233.0.0/24", "inner")
    host = host_address()
    probe = f"ping -c1 -W1 {host} >/dev/null 2>&1 && echo reached-host; " if host else ""
    r = berth("run", "--rm", "--network", "inner", image, "sh", "-c",
              f"ip route; {probe}ping -c1 -W1 10.233.0.1 >/dev/null && echo gw")
    assert "default" not in r.stdout
    assert "10.233.0.0/24 dev eth0" in r.stdout
    assert "reached-host" not in r.stdout and "gw" in r.stdout
    assert json.loads(berth("network", "inspect", "inner").stdout)[0]["Internal"] is True


def test_ipam_never_hands_out_an_address_twice(image: str) -> None:
    berth("network", "create", "--subnet", "10.234.0.0/29", "small")  # .2 … .6 for containers
    berth("create", "--name", "fixed", "--network", "small", "--ip", "10.234.0.5", image,
          "sleep", "60")
    r = berth("create", "--network", "small", "--ip", "10.234.0.5", image, check=False)
    assert r.returncode == 125 and "Address already in use: 10.234.0.5" in r.stderr
    for n in ("c1", "c2", "c3", "c4"):
        berth("run", "-d", "--name", n, "--network", "small", image, "sleep", "60")
    got = [ip_of(n, "small") for n in ("c1", "c2", "c3", "c4")]
    assert got == ["10.234.0.2", "10.234.0.3", "10.234.0.4", "10.234.0.6"]
    r = berth("run", "-d", "--name", "c5", "--network", "small", image, "sleep", "60",
              check=False)
    assert r.returncode != 0 and "no available IPv4 addresses" in r.stderr
    berth("rm", "-f", "c5", check=False)
    berth("rm", "-f", "c2")  # its address goes back
    berth("start", "fixed")
    assert ip_of("fixed", "small") == "10.234.0.5"
    berth("run", "-d", "--name", "c6", "--network", "small", image, "sleep", "60")
    assert ip_of("c6", "small") == "10.234.0.3"
    berth("stop", "-t", "0", "fixed")
    berth("start", "fixed")  # --ip is kept across restarts
    assert ip_of("fixed", "small") == "10.234.0.5"
    r = berth("network", "rm", "small", check=False)
    assert r.returncode == 1 and "has active endpoints" in r.stderr
    berth("rm", "-f", "c1", "c3", "c4", "c6", "fixed")
    berth("network", "rm", "small")


def test_network_commands(image: str) -> None:
    out = berth("network", "ls").stdout.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1:] for line in out[1:]] == [
        ["bridge", "bridge", "local"], ["host", "host", "local"], ["none", "none", "local"]]
    berth("network", "create", "--label", "team=a", "--subnet", "10.235.0.0/24",
          "--gateway", "10.235.0.254", "la")
    berth("network", "create", "--label", "team=b", "lb")
    doc = json.loads(berth("network", "inspect", "la").stdout)[0]
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.235.0.0/24", "Gateway": "10.235.0.254"}]
    assert (doc["Driver"], doc["Scope"], doc["Labels"]) == ("bridge", "local", {"team": "a"})
    sub = json.loads(berth("network", "inspect", "lb").stdout)[0]["IPAM"]["Config"][0]
    assert sub["Subnet"].startswith("172.") and sub["Subnet"].endswith(".0.0/16")
    assert berth("network", "ls", "-q", "--filter", "label=team=a").stdout.strip() == \
        doc["Id"][:12]
    assert berth("network", "ls", "--format", "{{.Name}}", "--filter",
                 "type=custom").stdout.split() == ["la", "lb"]
    berth("network", "inspect", "bridge")  # the default network works as any other
    r = berth("run", "--rm", "--network", "bridge", image, "sh", "-c", "ip route")
    assert "default via" in r.stdout
    assert berth("network", "prune", "--dry-run").stdout == "Would remove:\nla\nlb\n"
    assert berth("network", "prune", "-f", "--filter", "label=team=b").stdout == \
        "Deleted Networks:\nlb\n"
    assert berth("network", "prune", "-f", "--filter", "until=1h").stdout == ""
    r = berth("network", "rm", "bridge", "nope", "la", check=False)
    assert r.returncode == 1 and r.stdout == "la\n"
    assert r.stderr.splitlines() == ["Error: bridge is a pre-defined network and cannot be "
                                     "removed", "Error: network nope not found"]


@pytest.mark.parametrize("args,message", [
    (["--subnet", "10.236.0.0/33", "x1"], "invalid CIDR address: 10.236.0.0/33"),
    (["--subnet", "nonsense", "x1"], "invalid CIDR address: nonsense"),
    (["--subnet", "10.236.0.7/24", "x1"], "it should be 10.236.0.0/24"),
    (["--subnet", "10.236.0.0/24", "--gateway", "10.9.0.1", "x1"],
     "no matching subnet for gateway 10.9.0.1"),
    (["--gateway", "10.9.0.1", "x1"], "every ip-range or gateway must have a corresponding"),
    (["--driver", "overlay", "x1"], 'plugin "overlay" not found'),
    (["bad/name"], "invalid network name"),
])
def test_bad_network_create(args: list[str], message: str) -> None:
    r = berth("network", "create", *args, check=False)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "x1" not in berth("network", "ls").stdout


def test_bad_network_use(image: str) -> None:
    berth("network", "create", "--subnet", "10.237.0.0/24", "taken")
    r = berth("network", "create", "--subnet", "10.237.0.0/16", "over", check=False)
    assert "Pool overlaps with other one on this address space" in r.stderr
    r = berth("network", "create", "taken", check=False)
    assert "network with name taken already exists" in r.stderr
    r = berth("run", "--rm", "--network", "nope", image, "true", check=False)
    assert r.returncode == 125 and "network nope not found" in r.stderr
    r = berth("create", "--network", "bridge", "--ip", "172.17.0.9", image, check=False)
    assert "user specified IP address is supported on user defined networks only" in r.stderr
    r = berth("create", "--network", "taken", "--ip", "10.9.9.9", image, check=False)
    assert "no configured subnet or ip-range contain the IP address 10.9.9.9" in r.stderr
    assert berth("ps", "-aq").stdout == ""  # nothing half-created


def addrs(container: str) -> dict[str, str]:
    """interface -> IPv4 address inside a running container."""
    out = berth("exec", container, "ip", "-4", "-o", "addr").stdout
    return {f[1].split("@")[0]: f[3].split("/")[0] for f in (line.split() for line in
                                                             out.splitlines()) if f[1] != "lo"}


def test_connect_and_disconnect_running_and_stopped_containers(image: str) -> None:
    berth("network", "create", "--subnet", "10.233.0.0/24", "one")
    berth("network", "create", "--subnet", "10.234.0.0/24", "--internal", "two")
    berth("run", "-d", "--name", "live", "--network", "one", image, "sleep", "60")
    assert addrs("live") == {"eth0": "10.233.0.2"}
    berth("network", "connect", "--ip", "10.234.0.9", "--alias", "db", "two", "live")
    assert addrs("live") == {"eth0": "10.233.0.2", "eth1": "10.234.0.9"}
    doc = json.loads(berth("inspect", "live").stdout)[0]
    nets = doc["NetworkSettings"]["Networks"]
    assert nets["two"]["IPAddress"] == "10.234.0.9" and nets["two"]["Aliases"] == ["db"]
    assert nets["one"]["Gateway"] == "10.233.0.1" and doc["HostConfig"]["NetworkMode"] == "one"
    r = berth("network", "connect", "two", "live", check=False)
    assert r.returncode == 1 and "endpoint with name live already exists in network two" \
        in r.stderr
    berth("network", "disconnect", "one", "live")
    assert addrs("live") == {"eth1": "10.234.0.9"}
    assert "default" not in berth("exec", "live", "ip", "route").stdout  # two is internal
    r = berth("network", "disconnect", "one", "live", check=False)
    assert r.returncode == 1 and "is not connected to network one" in r.stderr
    berth("network", "connect", "one", "live")  # eth2: a name not used before
    assert addrs("live") == {"eth1": "10.234.0.9", "eth2": "10.233.0.2"}
    assert "default via 10.233.0.1 dev eth2" in berth("exec", "live", "ip", "route").stdout
    # a created container: the endpoint waits for its start
    berth("create", "--name", "later", "--network", "two", image, "sleep", "60")
    berth("network", "connect", "one", "later")
    berth("start", "later")
    assert addrs("later") == {"eth0": "10.234.0.2", "eth1": "10.233.0.3"}
    berth("network", "disconnect", "-f", "one", "no-such-container")
    for mode in ("none", "host"):
        berth("create", "--name", f"c-{mode}", "--network", mode, image, "true")
        r = berth("network", "connect", "one", f"c-{mode}", check=False)
        assert r.returncode == 1 and "connected to" in r.stderr, r.stderr
    berth("rm", "-f", "live", "later", "c-none", "c-host")
    with __import__("berth.store.db", fromlist=["Database"]).Database(
            os.environ["BERTH_ROOT"]) as db:
        actions = [(e.action, e.attributes.get("name")) for e in db.events()
                   if e.type == "network" and e.attributes.get("container") == doc["Id"]]
    assert actions[:4] == [("connect", "one"), ("connect", "two"), ("disconnect", "one"),
                           ("connect", "one")]


def test_container_network_mode_shares_the_namespace(image: str) -> None:
    berth("network", "create", "--subnet", "10.235.0.0/24", "shared")
    berth("run", "-d", "--name", "owner", "--hostname", "ownerhost", "--network", "shared",
          image, "sh", "-c", "echo via-localhost > /tmp/i; while true; do nc -l -p 80 "
          "< /tmp/i; done")
    r = berth("run", "--rm", "--network", "container:owner", image, "sh", "-c",
              "for i in 1 2 3 4 5; do nc -w 2 127.0.0.1 80 </dev/null && break; sleep 0.2; "
              "done; hostname; ip -4 -o addr")
    assert r.stdout.splitlines()[:2] == ["via-localhost", "ownerhost"]
    assert "10.235.0.2/24" in r.stdout
    r = berth("run", "--rm", "--network", "container:owner", "--hostname", "x", image, "true",
              check=False)
    assert r.returncode == 125 and "conflicting options: hostname and the network mode" \
        in r.stderr
    berth("stop", "-t", "1", "owner")
    r = berth("run", "--rm", "--network", "container:owner", image, "true", check=False)
    assert r.returncode == 125 and "non running container" in r.stderr
    r = berth("run", "--rm", "--network", "container:nobody", image, "true", check=False)
    assert r.returncode == 125 and "No such container: nobody" in r.stderr
    berth("rm", "-f", "owner")


def test_run_uses_the_default_bridge_and_several_networks(image: str) -> None:
    berth("network", "create", "--subnet", "10.236.0.0/24", "extra")
    cid = berth("run", "-d", image, "sleep", "60").stdout.strip()
    doc = json.loads(berth("inspect", cid).stdout)[0]
    assert doc["HostConfig"]["NetworkMode"] == "bridge"
    ns = doc["NetworkSettings"]
    assert ns["IPAddress"] and ns["IPAddress"] == ns["Networks"]["bridge"]["IPAddress"]
    assert f"default via {ns['Gateway']} dev eth0" in berth("exec", cid, "ip", "route").stdout
    berth("run", "-d", "--name", "both", "--network", "bridge", "--network", "extra", image,
          "sleep", "60")
    assert set(addrs("both")) == {"eth0", "eth1"} and addrs("both")["eth1"] == "10.236.0.2"
    r = berth("run", "--rm", "--network", "none", "--network", "extra", image, "true",
              check=False)
    assert r.returncode == 125 and "multiple networks" in r.stderr
    berth("rm", "-f", cid, "both")


def test_a_subnet_taken_on_the_machine(image: str) -> None:
    """Another berth root (or anything) took the subnet meanwhile: the default network moves
    to a free one, a user network with that subnet is refused with a clear error."""
    from pyroute2 import IPRoute
    berth("network", "create", "--subnet", "10.237.0.0/24", "mine")
    default = json.loads(berth("network", "inspect", "bridge").stdout)[0]
    subnet = default["IPAM"]["Config"][0]["Subnet"]
    with IPRoute() as ipr:
        ipr.link("add", ifname="bt-taken", kind="veth", peer="bt-taken1")
        [idx] = ipr.link_lookup(ifname="bt-taken")
        try:
            for net in (subnet, "10.237.0.0/24"):
                host = net.split("/")[0].rsplit(".", 1)[0] + ".250"
                ipr.addr("add", index=idx, address=host, prefixlen=int(net.split("/")[1]))
            r = berth("run", "--rm", image, "ip", "-4", "-o", "addr", "show", "eth0")
            moved = json.loads(berth("network", "inspect", "bridge").stdout)[0]
            new = moved["IPAM"]["Config"][0]["Subnet"]
            assert new != subnet and new.rsplit(".", 2)[0] in r.stdout
            r = berth("run", "--rm", "--network", "mine", image, "true", check=False)
            assert r.returncode == 125 and "overlaps a network in use on this machine" \
                in r.stderr
        finally:
            ipr.link("del", index=idx)


def _kernel_objects(bridge: str) -> dict[str, object]:
    """What a container on `bridge` could leave: its ports, veths on no bridge, mounts under
    this test's state, nft lines naming the bridge or its subnet (10.239.0.0/24). Scoped to
    this test so that another session's containers do not count."""
    nets = os.listdir("/sys/class/net")
    loose = sorted(n for n in nets if n.startswith("vb")
                   and not os.path.exists(f"/sys/class/net/{n}/master"))
    roots = (os.environ["BERTH_ROOT"], os.environ["BERTH_RUN"])
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(p for p in (line.split()[4] for line in f) if p.startswith(roots))
    rules = sorted(line.strip() for line in nft_table().splitlines()
                   if bridge in line or "10.239." in line)
    return {"ports": sorted(os.listdir(f"/sys/class/net/{bridge}/brif")), "loose": loose,
            "mounts": mounts, "rules": rules}


def test_a_hundred_run_rm_cycles_leave_nothing_behind(image: str) -> None:
    """With a container holding the network's bridge up, 100 cycles (run --rm, and run -d +
    rm -f) leave the same bridge ports, veths, mounts and rules (processes, cgroups and the
    rest: the leak check of every test)."""
    nid = berth("network", "create", "--subnet", "10.239.0.0/24", "churn").stdout.strip()
    berth("run", "-d", "--name", "anchor", "--network", "churn", image, "sleep", "300")
    before = _kernel_objects(f"br-{nid[:12]}")
    assert before["ports"] and before["mounts"] and before["rules"]
    for i in range(50):
        berth("run", "--rm", "--network", "churn", image, "true")
        cid = berth("run", "-d", "--network", "churn", image, "sleep", "30").stdout.strip()
        berth("rm", "-f", cid)
    assert _kernel_objects(f"br-{nid[:12]}") == before
    assert berth("ps", "-aq").stdout.split() == [berth("inspect", "-f", "{{.Id}}",
                                                       "anchor").stdout.strip()[:12]]
    berth("rm", "-f", "anchor")
