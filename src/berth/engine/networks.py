"""Networks: docker's `bridge`, `host` and `none` drivers, kept on this machine.

    Networks(db)                       the records: create / get / list / inspect / remove / prune
    join(tx, db, cid, network, ip=, aliases=)   at container create: an endpoint row
    attach(db, root, run, cid, pid)    at start (the monitor, after rt.create, before rt.start)
    detach(db, run, cid)               when it exits (the monitor's finish) and on rm
    connect / disconnect               `network connect|disconnect` (live when it runs)
    shared_with                        `--network container:NAME` at create (joined at each
                                       start by engine/sharing.py)
    settings(db, cid, running)         inspect's NetworkSettings
    pure: parse_subnet, choose_subnet, check_gateway, next_free

Records (berth.db v9): `networks` (the predefined bridge, host and none are made the first time
networks are looked at, as docker's daemon makes them at start) and `endpoints` (a container on
a network: its position — eth0, eth1… — its aliases, and its address). IPAM: an address is
handed out when the container starts and given back when it exits, unless it was asked for with
`--ip` (then it is reserved at create and kept until rm, as docker keeps it); a unique index on
(network, address) means no address is ever held twice.

Kernel objects (pyroute2, imported only here and only when a bridge network is in play): a
network's Linux bridge `br-<id12>` (the default network's too) carries the gateway address; it
is created when the first of its containers starts and removed when the last one exits (and when
the network is removed), so nothing stays on the machine while no container runs. Each running
container gets a veth pair per network: `vb<id11><n>` on the bridge, `eth<n>` in the container,
with the address, loopback up, and a default route via the gateway of its first network that is
not `--internal` (an internal network's containers have no default route at all).

Firewall (nftables, `nft`): one table `ip berth`, made when the first berth bridge appears and
deleted with the last one (machine-wide, under /run/lock/berth-nft.lock). Its forward chain
accepts what a bridge forwards to itself (containers of one network) and DROPS everything else
a berth bridge would forward: to other networks and to any address that is not on this machine.
There is no masquerading: containers reach each other and the host, nothing else.

Raises: NoSuchNetwork (NotFound), Conflict, InvalidArgument, ResourceLimit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, ResourceLimit

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

    from berth.store.db import Database

__all__ = ["Network", "Networks", "NoSuchNetwork", "attach", "check_gateway", "choose_subnet",
           "connect", "detach", "disconnect", "join", "next_free", "parse_subnet"]

PREDEFINED = ("bridge", "host", "none")
TABLE = "berth"
NFT_LOCK = "/run/lock/berth-nft.lock"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_COLUMNS = ("id", "name", "driver", "subnet", "gateway", "internal", "labels", "created_ns")
# docker's default address pools: 172.17-31.0.0/16, then 192.168.0-240.0/20
_POOLS = tuple(f"172.{n}.0.0/16" for n in range(17, 32)) + tuple(
    f"192.168.{n}.0/20" for n in range(0, 256, 16))


class NoSuchNetwork(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"network {ref} not found")
        self.ref = ref


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str  # bridge | host | none
    subnet: str
    gateway: str
    internal: bool
    labels: dict[str, str]
    created_ns: int

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def bridge(self) -> str:
        return f"br-{self.id[:12]}"

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED


# --- pure ------------------------------------------------------------------------------------

def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """`--subnet`: an IPv4 CIDR whose host bits are zero, with room for a gateway and a host."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid CIDR address: {text}") from None
    if "/" not in text:
        raise InvalidArgument(f"invalid CIDR address: {text}")
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid subnet {text}: berth networks are IPv4 only")
    if str(net) != text:
        raise InvalidArgument(f"invalid subnet {text}: it should be {net}")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text}: too small (at most /30)")
    return net


def check_gateway(subnet: ipaddress.IPv4Network, text: str) -> ipaddress.IPv4Address:
    """`--gateway`, or the subnet's first address: inside it, neither network nor broadcast."""
    if not text:
        return next(subnet.hosts())
    try:
        gw = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid gateway address {text}") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"no matching subnet for gateway {text}")
    return gw


def overlaps(net: ipaddress.IPv4Network, taken: Iterable[ipaddress.IPv4Network]) -> bool:
    return any(net.overlaps(t) for t in taken)


def choose_subnet(taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """docker's default pools in order: the first that overlaps nothing taken (the host's
    routes and addresses, the other networks)."""
    used = list(taken)
    for pool in _POOLS:
        net = ipaddress.IPv4Network(pool)
        if not overlaps(net, used):
            return net
    raise ResourceLimit("could not find an available, non-overlapping IPv4 address pool "
                        "among the defaults to assign to the network")


def next_free(subnet: str, gateway: str, used: Iterable[str]) -> str | None:
    """The lowest host address of `subnet` that is neither the gateway nor in `used`."""
    taken = {*used, gateway}
    for host in ipaddress.IPv4Network(subnet).hosts():
        if str(host) not in taken:
            return str(host)
    return None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                              "are allowed")
    return name


def labels_match(labels: Mapping[str, str], want: Sequence[str], negate: bool = False) -> bool:
    def one(w: str) -> bool:
        key, eq, value = w.partition("=")
        return key in labels and (not eq or labels[key] == value)
    return not any(one(w) for w in want) if negate else all(one(w) for w in want)


# --- records ---------------------------------------------------------------------------------

def _row(r: Sequence[Any]) -> Network:
    d = dict(zip(_COLUMNS, r))
    d["labels"] = json.loads(d["labels"])
    d["internal"] = bool(d["internal"])
    return Network(**d)


def _host_networks() -> list[ipaddress.IPv4Network]:
    """What this machine routes or is addressed on (not the default route): a new network's
    subnet must overlap none of it."""
    import socket

    from pyroute2 import IPRoute
    out = []
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=socket.AF_INET):
            dst, length = r.get_attr("RTA_DST"), r["dst_len"]
            if dst and length:
                out.append(ipaddress.IPv4Network(f"{dst}/{length}", strict=False))
        for a in ipr.get_addr(family=socket.AF_INET):
            addr = a.get_attr("IFA_ADDRESS")
            if addr and not addr.startswith("127."):
                out.append(ipaddress.IPv4Network(f"{addr}/{a['prefixlen']}", strict=False))
    return out


class Networks:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._defaults = False

    def ensure_defaults(self) -> None:
        """bridge, host and none, as docker's daemon has them (once per database)."""
        if self._defaults:
            return
        have = {r[0] for r in self.db.read(
            "SELECT name FROM networks WHERE name IN ('bridge', 'host', 'none')")}
        if len(have) < 3:
            subnet = gateway = ""
            if "bridge" not in have:
                net = choose_subnet([*self._subnets(), *_host_networks()])
                subnet, gateway = str(net), str(check_gateway(net, ""))
            with self.db.transaction() as tx:
                for name in PREDEFINED:
                    tx.execute("INSERT OR IGNORE INTO networks (id, name, driver, subnet, "
                               "gateway, created_ns) VALUES (?, ?, ?, ?, ?, ?)",
                               (os.urandom(32).hex(), name, name,
                                subnet if name == "bridge" else "",
                                gateway if name == "bridge" else "", time.time_ns()))
        self._defaults = True

    def _subnets(self) -> list[ipaddress.IPv4Network]:
        return [ipaddress.IPv4Network(r[0]) for r in
                self.db.read("SELECT subnet FROM networks WHERE subnet != ''")]

    def list(self) -> list[Network]:
        self.ensure_defaults()
        return [_row(r) for r in self.db.read(
            f"SELECT {', '.join(_COLUMNS)} FROM networks ORDER BY name")]

    def get(self, ref: str) -> Network:
        """By full id, name, or unique id prefix (docker's order)."""
        self.ensure_defaults()
        if not ref:
            raise NoSuchNetwork(ref)
        cols = ", ".join(_COLUMNS)
        rows = self.db.read(f"SELECT {cols} FROM networks WHERE id = ?", (ref,)) or \
            self.db.read(f"SELECT {cols} FROM networks WHERE name = ?", (ref,))
        if not rows and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.read(f"SELECT {cols} FROM networks WHERE substr(id, 1, ?) = ?",
                                (len(ref), ref))
            if len(rows) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(rows)} matches found "
                                      "based on ID prefix)")
        if not rows:
            raise NoSuchNetwork(ref)
        return _row(rows[0])

    def create(self, name: str, *, driver: str = "bridge", subnet: str = "",
               gateway: str = "", internal: bool = False,
               labels: Mapping[str, str] | None = None) -> Network:
        check_name(name)
        self.ensure_defaults()
        if driver in ("host", "none"):
            raise Conflict(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if gateway and not subnet:
            raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
        taken = [*self._subnets(), *_host_networks()]
        if subnet:
            net = parse_subnet(subnet)
            if overlaps(net, taken):
                raise Conflict("invalid pool request: Pool overlaps with other one on this "
                               "address space")
        else:
            net = choose_subnet(taken)
        gw = check_gateway(net, gateway)
        nid = os.urandom(32).hex()
        with self.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"network with name {name} already exists")
            tx.execute("INSERT INTO networks (id, name, driver, subnet, gateway, internal, "
                       "labels, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (nid, name, driver, str(net), str(gw), int(internal),
                        json.dumps(dict(labels or {})), time.time_ns()))
            self.db.record_event("network", "create", nid, {"name": name, "type": driver})
        return self.get(nid)

    def endpoints(self, nid: str) -> list[tuple[str, str, str]]:
        """(container id, container name, address) of the containers on the network."""
        return [tuple(r) for r in self.db.read(
            "SELECT e.container_id, c.name, e.ip FROM endpoints e JOIN containers c "
            "ON c.id = e.container_id WHERE e.network_id = ? ORDER BY c.name", (nid,))]

    def inspect(self, ref: str) -> dict[str, Any]:
        """docker's `network inspect` document."""
        from berth.image.images import rfc3339_nano
        n = self.get(ref)
        containers = {}
        if n.driver == "bridge":
            prefix = ipaddress.IPv4Network(n.subnet).prefixlen
            for cid, cname, ip in self.endpoints(n.id):
                running = self.db.read("SELECT status FROM containers WHERE id = ?", (cid,))
                if ip and running and running[0][0] in ("running", "restarting"):
                    containers[cid] = {"Name": cname, "EndpointID": "", "MacAddress": "",
                                       "IPv4Address": f"{ip}/{prefix}", "IPv6Address": ""}
        config = [{"Subnet": n.subnet, "Gateway": n.gateway}] if n.subnet else []
        options = {"com.docker.network.bridge.name": n.bridge} \
            if n.driver == "bridge" and n.name == "bridge" else {}
        return {"Name": n.name, "Id": n.id, "Created": rfc3339_nano(n.created_ns),
                "Scope": "local", "Driver": n.driver, "EnableIPv4": True, "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None if n.predefined else {},
                         "Config": config},
                "Internal": n.internal, "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
                "Options": options, "Labels": n.labels}

    def remove(self, ref: str) -> str:
        n = self.get(ref)
        if n.predefined:
            raise Conflict(f"{n.name} is a pre-defined network and cannot be removed")
        with self.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM endpoints WHERE network_id = ?", (n.id,)).fetchone():
                raise Conflict(f"error while removing network: network {n.name} id {n.id} "
                               "has active endpoints")
            tx.execute("DELETE FROM networks WHERE id = ?", (n.id,))
            self.db.record_event("network", "destroy", n.id, {"name": n.name, "type": n.driver})
        _remove_bridge(n.bridge)
        return n.name

    def prune(self, *, labels: Sequence[str] = (), not_labels: Sequence[str] = (),
              until_ns: int | None = None, dry_run: bool = False) -> list[str]:
        """User-defined networks no container is on (docker's `network prune`), names sorted."""
        gone = []
        for n in self.list():
            if n.predefined or self.endpoints(n.id):
                continue
            if until_ns is not None and n.created_ns >= until_ns:
                continue
            if labels and not labels_match(n.labels, labels):
                continue
            if not_labels and not labels_match(n.labels, not_labels, negate=True):
                continue
            if dry_run:
                gone.append(n.name)
                continue
            with contextlib.suppress(Conflict, NotFound):
                gone.append(self.remove(n.id))
        return gone


# --- containers on networks -------------------------------------------------------------------

def join(tx: sqlite3.Connection, db: Database, cid: str, network: str, *, ip: str = "",
         aliases: Sequence[str] = ()) -> None:
    """At create, in the container's transaction: its endpoint on `network` (a bridge-driver
    network; none and host need no endpoint). A requested `ip` is reserved now."""
    nets = Networks(db)
    n = nets.get(network)
    if n.driver != "bridge":
        raise InvalidArgument(f"container cannot be connected to network {n.name} "
                              f"(driver {n.driver})")
    if n.name == "bridge" and ip:
        raise InvalidArgument("user specified IP address is supported on user defined "
                              "networks only")
    if n.name == "bridge" and aliases:
        raise InvalidArgument("network-scoped alias is supported only for containers in user "
                              "defined networks")
    if ip:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
        subnet = ipaddress.IPv4Network(n.subnet)
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address) \
                or str(addr) == n.gateway:
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address "
                                  f"{ip}")
        if tx.execute("SELECT 1 FROM endpoints WHERE network_id = ? AND ip = ?",
                      (n.id, ip)).fetchone():
            raise Conflict(f"Address already in use: {ip}")
    if tx.execute("SELECT 1 FROM endpoints WHERE container_id = ? AND network_id = ?",
                  (cid, n.id)).fetchone():
        name = tx.execute("SELECT name FROM containers WHERE id = ?", (cid,)).fetchone()
        raise Conflict(f"endpoint with name {name[0] if name else cid[:12]} already exists "
                       f"in network {n.name}")
    # the next interface number (eth0, eth1…): one after the highest, so a connect after a
    # disconnect never reuses the name of an interface still there
    position = tx.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM endpoints WHERE "
                          "container_id = ?", (cid,)).fetchone()[0]
    tx.execute("INSERT INTO endpoints (network_id, container_id, position, ip, static_ip, "
               "aliases) VALUES (?, ?, ?, ?, ?, ?)",
               (n.id, cid, position, ip, int(bool(ip)), json.dumps(list(aliases))))


@dataclass(frozen=True)
class Endpoint:
    network: Network
    position: int
    ip: str
    static: bool

    def host_veth(self, cid: str) -> str:
        return f"vb{cid[:11]}{self.position}"


def _endpoints(db: Database, cid: str) -> list[Endpoint]:
    cols = ", ".join(f"n.{c}" for c in _COLUMNS)
    rows = db.read(f"SELECT {cols}, e.position, e.ip, e.static_ip FROM endpoints e JOIN "
                   "networks n ON n.id = e.network_id WHERE e.container_id = ? "
                   "ORDER BY e.position", (cid,))
    k = len(_COLUMNS)
    return [Endpoint(_row(r[:k]), r[k], r[k + 1], bool(r[k + 2])) for r in rows]


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    import fcntl
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def root_lock(run: str) -> str:
    return os.path.join(run, "locks", "networks")


def _allocate(db: Database, cid: str, ep: Endpoint) -> str:
    """An address for a starting container: its own (--ip, or still recorded), else the lowest
    free one. Addresses of containers that are not running (left by a crash or a reboot) go
    back to the pool first."""
    n = ep.network
    with db.transaction() as tx:
        # A container starting beside this one is attached (it has its veth: we hold the
        # lock) but not yet recorded running: its address is not stale.
        stale = [other for other, pos in tx.execute(
            "SELECT e.container_id, e.position FROM endpoints e JOIN containers c ON "
            "c.id = e.container_id WHERE e.network_id = ? AND e.static_ip = 0 AND e.ip != '' "
            "AND e.container_id != ? AND c.status NOT IN ('running', 'restarting')",
            (n.id, cid)).fetchall() if not os.path.exists(f"/sys/class/net/vb{other[:11]}{pos}")]
        for other in stale:
            tx.execute("UPDATE endpoints SET ip = '' WHERE network_id = ? AND container_id = ?",
                       (n.id, other))
        if ep.ip:
            return ep.ip
        used = [r[0] for r in tx.execute("SELECT ip FROM endpoints WHERE network_id = ? AND "
                                         "ip != ''", (n.id,))]
        ip = next_free(n.subnet, n.gateway, used)
        if ip is None:
            raise ResourceLimit(f"no available IPv4 addresses on this network's address "
                                f"pools: {n.name} ({n.id})")
        tx.execute("UPDATE endpoints SET ip = ? WHERE network_id = ? AND container_id = ?",
                   (ip, n.id, cid))
        return ip


def attach(db: Database, root: str, run: str, cid: str, pid: int,
           only: str | None = None) -> None:
    """Put the created (not yet started) container `pid` on its bridge networks (or, with
    `only`, on that one network, for `network connect` of a running container): an address
    each, the bridge (made when missing), a veth pair, the address and routes inside, and its
    address in its /etc/hosts. Undoes what it did when a step fails."""
    eps = [e for e in _endpoints(db, cid) if e.network.driver == "bridge"
           and (only is None or e.network.id == only)]
    if not eps:
        return
    from pyroute2 import IPRoute
    try:
        with locked(root_lock(run)), IPRoute() as ipr:
            inside = []
            for ep in eps:
                br, n = _ensure_bridge(db, ipr, ep.network)
                if n is not ep.network:  # the default network moved: a new address
                    ep = Endpoint(n, ep.position, "" if not ep.static else ep.ip, ep.static)
                ip = _allocate(db, cid, ep)
                host = ep.host_veth(cid)
                for idx in ipr.link_lookup(ifname=host):  # left by a crash
                    ipr.link("del", index=idx)
                ipr.link("add", ifname=host, kind="veth",
                         peer={"ifname": f"eth{ep.position}", "net_ns_pid": pid})
                [idx] = ipr.link_lookup(ifname=host)
                ipr.link("set", index=idx, master=br, state="up")
                inside.append((f"eth{ep.position}", ip,
                               ipaddress.IPv4Network(n.subnet).prefixlen,
                               "" if n.internal else n.gateway))
            gateway = next((g for *_, g in inside if g), "")
            _in_netns(pid, lambda ipr2: _configure_inside(ipr2, inside, gateway))
            from . import dns  # DNS: its names on its user-defined networks' tables
            dns.refresh_container(db, run, cid, up=True)
        first = next((e.ip for e in _endpoints(db, cid) if e.ip), "")
        if first and only is None:
            _write_hosts(db, root, cid, first)
        for ep in eps:
            db.record_event("network", "connect", ep.network.id,
                            {"container": cid, "name": ep.network.name, "type": "bridge"})
    except BaseException as err:
        try:
            detach(db, run, cid, events=False, only=only)
        except Exception as cleanup:  # noqa: BLE001 - said with the first error
            err.add_note(f"cleanup also failed: {cleanup}")
        if isinstance(err, BerthError):
            raise
        if isinstance(err, Exception):
            raise BerthError(f"network setup of container {cid[:12]} failed: {err}") from err
        raise


def _configure_inside(ipr: Any, links: Sequence[tuple[str, str, int, str]],
                      gateway: str) -> None:
    [lo] = ipr.link_lookup(ifname="lo")
    ipr.link("set", index=lo, state="up")
    for name, ip, prefix, _ in links:
        [idx] = ipr.link_lookup(ifname=name)
        ipr.addr("add", index=idx, address=ip, prefixlen=prefix)
        ipr.link("set", index=idx, state="up")
    if gateway:  # a container connected later may have its default route already
        _default_route(ipr, gateway)


def _default_route(ipr: Any, gateway: str) -> None:
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
    except NetlinkError as e:
        if e.code != 17:  # EEXIST: the container routes through an earlier network
            raise


def in_netns(pid: int, fn: Any) -> Any:
    """fn() run in `pid`'s network namespace, its result returned (its exception raised): a
    thread joins the namespace (setns affects only the calling thread) and then ends, so the
    caller stays where it was. Sockets made there stay in that namespace."""
    import threading

    from berth.runtime import _sys
    out: list[Any] = []

    def inner() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _sys.setns(fd, _sys.CLONE_NEWNET, "net")
            finally:
                os.close(fd)
            out.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out.append((False, e))
    t = threading.Thread(target=inner, name="berth-netns")
    t.start()
    t.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value


def _in_netns(pid: int, fn: Any) -> None:
    """fn(IPRoute) on a netlink socket of `pid`'s network namespace."""
    def inner() -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            fn(ipr)
    in_netns(pid, inner)


def _ensure_bridge(db: Database, ipr: Any, n: Network) -> tuple[int, Network]:
    """The network's bridge (made when missing) and the network as it is now. A subnet that
    something else on this machine took meanwhile (another berth root's network, a VPN) is
    refused, except for the default `bridge` network, which moves to a free subnet as docker's
    daemon picks one at start (it has no --ip addresses to keep)."""
    found = ipr.link_lookup(ifname=n.bridge)
    if found:
        return int(found[0]), n
    net = ipaddress.IPv4Network(n.subnet)
    if overlaps(net, _host_networks()):
        if n.name != "bridge":
            raise Conflict(f"network {n.name}: its subnet {n.subnet} overlaps a network in use "
                           "on this machine (another berth root's network, or a host "
                           "interface); remove one of them or recreate it with another --subnet")
        others = [ipaddress.IPv4Network(r[0]) for r in db.read(
            "SELECT subnet FROM networks WHERE subnet != '' AND id != ?", (n.id,))]
        net = choose_subnet([*others, *_host_networks()])
        gw = str(check_gateway(net, ""))
        with db.transaction() as tx:
            tx.execute("UPDATE networks SET subnet = ?, gateway = ? WHERE id = ?",
                       (str(net), gw, n.id))
            tx.execute("UPDATE endpoints SET ip = '' WHERE network_id = ?", (n.id,))
        from dataclasses import replace
        n = replace(n, subnet=str(net), gateway=gw)
    firewall_add(n.bridge)
    ipr.link("add", ifname=n.bridge, kind="bridge")
    [idx] = ipr.link_lookup(ifname=n.bridge)
    ipr.addr("add", index=idx, address=n.gateway, prefixlen=net.prefixlen)
    ipr.link("set", index=idx, state="up")
    from .ports import bridge_up  # forwarding on it while ports are published
    bridge_up(n.bridge)
    return int(idx), n


def _remove_bridge(name: str) -> None:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        for idx in ipr.link_lookup(ifname=name):
            ipr.link("del", index=idx)
    firewall_remove(name)


def _write_hosts(db: Database, root: str, cid: str, ip: str) -> None:
    """The container's address for its hostname in its /etc/hosts, where 127.0.1.1 stood
    (written in place: the file is bind-mounted already)."""
    from .containers import _hosts
    row = db.read("SELECT json_extract(config, '$.hostname'), "
                  "json_extract(config, '$.host_entries') FROM containers WHERE id = ?", (cid,))
    if not row or not row[0][0]:
        return
    hostname = row[0][0]
    entries = json.loads(row[0][1]) if row[0][1] else []
    text = _hosts(hostname, entries).replace(f"127.0.1.1\t{hostname}\n",
                                             f"{ip}\t{hostname}\n")
    with contextlib.suppress(OSError), open(os.path.join(root, "containers", cid, "hosts"),
                                            "r+") as f:
        f.write(text)
        f.truncate()


def _attached(cid: str, eps: Sequence[Endpoint]) -> bool:
    """Whether anything of the container is left on its networks (a cheap look in sysfs, so
    `rm` of a container its monitor already detached imports no pyroute2): an address it
    does not keep, a veth, or a bridge with none but its ports."""
    mine = f"vb{cid[:11]}"
    for ep in eps:
        if (ep.ip and not ep.static) or os.path.exists(f"/sys/class/net/{ep.host_veth(cid)}"):
            return True
        with contextlib.suppress(OSError):
            if all(p.startswith(mine) for p in os.listdir(
                    f"/sys/class/net/{ep.network.bridge}/brif")):
                return True
    return False


def detach(db: Database, run: str, cid: str, *, events: bool = True,
           only: str | None = None) -> None:
    """The container left its networks (exited, or removed; with `only`, that one network,
    for `network disconnect`): its veths go, its addresses go back to the pool (not a --ip
    one), and a bridge with no container left goes too. Imports pyroute2 only when the
    container has a bridge endpoint."""
    eps = [e for e in _endpoints(db, cid) if e.network.driver == "bridge"
           and (only is None or e.network.id == only)]
    if not eps or not _attached(cid, eps):
        return
    from pyroute2 import IPRoute
    with locked(root_lock(run)), IPRoute() as ipr:
        for ep in eps:
            for idx in ipr.link_lookup(ifname=ep.host_veth(cid)):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=idx)
        with db.transaction() as tx:
            for ep in eps:
                tx.execute("UPDATE endpoints SET ip = '' WHERE container_id = ? AND "
                           "network_id = ? AND static_ip = 0", (cid, ep.network.id))
            if events:
                for ep in eps:
                    db.record_event("network", "disconnect", ep.network.id,
                                    {"container": cid, "name": ep.network.name,
                                     "type": "bridge"})
        from . import dns  # DNS: its names leave its networks' tables
        if only is None:
            dns.refresh_container(db, run, cid, down=True)
        else:  # `network disconnect`: that network's table (its index: disconnect)
            dns.refresh(db, run, only, down=(cid,))
        for ep in eps:
            found = ipr.link_lookup(ifname=ep.network.bridge)
            if not found:
                continue
            mine = f"vb{cid[:11]}"
            ports = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                     if link.get_attr("IFLA_MASTER") == found[0]]
            if all(p.startswith(mine) for p in ports):  # only ours, dying with the netns
                with contextlib.suppress(Exception):
                    ipr.link("del", index=found[0])
                firewall_remove(ep.network.bridge)


def _container_row(db: Database, ref: str) -> tuple[str, str, str, int]:
    """(id, name, status, pid) of a container by id, name or unique id prefix."""
    rows = db.read("SELECT id, name, status, pid FROM containers WHERE id = ? OR name = ?",
                   (ref, ref))
    if not rows and ref and all(c in "0123456789abcdef" for c in ref):
        rows = db.read("SELECT id, name, status, pid FROM containers WHERE substr(id, 1, ?) "
                       "= ?", (len(ref), ref))
        if len(rows) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
    if not rows:
        raise NotFound(f"No such container: {ref}")
    return rows[0]


def _mode(db: Database, cid: str) -> str:
    row = db.read("SELECT json_extract(config, '$.network') FROM containers WHERE id = ?",
                  (cid,))
    return (row[0][0] if row else "") or "none"


def connect(db: Database, root: str, run: str, network: str, container: str, *,
            ip: str = "", aliases: Sequence[str] = ()) -> None:
    """`network connect`: an endpoint for the container (created, stopped or running; a
    running one gets its interface at once, eth<n> after the ones it has)."""
    n = Networks(db).get(network)
    cid, _name, status, pid = _container_row(db, container)
    mode = _mode(db, cid)
    if mode == "host" or n.driver == "host":
        raise Conflict("container cannot be disconnected from host network or connected to "
                       "host network")
    if mode == "none" or mode.startswith("container:") or n.driver == "none":
        raise Conflict("container sharing network namespace with another container or host "
                       "cannot be connected to any other network" if mode != "none" else
                       "container cannot be connected to multiple networks with one of the "
                       "networks in private (none) mode")
    with db.transaction() as tx:
        join(tx, db, cid, n.id, ip=ip, aliases=aliases)
    if status in ("running", "restarting") and pid:
        try:
            attach(db, root, run, cid, pid, only=n.id)
        except BaseException:
            with db.transaction() as tx:
                tx.execute("DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                           (cid, n.id))
            raise


def disconnect(db: Database, run: str, network: str, container: str, *,
               force: bool = False) -> None:
    """`network disconnect`: the container leaves the network (its interface goes at once
    when it runs; its address, --ip one included, goes back to the pool)."""
    n = Networks(db).get(network)
    try:
        cid, name, status, pid = _container_row(db, container)
    except NotFound:
        if force:
            return
        raise
    if n.driver == "host" or _mode(db, cid) == "host":
        raise Conflict("container cannot be disconnected from host network or connected to "
                       "host network")
    if not db.read("SELECT 1 FROM endpoints WHERE container_id = ? AND network_id = ?",
                   (cid, n.id)):
        raise Conflict(f"container {cid} is not connected to network {n.name}")
    if status in ("running", "restarting"):
        detach(db, run, cid, only=n.id)
    with db.transaction() as tx:
        tx.execute("DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                   (cid, n.id))
    if status in ("running", "restarting"):
        from . import dns  # the networks its embedded DNS looks in
        with locked(root_lock(run)):
            dns.write_index(db, run, cid)
    if status in ("running", "restarting") and pid:
        left = [e for e in _endpoints(db, cid) if e.network.driver == "bridge" and e.ip
                and not e.network.internal]
        if left:  # the default route went with the interface: through the next network
            with contextlib.suppress(Exception):
                _in_netns(pid, lambda ipr: _default_route(ipr, left[0].network.gateway))


def shared_with(db: Database, ref: str) -> tuple[str, str]:
    """`--network container:REF` at create: (id, hostname) of the container whose network
    namespace (and /etc/hosts, /etc/resolv.conf, hostname) this one will share."""
    cid, *_ = _container_row(db, ref)
    mode = _mode(db, cid)
    if mode.startswith("container:"):  # docker joins the namespace's owner, not a chain
        cid = mode[len("container:"):]
    row = db.read("SELECT json_extract(config, '$.hostname') FROM containers WHERE id = ?",
                  (cid,))
    return cid, (row[0][0] if row else "") or cid[:12]


def settings(db: Database, cid: str, running: bool) -> dict[str, Any]:
    """docker's NetworkSettings (without Ports) of `inspect`: one entry per network the
    container is on; addresses only while it runs (they are handed out at start)."""
    row = db.read("SELECT name FROM containers WHERE id = ?", (cid,))
    cname = row[0][0] if row else ""
    mode = _mode(db, cid)
    nets: dict[str, Any] = {}

    def entry(n: Network, ip: str, aliases: list[str]) -> dict[str, Any]:
        prefix = ipaddress.IPv4Network(n.subnet).prefixlen if n.subnet and ip else 0
        dns = [cname, *aliases, cid[:12]] if n.driver == "bridge" and not n.predefined \
            else None
        return {"IPAMConfig": None, "Links": None, "Aliases": aliases or None,
                "MacAddress": "", "DriverOpts": None, "NetworkID": n.id, "EndpointID": "",
                "Gateway": n.gateway if ip else "", "IPAddress": ip, "IPPrefixLen": prefix,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "DNSNames": dns}
    if mode in ("host", "none"):
        nets[mode] = entry(Networks(db).get(mode), "", [])
    for r in db.read("SELECT network_id, ip, aliases FROM endpoints WHERE container_id = ? "
                     "ORDER BY position", (cid,)):
        with contextlib.suppress(NotFound):
            n = Networks(db).get(r[0])
            nets[n.name] = entry(n, r[1] if running else "", json.loads(r[2] or "[]"))
    default = nets.get("bridge") or {}
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Gateway": default.get("Gateway", ""), "IPAddress": default.get("IPAddress", ""),
            "IPPrefixLen": default.get("IPPrefixLen", 0), "MacAddress": "",
            "Networks": nets}


# --- firewall ---------------------------------------------------------------------------------

def nft(script: str, check: bool = True) -> Any:
    import shutil
    import subprocess
    nft = shutil.which("nft") or "/usr/sbin/nft"
    r = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BerthError(f"nft: {r.stderr.strip() or r.returncode}")
    return r


def firewall_script() -> str:
    """The berth table: what a bridge forwards to itself passes; anything else forwarded from
    or to a berth bridge (to other networks, off the machine) is dropped. No NAT."""
    return (f"table ip {TABLE} {{\n"
            "  set bridges { type ifname; }\n"
            "  set same { type ifname . ifname; }\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            "    iifname . oifname @same accept\n"
            '    iifname @bridges counter drop comment "berth: nothing leaves this machine"\n'
            "    oifname @bridges counter drop\n"
            "  }\n"
            "}\n")


def firewall_add(bridge: str) -> None:
    with locked(NFT_LOCK):
        if nft(f"list table ip {TABLE}\n", check=False).returncode != 0:
            nft(firewall_script())
        nft(f'add element ip {TABLE} bridges {{ "{bridge}" }}\n'
             f'add element ip {TABLE} same {{ "{bridge}" . "{bridge}" }}\n')


def firewall_remove(bridge: str) -> None:
    """Forget `bridge`; the table goes with the last berth bridge."""
    with locked(NFT_LOCK):
        if nft(f"list table ip {TABLE}\n", check=False).returncode != 0:
            return
        nft(f'delete element ip {TABLE} bridges {{ "{bridge}" }}\n', check=False)
        nft(f'delete element ip {TABLE} same {{ "{bridge}" . "{bridge}" }}\n', check=False)
        listing = nft(f"list set ip {TABLE} bridges\n", check=False).stdout
        if "elements" not in listing:
            nft(f"delete table ip {TABLE}\n", check=False)
