"""`--change` for `import` and `commit`: Dockerfile instructions applied to an image's config.

    apply_changes(config, ["CMD [\"sh\"]", "ENV A=1 B=\"two words\"", "EXPOSE 80/tcp"]) -> config

`config` is the image config's `config` object in docker's JSON form (Cmd, Entrypoint, Env,
ExposedPorts, Labels, User, Volumes, WorkingDir, StopSignal, Healthcheck, OnBuild); a new dict is
returned. The instructions docker allows here (its validCommitCommands): CMD, ENTRYPOINT, ENV,
EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR. As in a Dockerfile, JSON
arrays are the exec form and anything else the shell form (`/bin/sh -c TEXT`), and ENTRYPOINT
clears a CMD that was not set by an earlier change. Pure; raises InvalidArgument naming the
change that is wrong.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from typing import Any

from berth.errors import InvalidArgument

__all__ = ["ALLOWED", "apply_changes", "expose_ports", "healthcheck_config", "parse_duration",
           "split_words"]

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL",
           "USER", "VOLUME", "WORKDIR")
_SHELL = ["/bin/sh", "-c"]
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def split_words(text: str, what: str) -> list[str]:
    """Whitespace-separated words; double and single quotes group, backslash escapes (as
    docker's lexer treats ENV and LABEL arguments). Quotes are removed."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < len(text) and text[i + 1] in '"\\$`':
                i += 1
                cur.append(text[i])
            else:
                cur.append(c)
        elif c in "\"'":
            quote = c
            in_word = True
        elif c == "\\" and i + 1 < len(text):
            i += 1
            cur.append(text[i])
            in_word = True
        elif c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(c)
            in_word = True
        i += 1
    if quote:
        raise InvalidArgument(f"{what}: unmatched {quote} quote")
    if in_word:
        words.append("".join(cur))
    return words


def _json_array(text: str) -> list[str] | None:
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return None  # docker falls back to the shell form
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return None
    return v


def _command(text: str) -> list[str]:
    arr = _json_array(text)
    return arr if arr is not None else [*_SHELL, text.strip()]


def _pairs(rest: str, what: str, legacy_ok: bool) -> list[tuple[str, str]]:
    words = split_words(rest, what)
    if not words:
        raise InvalidArgument(f"{what}: requires at least one argument")
    if "=" not in words[0]:
        if not legacy_ok or len(words) < 2:
            raise InvalidArgument(f"{what}: expects KEY=VALUE pairs")
        # the legacy `ENV KEY value with spaces` form: the rest of the line, as written
        key = words[0]
        value = rest.strip()[len(rest.strip().split(None, 1)[0]):].strip()
        return [(key, " ".join(split_words(value, what)) if value else "")]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what}: {w!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def parse_duration(text: str, what: str) -> int:
    """A Go duration (`30s`, `1m30s`, `1.5h`, `500ms`) in nanoseconds."""
    s = text.strip()
    if s == "0":
        return 0
    total = 0.0
    i = 0
    if not s:
        raise InvalidArgument(f"{what}: empty duration")
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        if j == i:
            raise InvalidArgument(f"{what}: invalid duration {text!r}")
        num = s[i:j]
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        unit = s[j:k]
        if unit not in _UNITS:
            raise InvalidArgument(f"{what}: invalid duration {text!r} (unit {unit!r})")
        try:
            total += float(num) * _UNITS[unit]
        except ValueError:
            raise InvalidArgument(f"{what}: invalid duration {text!r}") from None
        i = k
    return int(total)


def expose_ports(words: list[str], what: str) -> list[str]:
    out = []
    for w in words:
        port, _, proto = w.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"{what}: invalid protocol {proto!r} in {w!r}")
        lo, dash, hi = port.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise InvalidArgument(f"{what}: invalid port {w!r}") from None
        if not (0 < a <= b <= 65535):
            raise InvalidArgument(f"{what}: invalid port range {w!r}")
        out += [f"{p}/{proto}" for p in range(a, b + 1)]
    return out


def healthcheck_config(rest: str, what: str) -> dict[str, Any]:
    words = rest.split()
    if words and words[0].upper() == "NONE":
        if len(words) > 1:
            raise InvalidArgument(f"{what}: HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    text = rest.strip()
    while text.startswith("--"):
        flag, _, text = text.partition(" ")
        text = text.lstrip()
        name, eq, value = flag[2:].partition("=")
        if not eq:
            raise InvalidArgument(f"{what}: flag {flag!r} needs a value (--{name}=VALUE)")
        key = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
               "start-interval": "StartInterval", "retries": "Retries"}.get(name)
        if key is None:
            raise InvalidArgument(f"{what}: unknown flag --{name}")
        if key == "Retries":
            try:
                hc[key] = int(value)
            except ValueError:
                raise InvalidArgument(f"{what}: --retries must be a number") from None
            if hc[key] < 0:
                raise InvalidArgument(f"{what}: --retries cannot be negative")
        else:
            hc[key] = parse_duration(value, f"{what}: --{name}")
    kind, _, cmd = text.partition(" ")
    if kind.upper() != "CMD" or not cmd.strip():
        raise InvalidArgument(f"{what}: expects HEALTHCHECK [OPTIONS] CMD command, or NONE")
    arr = _json_array(cmd)
    hc = {"Test": ["CMD", *arr] if arr is not None else ["CMD-SHELL", cmd.strip()], **hc}
    return hc


def apply_changes(config: dict[str, Any] | None, changes: Sequence[str]) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(config or {})
    cmd_set = False
    for change in changes:
        what = f"--change {change!r}"
        text = change.strip()
        if not text:
            continue
        instr, _, rest = text.partition(" ")
        if "\t" in instr:
            instr, _, more = instr.partition("\t")
            rest = more + " " + rest
        instr = instr.upper()
        rest = rest.strip()
        if instr not in ALLOWED:
            raise InvalidArgument(f"{instr} is not a valid change command")
        if not rest:
            raise InvalidArgument(f"{what}: {instr} requires an argument")
        if instr == "CMD":
            cfg["Cmd"] = _command(rest)
            cmd_set = True
        elif instr == "ENTRYPOINT":
            arr = _json_array(rest)
            cfg["Entrypoint"] = arr if arr is not None else [*_SHELL, rest]
            if not cmd_set:
                cfg["Cmd"] = None
        elif instr == "ENV":
            env = list(cfg.get("Env") or [])
            for key, value in _pairs(rest, what, legacy_ok=True):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(rest, what, legacy_ok=True))
            cfg["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in expose_ports(split_words(rest, what), what):
                ports[p] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "VOLUME":
            arr = _json_array(rest)
            vols = dict(cfg.get("Volumes") or {})
            for v in arr if arr is not None else split_words(rest, what):
                if not v:
                    raise InvalidArgument(f"{what}: VOLUME specified can not be an empty string")
                vols[v] = {}
            cfg["Volumes"] = vols
        elif instr == "USER":
            cfg["User"] = rest
        elif instr == "WORKDIR":
            cfg["WorkingDir"] = posixpath.normpath(
                posixpath.join("/", cfg.get("WorkingDir") or "/", rest))
        elif instr == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif instr == "HEALTHCHECK":
            cfg["Healthcheck"] = healthcheck_config(rest, what)
        elif instr == "ONBUILD":
            trigger = rest.split(None, 1)
            if trigger[0].upper() in ("ONBUILD", "FROM", "MAINTAINER"):
                raise InvalidArgument(f"{what}: {trigger[0].upper()} isn't allowed as an "
                                      "ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []),
                              " ".join([trigger[0].upper(), *trigger[1:]])]
    return cfg
