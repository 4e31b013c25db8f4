"""The docker CLI's output, as pure functions: templates, tables, sizes, durations, filters."""

from __future__ import annotations

import pytest

from berth.cli.output import (Template, bytes_size, ellipsis, go_json, human_duration,
                              human_size, parse_filters, parse_rfc3339, render, since)
from berth.errors import InvalidArgument


@pytest.mark.parametrize("n, text", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1500, "1.5kB"), (1_985_581, "1.99MB"),
    (4_261_234, "4.26MB"), (123_456_789, "123MB"), (1_000_000_000, "1GB"),
])
def test_human_size_is_go_units_with_precision_3(n: int, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize("n, text", [(0, "0B"), (1024, "1KiB"), (1536, "1.5KiB"),
                                     (1024 ** 2 * 5, "5MiB"), (1023, "1023B")])
def test_bytes_size(n: int, text: str) -> None:
    assert bytes_size(n) == text


@pytest.mark.parametrize("seconds, text", [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (2 * 3600, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (59 * 86400, "8 weeks"), (60 * 86400, "2 months"), (729 * 86400, "24 months"),
    (730 * 86400, "2 years"),
])
def test_human_duration_thresholds(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_since_and_rfc3339() -> None:
    ts = parse_rfc3339("2026-11-28T04:16:10.5Z")
    assert ts == 1795839370.5
    assert parse_rfc3339("2026-11-28T05:16:10.5+01:00") == ts
    assert parse_rfc3339("0001-01-01T00:00:00Z") == 0.0 and parse_rfc3339("junk") == 0.0
    assert since(ts, now=ts + 7200) == "2 hours ago"


def test_templates() -> None:
    row = {"ID": "abc", "Tags": ["a", "b"], "Labels": {"k": "<v>"}, "Config": {"Env": None},
           "N": 3, "Empty": []}
    assert Template("{{.ID}}:{{.N}}").execute(row) == "abc:3"
    assert Template("{{json .Labels}}").execute(row) == '{"k":"\\u003cv\\u003e"}'
    assert Template("{{.Labels | json}}").execute(row) == '{"k":"\\u003cv\\u003e"}'
    assert Template('{{join .Tags ","}}').execute(row) == "a,b"
    assert Template("{{range .Tags}}[{{.}}]{{end}}").execute(row) == "[a][b]"
    assert Template("{{if .Empty}}yes{{else}}no{{end}}").execute(row) == "no"
    assert Template('{{index .Labels "k"}} {{upper .ID}}').execute(row) == "<v> ABC"
    assert Template("{{.Tags}} {{.Config.Env}}").execute(row) == "[a b] <no value>"


@pytest.mark.parametrize("text, message", [
    ("{{.Nope}}", "can't evaluate field Nope"),
    ("{{.ID", "unclosed action"),
    ("{{if .ID}}x", "missing {{end}}"),
    ("{{nosuch .ID}}", "nosuch is not a function"),
    ("{{end}}", "unexpected {{end}}"),
])
def test_template_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("{", r"\{").replace("}", r"\}")):
        Template(text).execute({"ID": "x"})


def test_table_is_aligned_like_dockers_tabwriter() -> None:
    rows = [{"Repository": "busybox", "Tag": "latest", "ID": "a416a98b71e2",
             "CreatedSince": "4 months ago", "Size": "4.26MB"},
            {"Repository": "localhost/fixture/layers", "Tag": "1", "ID": "2fd994f5df6d",
             "CreatedSince": "5 hours ago", "Size": "1.99MB"}]
    headers = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
               "CreatedSince": "CREATED", "Size": "SIZE"}
    out = render(rows, "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
                 headers)
    assert out == (
        "REPOSITORY                 TAG       IMAGE ID       CREATED        SIZE\n"
        "busybox                    latest    a416a98b71e2   4 months ago   4.26MB\n"
        "localhost/fixture/layers   1         2fd994f5df6d   5 hours ago    1.99MB\n")
    assert render(rows, "{{.ID}}", headers) == "a416a98b71e2\n2fd994f5df6d\n"
    assert render(rows, "table {{.ID}}\\t{{.Tag}}", headers).splitlines()[0] == \
        "IMAGE ID       TAG"
    assert render([], "table {{.ID}}", headers) == "IMAGE ID\n"


def test_json_and_ellipsis() -> None:
    assert go_json({"b": 1, "a": [True, None]}) == '{"b":1,"a":[true,null]}'
    assert ellipsis("abcdef", 4) == "abc…" and ellipsis("abc", 4) == "abc"


def test_filters() -> None:
    assert parse_filters(["dangling=true", "label=a=b", "label=c"], {"dangling", "label"}) == \
        {"dangling": ["true"], "label": ["a=b", "c"]}
    with pytest.raises(InvalidArgument, match="invalid filter 'nope'"):
        parse_filters(["nope=1"], {"label"})
    with pytest.raises(InvalidArgument, match="bad format of filter"):
        parse_filters(["label"], {"label"})
