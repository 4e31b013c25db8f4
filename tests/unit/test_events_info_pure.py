"""events, info and version without a kernel: docker's time forms and durations, the events
filter, the Message document and its default line, templates over Go structs with json tags,
the follow loop over a database in a temporary directory, and the info/version documents."""

from __future__ import annotations

import calendar
import json
from pathlib import Path
from typing import Any

import pytest

from berth.cli.commands import events as cli_events
from berth.cli.commands import info as cli_info
from berth.cli.commands import version as cli_version
from berth.cli.format import Template, TemplateError, go_json
from berth.cli.gostruct import Struct, from_json
from berth.engine import events
from berth.engine.info import backing_filesystem
from berth.errors import InvalidArgument
from berth.store.db import Database, Event

NS = 1_000_000_000
NOW = 1_800_000_000.75  # 2027-01-15T08:00:00.75Z


def utc(*fields: int) -> int:
    return calendar.timegm((*fields, 0, 0, 0)) * NS


# --- durations and timestamps -------------------------------------------------------------------

@pytest.mark.parametrize("text, ns", [
    ("10m", 600 * NS), ("1h30m", 5400 * NS), ("1.5h", 5400 * NS), ("300ms", 300_000_000),
    ("-2s", -2 * NS), ("2us", 2000), ("2\u00b5s", 2000), (".5s", NS // 2), ("0", 0),
    ("1h0m0s", 3600 * NS),
])
def test_parse_duration(text: str, ns: int) -> None:
    assert events.parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "10", "1x", "h", ".s", "1h 2m", "--1s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        events.parse_duration(text)


@pytest.mark.parametrize("text, ns", [
    # durations: now minus d, whole seconds (docker sends reference.Add(-d).Unix())
    ("10m", (1_800_000_000 - 600) * NS),
    ("0s", 1_800_000_000 * NS),
    # Unix timestamps, a fraction scaled to nanoseconds
    ("1700000000", 1_700_000_000 * NS),
    ("1700000000.25", 1_700_000_000 * NS + 250_000_000),
    ("1700000000.000000001", 1_700_000_000 * NS + 1),
    ("0", 0),
    # RFC 3339 with a zone
    ("2026-11-28T11:05:20Z", utc(2026, 11, 28, 11, 5, 20)),
    ("2026-11-28T11:05:20.123456789Z", utc(2026, 11, 28, 11, 5, 20) + 123456789),
    ("2026-11-28T12:05:20+01:00", utc(2026, 11, 28, 11, 5, 20)),
    ("2026-11-28T11:05Z", utc(2026, 11, 28, 11, 5, 0)),
    ("2026-11-28T11Z", utc(2026, 11, 28, 11, 0, 0)),
    ("2026-11-28Z", utc(2026, 11, 28, 0, 0, 0)),
    # without a zone: local time (here two hours east of UTC)
    ("2026-11-28", utc(2026, 11, 28, 0, 0, 0) - 7200 * NS),
    ("2026-11-28T13:05:20", utc(2026, 11, 28, 11, 5, 20)),
    ("2026-11-28T13:05:20.5", utc(2026, 11, 28, 11, 5, 20) + NS // 2),
    ("2026-11-28T13:05", utc(2026, 11, 28, 11, 5, 0)),
    ("2026-11-28T13", utc(2026, 11, 28, 11, 0, 0)),
])
def test_parse_timestamp_forms(text: str, ns: int) -> None:
    assert events.parse_timestamp(text, NOW, local_offset=7200) == ns


@pytest.mark.parametrize("text, message", [
    ("foo", 'failed to parse value as time or duration: "foo"'),
    ("12ab", "failed to parse value as time or duration"),
    ("2026-13-01", "out of range"),
    ("2026-02-30", "out of range"),
    ("2026-11-28T11:05:20+0100", "parsing time"),
])
def test_parse_timestamp_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        events.parse_timestamp(text, NOW, local_offset=0)


def test_since_after_until_is_refused() -> None:
    assert events.since_until("", "", NOW) == (None, None)
    assert events.since_until("1700000000", "", NOW) == (1_700_000_000 * NS, None)
    with pytest.raises(InvalidArgument, match=r"`since` time \(1700000001.000000000\) cannot be "
                                              r"after `until` time \(1700000000.000000000\)"):
        events.since_until("1700000001", "1700000000", NOW)


# --- messages, the default line, templates ------------------------------------------------------

CID = "4f3c" + "0" * 60
CREATE = Event(7, 1_795_863_920_123_456_789, "container", "create", CID,
               {"name": "foo", "image": "bb:test"})
TAG = Event(8, 1_795_863_921 * NS, "image", "tag", "sha256:" + "ab" * 32, {"name": "bb:test"})
OTHER = Event(9, 1_795_863_922 * NS, "network", "create", "n" * 64, {"name": "net1"})


def test_message_has_docker_fields_in_order() -> None:
    msg = events.message(CREATE)
    assert list(msg) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time",
                         "timeNano"]
    assert (msg["status"], msg["id"], msg["from"]) == ("create", CID, "bb:test")
    assert msg["Actor"] == {"ID": CID, "Attributes": {"name": "foo", "image": "bb:test"}}
    assert (msg["scope"], msg["time"], msg["timeNano"]) == ("local", 1_795_863_920,
                                                          1_795_863_920_123_456_789)
    image = events.message(TAG)
    assert "from" not in image and image["status"] == "tag"
    assert list(events.message(OTHER))[:2] == ["Type", "Action"]  # no legacy fields


def test_pretty_line_as_docker_prints_it() -> None:
    assert cli_events.pretty(events.message(CREATE), offset=0) == (
        f"2026-11-28T11:05:20.123456789Z container create {CID} (image=bb:test, name=foo)")
    assert cli_events.pretty(events.message(TAG), offset=3600).startswith(
        "2026-11-28T12:05:21.000000000+01:00 image tag sha256:abab")
    bare = events.message(Event(1, 5 * NS, "daemon", "reload", "x", {}))
    assert cli_events.pretty(bare, offset=-5400) == "1969-12-31T22:30:05.000000000-01:30 " \
                                                    "daemon reload x"


def test_json_template_marshals_docker_names_and_omits_empty() -> None:
    data = cli_events.template_data(events.message(CREATE))
    assert Template("{{json .}}").execute(data) == (
        '{"status":"create","id":"' + CID + '","from":"bb:test","Type":"container",'
        '"Action":"create","Actor":{"ID":"' + CID + '","Attributes":{"image":"bb:test",'
        '"name":"foo"}},"scope":"local","time":1795863920,"timeNano":1795863920123456789}')
    net = json.loads(Template("{{json .}}").execute(
        cli_events.template_data(events.message(OTHER))))
    assert "status" not in net and "id" not in net and net["Type"] == "network"
    assert Template("{{.Status}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}} "
                    "{{.Actor.Attributes.nope}} {{.TimeNano}}").execute(data) == \
        "create container create foo <no value> 1795863920123456789"


def test_make_template_checks_fields_on_an_empty_message() -> None:
    assert cli_events.make_template("") is None
    assert cli_events.make_template("json").text == "{{json .}}"
    assert cli_events.make_template("{{.Actor.Attributes.name}}") is not None
    with pytest.raises(TemplateError, match=r"can't evaluate field Bad in type \*events.Message"):
        cli_events.make_template("{{.Bad}}")
    with pytest.raises(TemplateError):
        cli_events.make_template("{{.Type")


def test_struct_tags() -> None:
    s = Struct([("A", "a,omitempty", ""), ("B", "", 0), ("C", "-", 1), ("D", ",omitempty", []),
                ("E", "e", None)])
    assert go_json(s) == '{"B":0,"e":null}'
    assert Template("{{.A}}|{{.C}}|{{.E}}").execute(s) == "|1|<nil>"
    doc = from_json({"HttpProxy": "", "Name": "x", "Gone": ""}, {"HttpProxy": "HTTPProxy"},
                    ["Gone"])
    assert list(doc) == ["HTTPProxy", "Name", "Gone"] and go_json(doc) == \
        '{"HttpProxy":"","Name":"x"}'


# --- the filter ---------------------------------------------------------------------------------

def keep(events_: list[Event], *filters: str) -> list[int]:
    from berth.cli.format import parse_filters
    f = events.EventFilter(parse_filters(filters))
    return [e.id for e in events_ if f.match(events.message(e))]


LOG = [
    CREATE,
    TAG,
    OTHER,
    Event(10, 1, "container", "start", CID, {"name": "foo", "image": "bb:test", "app": "web"}),
    Event(11, 1, "container", "die", "9" * 64, {"name": "bar", "image": "other:1",
                                                "exitCode": "0"}),
    Event(12, 1, "container", "exec_start: sh -c true", CID, {"name": "foo"}),
    Event(13, 1, "container", "health_status: healthy", CID, {"name": "foo"}),
    Event(14, 1, "volume", "create", "vol1", {"driver": "local"}),
]


@pytest.mark.parametrize("filters, ids", [
    ((), [7, 8, 9, 10, 11, 12, 13, 14]),
    (("type=container",), [7, 10, 11, 12, 13]),
    (("type=image", "type=network"), [8, 9]),                       # one key: OR
    (("type=container", "event=die"), [11]),                        # two keys: AND
    (("event=create", "event=start"), [7, 9, 10, 14]),
    (("event=exec_start",), [12]),                                  # by prefix, as docker
    (("event=health_status",), [13]),
    (("event=exec",), []),
    (("container=foo",), [7, 10, 12, 13]),                           # name
    (("container=fo",), [7, 10, 12, 13]),                            # name prefix
    (("container=4f3c",), [7, 10, 12, 13]),                          # id prefix
    (("container=" + CID,), [7, 10, 12, 13]),
    (("container=foo", "container=bar"), [7, 10, 11, 12, 13]),
    (("container=nothing",), []),
    (("image=bb:test",), [7, 8, 10]),                                # image attr, image name
    (("image=bb",), [7, 8, 10]),                                     # without the tag
    (("image=other",), [11]),
    (("image=sha256:" + "ab" * 32,), [8]),
    (("image=b",), []),                                              # exact, not a prefix
    (("network=net1",), [9]),
    (("volume=vol",), [14]),
    (("label=app",), [10]),
    (("label=app=web",), [10]),
    (("label=app=db",), []),
    (("scope=local", "type=volume"), [14]),
    (("scope=swarm",), []),
    (("nonsense=1",), [7, 8, 9, 10, 11, 12, 13, 14]),              # ignored, as the daemon
])
def test_filter(filters: tuple[str, ...], ids: list[int]) -> None:
    assert keep(LOG, *filters) == ids


# --- the database: enrich and follow ------------------------------------------------------------

@pytest.fixture
def db(tmp_path: Path) -> Any:
    with Database(tmp_path) as d:
        yield d


def test_enrich_adds_the_image_and_labels_of_container_events(db: Database) -> None:
    cid = "c" * 64
    db.record_event("image", "import", "sha256:" + "1" * 64, {"name": "bb:test"})
    db.record_event("container", "create", cid, {"name": "x", "image": "bb:test"})
    db.record_event("container", "start", cid, {"name": "x"})
    db.record_event("container", "destroy", "d" * 64, {"name": "gone"})  # no create: as is
    out = events.enrich(db, db.events())
    assert [e.attributes for e in out] == [
        {"name": "bb:test"}, {"name": "x", "image": "bb:test"},
        {"name": "x", "image": "bb:test"}, {"name": "gone"}]


def test_follow_past_then_live_until(db: Database) -> None:
    t0 = 1_800_000_000 * NS
    for i, action in enumerate(("load", "tag", "untag")):
        db.record_event("image", action, f"sha256:{i}", {"name": "x"}, time_ns=t0 + i * NS)
    clock = [1_800_000_010.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        if len(slept) == 2:  # a new event arrives while following
            db.record_event("image", "delete", "sha256:9", {"name": "x"},
                            time_ns=int(clock[0] * NS))
        clock[0] += s

    got = list(events.follow(db, since_ns=t0 + NS, until_ns=t0 + 10 * NS + NS // 2,
                             now=lambda: clock[0], sleep=sleep))
    assert [m["Action"] for m in got] == ["tag", "untag", "delete"]
    assert sum(slept) == pytest.approx(0.5)
    # until in the past: past events only, no polling
    slept.clear()
    got = list(events.follow(db, since_ns=None, until_ns=t0 + NS, now=lambda: clock[0],
                             sleep=sleep))
    assert [m["Action"] for m in got] == ["load", "tag"] and slept == []


def test_follow_without_bounds_shows_only_new_events(db: Database) -> None:
    db.record_event("image", "load", "sha256:old", {"name": "old"})
    stream = events.follow(db, since_ns=None, until_ns=None, poll=0,
                           keep=lambda m: m["Action"] != "tag",
                           sleep=lambda s: None)
    db.record_event("image", "tag", "sha256:new", {"name": "new:1"})
    db.record_event("image", "untag", "sha256:new", {"name": "new:1"})
    first = next(stream)
    assert (first["Action"], first["id"]) == ("untag", "sha256:new")
    stream.close()


# --- info and version ---------------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /var/lib rw shared:2 - xfs /dev/sdb rw
31 30 0:27 / /var/lib/berth\\040x rw shared:3 - tmpfs tmpfs rw
32 22 0:28 / /mnt/f rw - fuse.sshfs host: rw
"""


@pytest.mark.parametrize("path, name", [
    ("relative/path", "<unknown>"), ("/home/x", "extfs"), ("/var/lib/berth", "xfs"),
    ("/var/lib/berth x/containers", "tmpfs"), ("/var/libx", "extfs"), ("/mnt/f/a", "fuse"),
])
def test_backing_filesystem(path: str, name: str) -> None:
    assert backing_filesystem(path, MOUNTINFO) == name


INFO = {"ID": "u", "Containers": 3, "ContainersRunning": 1, "ContainersPaused": 1,
        "ContainersStopped": 1, "Images": 2, "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"]], "CpuCfsPeriod": True,
        "HttpProxy": "", "CgroupVersion": "", "Name": "h"}


def test_info_template_data() -> None:
    data = cli_info.template_data(INFO, cli_info.client_info())
    assert Template("{{.Containers}} {{.ContainersPaused}} {{.Driver}} {{.CPUCfsPeriod}} "
                    "{{.ClientInfo.Context}}").execute(data) == "3 1 overlay2 true default"
    doc = json.loads(Template("{{json .}}").execute(data))
    assert list(doc)[:3] == ["ID", "Containers", "ContainersRunning"]
    assert "CpuCfsPeriod" in doc and "HttpProxy" in doc and "CgroupVersion" not in doc
    assert list(doc)[-1] == "ClientInfo" and doc["ClientInfo"]["Plugins"] == []
    assert "ServerErrors" not in doc


def test_version_template_data() -> None:
    from berth import __version__
    from berth.engine.info import server_version
    client, server = cli_version.client_version(), server_version()
    data = cli_version.template_data(client, server)
    assert Template("{{.Client.Version}} {{.Server.Version}} {{.Server.APIVersion}} "
                    "{{(index .Server.Components 0).Name}}").execute(data) == \
        f"{__version__} {__version__} 1.45 Engine"
    doc = json.loads(Template("{{json .}}").execute(data))
    assert list(doc) == ["Client", "Server"]
    assert doc["Client"]["ApiVersion"] == "1.45" and "GitCommit" not in doc["Client"]
    assert doc["Server"]["Components"][0]["Details"]["MinAPIVersion"] == "1.24"
    assert "Experimental" not in doc["Server"] and doc["Server"]["Os"] == "linux"
    text = cli_version.pretty(client, server)
    assert text.startswith("Client:\n Version:           " + __version__ + "\n")
    assert "\nServer: berth\n Engine:\n  Version:          " in text
