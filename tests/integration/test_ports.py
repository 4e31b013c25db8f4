"""Published ports on the real kernel: busybox httpd in a container, reached from this machine
over loopback and from another container through its gateway (an address of this machine);
`berth port`, `ps`, `inspect`; the rules go when the container stops; bad input. Nothing is
sent anywhere but loopback and addresses of the containers and bridges the test made."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time

import pytest

from helpers.cli import berth

HTTPD = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"


def fetch(host: str, port: int, wait: int = 5) -> str:
    """An HTTP GET from inside a container (busybox nc; its wget needs a resolver)."""
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w {wait} {host} {port}"


def nft_table() -> str:
    r = subprocess.run(["nft", "list", "table", "ip", "berth"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port: int, host: str = "127.0.0.1", timeout: float = 5) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def get_when_up(port: int, host: str = "127.0.0.1") -> tuple[int, str]:
    deadline = time.monotonic() + 10
    while True:
        try:
            return get(port, host)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_publish_on_loopback_and_stop_removes_the_rule(image: str) -> None:
    port = free_port()
    berth("run", "-d", "--name", "web", "--hostname", "web", "--network", "bridge",
          "-p", f"127.0.0.1:{port}:80", image, "sh", "-c", HTTPD)
    assert get_when_up(port) == (200, "hello-web\n")
    assert berth("port", "web").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert berth("port", "web", "80").stdout == f"127.0.0.1:{port}\n"
    assert berth("port", "web", "80/tcp").stdout == f"127.0.0.1:{port}\n"
    r = berth("port", "web", "81", check=False)
    assert r.returncode != 0 and "No public port '81/tcp' published for web" in r.stderr
    assert f"127.0.0.1:{port}->80/tcp" in berth("ps").stdout
    doc = json.loads(berth("inspect", "web").stdout)[0]
    assert doc["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                            "HostPort": str(port)}]}
    assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                             "HostPort": str(port)}]}
    assert f"dport {port} dnat to" in nft_table()
    berth("stop", "-t", "1", "web")
    assert f"dport {port}" not in nft_table()
    with pytest.raises(OSError):
        get(port)
    assert berth("port", "web").stdout == ""
    doc = json.loads(berth("inspect", "web").stdout)[0]
    assert doc["NetworkSettings"]["Ports"] == {}
    berth("start", "web")  # published again, on the same port
    assert get_when_up(port) == (200, "hello-web\n")
    assert nft_table().count(f"dport {port} dnat") == 1
    berth("rm", "-f", "web")
    assert f"dport {port}" not in nft_table()


def test_any_free_port_on_a_user_network_and_from_other_containers(image: str) -> None:
    """`-p 80` takes a free port of the ephemeral range; other containers reach it through
    their gateway, on the same network and on another one (routed by this machine)."""
    berth("network", "create", "--subnet", "10.241.0.0/24", "front")
    berth("network", "create", "--subnet", "10.242.0.0/24", "back")
    berth("run", "-d", "--name", "web", "--hostname", "web", "--network", "front", "-p", "80",
          image, "sh", "-c", HTTPD)
    line = berth("port", "web").stdout
    assert line.startswith("80/tcp -> 0.0.0.0:"), line
    port = int(line.strip().rsplit(":", 1)[1])
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert lo <= port <= hi
    assert get_when_up(port) == (200, "hello-web\n")
    assert f"0.0.0.0:{port}->80/tcp" in berth("ps").stdout
    for net, gw in (("front", "10.241.0.1"), ("back", "10.242.0.1")):
        r = berth("run", "--rm", "--network", net, image, "sh", "-c", fetch(gw, port),
                  check=False)
        assert r.returncode == 0 and r.stdout.startswith("HTTP/1.1 200 OK") and \
            r.stdout.endswith("\nhello-web\n"), (net, r.stdout, r.stderr)
    # publishing opens no path to the container itself from another network
    r = berth("run", "--rm", "--network", "back", image, "sh", "-c", fetch("10.241.0.2", 80, 2),
              check=False)
    assert r.returncode != 0 and "hello-web" not in r.stdout
    berth("rm", "-f", "web")
    assert f"dport {port}" not in nft_table()
    berth("network", "rm", "front", "back")


def test_publish_all_exposed_and_ranges(image: str) -> None:
    base = free_port()
    berth("run", "--name", "base", image, "true")
    berth("commit", "-c", "EXPOSE 80", "base", "bb:exposed")  # the image's ExposedPorts
    berth("rm", "base")
    assert berth("ps", "-a").stdout.count("\n") == 1
    berth("run", "-d", "--name", "multi", "--network", "bridge", "--expose", "7000-7001/udp",
          "-P", "-p", f"127.0.0.1:{base}:81", "bb:exposed", "sh", "-c", HTTPD)
    assert berth("ps", "--format", "{{.Ports}}").stdout.count("0.0.0.0:") == 3
    lines = berth("port", "multi").stdout.splitlines()
    assert len(lines) == 4
    assert f"81/tcp -> 127.0.0.1:{base}" in lines
    assert any(x.startswith("80/tcp -> 0.0.0.0:") for x in lines)
    assert sum(x.startswith(("7000/udp -> 0.0.0.0:", "7001/udp -> 0.0.0.0:")) for x in lines) == 2
    doc = json.loads(berth("inspect", "multi").stdout)[0]
    assert set(doc["Config"]["ExposedPorts"]) == {"80/tcp", "81/tcp", "7000/udp", "7001/udp"}
    assert doc["HostConfig"]["PublishAllPorts"] is True
    assert doc["HostConfig"]["PortBindings"] == {"81/tcp": [{"HostIp": "127.0.0.1",
                                                             "HostPort": str(base)}]}
    port80 = int(next(x for x in lines if x.startswith("80/tcp")).rsplit(":", 1)[1])
    assert get_when_up(port80)[0] == 200
    berth("rm", "-f", "multi")
    # a range maps one to one; a host range for one port takes one of them
    berth("create", "--name", "ranged", "--network", "bridge", "-p", "8000-8002:80-82",
          "-p", "127.0.0.1:9000-9005:90/udp", image)
    doc = json.loads(berth("inspect", "ranged").stdout)[0]
    assert doc["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8000"}],
        "81/tcp": [{"HostIp": "", "HostPort": "8001"}],
        "82/tcp": [{"HostIp": "", "HostPort": "8002"}],
        "90/udp": [{"HostIp": "127.0.0.1", "HostPort": "9000-9005"}]}
    assert doc["NetworkSettings"]["Ports"] == {}
    berth("rm", "ranged")


@pytest.mark.parametrize("spec, words", [
    ("80:", "no port specified"),
    ("abc", "invalid containerPort: abc"),
    ("0", "invalid containerPort: 0"),
    ("65536", "invalid containerPort: 65536"),
    ("65536:80", "invalid hostPort: 65536"),
    ("x:80", "invalid hostPort: x"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("80/sctpx", "invalid proto: sctpx"),
    ("8000-8001:80-82", "invalid ranges specified for container and host Ports"),
])
def test_bad_publish_specs(image: str, spec: str, words: str) -> None:
    r = berth("run", "-d", "--name", "bad", "--network", "bridge", "-p", spec, image,
              check=False)
    assert r.returncode == 125 and words in r.stderr, r.stderr
    assert berth("ps", "-aq").stdout == ""


def test_host_port_in_use(image: str) -> None:
    """A port a host process listens on, or another container publishes: the run fails with
    docker's words, and leaves neither a container nor a rule."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        r = berth("run", "-d", "--name", "clash", "--network", "bridge", "-p",
                  f"{port}:80", image, "sh", "-c", HTTPD, check=False)
        assert r.returncode == 125 and "address already in use" in r.stderr, r.stderr
        assert berth("ps", "-aq").stdout == ""
        assert f"dport {port}" not in nft_table()
    finally:
        listener.close()
    berth("run", "-d", "--name", "first", "--network", "bridge", "-p", f"{port}:80", image,
          "sh", "-c", HTTPD)
    r = berth("run", "-d", "--name", "second", "--network", "bridge", "-p",
              f"127.0.0.1:{port}:80", image, "sh", "-c", HTTPD, check=False)
    assert r.returncode == 125 and \
        f"Bind for 127.0.0.1:{port} failed: port is already allocated" in r.stderr, r.stderr
    # a created container whose start fails stays created, with nothing published
    berth("create", "--name", "third", "--network", "bridge", "-p", f"{port}:80", image)
    r = berth("start", "third", check=False)
    assert r.returncode != 0 and "port is already allocated" in r.stderr
    assert berth("ps", "-a", "--filter", "name=third", "--format",
                 "{{.Status}}|{{.Ports}}").stdout == "Created|\n"
    # while the port is held nobody else binds it
    s = socket.socket()
    with pytest.raises(OSError):
        s.bind(("0.0.0.0", port))
    s.close()
    assert nft_table().count(f"dport {port} dnat") == 1
    berth("rm", "-f", "first", "third")
    assert f"dport {port}" not in nft_table()


@pytest.mark.parametrize("network", ["host", "none"])
def test_ports_discarded_on_host_and_none(image: str, network: str) -> None:
    r = berth("create", "--name", "cc", "--network", network, "-p", "8080:80", image)
    assert f"WARNING: Published ports are discarded when using {network} network mode" \
        in r.stderr
    doc = json.loads(berth("inspect", "cc").stdout)[0]
    assert doc["HostConfig"]["PortBindings"] == {}
    berth("rm", "cc")


def test_load_through_a_published_port(image: str) -> None:
    """20,000 requests over 50 concurrent clients, each on a fresh connection (busybox httpd
    closes every connection), all answered."""
    port = free_port()
    berth("run", "-d", "--name", "web", "--hostname", "web", "--network", "bridge",
          "-p", f"127.0.0.1:{port}:80", image, "sh", "-c", HTTPD)
    get_when_up(port)
    total, workers = 20_000, 50
    ok = [0] * workers
    errors: list[str] = []

    def client(n: int) -> None:
        for _ in range(total // workers):
            try:
                status, body = get(port)
                if status == 200 and body == "hello-web\n":
                    ok[n] += 1
                else:
                    errors.append(f"{status} {body!r}")
            except OSError as e:
                errors.append(repr(e))
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert sum(ok) == total, (errors[:5], len(errors))
    print(f"{total} requests in {elapsed:.1f}s: {total / elapsed:.0f}/s")
    berth("rm", "-f", "web")


def test_host_ip_not_of_this_machine(image: str) -> None:
    """Only bound, never sent to: TEST-NET-1 is no address of this machine."""
    r = berth("run", "-d", "--name", "far", "--network", "bridge", "-p", "192.0.2.1:8080:80",
              image, "sh", "-c", HTTPD, check=False)
    assert r.returncode == 125 and "cannot assign requested address" in r.stderr, r.stderr
    assert berth("ps", "-aq").stdout == ""
    assert "dport 8080" not in nft_table()


def monitor_pid(cid: str) -> int:
    """The pid of the container's bare monitor (_pump.py, after the monitor's grace period)."""
    import os
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
                except OSError:
                    continue
                if argv[0] == b"berth-monitor" and cid.encode() in argv:
                    return int(p)
        time.sleep(0.05)
    raise AssertionError(f"no monitor for {cid}")


def test_a_dead_monitors_rules_give_way(image: str) -> None:
    """A monitor killed with its container's port: the port is free again (the socket died
    with it); the next container to publish it replaces the stale rule, and rm clears it."""
    import os
    import signal
    port = free_port()
    old = berth("run", "-d", "--name", "old", "--hostname", "old", "--network", "bridge", "-p",
                f"127.0.0.1:{port}:80", image, "sh", "-c", HTTPD).stdout.strip()
    assert get_when_up(port) == (200, "hello-old\n")
    os.kill(monitor_pid(old), signal.SIGKILL)
    time.sleep(0.5)
    berth("run", "-d", "--name", "new", "--hostname", "new", "--network", "bridge", "-p",
          f"127.0.0.1:{port}:80", image, "sh", "-c", HTTPD)
    assert get_when_up(port) == (200, "hello-new\n")
    assert nft_table().count(f"dport {port} dnat") == 1
    berth("rm", "-f", "old", "new")
    assert f"dport {port}" not in nft_table()
