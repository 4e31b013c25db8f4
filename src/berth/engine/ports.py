"""Published ports: `run -p/-P/--expose`, `berth port`, and the kernel rules behind them.

    pure: parse_publish("127.0.0.1:8080:80/tcp"), parse_expose("8000-8002/udp"),
          plan_bindings(publish, expose, image_exposed, publish_all), port_lines, ps_ports,
          port_bindings_doc, ports_doc
    publish(db, cid) -> held sockets   at start, after the container's network attach
    unpublish(db, cid)                 when it exits (before its network detach), a failed
                                       start, and rm (after a monitor died)
    bridge_up(bridge)                  a new berth bridge: forwarding on while ports are published

Records (in the container's config JSON, no schema change): `ports` — the bindings asked for
(host IP, host port or range or "" for any, container port, protocol), fixed at create, `-P`
included (the image's ExposedPorts and `--expose`, each to any free host port); `exposed` —
what `inspect` shows as Config.ExposedPorts; `ports_bound` — the host ports a running container
holds (a "" or range picks one at each start, as docker does), cleared when it stops.

Mechanism. The host port is reserved as docker does without its userland proxy: berth binds
(without listening) a socket on HOST_IP:PORT and the container's monitor holds it while the
container runs. A port some other process uses (or another berth container, any BERTH_ROOT)
therefore fails the bind, nothing is left behind, and the run fails with docker's words. The
traffic is moved by the kernel (nftables, in berth's table `ip berth`):

  chain publish          reached from nat prerouting (priority dstnat) and nat output
                         (priority -100) for `fib daddr type local`: one `jump pub-<id12>` per
                         publishing container, whose chain holds its
                         `[ip daddr HOST_IP] tcp dport PORT dnat to CONTAINER_IP:PORT` rules;
                         both go when it stops (found by name, deleted by rule handle); a
                         dead monitor's chain goes when another container binds its port
  nat postrouting        `ip saddr 127.0.0.0/8 oifname @bridges masquerade`: the host's own
                         loopback clients reach a container (docker's rule, with
                         `route_localnet=1` on the bridge); `ct status dnat` traffic a bridge
                         sends back to itself is masqueraded too (a container reaching a
                         neighbour through the published port), so replies come back through
                         the host. Neither is outbound NAT: both only ever go out a berth bridge.
  localnet guard         `iifname @bridges ip daddr 127.0.0.0/8 drop` (filter, priority raw):
                         route_localnet must not let a container reach the host's 127.0.0.1
  forward                `iifname @bridges oifname @bridges ct status dnat accept`: a container
                         reaching a published port of another network (routed by the host)
                         passes; everything else berth bridges forward is still dropped, so
                         nothing leaves the machine (nor do other machines reach published
                         ports: see docs/containers.md for opening that on a normal host).

Forwarding between bridges needs `net.ipv4.conf.<bridge>.forwarding=1` on the client's bridge
(IPv4 forwarding is decided by the input device); berth sets it on its bridges while ports are
published (never `ip_forward` or `all.forwarding`); the sysctls go with the bridge.

Raises: InvalidArgument (a bad spec), PortInUse (Conflict: the host port is taken).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from berth.errors import Conflict, InvalidArgument

from .networks import NFT_LOCK, locked, nft

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.store.db import Database

__all__ = ["Binding", "PortInUse", "bridge_up", "parse_expose", "parse_publish", "plan_bindings",
           "port_bindings_doc", "port_lines", "ports_doc", "ps_ports", "publish", "unpublish"]

PROTOS = ("tcp", "udp")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class PortInUse(Conflict):
    pass


@dataclass(frozen=True)
class Binding:
    """One published port as asked for: `host` is "8080", "8000-8010" (any one of them) or ""
    (any free port)."""
    host_ip: str
    host: str
    port: int
    proto: str
    auto: bool = False  # from -P (not in HostConfig.PortBindings)

    @property
    def key(self) -> str:
        return f"{self.port}/{self.proto}"


# --- pure: parsing ---------------------------------------------------------------------------

def _range(text: str, what: str, spec: str, *, zero: bool = False) -> tuple[int, int]:
    m = _RANGE.match(text)
    if not m:
        raise InvalidArgument(f"invalid {what}: {text} (in port specification {spec!r})")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    for p in (lo, hi):
        if p > 65535 or (p == 0 and not zero):
            raise InvalidArgument(f"invalid {what}: {text} (in port specification {spec!r}: a "
                                  f"port is 1-65535)")
    if hi < lo:
        raise InvalidArgument(f"invalid {what}: {text} (in port specification {spec!r}: the "
                              "range ends before it starts)")
    return lo, hi


def _split_proto(text: str, spec: str) -> tuple[str, str]:
    port, slash, proto = text.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid proto: {proto} (in port specification {spec!r}: tcp or "
                              "udp)")
    return port, proto


def parse_publish(spec: str) -> list[Binding]:
    """docker's `-p [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` (nat.ParsePortSpec): ranges on
    both sides of equal length map one to one; a host range for one container port means any
    one of them; no host port (or 0) means any free one. IPv4 host addresses only."""
    if not spec:
        raise InvalidArgument("no port specified: an empty -p value")
    rest, proto = _split_proto(spec, spec)
    parts = rest.rsplit(":", 2)
    if len(parts) == 3:
        host_ip, host, ctr = parts
    elif len(parts) == 2:
        host_ip, (host, ctr) = "", parts
    else:
        host_ip, host, ctr = "", "", parts[0]
    if host_ip:
        if host_ip.startswith("[") or ":" in host_ip:
            raise InvalidArgument(f"invalid IP address: {host_ip} (in port specification "
                                  f"{spec!r}: berth publishes on IPv4 addresses only)")
        try:
            host_ip = str(ipaddress.IPv4Address(host_ip))
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {host_ip} (in port specification "
                                  f"{spec!r})") from None
    if not ctr:
        raise InvalidArgument(f"no port specified: {spec!r} has no container port")
    clo, chi = _range(ctr, "containerPort", spec)
    if not host:
        return [Binding(host_ip, "", p, proto) for p in range(clo, chi + 1)]
    hlo, hi_ = _range(host, "hostPort", spec, zero=True)
    if hlo == 0:
        if hi_ != 0:
            raise InvalidArgument(f"invalid hostPort: {host} (in port specification {spec!r})")
        return [Binding(host_ip, "", p, proto) for p in range(clo, chi + 1)]
    if clo == chi and hi_ > hlo:
        return [Binding(host_ip, f"{hlo}-{hi_}", clo, proto)]
    if hi_ - hlo != chi - clo:
        raise InvalidArgument(f"invalid ranges specified for container and host Ports: {ctr} "
                              f"and {host} (in port specification {spec!r})")
    return [Binding(host_ip, str(hlo + i), clo + i, proto) for i in range(chi - clo + 1)]


def parse_expose(spec: str) -> list[str]:
    """`--expose PORT[-END][/PROTO]` -> ["80/tcp", …]."""
    port, proto = _split_proto(spec, spec)
    lo, hi = _range(port, "range format for --expose", spec)
    return [f"{p}/{proto}" for p in range(lo, hi + 1)]


def _key_sort(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), proto


def plan_bindings(publish: Sequence[str], expose: Sequence[str],
                  image_exposed: Iterable[str], publish_all: bool) -> tuple[list[Binding],
                                                                            list[str]]:
    """What a container publishes and exposes: the `-p` bindings, then (with `-P`) every exposed
    port that no `-p` binds, to any free host port. Exposed: the image's, `--expose`, and every
    published port (docker shows them all in Config.ExposedPorts)."""
    bindings = [b for spec in publish for b in parse_publish(spec)]
    exposed = set()
    for key in image_exposed:  # an image's odd key is skipped, not an error of this run
        try:
            exposed.update(parse_expose(key))
        except InvalidArgument:
            continue
    for spec in expose:
        exposed.update(parse_expose(spec))
    if publish_all:
        bound = {b.key for b in bindings}
        for key in sorted(exposed - bound, key=_key_sort):
            port, _, proto = key.partition("/")
            bindings.append(Binding("", "", int(port), proto, auto=True))
    exposed.update(b.key for b in bindings)
    return bindings, sorted(exposed, key=_key_sort)


# --- pure: what users see ----------------------------------------------------------------------

def port_bindings_doc(ports: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings: as asked for ("" host port when any will do)."""
    out: dict[str, list[dict[str, str]]] = {}
    for b in ports:
        if b.get("auto"):
            continue
        out.setdefault(f"{b['port']}/{b['proto']}", []).append(
            {"HostIp": b["host_ip"], "HostPort": b["host"]})
    return out


def ports_doc(exposed: Sequence[str], bound: Sequence[Mapping[str, Any]] | None,
              ) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports of a running container: every exposed port, null when it is not
    published; {} when the container is not running (docker's)."""
    if bound is None:
        return {}
    out: dict[str, list[dict[str, str]] | None] = {k: None for k in exposed}
    for b in bound:
        key = f"{b['port']}/{b['proto']}"
        entries = out.get(key) or []
        entries.append({"HostIp": b["host_ip"] or "0.0.0.0", "HostPort": str(b["host"])})
        out[key] = entries
    return out


def port_lines(bound: Sequence[Mapping[str, Any]], private: str = "") -> list[str]:
    """`berth port`: `80/tcp -> 0.0.0.0:8080` lines, or `0.0.0.0:8080` for one private port.
    Raises InvalidArgument for a bad PRIVATE_PORT[/PROTO]."""
    items = sorted(bound, key=lambda b: (b["port"], b["proto"], b["host"]))
    if not private:
        return [f"{b['port']}/{b['proto']} -> {b['host_ip'] or '0.0.0.0'}:{b['host']}"
                for b in items]
    port, proto = _split_proto(private, private)
    lo, _ = _range(port, "port", private)
    return [f"{b['host_ip'] or '0.0.0.0'}:{b['host']}" for b in items
            if b["port"] == lo and b["proto"] == proto]


def ps_ports(exposed: Sequence[str], bound: Sequence[Mapping[str, Any]] | None) -> str:
    """The PORTS column: `0.0.0.0:8080->80/tcp, 443/tcp`, consecutive ports folded into ranges
    as docker's DisplayablePorts does (`0.0.0.0:8000-8002->80-82/tcp`)."""
    published = sorted(bound or [], key=lambda b: (b["host_ip"], b["proto"], b["port"]))
    done = {f"{b['port']}/{b['proto']}" for b in published}
    groups: list[list[Any]] = []  # [ip, proto, hlo, hhi, clo, chi]
    for b in published:
        ip, host = b["host_ip"] or "0.0.0.0", int(b["host"])
        g = groups[-1] if groups else None
        if g and g[0] == ip and g[1] == b["proto"] and host == g[3] + 1 and \
                b["port"] == g[5] + 1:
            g[3], g[5] = host, b["port"]
        else:
            groups.append([ip, b["proto"], host, host, b["port"], b["port"]])
    bare: list[list[Any]] = []  # [proto, lo, hi]
    for key in sorted((k for k in exposed if k not in done), key=_key_sort):
        port, _, proto = key.partition("/")
        p = int(port)
        if bare and bare[-1][0] == proto and bare[-1][2] + 1 == p:
            bare[-1][2] = p
        else:
            bare.append([proto, p, p])

    def span(lo: int, hi: int) -> str:
        return str(lo) if lo == hi else f"{lo}-{hi}"
    items = [f"{ip}:{span(hlo, hhi)}->{span(clo, chi)}/{proto}"
             for ip, proto, hlo, hhi, clo, chi in groups]
    items += [f"{span(lo, hi)}/{proto}" for proto, lo, hi in bare]
    return ", ".join(items)


def bindings_from_record(config: Mapping[str, Any]) -> list[Binding]:
    return [Binding(**b) for b in config.get("ports") or []]


def record(bindings: Sequence[Binding]) -> list[dict[str, Any]]:
    return [asdict(b) for b in bindings]


# --- effects: host ports -------------------------------------------------------------------------

def _ephemeral() -> tuple[int, int]:
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _reserve(host_ip: str, port: int, proto: str) -> Any:
    """A bound, not listening, socket on host_ip:port (what docker does without its userland
    proxy): while it is held nobody else on the machine binds the port. No SO_REUSEADDR, so a
    server that sets it cannot share the port either."""
    import socket
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
    try:
        s.bind((host_ip or "0.0.0.0", port))
    except BaseException:
        s.close()
        raise
    return s


def _allocated(port: int, proto: str) -> bool:
    """Whether a berth container (of any BERTH_ROOT) publishes proto/port: a rule says so."""
    listing = nft("list table ip berth\n", check=False).stdout
    return re.search(rf"\b{proto} dport {port} dnat\b", listing) is not None


def _bind_error(b: Binding, port: int, err: OSError) -> Exception:
    where = f"{b.host_ip or '0.0.0.0'}:{port}"
    if err.errno == errno.EADDRINUSE:
        if _allocated(port, b.proto):
            return PortInUse(f"driver failed programming external connectivity: Bind for "
                             f"{where} failed: port is already allocated")
        return PortInUse(f"failed to bind host port for {where}:{b.port}/{b.proto}: address "
                         "already in use")
    if err.errno == errno.EADDRNOTAVAIL:
        return InvalidArgument(f"failed to bind host port for {where}:{b.port}/{b.proto}: "
                               f"cannot assign requested address (is {b.host_ip} an address "
                               "of this machine?)")
    if err.errno == errno.EACCES:
        return PortInUse(f"failed to bind host port for {where}:{b.port}/{b.proto}: "
                         "permission denied")
    return PortInUse(f"failed to bind host port for {where}:{b.port}/{b.proto}: {err}")


def _take(b: Binding, taken: set[tuple[str, int]]) -> tuple[int, Any]:
    """(host port, held socket) for one binding: its port, or the first free one of its range
    (any: the ephemeral range, from a random start, as docker's allocator hands them out)."""
    if b.host and "-" not in b.host:
        port = int(b.host)
        try:
            return port, _reserve(b.host_ip, port, b.proto)
        except OSError as e:
            raise _bind_error(b, port, e) from None
    if b.host:
        lo, hi = (int(x) for x in b.host.split("-"))
        candidates = list(range(lo, hi + 1))
    else:
        lo, hi = _ephemeral()
        start = random.randint(lo, hi)
        candidates = [*range(start, hi + 1), *range(lo, start)]
    for port in candidates:
        if (b.proto, port) in taken:
            continue
        try:
            return port, _reserve(b.host_ip, port, b.proto)
        except OSError:
            continue
    where = f"{b.host_ip or '0.0.0.0'}:{b.host or f'{lo}-{hi}'}"
    raise PortInUse(f"failed to bind host port for {where}:{b.port}/{b.proto}: no free port "
                    "in the range")


# --- effects: nftables -----------------------------------------------------------------------------

def _chain(cid: str) -> str:
    return f"pub-{cid[:12]}"


def _base_script() -> str:
    """The chains publishing needs in the berth table, added once per table."""
    t = "ip berth"
    return (f"add chain {t} publish\n"
            f"add chain {t} nat_prerouting {{ type nat hook prerouting priority dstnat; "
            "policy accept; }\n"
            f"add rule {t} nat_prerouting fib daddr type local jump publish\n"
            f"add chain {t} nat_output {{ type nat hook output priority -100; policy accept; }}\n"
            f"add rule {t} nat_output fib daddr type local jump publish\n"
            f"add chain {t} nat_postrouting {{ type nat hook postrouting priority srcnat; "
            "policy accept; }\n"
            f'add rule {t} nat_postrouting ip saddr 127.0.0.0/8 oifname @bridges masquerade '
            'comment "berth: the host\'s loopback clients of published ports"\n'
            f'add rule {t} nat_postrouting ct status dnat iifname . oifname @same masquerade '
            'comment "berth: a container reaching a neighbour through a published port"\n'
            f"add chain {t} localnet_guard {{ type filter hook prerouting priority raw; "
            "policy accept; }\n"
            f'add rule {t} localnet_guard iifname @bridges ip daddr 127.0.0.0/8 drop '
            'comment "berth: route_localnet is for published ports only"\n'
            f"insert rule {t} forward iifname @bridges oifname @bridges ct status dnat accept\n")


def _ensure_base() -> None:
    if nft("list chain ip berth publish\n", check=False).returncode != 0:
        nft(_base_script())


def _rules(cid: str, ip: str, bound: Sequence[Mapping[str, Any]]) -> str:
    chain = f"ip berth {_chain(cid)}"
    lines = [f"add chain {chain}\n"]
    for b in bound:
        daddr = f"ip daddr {b['host_ip']} " if b["host_ip"] else ""
        lines.append(f"add rule {chain} {daddr}{b['proto']} dport {b['host']} dnat to "
                     f"{ip}:{b['port']}\n")
    lines.append(f"add rule ip berth publish jump {_chain(cid)}\n")
    return "".join(lines)


def _delete_rules(cid: str) -> None:
    """The container's jump (by its rule handle) and its chain, if there."""
    _delete_chain(_chain(cid))


def _stale_chains(listing: str, bound: Sequence[Mapping[str, Any]]) -> set[str]:
    """Chains of `nft list table ip berth` that DNAT a port we just bound: left by a monitor
    that died (a live publisher holds its port's socket, so our bind would have failed)."""
    out = set()
    for m in re.finditer(r"chain (pub-[0-9a-f]{12}) \{(.*?)\}", listing, re.S):
        for b in bound:
            for rule in re.finditer(rf"(?:ip daddr (\S+) )?{b['proto']} dport {b['host']} dnat\b",
                                    m.group(2)):
                daddr = rule.group(1)
                if not b["host_ip"] or not daddr or daddr == b["host_ip"]:  # overlapping
                    out.add(m.group(1))
    return out


def _delete_chain(chain: str) -> None:
    script = "".join(f"delete rule ip berth publish handle {h}\n" for h in re.findall(
        rf"jump {chain}\b.*# handle (\d+)", _handles_listing()))
    if script:
        nft(script, check=False)
    nft(f"flush chain ip berth {chain}\ndelete chain ip berth {chain}\n", check=False)


def _handles_listing() -> str:
    import shutil
    import subprocess
    nft = shutil.which("nft") or "/usr/sbin/nft"
    r = subprocess.run([nft, "-a", "list", "chain", "ip", "berth", "publish"],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def _sysctl(bridge: str, name: str, value: str = "1") -> None:
    path = f"/proc/sys/net/ipv4/conf/{bridge}/{name}"
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass


def _berth_bridges() -> list[str]:
    out = nft("list set ip berth bridges\n", check=False).stdout
    m = re.search(r"elements = \{([^}]*)\}", out, re.S)
    return [n.strip().strip('"') for n in m.group(1).split(",")] if m else []


def bridge_up(bridge: str) -> None:
    """A berth bridge just appeared: while ports are published (the publish chain exists), its
    containers may reach them through the host, which forwards what comes in on it."""
    if nft("list chain ip berth publish\n", check=False).returncode == 0:
        _sysctl(bridge, "forwarding")


# --- effects: publish / unpublish ----------------------------------------------------------------

def publish(db: Database, cid: str) -> list[Any]:
    """Reserve the container's host ports, add its DNAT rules, record what it holds. Returns the
    held sockets (the monitor keeps them while the container runs). Nothing is left when it
    fails."""
    row = db.read("SELECT config FROM containers WHERE id = ?", (cid,))
    bindings = bindings_from_record(json.loads(row[0][0])) if row else []
    if not bindings:
        return []
    eps = db.read("SELECT e.ip, n.id FROM endpoints e JOIN networks n ON n.id = e.network_id "
                  "WHERE e.container_id = ? AND e.ip != '' AND n.driver = 'bridge' ORDER BY "
                  "e.position", (cid,))
    if not eps:
        return []
    ip, nid = eps[0]
    bridge = f"br-{nid[:12]}"
    held: list[Any] = []
    bound: list[dict[str, Any]] = []
    try:
        with locked(NFT_LOCK):
            taken: set[tuple[str, int]] = set()
            for b in bindings:
                port, sock = _take(b, taken)
                held.append(sock)
                taken.add((b.proto, port))
                bound.append({"host_ip": b.host_ip, "host": port, "port": b.port,
                              "proto": b.proto})
            _ensure_base()
            _delete_rules(cid)  # left by a monitor that died
            for stale in _stale_chains(nft("list table ip berth\n").stdout, bound):
                _delete_chain(stale)
            nft(_rules(cid, ip, bound))
            _sysctl(bridge, "route_localnet")
            for br in _berth_bridges():
                _sysctl(br, "forwarding")
        with db.transaction() as tx:
            tx.execute("UPDATE containers SET config = json_set(config, '$.ports_bound', "
                       "json(?)) WHERE id = ?", (json.dumps(bound), cid))
    except BaseException:
        for s in held:
            s.close()
        with _suppress():
            unpublish(db, cid)
        raise
    return held


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def unpublish(db: Database, cid: str) -> None:
    """The container's rules go and its record forgets the host ports it held (the sockets
    close with its monitor)."""
    with locked(NFT_LOCK):
        if nft("list chain ip berth publish\n", check=False).returncode == 0:
            _delete_rules(cid)
    with db.transaction() as tx:
        tx.execute("UPDATE containers SET config = json_remove(config, '$.ports_bound') "
                   "WHERE id = ? AND json_extract(config, '$.ports_bound') IS NOT NULL", (cid,))
