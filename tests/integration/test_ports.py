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
    berth("rm", "web")
