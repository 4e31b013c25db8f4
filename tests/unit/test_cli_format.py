"""berth.cli.format against what docker, go-units and Go's text/template print."""

from __future__ import annotations

import pytest

from berth.cli.format import (GoMap, Template, TemplateError, bytes_size, created_at, go_json,
                              human_duration, human_size, parse_filters, render, rfc3339_nano,
                              since, tabwrite)
from berth.errors import InvalidArgument

IMAGES_TABLE = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                 "CreatedSince": "CREATED", "Size": "SIZE"}
IMAGES = [
    {"Repository": "alpine", "Tag": "latest", "ID": "1d34ffeaf190", "CreatedSince": "2 weeks ago",
     "Size": "7.8MB"},
    {"Repository": "registry.example.com/team/app", "Tag": "v1.2.3", "ID": "0123456789ab",
     "CreatedSince": "3 hours ago", "Size": "123MB"},
]


def run(text: str, data: object) -> str:
    return Template(text).execute(data)


# --- tables ------------------------------------------------------------------------------------

def test_images_default_table_matches_docker() -> None:
    assert render(IMAGES, None, default_table=IMAGES_TABLE, headers=IMAGE_HEADERS) == (
        "REPOSITORY                      TAG       IMAGE ID       CREATED       SIZE\n"
        "alpine                          latest    1d34ffeaf190   2 weeks ago   7.8MB\n"
        "registry.example.com/team/app   v1.2.3    0123456789ab   3 hours ago   123MB\n")


def test_empty_table_still_prints_the_header() -> None:
    assert render([], "table", default_table=IMAGES_TABLE, headers=IMAGE_HEADERS) == (
        "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n")


def test_custom_table_header_keeps_titles_through_functions() -> None:
    rows = [{"ID": "abc", "Repository": "Alpine"}]
    out = render(rows, "table {{.ID | upper}}\\t{{lower .Repository}}", default_table="",
                 headers=IMAGE_HEADERS)
    assert out == "IMAGE ID   REPOSITORY\nABC        alpine\n"


def test_header_of_unknown_title_is_no_value_as_docker() -> None:
    out = render([], "table {{.ID}}\\t{{.Digest}}", default_table="", headers={"ID": "IMAGE ID"})
    assert out == "IMAGE ID   <no value>\n"


def test_plain_template_no_header_no_alignment() -> None:
    out = render(IMAGES, "{{.Repository}}:{{.Tag}}\\t{{.Size}}", default_table=IMAGES_TABLE)
    assert out == "alpine:latest\t7.8MB\nregistry.example.com/team/app:v1.2.3\t123MB\n"


def test_quiet_uses_the_id_unless_a_custom_format_is_given() -> None:
    assert render(IMAGES, None, default_table=IMAGES_TABLE, quiet=True) == (
        "1d34ffeaf190\n0123456789ab\n")
    assert render(IMAGES, "{{.Tag}}", default_table=IMAGES_TABLE, quiet=True) == (
        "latest\nv1.2.3\n")


def test_json_format_sorts_keys_like_docker_contexts() -> None:
    rows = [{"Repository": "a<b", "ID": "x", "Containers": "N/A"}]
    assert render(rows, "json", default_table=IMAGES_TABLE) == (
        '{"Containers":"N/A","ID":"x","Repository":"a<b"}\n')


def test_render_wraps_errors_as_docker() -> None:
    with pytest.raises(InvalidArgument, match=r'^template parsing error: template: :1:2: '
                                              r'executing "" at <\.Foo>: can\'t evaluate '
                                              r"field Foo in type \*formatter\.ImageContext$"):
        render(IMAGES, "{{.Foo}}", default_table="", type_name="*formatter.ImageContext")


def test_tabwriter_minwidth_padding_and_last_cell() -> None:
    assert tabwrite("a\tbbbbbbbbbbbbb\tc\nxx\ty\tzzz\n") == (
        "a         bbbbbbbbbbbbb   c\n"
        "xx        y               zzz\n")
    # an empty cell is padded; text after the last tab is never padded
    assert tabwrite("\tb\nlonger-than-ten\t\n") == (
        "                  b\n"
        "longer-than-ten   \n")


def test_tabwriter_columns_are_contiguous_blocks() -> None:
    # Go's example: b and c are distinct columns because the b column is interrupted
    assert tabwrite("aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n", minwidth=0,
                    padding=1) == (
        "aaaa bbb d\n"
        "aa   b   dd\n"
        "a    \n"
        "aa   cccc eee\n")


def test_tabwriter_wide_characters_count_two() -> None:
    assert tabwrite("名前\tx\nab\ty\n", minwidth=0, padding=1) == "名前 x\nab   y\n"


# --- templates ---------------------------------------------------------------------------------

def test_fields_nested_and_dot() -> None:
    assert run("{{.A}} {{.B.C}} {{.}}", {"A": "x", "B": {"C": 3}}) == "x 3 map[A:x B:map[C:3]]"


def test_go_printing_of_values() -> None:
    data = {"L": ["a", "b"], "T": True, "N": None, "F": 1234567.0, "G": 0.5, "I": 7}
    assert run("{{.L}} {{.T}} {{.N}} {{.F}} {{.G}} {{.I}}", data) == (
        "[a b] true <nil> 1.234567e+06 0.5 7")


def test_escapes_are_replaced_before_parsing_like_docker() -> None:
    out = render([{"A": "1", "B": "2"}], "{{.A}}\\n{{.B}}", default_table="")
    assert out == "1\n2\n"
    # docker turns the \n inside the quotes into a newline too, which Go rejects
    with pytest.raises(InvalidArgument, match="unterminated quoted string"):
        render([{"L": ["a"]}], '{{join .L "\\n"}}', default_table="")


def test_docker_functions() -> None:
    data = {"L": ["a", "b"], "S": "HeLLo wor-ld", "E": ""}
    assert run('{{join .L ", "}}', data) == "a, b"
    assert run("{{lower .S}}|{{upper .S}}|{{title .S}}", data) == (
        "hello wor-ld|HELLO WOR-LD|HeLLo Wor-Ld")
    assert run('{{split "a:b:c" ":"}}', data) == "[a b c]"
    assert run("{{truncate .S 5}}|{{truncate .S 50}}", data) == "HeLLo|HeLLo wor-ld"
    assert run("[{{pad .S 1 2}}][{{pad .E 1 2}}]", data) == "[ HeLLo wor-ld  ][]"
    assert run("{{.S | lower | printf \"%q\"}}", data) == '"hello wor-ld"'


def test_go_builtins() -> None:
    data = {"M": {"k": "v"}, "L": [10, 20], "N": 3}
    assert run('{{index .M "k"}}{{index .M "nope"}}|{{index .L 1}}', data) == "v|20"
    assert run("{{len .L}} {{println 1 2}}{{print 1 2 \"a\" 3}}", data) == "2 1 2\n1 2a3"
    assert run('{{printf "%5s|%-4d|%v|%03d|%.2f" "ab" 3 .L 7 2.5}}', data) == (
        "   ab|3   |[10 20]|007|2.50")
    assert run("{{if and .N (eq .N 3)}}yes{{end}}{{if or .X 0}}{{else}}no{{end}}",
               {"N": 3, "X": 0}) == "yesno"
    assert run("{{if gt .N 2}}big{{end}}{{if not .N}}zero{{end}}", data) == "big"


def test_range_if_with_else_and_variables() -> None:
    assert run("{{range .L}}[{{.}}]{{else}}none{{end}}", {"L": [1, 2]}) == "[1][2]"
    assert run("{{range .L}}[{{.}}]{{else}}none{{end}}", {"L": []}) == "none"
    assert run("{{range $i, $e := .L}}{{$i}}={{$e}};{{end}}", {"L": ["a", "b"]}) == "0=a;1=b;"
    assert run("{{range $k, $v := .M}}{{$k}}={{$v}},{{end}}", {"M": {"b": 2, "a": 1}}) == (
        "a=1,b=2,")
    assert run("{{if .X}}x{{else if .Y}}y{{else}}z{{end}}", {"X": 0, "Y": "1"}) == "y"
    assert run("{{with .A}}{{.}}{{else}}empty{{end}}", {"A": ""}) == "empty"
    assert run("{{$x := .A}}{{$x}}{{$x = 5}}{{$x}}{{range .L}}{{$.A}}{{end}}",
               {"A": 1, "L": [0, 0]}) == "1511"
    assert run("{{range .L}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}}", {"L": [1, 2, 3]}) == "1"


def test_trim_markers_and_comments() -> None:
    assert run("{{- /* note */ -}}  {{.A -}}   \n  {{- .A}}", {"A": 1}) == "11"


def test_methods_are_callables() -> None:
    labels = {"com.example": "yes"}
    data = {"Label": lambda k: labels.get(k, ""), "ID": "abc"}
    assert run('{{.Label "com.example"}}/{{.Label "x"}}/{{.ID}}', data) == "yes//abc"


def test_json_function_is_go_encoding_without_html_escaping() -> None:
    data = {"b": [1.5, 1e21, 1e-7, None, True, 3], "a": "<&>\u2028\x01\b\"\\\n",
            "m": GoMap(z=1, a=2)}
    assert run("{{json .}}", data) == (
        '{"b":[1.5,1e+21,1e-7,null,true,3],"a":"<&>\\u2028\\u0001\\b\\"\\\\\\n",'
        '"m":{"a":2,"z":1}}')
    assert run("{{json .a}}", data) == '"<&>\\u2028\\u0001\\b\\"\\\\\\n"'


def test_go_json_marshal_escapes_html_and_indents() -> None:
    assert go_json({"a": "<x>&"}) == '{"a":"\\u003cx\\u003e\\u0026"}'
    assert go_json({"a": [1, {}], "b": []}, indent="    ") == (
        '{\n    "a": [\n        1,\n        {}\n    ],\n    "b": []\n}')
    assert go_json([100000000000000000000.0, 0.000001, 12.0]) == (
        "[100000000000000000000,0.000001,12]")


def test_map_semantics_for_gomap() -> None:
    assert run("{{.M.missing}}|{{.M.k}}", {"M": GoMap(k=1)}) == "<no value>|1"
    with pytest.raises(TemplateError, match='map has no entry for key "missing"'):
        Template("{{.missing}}", missingkey="error").execute(GoMap(k=1))


@pytest.mark.parametrize("text,data,message", [
    ("{{.Foo}}", {"A": 1},
     'template: :1:2: executing "" at <.Foo>: can\'t evaluate field Foo in type '
     "map[string]interface {}"),
    ("x\n {{.A.Foo}}", {"A": "s"},
     'template: :2:3: executing "" at <.A.Foo>: can\'t evaluate field Foo in type string'),
    ("{{lower .N}}", {"N": 3},
     'template: :1:8: executing "" at <.N>: wrong type for value; expected string; got int'),
    ("{{join .L}}", {"L": []},
     'template: :1:2: executing "" at <join>: wrong number of args for join: want 2 got 1'),
    ("{{index .L 3}}", {"L": [1]},
     'template: :1:2: executing "" at <index>: error calling index: index out of range: 3'),
    ("{{.N.X}}", {"N": None}, "nil pointer evaluating interface {}.X"),
    ("{{foo}}", {}, 'template: :1: function "foo" not defined'),
    ("{{if .A}}", {}, "template: :1: unexpected EOF"),
    ("{{end}}", {}, "template: :1: unexpected {{end}}"),
    ("{{.A", {}, "template: :1: unclosed action"),
    ("{{}}", {}, "template: :1: missing value for command"),
    ("{{$x}}", {}, 'template: :1: undefined variable "$x"'),
    ('{{"abc}}', {}, "template: :1: unterminated quoted string"),
])
def test_template_errors(text: str, data: object, message: str) -> None:
    with pytest.raises(TemplateError) as exc:
        run(text, data)
    assert message in str(exc.value)
    assert isinstance(exc.value, InvalidArgument)


# --- go-units ----------------------------------------------------------------------------------

KiB, MiB, GiB, TiB, PiB = 1024, 1024**2, 1024**3, 1024**4, 1024**5


@pytest.mark.parametrize("n,text", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1024, "1.02kB"), (5600, "5.6kB"),
    (1_500_000, "1.5MB"), (123_456_789, "123MB"), (999_999, "1e+03kB"), (3.42e9, "3.42GB"),
    (7_800_000, "7.8MB"),
])
def test_human_size_precision_3(n: float, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize("n,text", [  # go-units TestHumanSize (precision 4)
    (1000, "1kB"), (1024, "1.024kB"), (1_000_000, "1MB"), (1_048_576, "1.049MB"),
    (2_000_000, "2MB"), (3.42e9, "3.42GB"), (5.372e12, "5.372TB"), (2.22e15, "2.22PB"),
    (1e13 * 1e15, "1e+04YB"),
])
def test_human_size_go_units_table(n: float, text: str) -> None:
    assert human_size(n, 4) == text


@pytest.mark.parametrize("n,text", [  # go-units TestBytesSize
    (1024, "1KiB"), (1024 * 1024, "1MiB"), (1048576, "1MiB"), (2 * MiB, "2MiB"),
    (3.42 * GiB, "3.42GiB"), (5.372 * TiB, "5.372TiB"), (2.22 * PiB, "2.22PiB"),
    (KiB**5 * PiB, "1.049e+06YiB"), (0, "0B"), (1023, "1023B"),
])
def test_bytes_size(n: float, text: str) -> None:
    assert bytes_size(n) == text


MINUTE, HOUR = 60, 3600
DAY, WEEK, MONTH, YEAR = 24 * HOUR, 7 * 24 * HOUR, 30 * 24 * HOUR, 365 * 24 * HOUR


@pytest.mark.parametrize("seconds,text", [  # go-units TestHumanDuration
    (0.45, "Less than a second"), (1, "1 second"), (45, "45 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (3 * MINUTE, "3 minutes"), (35 * MINUTE + 40, "35 minutes"),
    (45 * MINUTE + 40, "45 minutes"), (59 * MINUTE, "59 minutes"), (HOUR, "About an hour"),
    (HOUR + 29 * MINUTE, "About an hour"), (HOUR + 31 * MINUTE, "2 hours"),
    (HOUR + 59 * MINUTE, "2 hours"), (3 * HOUR + 29 * MINUTE, "3 hours"),
    (3 * HOUR + 31 * MINUTE, "4 hours"), (24 * HOUR, "24 hours"), (DAY + 12 * HOUR, "36 hours"),
    (2 * DAY, "2 days"), (7 * DAY, "7 days"), (13 * DAY + 5 * HOUR, "13 days"),
    (2 * WEEK, "2 weeks"), (2 * WEEK + 4 * DAY, "2 weeks"), (3 * WEEK, "3 weeks"),
    (4 * WEEK + 3 * DAY, "4 weeks"), (MONTH, "4 weeks"), (MONTH + 2 * WEEK, "6 weeks"),
    (2 * MONTH, "2 months"), (3 * MONTH + WEEK, "3 months"), (5 * MONTH + 2 * WEEK, "5 months"),
    (13 * MONTH, "13 months"), (23 * MONTH, "23 months"), (24 * MONTH, "24 months"),
    (24 * MONTH + 2 * WEEK, "2 years"), (3 * YEAR + 2 * MONTH, "3 years"),
    (-5, "Less than a second"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_since_and_times() -> None:
    assert since(1000, now=1000 + 2 * HOUR) == "2 hours ago"
    assert rfc3339_nano(1700000000) == "2023-11-14T22:13:20Z"
    assert rfc3339_nano(1700000000.25) == "2023-11-14T22:13:20.25Z"


def test_created_at_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert created_at(1700000000) == "2023-11-14 22:13:20 +0000 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


# --- --filter ----------------------------------------------------------------------------------

def test_parse_filters() -> None:
    assert parse_filters(["dangling=true", " Label = a=b ", "label=c"],
                         {"dangling", "label"}) == {"dangling": ["true"], "label": ["a=b", "c"]}


def test_parse_filters_errors_match_docker() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_filters(["dangling"], {"dangling"})
    assert str(exc.value) == ('invalid argument "dangling" for "-f, --filter" flag: '
                              "bad format of filter (expected name=value)")
    with pytest.raises(InvalidArgument) as exc:
        parse_filters(["foo=bar"], {"dangling"})
    assert str(exc.value) == "invalid filter 'foo'"


def test_import_is_lean() -> None:
    import subprocess
    import sys
    code = ("import sys; import berth.cli.format; "
            "print(' '.join(m for m in ('re', 'json', 'unicodedata') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert "json" not in out and "unicodedata" not in out


def test_shared_helpers_for_the_commands() -> None:
    from berth.cli.format import ellipsis, json_indent, parse_rfc3339, rfc3339
    ts = parse_rfc3339("2026-11-28T04:16:10.5Z")
    assert ts == 1795839370.5
    assert parse_rfc3339("2026-11-28T05:16:10.5+01:00") == ts
    assert parse_rfc3339("0001-01-01T00:00:00Z") == 0.0 and parse_rfc3339("junk") == 0.0
    assert rfc3339(1795839370.5) == "2026-11-28T04:16:10Z"
    assert ellipsis("abcdef", 4) == "abc…" and ellipsis("abc", 4) == "abc"
    assert json_indent([{"a": 1}]) == '[\n    {\n        "a": 1\n    }\n]'
