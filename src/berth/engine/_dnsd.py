"""The embedded DNS server's answers (docker's 127.0.0.11 on a user-defined network): a small
DNS codec (RFC 1035) and the name tables it answers from, nothing forwarded anywhere.

Loaded by engine/_pump.py (a bare interpreter) only when the first query arrives, as a top-level
module from its own directory: it imports nothing, not even from berth. Pure but for
`Tables.current`, which stats and reads the files, and `Server`, which owns the sockets.

    answer(query, tables, limit=512) -> bytes | None   the reply to one query (None: drop it)
    parse_table(text) -> Table                      one network's table file (engine/dns.py)
    Tables(index)                                    a container's networks, re-read on change

Table file (`<run>/dns/<network id>`, written by engine/dns.py):

    network NAME
    IP NAME [ALIAS ...] SHORT_ID [HOSTNAME]

Index file (`<run>/dns/containers/<container id>`): the table files of the container's
networks, one per line, in its order of networks.

Answers, as docker's resolver gives them: A for a name known on one of the container's networks
(its address on the first of them that knows it; `NAME.NETWORK` looks on NETWORK only), all its
addresses when several containers share an alias; AAAA or any other type for a known name:
no error, no answers; PTR for a known address: `NAME.NETWORK`; anything else NXDOMAIN (never
forwarded). TTL 600. A packet that is no query (too short, a response) is dropped; a bad one
(QDCOUNT != 1, a broken name) gets FORMERR, another opcode NOTIMP, another class REFUSED.
"""

TTL = 600
A, PTR, AAAA = 1, 12, 28
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
_MAX_NAME = 255


class Malformed(Exception):
    pass


class Table:
    __slots__ = ("network", "names", "ptr")

    def __init__(self, network: str = "") -> None:
        self.network = network  # lower-case
        self.names: dict = {}  # lower-case name -> [IPv4 text, ...]
        self.ptr: dict = {}  # IPv4 text -> the endpoint's first name


def parse_table(text: str) -> Table:
    t = Table()
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "network" and len(words) == 2:
            t.network = words[1].lower()
            continue
        ip, names = words[0], words[1:]
        if not names:
            continue
        t.ptr.setdefault(ip, names[0])
        for n in names:
            ips = t.names.setdefault(n.lower(), [])
            if ip not in ips:
                ips.append(ip)
    return t


class Tables:
    """The tables of a container's networks, named by its index file, in its order of
    networks; each file (the index too) is read again only when its inode, mtime or size
    changed, so a network connected or disconnected while it runs is seen."""

    def __init__(self, index: str) -> None:
        self.index = index
        self._seen: dict = {}  # path -> (stat key, parsed)

    def _load(self, path: str, parse: object) -> object:
        import os
        try:
            st = os.stat(path)
        except OSError:
            self._seen.pop(path, None)
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        seen = self._seen.get(path)
        if seen is None or seen[0] != key:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    seen = (key, parse(f.read()))
            except OSError:
                return None
            self._seen[path] = seen
        return seen[1]

    def current(self) -> list:
        paths = self._load(self.index, lambda text: [x for x in text.splitlines() if x]) or []
        tables = [self._load(p, parse_table) for p in paths]
        return [t for t in tables if t is not None]


# --- lookups ----------------------------------------------------------------------------------

def lookup(tables: list, name: str) -> list | None:
    """The addresses of `name` (lower-case, no trailing dot); None when no table knows it.
    docker's order: the whole name on every network, then `a.b` as `a` on network `b`."""
    tries = [(name, "")]
    i = len(name)
    while True:
        i = name.rfind(".", 0, i)
        if i <= 0:
            break
        tries.append((name[:i], name[i + 1:]))
    for short, net in tries:
        for t in tables:
            if net and net != t.network:
                continue
            ips = t.names.get(short)
            if ips:
                return ips
    return None


def reverse(tables: list, name: str) -> str | None:
    """`d.c.b.a.in-addr.arpa` -> `NAME.NETWORK` of the container with address a.b.c.d."""
    suffix = ".in-addr.arpa"
    if not name.endswith(suffix):
        return None
    parts = name[:-len(suffix)].split(".")
    if len(parts) != 4:
        return None
    ip = ".".join(reversed(parts))
    for t in tables:
        n = t.ptr.get(ip)
        if n:
            return f"{n}.{t.network}" if t.network else n
    return None


# --- wire format ------------------------------------------------------------------------------

def _read_name(msg: bytes, pos: int) -> tuple:
    """(labels, position after the name). Compression pointers must point backwards (so no
    loop is possible); the name is at most 255 bytes."""
    labels = []
    end = -1
    total = 0
    while True:
        if pos >= len(msg):
            raise Malformed("name runs past the end")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise Malformed("truncated pointer")
            target = ((n & 0x3F) << 8) | msg[pos + 1]
            if target >= pos:
                raise Malformed("pointer that does not point backwards")
            if end < 0:
                end = pos + 2
            pos = target
            continue
        if n & 0xC0:
            raise Malformed("unknown label type")
        if n == 0:
            return labels, (end if end >= 0 else pos + 1)
        label = msg[pos + 1:pos + 1 + n]
        if len(label) != n:
            raise Malformed("truncated label")
        total += n + 1
        if total + 1 > _MAX_NAME:
            raise Malformed("name longer than 255 bytes")
        labels.append(label)
        pos += 1 + n


def _encode_name(labels: list) -> bytes:
    return b"".join(bytes((len(x),)) + x for x in labels) + b"\0"


def _header(qid: int, flags: int, rcode: int, qd: int, an: int) -> bytes:
    return (qid.to_bytes(2, "big") + (flags | rcode).to_bytes(2, "big") + qd.to_bytes(2, "big")
            + an.to_bytes(2, "big") + b"\0\0\0\0")


def answer(query: bytes, tables: list, limit: int = 512) -> bytes | None:
    """The reply to one query, or None to drop it (too short to answer, or not a query).
    A reply longer than `limit` (UDP's 512 bytes; TCP has 65535) is sent truncated (TC)."""
    if len(query) < 12:
        return None
    qid = int.from_bytes(query[0:2], "big")
    flags = int.from_bytes(query[2:4], "big")
    if flags & 0x8000:  # a response: never answered (no loops between resolvers)
        return None
    opcode = (flags >> 11) & 0xF
    # QR, the opcode, AA (we own these names), RD as asked, RA as docker's resolver says
    out = 0x8000 | (opcode << 11) | 0x0400 | (flags & 0x0100) | 0x0080
    if opcode != 0:
        return _header(qid, out, NOTIMP, 0, 0)
    if int.from_bytes(query[4:6], "big") != 1:
        return _header(qid, out, FORMERR, 0, 0)
    try:
        labels, pos = _read_name(query, 12)
    except Malformed:
        return _header(qid, out, FORMERR, 0, 0)
    if pos + 4 > len(query):
        return _header(qid, out, FORMERR, 0, 0)
    qtype = int.from_bytes(query[pos:pos + 2], "big")
    qclass = int.from_bytes(query[pos + 2:pos + 4], "big")
    question = _encode_name(labels) + query[pos:pos + 4]
    if qclass not in (1, 255):  # IN, ANY
        return _header(qid, out, REFUSED, 1, 0) + question
    name = b".".join(labels).decode("latin-1").lower()
    records = []
    rcode = NXDOMAIN
    if qtype == PTR:
        target = reverse(tables, name)
        if target is not None:
            rcode = NOERROR
            try:
                labels_out = [x.encode("ascii") for x in target.split(".")]
            except UnicodeEncodeError:
                labels_out = []
            if labels_out and all(0 < len(x) < 64 for x in labels_out) and \
                    sum(len(x) + 1 for x in labels_out) < _MAX_NAME:
                records.append((PTR, _encode_name(labels_out)))
            else:  # a name DNS cannot carry (a label over 63 bytes)
                rcode = SERVFAIL
    else:
        ips = lookup(tables, name) if name else None
        if ips is not None:
            rcode = NOERROR
            if qtype in (A, 255):
                for ip in ips:
                    try:
                        rdata = bytes(int(x) for x in ip.split("."))
                    except ValueError:
                        continue
                    if len(rdata) == 4:
                        records.append((A, rdata))
    body = b"".join(b"\xc0\x0c" + t.to_bytes(2, "big") + b"\0\x01" + TTL.to_bytes(4, "big")
                    + len(d).to_bytes(2, "big") + d for t, d in records)
    reply = _header(qid, out, rcode, 1, len(records)) + question + body
    if len(reply) > limit:  # say it is truncated: the client asks again over TCP
        reply = _header(qid, out | 0x0200, rcode, 1, 0) + question
    return reply


# --- the server, as the pump runs it -----------------------------------------------------------

_MAX_TCP = 16  # open TCP connections; the oldest goes when one more comes


class Server:
    """Answers on the sockets the monitor bound to 127.0.0.11:53 in the container's network
    namespace (`udp_fd`, `tcp_fd`: a listening socket, or -1). `handle(fd, poller)` serves
    one ready descriptor of its own (the pump's poll loop registers them) and never raises."""

    def __init__(self, udp_fd: int, tcp_fd: int, index: str) -> None:
        import _socket
        self.tables = Tables(index)
        self.udp = _socket.socket(fileno=udp_fd) if udp_fd >= 0 else None
        self.tcp = _socket.socket(fileno=tcp_fd) if tcp_fd >= 0 else None
        for s in (self.udp, self.tcp):
            if s is not None:
                s.setblocking(False)
        self.conns: dict = {}  # fd -> [socket, bytes received]

    def owns(self, fd: int) -> bool:
        return fd in self.conns or any(s is not None and s.fileno() == fd
                                       for s in (self.udp, self.tcp))

    def handle(self, fd: int, poller: object) -> None:
        try:
            if self.udp is not None and fd == self.udp.fileno():
                self._udp()
            elif self.tcp is not None and fd == self.tcp.fileno():
                self._accept(poller)
            elif fd in self.conns:
                self._read(fd, poller)
        except Exception:  # noqa: BLE001 - a query must never stop the pump
            pass

    def _udp(self) -> None:
        for _ in range(64):  # what is queued, without starving the log
            try:
                data, addr = self.udp.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            reply = answer(data, self.tables.current())
            if reply is not None:
                try:
                    self.udp.sendto(reply, addr)
                except OSError:
                    pass

    def _accept(self, poller: object) -> None:
        try:
            fd, _ = self.tcp._accept()  # _socket's accept: a descriptor, not a socket
        except OSError:
            return
        import _socket
        conn = _socket.socket(fileno=fd)
        conn.setblocking(False)
        if len(self.conns) >= _MAX_TCP:
            self._close(next(iter(self.conns)), poller)
        self.conns[conn.fileno()] = [conn, b""]
        poller.register(conn.fileno(), 1)  # POLLIN

    def _close(self, fd: int, poller: object) -> None:
        conn = self.conns.pop(fd)[0]
        try:
            poller.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
        conn.close()

    def _read(self, fd: int, poller: object) -> None:
        entry = self.conns[fd]
        try:
            data = entry[0].recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(fd, poller)
            return
        buf = entry[1] + data
        while len(buf) >= 2:
            n = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + n:
                break
            reply = answer(buf[2:2 + n], self.tables.current(), 65535)
            buf = buf[2 + n:]
            if reply is None:
                continue
            try:
                entry[0].send(len(reply).to_bytes(2, "big") + reply)
            except OSError:
                self._close(fd, poller)
                return
        entry[1] = buf
