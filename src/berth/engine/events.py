"""Events as docker reports them: `GET /events` and `berth events` read the log in berth.db.

    parse_timestamp(text, now)    docker's --since/--until forms -> nanoseconds since the epoch
    EventFilter(filters)          docker's events filter (type, event, container, image, ...)
    message(event)                an events.Message document (the JSON docker sends)
    enrich(db, events)            container events completed with the image and labels
    follow(db, ...)               past events, then new ones as they are recorded (polling)

The pure parts (times, durations, filters, messages) are unit-tested; `follow` polls the
database by event id, which orders events as they committed (writers are serialised).

Raises: InvalidArgument for a time that does not parse, or `since` after `until`.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.store.db import Database, Event

__all__ = ["EventFilter", "enrich", "follow", "message", "parse_duration", "parse_timestamp",
           "since_until"]

_NS = 1_000_000_000

# --- times (docker's api/types/time: GetTimestamp, then ParseTimestamps on the daemon) ----------

_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
          "s": _NS, "m": 60 * _NS, "h": 3600 * _NS}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration in nanoseconds ("10m", "1h30m", "1.5h", "-2s", "300ms");
    ValueError when it is not one."""
    s = text
    neg = s[:1] == "-"
    if s[:1] in "+-":
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return -round(total) if neg else round(total)


def _go_layout(value: str, local: bool) -> str:
    """The layout docker's GetTimestamp picks for `value`."""
    if "." in value:
        return "2006-01-02T15:04:05.999999999" + ("" if local else "Z07:00")
    if "T" in value:
        colons = value.count(":")
        if not local and not any(c in value for c in "zZ") and colons > 0:
            colons -= 1  # the zone's own colon
        base = {0: "2006-01-02T15", 1: "2006-01-02T15:04"}.get(colons, "2006-01-02T15:04:05")
        return base + ("" if local else "Z07:00")
    return "2006-01-02" + ("" if local else "Z07:00")


_DATE = r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
_LAYOUT_RE = {
    "2006-01-02": _DATE,
    "2006-01-02T15": _DATE + r"T(?P<h>\d{2})",
    "2006-01-02T15:04": _DATE + r"T(?P<h>\d{2}):(?P<mi>\d{2})",
    # Go accepts a fraction after the seconds even when the layout has none
    "2006-01-02T15:04:05": _DATE + r"T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
                           r"(?:\.(?P<frac>\d{1,9}))?",
    "2006-01-02T15:04:05.999999999": _DATE + r"T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
                                     r"\.(?P<frac>\d{1,9})",
}


def _parse_layout(value: str, layout: str, local_offset: int) -> int:
    base = layout.removesuffix("Z07:00")
    zoned = base != layout
    m = re.fullmatch(_LAYOUT_RE[base] + (r"(?P<zone>Z|[+-]\d{2}:\d{2})" if zoned else ""),
                     value)
    if not m:
        raise ValueError(f'parsing time "{value}" as "{layout}": cannot parse "{value}" as '
                         f'"{layout}"')
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    y, mo, d = int(g["y"]), int(g["mo"]), int(g["d"])
    h, mi, s = int(g.get("h", 0)), int(g.get("mi", 0)), int(g.get("s", 0))
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]) or h > 23 or mi > 59 \
            or s > 59:
        raise ValueError(f'parsing time "{value}": out of range')
    zone = g.get("zone")
    if zone is None:
        offset = local_offset
    elif zone == "Z":
        offset = 0
    else:
        offset = (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset
    return secs * _NS + int(g.get("frac", "0").ljust(9, "0"))


def parse_timestamp(text: str, now: float | None = None,
                    local_offset: int | None = None) -> int:
    """docker's --since/--until value in nanoseconds since the epoch: a Go duration before now
    ("10m", whole seconds, as docker), an RFC 3339 date or time (local time without a zone:
    "2026-11-28", "2026-11-28T11:05", "2026-11-28T11:05:20.5+01:00"), or a Unix timestamp
    with an optional fraction ("1700000000", "1700000000.25")."""
    ref = time.time() if now is None else now
    if local_offset is None:
        local_offset = time.localtime(ref).tm_gmtoff
    value = text
    if value != "0":
        try:
            d = parse_duration(value)
        except ValueError:
            pass
        else:
            return int((ref * _NS - d) // _NS) * _NS  # reference.Add(-d).Unix()
    local = not (any(c in value for c in "zZ+") or value.count("-") == 3)
    layout = _go_layout(value, local)
    try:
        return _parse_layout(value, layout, local_offset)
    except ValueError as err:
        if "-" in value:
            raise InvalidArgument(str(err)) from None
    sec, dot, frac = value.partition(".")
    if not re.fullmatch(r"[+-]?\d+", sec) or (dot and not re.fullmatch(r"[+-]?\d+", frac)):
        raise InvalidArgument(f'failed to parse value as time or duration: "{text}"')
    nsec = int(int(frac) * 10 ** (9 - len(frac))) if dot else 0
    return int(sec) * _NS + nsec


def since_until(since: str, until: str, now: float | None = None
                ) -> tuple[int | None, int | None]:
    """Both bounds in nanoseconds (None when not given), checked as the daemon does."""
    s = parse_timestamp(since, now) if since else None
    u = parse_timestamp(until, now) if until else None
    if s is not None and u is not None and u < s:
        raise InvalidArgument(f"`since` time ({_wire(s)}) cannot be after `until` time "
                              f"({_wire(u)})")
    return s, u


def _wire(ns: int) -> str:
    """How the client sends a time to the daemon: "%d.%09d"."""
    return f"{ns // _NS}.{ns % _NS:09d}"


# --- messages -----------------------------------------------------------------------------------

def message(ev: Event) -> dict[str, Any]:
    """docker's events.Message as JSON (its field order): the legacy status/id/from for
    containers and images, Type, Action, Actor{ID, Attributes}, scope, time, timeNano."""
    doc: dict[str, Any] = {}
    if ev.type in ("container", "image"):
        doc["status"] = ev.action
        doc["id"] = ev.actor_id
        if ev.type == "container" and ev.attributes.get("image"):
            doc["from"] = ev.attributes["image"]
    doc["Type"] = ev.type
    doc["Action"] = ev.action
    doc["Actor"] = {"ID": ev.actor_id, "Attributes": dict(ev.attributes)}
    doc["scope"] = "local"
    doc["time"] = ev.time_ns // _NS
    doc["timeNano"] = ev.time_ns
    return doc


def enrich(db: Database, events: Iterable[Event]) -> list[Event]:
    """Container events as docker sends them: every one carries the container's labels and
    the image it was created from (berth records the image on `create` only), taken from the
    container's record or, once it is removed, from its `create` event."""
    from berth.store.db import Event as _Event
    out: list[Event] = []
    known: dict[str, tuple[str, dict[str, str]] | None] = {}
    for ev in events:
        if ev.type != "container" or not ev.actor_id:
            out.append(ev)
            continue
        if ev.actor_id not in known:
            known[ev.actor_id] = _container_origin(db, ev.actor_id)
        origin = known[ev.actor_id]
        if origin is None:
            out.append(ev)
            continue
        image, labels = origin
        attrs = {**labels, **ev.attributes}
        if image and "image" not in attrs:
            attrs["image"] = image
        out.append(_Event(ev.id, ev.time_ns, ev.type, ev.action, ev.actor_id, attrs))
    return out


def _container_origin(db: Database, cid: str) -> tuple[str, dict[str, str]] | None:
    import json
    rows = db.read("SELECT image_ref, config FROM containers WHERE id = ?", (cid,))
    if rows:
        try:
            labels = json.loads(rows[0][1]).get("labels") or {}
        except ValueError:
            labels = {}
        return rows[0][0], {str(k): str(v) for k, v in labels.items()}
    rows = db.read("SELECT attributes FROM events WHERE type = 'container' AND "
                   "action = 'create' AND actor_id = ? ORDER BY id DESC LIMIT 1", (cid,))
    if rows:
        try:
            return str(json.loads(rows[0][0]).get("image", "")), {}
        except ValueError:
            return None
    return None


# --- filters (moby daemon/events/filter.go) -----------------------------------------------------

def _strip_tag(ref: str) -> str:
    """reference.FamiliarName(ParseNormalizedNamed(ref)): "bb:test" -> "bb"; not a reference:
    itself."""
    from berth.errors import BerthError
    from berth.oci.reference import parse
    try:
        return parse(ref, default_tag=False).familiar_repository
    except BerthError:  # docker keeps what does not parse
        return ref


_FUZZY_EVENTS = ("health_status", "exec_create", "exec_start")
# keys whose values match an actor's id or "name" attribute by prefix (fuzzyMatchName)
_BY_NAME = ("container", "volume", "network", "daemon", "plugin", "node", "service", "secret",
            "config")


@dataclass(frozen=True)
class EventFilter:
    """`--filter` of `events`: values of one key are alternatives, different keys must all
    match. container=, volume=, network= match the actor's id or name by prefix; image= the
    image's id or reference (exact, or without its tag); event= exactly (by prefix for
    health_status, exec_create, exec_start); type=, scope= exactly; label=key[=value] all.
    Unknown keys are ignored, as the daemon ignores them."""

    filters: Mapping[str, list[str]]

    def _values(self, key: str) -> set[str]:
        return set(self.filters.get(key) or ())

    def _exact(self, key: str, source: str) -> bool:
        values = self._values(key)
        return not values or source in values

    def _fuzzy(self, key: str, source: str) -> bool:
        values = self._values(key)
        return not values or source in values or any(source.startswith(v) for v in values)

    def _by_name(self, key: str, msg: Mapping[str, Any]) -> bool:
        actor = msg["Actor"]
        name = actor["Attributes"].get("name", "")
        return self._fuzzy(key, actor["ID"]) or self._fuzzy(key, name)

    def _event(self, action: str) -> bool:
        if self._values("event") & set(_FUZZY_EVENTS):
            return self._fuzzy("event", action)
        return self._exact("event", action)

    def _image(self, msg: Mapping[str, Any]) -> bool:
        if not self._values("image"):
            return True
        actor = msg["Actor"]
        name = actor["Attributes"].get("name" if msg["Type"] == "image" else "image", "")
        return any(self._exact("image", s) for s in
                   (actor["ID"], name, _strip_tag(actor["ID"]), _strip_tag(name)))

    def _labels(self, attrs: Mapping[str, str]) -> bool:
        wanted = self._values("label")
        if not wanted:
            return True
        for w in wanted:
            key, eq, value = w.partition("=")
            if key not in attrs or (eq and attrs[key] != value):
                return False
        return True

    def match(self, msg: Mapping[str, Any]) -> bool:
        """Whether the events.Message document `msg` passes."""
        return (self._event(msg["Action"]) and self._exact("type", msg["Type"])
                and self._exact("scope", msg.get("scope", ""))
                and all(self._by_name(k, msg) for k in _BY_NAME)
                and self._image(msg) and self._labels(msg["Actor"]["Attributes"]))


# --- the stream ---------------------------------------------------------------------------------

def follow(db: Database, *, since_ns: int | None, until_ns: int | None,
           keep: Callable[[dict[str, Any]], bool] = lambda m: True,
           poll: float = 0.1, now: Callable[[], float] = time.time,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
    """docker's GET /events: the recorded events between `since` and `until` (none when
    neither is given), then, unless `until` has passed, the new ones as they are recorded
    until `until` (forever without it). Yields events.Message documents that `keep` accepts.
    What is past and what is new is decided now, when follow() is called, not at the first
    next()."""
    last = int(db.read("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])
    return _follow(db, last, since_ns, until_ns, keep, poll, now, sleep)


def _follow(db: Database, last: int, since_ns: int | None, until_ns: int | None,
            keep: Callable[[dict[str, Any]], bool], poll: float, now: Callable[[], float],
            sleep: Callable[[float], None]) -> Iterator[dict[str, Any]]:
    if since_ns is not None or until_ns is not None:
        past = [e for e in db.events(since_ns=since_ns, until_ns=until_ns) if e.id <= last]
        for ev in enrich(db, past):
            msg = message(ev)
            if keep(msg):
                yield msg
    if until_ns is not None and until_ns < now() * _NS:
        return
    while True:
        fresh = db.events(after_id=last)
        if fresh:
            last = fresh[-1].id
            for ev in enrich(db, fresh):
                if until_ns is not None and ev.time_ns > until_ns:
                    return
                msg = message(ev)
                if keep(msg):
                    yield msg
        if until_ns is not None:
            left = until_ns / _NS - now()
            if left <= 0:
                return
            sleep(min(poll, left))
        else:
            sleep(poll)
