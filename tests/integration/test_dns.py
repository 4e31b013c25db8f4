"""The embedded DNS of user-defined networks on the real kernel: containers resolve each other
by name, alias and short id (busybox's nslookup and ping, through /etc/resolv.conf), an
unknown name is NXDOMAIN at once (nothing is forwarded), another network's containers are not
known, a removed container's name goes, a rename is seen. Every address used is a container's
own (nothing is sent off this machine)."""

from __future__ import annotations

import os
import time

from helpers.cli import berth, ip_of

IDLE = "sleep 1000"


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
    berth("network", "create", "--subnet", "10.171.0.0/24", "front")
    berth("network", "create", "--subnet", "10.172.0.0/24", "back")
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
        r = berth("run", "--rm", "--network", net, "--network-alias", "x", image, "true",
                  check=False)
        assert r.returncode == 125, (net, r.stderr)
        assert "network-scoped alias is supported only for containers in user defined networks" \
            in r.stderr, (net, r.stderr)
    assert berth("ps", "-aq").stdout == ""  # nothing half-created


def test_a_container_stopped_and_started_again_answers_again(image: str) -> None:
    berth("network", "create", "--subnet", "10.173.0.0/24", "net1")
    berth("run", "-d", "--name", "one", "--network", "net1", image, "sh", "-c", IDLE)
    berth("run", "-d", "--name", "two", "--network", "net1", image, "sh", "-c", IDLE)
    berth("stop", "-t", "0", "one")
    assert resolves("two", "one") is None
    berth("start", "one")
    assert resolves("two", "one") == ip_of("one", "net1")
    assert resolves("one", "two") == ip_of("two", "net1")


def in_netns(pid: int, fn):  # noqa: ANN001, ANN201 - a test helper
    """fn() run in a thread that joined the network namespace of `pid` (the container's)."""
    import threading

    from berth.runtime import _sys
    out: list = []

    def inner() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                _sys.setns(fd, _sys.CLONE_NEWNET, "net")
            finally:
                os.close(fd)
            out.append(fn())
        except BaseException as e:  # noqa: BLE001
            out.append(e)
    t = threading.Thread(target=inner)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def query(qname: str, qtype: int = 1, qid: int = 7) -> bytes:
    q = b"".join(bytes((len(x),)) + x.encode() for x in qname.split(".")) + b"\0"
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + q + \
        qtype.to_bytes(2, "big") + b"\x00\x01"


def pid_of(container: str) -> int:
    return int(berth("inspect", "-f", "{{.State.Pid}}", container).stdout)


def test_tcp_and_a_container_whose_output_is_closed(image: str) -> None:
    import socket
    berth("network", "create", "--subnet", "10.174.0.0/24", "net2")
    berth("run", "-d", "--name", "srv", "--network", "net2", image, "sh", "-c", IDLE)
    berth("run", "-d", "--name", "quiet", "--network", "net2", image, "sh", "-c",
          f"exec >/dev/null 2>&1 </dev/null; {IDLE}")
    berth("run", "-d", "-t", "--name", "tty", "--network", "net2", image, "sh")
    ip = ip_of("srv", "net2")
    time.sleep(0.5)  # quiet's pump saw its output close
    assert resolves("quiet", "srv") == ip
    assert resolves("tty", "srv") == ip

    def over_tcp() -> bytes:
        with socket.create_connection(("127.0.0.11", 53), timeout=3) as s:
            for qid in (1, 2):  # two queries on one connection
                q = query("srv", qid=qid)
                s.sendall(len(q).to_bytes(2, "big") + q)
                n = int.from_bytes(s.recv(2), "big")
                reply = b""
                while len(reply) < n:
                    reply += s.recv(n - len(reply))
                assert reply[:2] == qid.to_bytes(2, "big")
            return reply
    reply = in_netns(pid_of("quiet"), over_tcp)
    assert reply[3] & 0xF == 0 and reply[-4:] == bytes(int(x) for x in ip.split("."))

    def over_udp() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(b"\x00" * 5, ("127.0.0.11", 53))  # garbage: dropped, nothing breaks
            s.sendto(query("nosuch"), ("127.0.0.11", 53))
            return s.recv(512)
    assert in_netns(pid_of("tty"), over_udp)[3] & 0xF == 3  # NXDOMAIN
    assert resolves("tty", "quiet") == ip_of("quiet", "net2")


def test_containers_started_at_once_all_know_each_other(image: str) -> None:
    import subprocess

    from helpers.cli import BERTH
    berth("network", "create", "--subnet", "10.176.0.0/24", "busy")
    names = [f"c{i}" for i in range(4)]
    procs = [subprocess.Popen([*BERTH, "run", "-d", "--name", n, "--network", "busy", image,
                               "sh", "-c", IDLE], stdout=subprocess.DEVNULL)
             for n in names]
    assert [p.wait(60) for p in procs] == [0] * 4
    ips = {n: ip_of(n, "busy") for n in names}
    script = "; ".join(f"nslookup -type=a {n} | tail -n +3" for n in names)
    for n in names:
        out = sh(n, script)
        assert [line.split()[-1] for line in out.splitlines()
                if line.startswith("Address")] == [ips[m] for m in names], out


def test_a_container_restarted_by_its_policy_answers_and_is_known_again(image: str) -> None:
    berth("network", "create", "--subnet", "10.177.0.0/24", "net3")
    berth("run", "-d", "--name", "peer", "--network", "net3", image, "sh", "-c", IDLE)
    berth("run", "-d", "--name", "flaky", "--network", "net3", "--restart", "on-failure:2",
          image, "sh", "-c", f"[ -f /once ] || {{ touch /once; exit 3; }}; {IDLE}")
    from berth.store.db import Database
    deadline = time.monotonic() + 20
    with Database(os.environ["BERTH_ROOT"]) as db:  # inspect has no RestartCount yet
        while db.read("SELECT restart_count, status FROM containers WHERE name = 'flaky'") \
                != [(1, "running")]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert resolves("peer", "flaky") == ip_of("flaky", "net3")
    assert resolves("flaky", "peer") == ip_of("peer", "net3")


def test_connect_and_disconnect_change_who_resolves_whom(image: str) -> None:
    """A running container connected to a second network: its peers there resolve it (on
    that network's address) and it resolves them; disconnected, neither any more."""
    berth("network", "create", "--subnet", "10.173.0.0/24", "left")
    berth("network", "create", "--subnet", "10.174.0.0/24", "right")
    berth("run", "-d", "--name", "lhs", "--network", "left", image, "sh", "-c", IDLE)
    berth("run", "-d", "--name", "rhs", "--network", "right", image, "sh", "-c", IDLE)
    assert resolves("lhs", "rhs") is None
    berth("network", "connect", "--alias", "bridgehead", "left", "rhs")
    assert resolves("lhs", "rhs") == ip_of("rhs", "left")
    assert resolves("lhs", "bridgehead") == ip_of("rhs", "left")
    assert resolves("rhs", "lhs") == ip_of("lhs", "left")  # its own server looks there too
    assert resolves("rhs", "rhs") == ip_of("rhs", "right")  # its first network first
    berth("network", "disconnect", "left", "rhs")
    assert resolves("lhs", "rhs") is None and resolves("lhs", "bridgehead") is None
    assert resolves("rhs", "lhs") is None
    berth("rm", "-f", "lhs", "rhs")
