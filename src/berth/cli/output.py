"""What the docker CLI prints: `--format` templates, tables, sizes, durations and filters.

    Template("{{.ID}}\\t{{json .Labels}}").execute(row)   a Go text/template subset
    render(rows, fmt, headers)                          docker's formatter: `table …` or a template
    human_size(n) / bytes_size(n)                       go-units HumanSize / BytesSize
    since(ts) / human_duration(s)                       "2 hours ago" (go-units HumanDuration)
    parse_filters(["dangling=true"], allowed)           `--filter` values by key

Templates: text with `{{.Field.Sub}}`, `{{.}}`, `{{json .X}}`, pipelines (`{{.X | json}}`),
string and number literals, `{{range .List}}…{{end}}`, `{{if .X}}…{{else}}…{{end}}`, and the
functions docker adds (json, join, split, lower, upper, title, truncate, pad, println, index).
A field that does not exist is an error naming it, as Go's is. Tables are aligned as docker's
tabwriter does (minimum width 10, padding 3). Pure; raises InvalidArgument.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from berth.errors import InvalidArgument

__all__ = ["Template", "bytes_size", "created_at", "ellipsis", "human_duration", "human_size",
           "json_indent", "parse_filters", "parse_rfc3339", "render", "rfc3339", "since"]


# --- sizes and times (github.com/docker/go-units) ------------------------------------------------

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _go_g(v: float, precision: int) -> str:
    """Go's %.{precision}g: like Python's, but never an exponent for the values sizes reach."""
    text = f"{v:.{precision}g}"
    if "e" in text:  # 1e+03 -> 1000 (Go prints "1e+03" too, but sizes stop below 1000)
        text = f"{v:.0f}"
    return text


def _units(size: float, base: float, units: Sequence[str], precision: int = 4) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{_go_g(size, precision)}{units[i]}"


def human_size(n: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision(n, 3), as the docker CLI prints sizes: decimal units,
    3 significant digits ("4.26MB", "999B", "1kB")."""
    return _units(float(n), 1000.0, _DECIMAL, precision)


def bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits ("1.5MiB")."""
    return _units(float(n), 1024.0, _BINARY)


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(round(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def since(ts: float, now: float | None = None) -> str:
    return human_duration((time.time() if now is None else now) - ts) + " ago"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time ("2026-11-28T04:16:10.245228553Z",
    "…+01:00"); 0.0 for the zero time or text that is not one."""
    import calendar
    t = text.strip()
    if not t or t.startswith("0001-01-01"):
        return 0.0
    try:
        date, _, clock = t.partition("T")
        offset = 0
        if clock.endswith("Z"):
            clock = clock[:-1]
        elif len(clock) > 6 and clock[-6] in "+-" and clock[-3] == ":":
            sign = 1 if clock[-6] == "+" else -1
            offset = sign * (int(clock[-5:-3]) * 3600 + int(clock[-2:]) * 60)
            clock = clock[:-6]
        whole, _, frac = clock.partition(".")
        y, mo, d = (int(x) for x in date.split("-"))
        h, mi, s = (int(x) for x in whole.split(":"))
        secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset
        return secs + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return 0.0


def rfc3339(ts: float) -> str:
    """Go's time.RFC3339 in UTC (docker's `history -H=false`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def created_at(ts: float) -> str:
    """docker's CreatedAt: Go's time.Time String in local time ("2006-01-02 15:04:05 -0700 MST")."""
    lt = time.localtime(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S %z ", lt) + (lt.tm_zone or "UTC")


def ellipsis(text: str, width: int) -> str:
    """docker's stringutils.Ellipsis: cut to `width` characters, the last one "…"."""
    if len(text) <= width:
        return text
    return text[:width - 1] + "…" if width > 1 else text[:width]


# --- JSON as Go writes it ------------------------------------------------------------------------

def go_json(v: Any) -> str:
    """encoding/json: compact, HTML characters escaped, keys in the order given."""
    text = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def json_indent(v: Any) -> str:
    """json.MarshalIndent(v, "", "    ") as `docker inspect` prints it."""
    text = json.dumps(v, indent=4, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- templates -----------------------------------------------------------------------------------

class _Missing(Exception):
    pass


def _go_str(v: Any) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_str(x)}" for k, x in sorted(v.items())) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_go_str(x) for x in v) + "]"
    return str(v)


def _truthy(v: Any) -> bool:
    return bool(v)


def _tokens(text: str, where: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "\"`":
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if (c == '"' and text[j] == "\\") else 1
            if j >= len(text):
                raise InvalidArgument(f"template: {where}: unterminated quoted string")
            out.append(text[i:j + 1])
            i = j + 1
        elif c in "|()":
            out.append(c)
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "|()\"":
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _split_pipes(tokens: list[str]) -> list[list[str]]:
    cmds: list[list[str]] = [[]]
    for t in tokens:
        if t == "|":
            cmds.append([])
        else:
            cmds[-1].append(t)
    return cmds


_FUNCS: dict[str, Any] = {
    "json": lambda v: go_json(v),
    "join": lambda v, sep: sep.join(_go_str(x) for x in (v or [])),
    "split": lambda s, sep: s.split(sep),
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "title": lambda s: str(s).title(),
    "truncate": lambda s, n: str(s)[:int(n)],
    "pad": lambda s, a, b: " " * int(a) + str(s) + " " * int(b),
    "println": lambda *a: " ".join(_go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(_go_str(x) for x in a),
    "printf": lambda f, *a: f.replace("%s", "{}").replace("%v", "{}").replace("%d", "{}")
                             .format(*(_go_str(x) for x in a)),
    "index": lambda m, k: (m or {}).get(k) if isinstance(m, dict) else (m or [])[int(k)],
    "len": lambda v: len(v or ()),
}


class Template:
    """A parsed template; `execute(data)` returns the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = self._parse(text)

    # parse into a tree: ("text", s) | ("action", tokens) | ("range"/"if", tokens, body, else)
    def _parse(self, text: str) -> list[Any]:
        root: list[Any] = []
        stack: list[tuple[Any, list[Any]]] = []
        cur = root
        i = 0
        while True:
            j = text.find("{{", i)
            if j < 0:
                if text[i:]:
                    cur.append(("text", text[i:]))
                break
            if text[i:j]:
                cur.append(("text", text[i:j]))
            k = text.find("}}", j)
            if k < 0:
                raise InvalidArgument(f"template: :1: unclosed action in {text!r}")
            inner = text[j + 2:k].strip().removeprefix("-").removesuffix("-").strip()
            where = f":1:{j + 2}"
            toks = _tokens(inner, where)
            head = toks[0] if toks else ""
            if head in ("range", "if", "with"):
                node = [head, toks[1:], [], None]
                cur.append(node)
                stack.append((node, cur))
                cur = node[2]
            elif head == "else":
                if not stack:
                    raise InvalidArgument(f"template: {where}: unexpected {{{{else}}}}")
                node = stack[-1][0]
                node[3] = []
                cur = node[3]
            elif head == "end":
                if not stack:
                    raise InvalidArgument(f"template: {where}: unexpected {{{{end}}}}")
                _, cur = stack.pop()
            elif not toks:
                raise InvalidArgument(f"template: {where}: missing value for command")
            else:
                cur.append(("action", toks, where))
            i = k + 2
        if stack:
            raise InvalidArgument(f"template: :1: unexpected EOF (missing {{{{end}}}})")
        return root

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, out)
        return "".join(out)

    def _run(self, nodes: list[Any], dot: Any, out: list[str]) -> None:
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "action":
                out.append(_go_str(self._pipeline(n[1], dot, n[2])))
            else:
                kind, toks, body, other = n
                v = self._pipeline(toks, dot, "range")
                if kind == "range":
                    items = list(v.values()) if isinstance(v, dict) else list(v or [])
                    if items:
                        for item in items:
                            self._run(body, item, out)
                    elif other:
                        self._run(other, dot, out)
                elif kind == "with":
                    if _truthy(v):
                        self._run(body, v, out)
                    elif other:
                        self._run(other, dot, out)
                elif _truthy(v):
                    self._run(body, dot, out)
                elif other:
                    self._run(other, dot, out)

    def _pipeline(self, toks: list[str], dot: Any, where: str) -> Any:
        value: Any = _Missing
        for cmd in _split_pipes(toks):
            if not cmd:
                raise InvalidArgument(f"template: {where}: missing command in pipeline")
            args = [self._operand(t, dot, where) for t in cmd[1:]]
            if value is not _Missing:
                args.append(value)
            if cmd[0] in _FUNCS:
                try:
                    value = _FUNCS[cmd[0]](*args)
                except (TypeError, ValueError, IndexError, AttributeError) as e:
                    raise InvalidArgument(f"template: {where}: error calling {cmd[0]}: {e}"
                                          ) from None
            elif args:
                raise InvalidArgument(f"template: {where}: {cmd[0]} is not a function")
            else:
                value = self._operand(cmd[0], dot, where)
        return value

    def _operand(self, t: str, dot: Any, where: str) -> Any:
        if t == ".":
            return dot
        if t.startswith("."):
            v = dot
            for part in t[1:].split("."):
                if isinstance(v, dict) and part in v:
                    v = v[part]
                elif isinstance(v, dict) and v.get("__map__"):
                    v = None
                else:
                    raise InvalidArgument(
                        f'template: {where}: executing "" at <{t}>: can\'t evaluate field '
                        f"{part} in type {_go_type(v)}")
            return v
        if t.startswith('"'):
            return json.loads(t)
        if t.startswith("`"):
            return t[1:-1]
        if t in ("true", "false"):
            return t == "true"
        try:
            return int(t)
        except ValueError:
            pass
        if t in _FUNCS:
            return _FUNCS[t]()
        raise InvalidArgument(f'template: {where}: function "{t}" not defined')


def _go_type(v: Any) -> str:
    if isinstance(v, dict):
        return "map[string]interface {}" if not v.get("__type__") else v["__type__"]
    return {str: "string", int: "int", bool: "bool", list: "[]string"}.get(type(v), "interface {}")


# --- docker's formatter: tables ------------------------------------------------------------------

def _tabwriter(lines: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as docker configures it: cells end with a tab; each column is as
    wide as its widest cell plus padding (at least minwidth); the last cell is not padded."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])] + [r[-1]]
        out.append("".join(cells))
    return "".join(line + "\n" for line in out)


def _unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render(rows: Sequence[dict[str, Any]], fmt: str, headers: dict[str, str]) -> str:
    """Rows printed as docker's formatter does: `table TEMPLATE` gives a header row (from
    `headers`, field -> title) and aligned columns; any other template one line per row."""
    fmt = _unescape(fmt)
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip() or "\t".join("{{." + k + "}}" for k in headers)
        tpl = Template(body)
        header = Template(body).execute(_HeaderRow(headers))
        lines = [header] + [tpl.execute(r) for r in rows]
        return _tabwriter("\n".join(lines).split("\n"))
    if fmt == "json":
        return "".join(go_json(r) + "\n" for r in rows)
    tpl = Template(fmt)
    return "".join(tpl.execute(r) + "\n" for r in rows)


class _HeaderRow(dict):  # type: ignore[type-arg]
    """The row a table's header is rendered from: every field its title, `json X` the title."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__()
        self.headers = headers

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return _Title(self.headers.get(key, key.upper()))

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


class _Title(str):
    pass


# --- --filter ------------------------------------------------------------------------------------

def parse_filters(values: Sequence[str], allowed: Iterable[str]) -> dict[str, list[str]]:
    """`--filter key=value` (repeatable) by key; docker's messages for bad ones."""
    allowed = set(allowed)
    out: dict[str, list[str]] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq:
            raise InvalidArgument(f'invalid argument "{v}" for "-f, --filter" flag: bad format '
                                  "of filter (expected name=value)")
        key = key.strip().lower()
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out
