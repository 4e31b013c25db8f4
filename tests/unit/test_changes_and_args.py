"""Pure parts of the CLI and of `--change`: pflag's grammar and errors, and Dockerfile
instructions applied to an image config as docker's commit/import do."""

from __future__ import annotations

import pytest

from berth.cli.args import Command, Flag, HelpRequested, UsageError
from berth.errors import InvalidArgument
from berth.image.changes import apply_changes, parse_duration, split_words

LS = Command("berth image ls", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", [
    Flag("all", "a"), Flag("quiet", "q"), Flag("no-trunc"),
    Flag("filter", "f", "filter", repeat=True), Flag("format", value="string"),
], max_args=1)


@pytest.mark.parametrize("argv, all_, quiet, filters, fmt, rest", [
    (["-aq"], True, True, [], "", []),
    (["-a", "-q", "busybox"], True, True, [], "", ["busybox"]),
    (["busybox", "-a"], True, False, [], "", ["busybox"]),  # interspersed
    (["-f", "dangling=true", "--filter=label=x", "-flabel=y"], False, False,
     ["dangling=true", "label=x", "label=y"], "", []),
    (["--format", "{{.ID}}", "--all=false"], False, False, [], "{{.ID}}", []),
    (["--", "-a"], False, False, [], "", ["-a"]),
])
def test_pflag_grammar(argv, all_, quiet, filters, fmt, rest) -> None:
    opts, args = LS.parse(argv)
    assert (opts["all"], opts["quiet"], opts["filter"], opts["format"], args) == \
        (all_, quiet, filters, fmt, rest)
    assert opts["no_trunc"] is False


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "unknown flag: --bogus"),
    (["-x"], "unknown shorthand flag: 'x' in -x"),
    (["-f"], "flag needs an argument: -f, --filter"),
    (["--format"], "flag needs an argument: --format"),
    (["a", "b"], '"berth image ls" requires at most 1 argument.'),
    (["--all=maybe"], 'invalid argument "maybe" for "--all" flag'),
])
def test_pflag_errors(argv, message) -> None:
    with pytest.raises(UsageError) as e:
        LS.parse(argv)
    assert message in str(e.value)
    assert "See 'berth image ls --help'." in str(e.value)


def test_help_lists_every_flag() -> None:
    with pytest.raises(HelpRequested) as h:
        LS.parse(["-a", "--help"])
    text = h.value.text
    assert text.startswith("Usage:  berth image ls [OPTIONS] [REPOSITORY[:TAG]]")
    for flag in ("-a, --all", "-q, --quiet", "--no-trunc", "-f, --filter filter", "--help"):
        assert flag in text


def test_exact_argument_count() -> None:
    tag = Command("berth image tag", "SOURCE TARGET", "Tag", min_args=2, max_args=2)
    with pytest.raises(UsageError, match="requires exactly 2 arguments"):
        tag.parse(["a"])
    assert tag.parse(["a", "b"])[1] == ["a", "b"]


# --- --change --------------------------------------------------------------------------------

def test_cmd_and_entrypoint_forms() -> None:
    c = apply_changes({}, ['CMD ["echo", "hi"]'])
    assert c["Cmd"] == ["echo", "hi"]
    c = apply_changes({}, ["CMD echo hi"])
    assert c["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    c = apply_changes({}, ["CMD [not json"])  # invalid JSON falls back to the shell form
    assert c["Cmd"] == ["/bin/sh", "-c", "[not json"]
    # ENTRYPOINT clears an inherited CMD, but not one set by an earlier change
    assert apply_changes({"Cmd": ["x"]}, ['ENTRYPOINT ["top"]'])["Cmd"] is None
    c = apply_changes({"Cmd": ["x"]}, ['CMD ["-b"]', 'ENTRYPOINT ["top"]'])
    assert c["Cmd"] == ["-b"] and c["Entrypoint"] == ["top"]


def test_env_label_expose_volume_workdir_user() -> None:
    c = apply_changes({"Env": ["PATH=/bin", "A=old"]}, [
        'ENV A=new B="two words" C=x\\ y', "ENV LEGACY some value",
        'LABEL "with space"="v 1" k=v', "EXPOSE 80 53/udp 9000-9001",
        'VOLUME ["/data", "/logs"]', "VOLUME /cache", "WORKDIR /srv", "WORKDIR app",
        "USER app:app", "STOPSIGNAL SIGINT"])
    assert c["Env"] == ["PATH=/bin", "A=new", "B=two words", "C=x y", "LEGACY=some value"]
    assert c["Labels"] == {"with space": "v 1", "k": "v"}
    assert sorted(c["ExposedPorts"]) == ["53/udp", "80/tcp", "9000/tcp", "9001/tcp"]
    assert sorted(c["Volumes"]) == ["/cache", "/data", "/logs"]
    assert c["WorkingDir"] == "/srv/app" and c["User"] == "app:app"
    assert c["StopSignal"] == "SIGINT"


def test_healthcheck_and_onbuild() -> None:
    c = apply_changes({}, ["HEALTHCHECK --interval=5s --timeout=1m30s --retries=3 CMD "
                           "wget -q localhost"])
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost"],
                                "Interval": 5_000_000_000, "Timeout": 90_000_000_000,
                                "Retries": 3}
    assert apply_changes({}, ['HEALTHCHECK CMD ["true"]'])["Healthcheck"] == \
        {"Test": ["CMD", "true"]}
    assert apply_changes({}, ["HEALTHCHECK NONE"])["Healthcheck"] == {"Test": ["NONE"]}
    assert apply_changes({}, ["onbuild run echo x"])["OnBuild"] == ["RUN echo x"]


@pytest.mark.parametrize("change, message", [
    ("RUN echo hi", "RUN is not a valid change command"),
    ("FROM busybox", "FROM is not a valid change command"),
    ("EXPOSE 70000", "invalid port range"),
    ("EXPOSE 80/xyz", "invalid protocol"),
    ("ENV =x", "is not KEY=VALUE"),
    ("ENV A", "expects KEY=VALUE pairs"),
    ("HEALTHCHECK --interval=5 CMD true", "invalid duration"),
    ("HEALTHCHECK --bogus=1 CMD true", "unknown flag --bogus"),
    ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger"),
    ("LABEL a='unterminated", "unmatched ' quote"),
    ("USER", "USER requires an argument"),
])
def test_bad_changes_name_what_is_wrong(change, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        apply_changes({}, [change])


def test_durations_and_words() -> None:
    assert parse_duration("1h2m3.5s", "x") == 3_723_500_000_000
    assert parse_duration("250ms", "x") == 250_000_000
    assert parse_duration("0", "x") == 0
    assert split_words("a 'b c' \"d \\\" e\" f\\ g", "x") == ["a", "b c", 'd " e', "f g"]
