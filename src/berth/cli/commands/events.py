"""`berth events` (= `berth system events`): the event log, past and live, as docker prints it.

    2026-11-28T11:05:20.123456789Z container create 4f3c… (image=bb:test, name=foo)

Without --until it follows new events (polling berth.db every 100 ms) until interrupted;
Ctrl-C and SIGTERM end it quietly (exit 0). `--format` is a Go template over docker's
events.Message (`{{json .}}`, `{{.Type}} {{.Action}} {{.Actor.Attributes.name}}`); a template
that does not parse or execute on an empty message is refused before anything is read (exit 64,
"Error parsing format: …", as docker).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from berth.cli.args import Command, Flag

SUMMARY = "Get real time events from the server"
EXIT_FORMAT = 64  # docker's status for a --format that does not parse

_NS = 1_000_000_000


class _Stop(Exception):
    """SIGTERM: stop following, quietly."""


def run(args: list[str]) -> int:
    from berth.cli.main import guarded
    return guarded(lambda: main(args, "berth events"))


def fixed_time(ns: int, offset: int | None = None) -> str:
    """Go's time.Unix(0, ns).Format("2006-01-02T15:04:05.000000000Z07:00") in the local zone
    (or at `offset` seconds east of UTC): docker's event time, nine digits always."""
    secs, frac = divmod(ns, _NS)
    if offset is None:
        offset = time.localtime(secs).tm_gmtoff
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs + offset))
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        zone = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    return f"{stamp}.{frac:09d}{zone}"


def pretty(msg: dict[str, Any], offset: int | None = None) -> str:
    """docker's prettyPrintEvent: time, type, action, actor id, then "(k=v, …)" sorted."""
    head = ""
    if msg.get("timeNano"):
        head = fixed_time(msg["timeNano"], offset) + " "
    elif msg.get("time"):
        head = fixed_time(msg["time"] * _NS, offset) + " "
    actor = msg["Actor"]
    line = f"{head}{msg['Type']} {msg['Action']} {actor['ID']}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def template_data(msg: dict[str, Any]) -> Any:
    """events.Message as a template sees it: Go field names, `json` with docker's tags."""
    from berth.cli.format import GoMap
    from berth.cli.gostruct import Struct
    actor = msg.get("Actor") or {"ID": "", "Attributes": {}}
    attrs = actor.get("Attributes")
    return Struct([
        ("Status", "status,omitempty", msg.get("status", "")),
        ("ID", "id,omitempty", msg.get("id", "")),
        ("From", "from,omitempty", msg.get("from", "")),
        ("Type", "", msg.get("Type", "")),
        ("Action", "", msg.get("Action", "")),
        ("Actor", "", Struct([("ID", "", actor.get("ID", "")),
                              ("Attributes", "", None if attrs is None else GoMap(attrs))])),
        ("Scope", "scope,omitempty", msg.get("scope", "")),
        ("Time", "time,omitempty", msg.get("time", 0)),
        ("TimeNano", "timeNano,omitempty", msg.get("timeNano", 0)),
    ])


def make_template(fmt: str) -> Any:
    """docker's makeTemplate: "" is the default line, "json" is `{{json .}}`; the template is
    tried on an empty message so that `{{.Bad}}` fails before any event."""
    from berth.cli.format import Template
    if not fmt:
        return None
    tmpl = Template("{{json .}}" if fmt == "json" else fmt)
    # a nil map in Go: reading a key gives "<no value>", as an empty GoMap does
    tmpl.execute(template_data({"Actor": {"ID": "", "Attributes": {}}}),
                 type_name="*events.Message")
    return tmpl


def main(args: list[str], path: str) -> int:
    from berth.cli.format import TemplateError, parse_filters
    cmd = Command(path, "[OPTIONS]", SUMMARY, [
        Flag("filter", "f", "filter", repeat=True, help="Filter output based on conditions "
             "provided"),
        Flag("format", value="string", help="Format output using a custom template: 'json', "
             "or a Go template"),
        Flag("since", value="string", help="Show all events created since timestamp"),
        Flag("until", value="string", help="Stream events until this timestamp"),
    ], max_args=0, aliases=("berth system events", "berth events"))
    opts, _ = cmd.parse(args)
    try:
        tmpl = make_template(opts["format"])
    except TemplateError as e:
        print(f"Error parsing format: {e}", file=sys.stderr)
        return EXIT_FORMAT
    from berth.engine import events
    filters = events.EventFilter(parse_filters(opts["filter"]))
    since_ns, until_ns = events.since_until(opts["since"], opts["until"])
    from berth.engine.context import engine
    db = engine().db
    out = sys.stdout

    def on_term(signum: int, frame: Any) -> None:
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        for msg in events.follow(db, since_ns=since_ns, until_ns=until_ns, keep=filters.match):
            if tmpl is None:
                out.write(pretty(msg) + "\n")
            else:
                out.write(tmpl.execute(template_data(msg), type_name="events.Message") + "\n")
            out.flush()
    except (_Stop, KeyboardInterrupt):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
