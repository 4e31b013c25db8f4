"""The embedded DNS's codec and tables (engine/_dnsd.py, engine/dns.py's table text): queries
built byte by byte as RFC 1035 lays them out, answers read back the same way; hostile packets
get FORMERR or are dropped, never an exception."""

from __future__ import annotations

import os
import struct

import pytest

from berth.engine import _dnsd
from berth.engine.dns import RESOLV_CONF, table_lines, wants_dns

A, PTR, AAAA, MX = 1, 12, 28, 15

TABLE = _dnsd.parse_table(
    "network front\n"
    "10.1.0.2 srv db Primary 0123456789ab 0123456789ab\n"
    "10.1.0.3 cli 89abcdef0123 cli-host\n"
    "10.1.0.4 worker1 pool fedcba987654\n"
    "10.1.0.5 worker2 pool 111111111111\n")
BACK = _dnsd.parse_table("network back\n10.2.0.2 srv 222222222222\n10.2.0.3 only 333333333333\n")


def name(text: str) -> bytes:
    return b"".join(bytes((len(x),)) + x.encode() for x in text.split(".") if x) + b"\0"


def query(qname: str | bytes, qtype: int = A, *, qid: int = 0x1234, flags: int = 0x0100,
          qdcount: int = 1, qclass: int = 1, extra: bytes = b"") -> bytes:
    q = qname if isinstance(qname, bytes) else name(qname)
    return (struct.pack(">HHHHHH", qid, flags, qdcount, 0, 0, 1 if extra else 0) + q
            + struct.pack(">HH", qtype, qclass) + extra)


def parse(reply: bytes) -> dict:
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", reply[:12])
    out = {"id": qid, "qr": flags >> 15, "opcode": (flags >> 11) & 15, "aa": (flags >> 10) & 1,
           "tc": (flags >> 9) & 1, "rd": (flags >> 8) & 1, "rcode": flags & 15, "qd": qd,
           "an": an, "answers": []}
    pos = 12
    if qd:
        labels, pos = _dnsd._read_name(reply, pos)
        out["question"] = (b".".join(labels).decode("latin-1"),) + struct.unpack(">HH",
                                                                         reply[pos:pos + 4])
        pos += 4
    for _ in range(an):
        labels, pos = _dnsd._read_name(reply, pos)
        rtype, rclass, ttl, rdlen = struct.unpack(">HHIH", reply[pos:pos + 10])
        rdata = reply[pos + 10:pos + 10 + rdlen]
        pos += 10 + rdlen
        if rtype == A:
            value = ".".join(str(b) for b in rdata)
        else:
            value = b".".join(_dnsd._read_name(reply, pos - rdlen)[0]).decode()
        out["answers"].append((b".".join(labels).decode("latin-1"), rtype, rclass, ttl, value))
    assert pos == len(reply)
    return out


def ask(qname: str, qtype: int = A, tables: list | None = None) -> dict:
    reply = _dnsd.answer(query(qname, qtype), [TABLE] if tables is None else tables)
    assert reply is not None
    return parse(reply)


def test_a_record_by_name_alias_and_short_id() -> None:
    for q in ("srv", "db", "primary", "PRIMARY", "Srv.", "0123456789ab", "srv.front",
              "cli-host"):
        r = ask(q)
        want = "10.1.0.3" if q == "cli-host" else "10.1.0.2"
        assert (r["qr"], r["aa"], r["rd"], r["rcode"], r["id"]) == (1, 1, 1, 0, 0x1234), q
        assert r["question"] == (q.rstrip("."), A, 1)  # the question as asked (its case kept)
        assert [(a[1:]) for a in r["answers"]] == [(A, 1, 600, want)], q
        assert r["answers"][0][0] == q.rstrip(".")


def test_answer_points_back_at_the_question() -> None:
    reply = _dnsd.answer(query("srv"), [TABLE])
    assert reply is not None
    assert reply[12 + len(name("srv")) + 4:][:2] == b"\xc0\x0c"


def test_an_alias_shared_by_two_containers_gives_both() -> None:
    assert [a[4] for a in ask("pool")["answers"]] == ["10.1.0.4", "10.1.0.5"]


def test_unknown_names_are_nxdomain_never_forwarded() -> None:
    for q in ("nosuch", "example.com", "srv.back", "srv.front.x", "."):
        r = ask(q)
        assert (r["rcode"], r["an"], r["qd"]) == (3, 0, 1), q


def test_aaaa_and_other_types_of_a_known_name_no_error_no_answer() -> None:
    for t in (AAAA, MX):
        r = ask("srv", t)
        assert (r["rcode"], r["an"]) == (0, 0)
    assert ask("nosuch", AAAA)["rcode"] == 3


def test_networks_in_order_and_by_name() -> None:
    assert ask("srv", tables=[BACK, TABLE])["answers"][0][4] == "10.2.0.2"
    assert ask("srv", tables=[TABLE, BACK])["answers"][0][4] == "10.1.0.2"
    assert ask("srv.back", tables=[TABLE, BACK])["answers"][0][4] == "10.2.0.2"
    assert ask("only", tables=[TABLE, BACK])["answers"][0][4] == "10.2.0.3"
    assert ask("only", tables=[TABLE])["rcode"] == 3
    assert ask("srv", tables=[])["rcode"] == 3


def test_ptr_of_a_known_address() -> None:
    r = ask("2.0.1.10.in-addr.arpa", PTR)
    assert r["rcode"] == 0 and r["answers"] == [("2.0.1.10.in-addr.arpa", PTR, 1, 600,
                                                 "srv.front")]
    assert ask("9.0.1.10.in-addr.arpa", PTR)["rcode"] == 3
    assert ask("1.10.in-addr.arpa", PTR)["rcode"] == 3
    long = _dnsd.parse_table("network n\n10.3.0.2 " + "x" * 70 + "\n")
    assert ask("2.0.3.10.in-addr.arpa", PTR, [long])["rcode"] == 2  # no label over 63 bytes


def test_edns_opt_record_is_ignored() -> None:
    opt = b"\0" + struct.pack(">HHIH", 41, 4096, 0, 0)
    reply = _dnsd.answer(query("srv", extra=opt), [TABLE])
    assert reply is not None and parse(reply)["answers"][0][4] == "10.1.0.2"


def test_compression_loops_and_forward_pointers_are_formerr() -> None:
    loop = query(b"\x03srv\xc0\x0c")  # "srv" then a pointer back to its own start
    r = parse(_dnsd.answer(loop, [TABLE]))
    assert r["rcode"] == 1 and r["qd"] == 0
    for q in (b"\xc0\x0c", b"\xc0\x20", b"\x03srv\xc0"):  # itself, forward, cut short
        assert parse(_dnsd.answer(query(q), [TABLE]))["rcode"] == 1
    # backwards into the header: read as labels there, whatever they say; an answer anyway
    assert parse(_dnsd.answer(query(b"\xc0\x04", qid=0x0000), [TABLE]))["rcode"] in (1, 3)


@pytest.mark.parametrize("packet", [
    b"",
    b"\x12",
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00",  # 11 bytes
    query("srv", flags=0x8100),  # a response
])
def test_dropped(packet: bytes) -> None:
    assert _dnsd.answer(packet, [TABLE]) is None


@pytest.mark.parametrize("packet,rcode", [
    (query("srv", qdcount=0), 1),
    (query("srv", qdcount=2), 1),
    (query("srv")[:-2], 1),  # no class
    (query("srv")[:14], 1),  # name cut short
    (query(b"\x40" + b"a" * 64 + b"\0"), 1),  # label length 64: a reserved type
    (query(b"\x80abc\0"), 1),
    (query(b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\0"), 1),  # 320 bytes
    (query("srv", flags=0x2100), 4),  # opcode UPDATE... STATUS (2)
    (query("srv", flags=0x7900), 4),  # opcode 15
    (query("srv", qclass=3), 5),  # CHAOS
])
def test_bad_queries_get_an_error(packet: bytes, rcode: int) -> None:
    reply = _dnsd.answer(packet, [TABLE])
    assert reply is not None
    r = parse(reply)
    assert (r["qr"], r["rcode"], r["an"], r["id"]) == (1, rcode, 0, 0x1234)


def test_random_packets_never_raise() -> None:
    import random
    rnd = random.Random(6)
    base = query("srv.front")
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 6)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        data = bytes(data[:rnd.randint(0, len(data))]) if rnd.random() < 0.3 else bytes(data)
        reply = _dnsd.answer(data, [TABLE])
        if reply is not None:
            parse(reply)
    for _ in range(2000):
        _dnsd.answer(os.urandom(rnd.randint(0, 80)), [TABLE])


def test_long_answers_are_truncated_over_udp_not_tcp() -> None:
    many = _dnsd.parse_table("network n\n" + "".join(f"10.0.{i // 250}.{i % 250 + 1} c{i} x\n"
                                                     for i in range(60)))
    r = parse(_dnsd.answer(query("x"), [many]))
    assert (r["tc"], r["an"], r["rcode"]) == (1, 0, 0)
    r = parse(_dnsd.answer(query("x"), [many], 65535))
    assert (r["tc"], r["an"]) == (0, 60)


def test_table_lines() -> None:
    text = table_lines("front", [
        ("0123456789abcdef", "srv", "10.1.0.2", ["db", "bad alias", "srv"], "0123456789ab"),
        ("fedcba9876543210", "gone", "", [], "h"),
    ])
    assert text == "network front\n10.1.0.2 srv db 0123456789ab\n"
    t = _dnsd.parse_table(text)
    assert t.network == "front" and t.names["db"] == ["10.1.0.2"]
    assert t.ptr == {"10.1.0.2": "srv"}


def test_tables_reread_only_when_changed(tmp_path) -> None:
    p = tmp_path / "net"
    index = tmp_path / "index"
    tables = _dnsd.Tables(str(index))
    assert tables.current() == []
    index.write_text(f"{p}\n{tmp_path / 'missing'}\n")
    assert tables.current() == []
    p.write_text("network n\n10.0.0.2 aa\n")
    [t] = tables.current()
    assert tables.current()[0] is t
    tmp = tmp_path / "net.tmp"
    tmp.write_text("network n\n10.0.0.3 bb\n")
    os.rename(tmp, p)
    [t2] = tables.current()
    assert t2 is not t and t2.names == {"bb": ["10.0.0.3"]}
    q = tmp_path / "other"
    q.write_text("network o\n10.9.0.2 cc\n")
    index.write_text(f"{q}\n{p}\n")  # connected to another network, first in its order
    assert [t.network for t in tables.current()] == ["o", "n"]


def test_which_networks_have_dns() -> None:
    assert wants_dns("bridge", "front") and not wants_dns("bridge", "bridge")
    assert not wants_dns("host", "host") and not wants_dns("none", "none")
    assert "nameserver 127.0.0.11\n" in RESOLV_CONF and "options ndots:0\n" in RESOLV_CONF
