"""engine/ports.py, the pure part: docker's -p/--expose grammar and what port/ps/inspect show."""

from __future__ import annotations

import pytest

from berth.engine.ports import (
    Binding, _stale_chains, parse_expose, parse_publish, plan_bindings, port_bindings_doc, port_lines,
    ports_doc, ps_ports, record)
from berth.errors import InvalidArgument


@pytest.mark.parametrize("spec, want", [
    ("80", [Binding("", "", 80, "tcp")]),
    ("8080:80", [Binding("", "8080", 80, "tcp")]),
    ("127.0.0.1:8080:80/udp", [Binding("127.0.0.1", "8080", 80, "udp")]),
    ("127.0.0.1::80", [Binding("127.0.0.1", "", 80, "tcp")]),
    ("0:80", [Binding("", "", 80, "tcp")]),
    ("80/TCP", [Binding("", "", 80, "tcp")]),
    ("8000-8001:80-81", [Binding("", "8000", 80, "tcp"), Binding("", "8001", 81, "tcp")]),
    ("8000-8010:80", [Binding("", "8000-8010", 80, "tcp")]),
    ("80-81", [Binding("", "", 80, "tcp"), Binding("", "", 81, "tcp")]),
    ("65535:1", [Binding("", "65535", 1, "tcp")]),
])
def test_parse_publish(spec: str, want: list[Binding]) -> None:
    assert parse_publish(spec) == want


@pytest.mark.parametrize("spec, words", [
    ("", "no port specified"), ("80:", "no port specified"),
    ("0", "invalid containerPort: 0"), ("65536", "invalid containerPort: 65536"),
    ("65536:80", "invalid hostPort: 65536"), ("a:80", "invalid hostPort: a"),
    ("82-80", "invalid containerPort: 82-80"), ("[::1]:80:80", "invalid IP address"),
    ("300.1.1.1:80:80", "invalid IP address: 300.1.1.1"), ("80/sctp", "invalid proto: sctp"),
    ("8000-8001:80-82", "invalid ranges specified for container and host Ports: 80-82 and "
     "8000-8001"),
])
def test_bad_publish(spec: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("[", r"\[")):
        parse_publish(spec)


def test_expose_and_publish_all() -> None:
    assert parse_expose("7000-7002/udp") == ["7000/udp", "7001/udp", "7002/udp"]
    with pytest.raises(InvalidArgument):
        parse_expose("0")
    bindings, exposed = plan_bindings(["127.0.0.1:9000:81"], ["90"], {"80/tcp": {}, "81/tcp": {}},
                                      True)
    assert bindings == [Binding("127.0.0.1", "9000", 81, "tcp"),
                        Binding("", "", 80, "tcp", auto=True), Binding("", "", 90, "tcp",
                                                                        auto=True)]
    assert exposed == ["80/tcp", "81/tcp", "90/tcp"]
    assert port_bindings_doc(record(bindings)) == {
        "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}]}
    assert plan_bindings([], ["90"], {}, False) == ([], ["90/tcp"])


def test_what_users_see() -> None:
    bound = [{"host_ip": "", "host": 8001, "port": 81, "proto": "tcp"},
             {"host_ip": "", "host": 8000, "port": 80, "proto": "tcp"},
             {"host_ip": "127.0.0.1", "host": 5353, "port": 53, "proto": "udp"}]
    exposed = ["53/udp", "80/tcp", "81/tcp", "443/tcp", "444/tcp"]
    assert port_lines(bound) == ["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8000",
                                 "81/tcp -> 0.0.0.0:8001"]
    assert port_lines(bound, "80") == ["0.0.0.0:8000"]
    assert port_lines(bound, "53/udp") == ["127.0.0.1:5353"]
    assert port_lines(bound, "53") == []
    assert ps_ports(exposed, bound) == ("0.0.0.0:8000-8001->80-81/tcp, "
                                        "127.0.0.1:5353->53/udp, 443-444/tcp")
    assert ps_ports(exposed, None) == "53/udp, 80-81/tcp, 443-444/tcp"
    assert ports_doc(exposed, bound)["443/tcp"] is None
    assert ports_doc(exposed, bound)["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8000"}]
    assert ports_doc(exposed, None) == {}


def test_stale_chains() -> None:
    listing = """table ip berth {
	chain pub-aaaaaaaaaaaa {
		ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.0.0.2:80
	}

	chain pub-bbbbbbbbbbbb {
		tcp dport 8081 dnat to 10.0.0.3:80
		udp dport 8080 dnat to 10.0.0.3:80
	}
}
"""
    def b(ip: str, port: int, proto: str = "tcp") -> dict:
        return {"host_ip": ip, "host": port, "port": 80, "proto": proto}
    assert _stale_chains(listing, [b("", 8080)]) == {"pub-aaaaaaaaaaaa"}
    assert _stale_chains(listing, [b("127.0.0.2", 8080)]) == set()
    assert _stale_chains(listing, [b("127.0.0.1", 8080)]) == {"pub-aaaaaaaaaaaa"}
    assert _stale_chains(listing, [b("127.0.0.5", 8081)]) == {"pub-bbbbbbbbbbbb"}
    assert _stale_chains(listing, [b("", 8080, "udp")]) == {"pub-bbbbbbbbbbbb"}
    assert _stale_chains(listing, [b("", 9999)]) == set()
