"""The pure parts of engine/networks.py: subnets, gateways, the default pools, IPAM's next
address, names, and the firewall table (drops, never NATs)."""

from __future__ import annotations

import ipaddress

import pytest

from berth.errors import InvalidArgument, ResourceLimit
from berth.engine import networks as n


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_parse_subnet() -> None:
    assert n.parse_subnet("10.1.0.0/16") == net("10.1.0.0/16")
    for bad, why in [("10.1.0.0", "invalid CIDR"), ("x/8", "invalid CIDR"),
                     ("10.1.2.3/16", "it should be 10.1.0.0/16"), ("fd00::/64", "IPv4 only"),
                     ("10.0.0.0/31", "too small")]:
        with pytest.raises(InvalidArgument, match=why):
            n.parse_subnet(bad)


def test_gateway() -> None:
    s = net("10.1.0.0/24")
    assert str(n.check_gateway(s, "")) == "10.1.0.1"
    assert str(n.check_gateway(s, "10.1.0.254")) == "10.1.0.254"
    for bad in ("10.2.0.1", "10.1.0.0", "10.1.0.255"):
        with pytest.raises(InvalidArgument, match="no matching subnet for gateway"):
            n.check_gateway(s, bad)
    with pytest.raises(InvalidArgument, match="invalid gateway"):
        n.check_gateway(s, "nope")


def test_choose_subnet_skips_what_is_taken() -> None:
    assert n.choose_subnet([]) == net("172.17.0.0/16")
    assert n.choose_subnet([net("172.17.5.0/24"), net("172.18.0.0/16")]) == net("172.19.0.0/16")
    assert n.choose_subnet([net("172.16.0.0/12")]) == net("192.168.0.0/20")
    with pytest.raises(ResourceLimit):
        n.choose_subnet([net("172.16.0.0/12"), net("192.168.0.0/16")])


def test_next_free_lowest_not_used_not_gateway() -> None:
    assert n.next_free("10.0.0.0/29", "10.0.0.1", []) == "10.0.0.2"
    assert n.next_free("10.0.0.0/29", "10.0.0.1", ["10.0.0.2", "10.0.0.4"]) == "10.0.0.3"
    assert n.next_free("10.0.0.0/29", "10.0.0.6", ["10.0.0.1"]) == "10.0.0.2"
    full = [f"10.0.0.{i}" for i in range(2, 7)]
    assert n.next_free("10.0.0.0/29", "10.0.0.1", full) is None


def test_names_and_labels() -> None:
    assert n.check_name("my-net.1_x") == "my-net.1_x"
    for bad in ("", "-x", "a/b", "a b"):
        with pytest.raises(InvalidArgument):
            n.check_name(bad)
    assert n.labels_match({"a": "1"}, ["a", "a=1"]) and not n.labels_match({"a": "1"}, ["a=2"])
    assert n.labels_match({"a": "1"}, ["b"], negate=True)


def test_firewall_table_drops_and_never_nats() -> None:
    text = n.firewall_script()
    assert "hook forward" in text and "iifname . oifname @same accept" in text
    assert "iifname @bridges counter drop" in text
    assert "nat" not in text and "masquerade" not in text and "snat" not in text


def test_endpoint_veth_names_fit_ifnamsiz() -> None:
    ep = n.Endpoint(n.Network("f" * 64, "x", "bridge", "10.0.0.0/24", "10.0.0.1", False, {},
                              0), 3, "", False)
    assert len(ep.host_veth("a" * 64)) <= 15 and len(ep.network.bridge) <= 15
