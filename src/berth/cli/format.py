"""Output exactly as the docker CLI prints it: `--format` templates, tables, sizes, times, filters.

    Template(text).execute(data)          a Go text/template subset with docker's functions
    render(rows, fmt, default_table=…)    docker's formatter: `table …`, `json`, or a template
    tabwrite(text)                        Go's tabwriter as docker configures it (10, 1, 3, ' ')
    go_json(v)                            encoding/json: compact or indented, Go's escaping
    human_size / bytes_size               go-units HumanSizeWithPrecision(n, 3) / BytesSize
    human_duration / since                go-units HumanDuration ("About an hour", "2 days ago")
    created_at / rfc3339_nano             Go's time.Time String and RFC3339Nano
    parse_filters                         `--filter key=value`, docker's messages

Data model of templates. A plain dict is a Go struct as docker's formatter contexts are: `.Foo`
on a dict without "Foo" is an error naming the field; a callable value is a method (`.Label
"x"`). A `GoMap` is a Go map: a missing key prints "<no value>" (or is an error with
missingkey="error"), and it prints and marshals with sorted keys. `Row` is a struct that
marshals as a sorted map, as docker's list contexts do for `{{json .}}`; render() wraps rows in
it. Lists are slices, str/int/float/bool/None are Go's string/int/float64/bool/nil.

Every error is TemplateError (an InvalidArgument) with Go's text ("template: :1:2: executing ""
at <.Foo>: can't evaluate field Foo in type …"); render() prefixes "template parsing error: "
as docker does. Only the standard library and berth.errors are imported; nothing is compiled
at import time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from berth.errors import InvalidArgument

__all__ = [
    "GoMap", "Row", "Template", "TemplateError", "bytes_size", "created_at", "go_json",
    "go_sprint", "human_duration", "human_size", "parse_filters", "render", "rfc3339_nano",
    "since", "tabwrite",
]


class TemplateError(InvalidArgument):
    """A --format template that does not parse or does not execute; the message is Go's."""


class GoMap(dict):  # type: ignore[type-arg]
    """A Go map: missing keys are "<no value>", printed and marshalled in sorted key order."""


class Row(dict):  # type: ignore[type-arg]
    """A docker formatter context: fields as a struct, `{{json .}}` as a sorted map."""


class _MissingType:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _MissingType()


# --- sizes, durations and times (github.com/docker/go-units, Go's time) -------------------------

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(size: float, base: float, units: Sequence[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return _fmt_g(size, precision) + units[i]


def human_size(n: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision(n, 3), docker's SIZE column: decimal units, Go's %.3g
    ("0B", "999B", "1kB", "1.5MB", "123MB"; 999999 is "1e+03kB" in Go too)."""
    return _scaled(float(n), 1000.0, _DECIMAL, precision)


def bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, Go's %.4g ("1KiB", "3.42GiB", "5.372TiB")."""
    return _scaled(float(n), 1024.0, _BINARY, 4)


_NS = 1_000_000_000


def human_duration(seconds: float) -> str:
    """go-units HumanDuration of a duration in seconds ("Less than a second", "47 seconds",
    "About a minute", "About an hour", "36 hours", "13 days", "6 weeks", "23 months", "3 years")."""
    ns = round(seconds * _NS)
    secs = ns // _NS if ns >= 0 else -((-ns) // _NS)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = ns // (60 * _NS)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = (ns + 1800 * _NS) // (3600 * _NS)  # int(d.Hours() + 0.5)
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
    return f"{ns // (3600 * _NS) // 24 // 365} years"


def since(ts: float, now: float | None = None) -> str:
    """docker's CreatedSince / RunningFor: HumanDuration(now - ts) + " ago"."""
    return human_duration((time.time() if now is None else now) - ts) + " ago"


def _frac_digits(ts: float) -> str:
    ns = round((ts - int(ts)) * _NS) if ts >= 0 else 0
    return f".{ns:09d}".rstrip("0").rstrip(".") if ns else ""


def created_at(ts: float) -> str:
    """Go's time.Unix(ts, 0).String() in the local zone, docker's CreatedAt:
    "2006-01-02 15:04:05 -0700 MST" ("2024-05-01 12:00:00 +0000 UTC" on a UTC machine)."""
    lt = time.localtime(ts)
    zone = lt.tm_zone or time.strftime("%z", lt)
    return (time.strftime("%Y-%m-%d %H:%M:%S", lt) + _frac_digits(ts)
            + time.strftime(" %z ", lt) + zone)


def rfc3339_nano(ts: float) -> str:
    """Go's time.RFC3339Nano in UTC ("2006-01-02T15:04:05.999999999Z"), docker inspect's times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + _frac_digits(ts) + "Z"


# --- Go's number formatting ---------------------------------------------------------------------

def _fmt_g(v: float, precision: int) -> str:
    """Go's %.{precision}g. For finite values it agrees with C's (and Python's) %g."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.{precision}g}"


def _shortest(v: float) -> tuple[str, int]:
    """Shortest round-tripping digits of abs(v) and the decimal point: 0.DIGITS x 10^dp."""
    text = repr(abs(v))
    mant, _, exp = text.partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    dp = len(whole) + (int(exp) if exp else 0)
    if whole.strip("0") == "":  # 0.00123 -> digits "123", dp -2
        stripped = frac.lstrip("0")
        dp = -(len(frac) - len(stripped)) + (int(exp) if exp else 0)
        digits = stripped
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        dp = 1
    return digits, dp


def _fmt_e_digits(neg: bool, digits: str, dp: int) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if neg else ''}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fmt_f_digits(neg: bool, digits: str, dp: int) -> str:
    if dp <= 0:
        text = "0." + "0" * -dp + digits
    elif dp >= len(digits):
        text = digits + "0" * (dp - len(digits))
    else:
        text = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + text


def _go_float(v: float) -> str:
    """fmt's %v of a float64 (strconv 'g', -1): shortest digits, an exponent when the
    decimal exponent is below -4 or at least 6 ("123456", "1e+06", "1.5e-05")."""
    if v != v or v in (float("inf"), float("-inf")):
        return _fmt_g(v, 6)
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    digits, dp = _shortest(v)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _fmt_e_digits(v < 0, digits, dp)
    return _fmt_f_digits(v < 0, digits, dp)


def _json_float(v: float) -> str:
    """encoding/json's float64: 'f' shortest, 'e' below 1e-6 or from 1e21 ("1e-7", "1e+21")."""
    if v != v or v in (float("inf"), float("-inf")):
        raise TemplateError(f"json: unsupported value: {_fmt_g(v, 6)}")
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    digits, dp = _shortest(v)
    if abs(v) < 1e-6 or abs(v) >= 1e21:
        text = _fmt_e_digits(v < 0, digits, dp)
        mant, _, exp = text.partition("e")
        sign, num = exp[0], exp[1:].lstrip("0") or "0"
        return f"{mant}e{sign}{num}"
    return _fmt_f_digits(v < 0, digits, dp)


# --- encoding/json ------------------------------------------------------------------------------

_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\b": "\\b", "\f": "\\f"}
_JSON_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _json_str(s: str, escape_html: bool) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _JSON_SHORT:
            out.append(_JSON_SHORT[ch])
        elif o < 0x20 or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif escape_html and ch in _JSON_HTML:
            out.append(_JSON_HTML[ch])
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")  # Go replaces invalid UTF-8 with U+FFFD
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(v: Any, *, escape_html: bool = True, indent: str | None = None,
            sort_keys: bool = False) -> str:
    """Go's encoding/json: json.Marshal (compact, `<>&` as \\u003c…, escape_html=True) or
    MarshalIndent(v, "", indent). Dict keys in the order given; GoMap/Row keys sorted, as Go
    sorts map keys (sort_keys=True sorts every dict). Templates' `json` is escape_html=False."""
    out: list[str] = []
    _json_into(v, out, escape_html, indent, sort_keys, 0)
    return "".join(out)


def _json_into(v: Any, out: list[str], html: bool, indent: str | None, sort_all: bool,
               depth: int) -> None:
    if v is None or v is MISSING:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(int(v)))
    elif isinstance(v, float):
        out.append(_json_float(v))
    elif isinstance(v, str):
        out.append(_json_str(v, html))
    elif isinstance(v, (bytes, bytearray)):
        import base64
        out.append('"' + base64.b64encode(bytes(v)).decode("ascii") + '"')
    elif isinstance(v, Mapping):
        items = [(k, x) for k, x in v.items() if not callable(x)]
        if sort_all or isinstance(v, (GoMap, Row)):
            items.sort(key=lambda kv: str(kv[0]))
        if not items:
            out.append("{}")
            return
        out.append("{")
        for i, (k, x) in enumerate(items):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (depth + 1))
            out.append(_json_str(str(k), html))
            out.append(": " if indent is not None else ":")
            _json_into(x, out, html, indent, sort_all, depth + 1)
        if indent is not None:
            out.append("\n" + indent * depth)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (depth + 1))
            _json_into(x, out, html, indent, sort_all, depth + 1)
        if indent is not None:
            out.append("\n" + indent * depth)
        out.append("]")
    else:
        raise TemplateError(f"json: unsupported type: {_go_type(v)}")


# --- Go's fmt: %v and printf --------------------------------------------------------------------

def go_sprint(v: Any) -> str:
    """fmt's %v: "<nil>", "true", "[a b]", "map[a:1 b:2]", 1e+21, as a template prints values."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, Mapping):
        keys = sorted(v, key=str)
        return "map[" + " ".join(f"{go_sprint(k)}:{go_sprint(v[k])}" for k in keys) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_sprint(x) for x in v) + "]"
    return str(v)


def _go_type(v: Any) -> str:
    if v is None or v is MISSING:
        return "interface {}"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, str) for x in v):
            return "[]string"
        return "[]interface {}"
    return type(v).__name__


def _sprint(args: Sequence[Any]) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_sprint(a))
    return "".join(out)


def _quote(s: str) -> str:
    """strconv.Quote, close enough: escapes like encoding/json without HTML escaping."""
    body = _json_str(s, False)[1:-1]
    return '"' + body.replace("\\u00", "\\x") + '"'


def _printf(fmt: str, args: Sequence[Any]) -> str:
    out: list[str] = []
    n = len(fmt)
    i = argi = 0
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        flags = ""
        while i < n and fmt[i] in "-+# 0":
            flags += fmt[i]
            i += 1
        width = ""
        while i < n and fmt[i].isdigit():
            width += fmt[i]
            i += 1
        prec: str | None = None
        if i < n and fmt[i] == ".":
            i += 1
            prec = ""
            while i < n and fmt[i].isdigit():
                prec += fmt[i]
                i += 1
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_fmt_verb(verb, flags, width, prec, args[argi]))
        argi += 1
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_sprint(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _fmt_verb(verb: str, flags: str, width: str, prec: str | None, a: Any) -> str:
    p = int(prec) if prec else (0 if prec == "" else None)
    is_int = isinstance(a, int) and not isinstance(a, bool)
    if verb in "vs":
        text = go_sprint(a)
        if verb == "s" and not isinstance(a, (str, list, tuple, Mapping)) and a is not MISSING:
            return f"%!s({_go_type(a)}={text})"
        if p is not None:
            text = text[:p]
    elif verb == "q" and isinstance(a, str):
        text = _quote(a)
    elif verb == "t" and isinstance(a, bool):
        text = go_sprint(a)
    elif verb in "dboxXc" and is_int:
        if verb == "c":
            text = chr(a)
        else:
            spec = {"d": "d", "b": "b", "o": "o", "x": "x", "X": "X"}[verb]
            sign = "+" if "+" in flags else (" " if " " in flags else "")
            text = format(a, sign + ("#" if "#" in flags else "") + spec)
    elif verb in "xX" and isinstance(a, str):
        text = a.encode().hex()
        text = text.upper() if verb == "X" else text
    elif verb in "feEgG" and isinstance(a, (int, float)) and not isinstance(a, bool):
        sign = "+" if "+" in flags else (" " if " " in flags else "")
        if verb in "gG" and p is None:
            text = _go_float(float(a)).replace("e", "E" if verb == "G" else "e")
            text = sign + text if sign and not text.startswith("-") else text
        else:
            text = format(float(a), f"{sign}.{6 if p is None else p}{verb}")
    else:
        return f"%!{verb}({_go_type(a)}={go_sprint(a)})"
    if width and len(text) < int(width):
        w = int(width)
        if "-" in flags:
            text = text.ljust(w)
        elif "0" in flags and verb not in "sqvtc":
            neg = text[:1] in "+- "
            text = text[:1] + text[1:].rjust(w - 1, "0") if neg else text.rjust(w, "0")
        else:
            text = text.rjust(w)
    return text


# --- template: lexer ----------------------------------------------------------------------------

# token kinds
_T_FIELD, _T_VAR, _T_DOT, _T_IDENT, _T_STRING, _T_NUMBER, _T_CHAR = range(7)
_T_PIPE, _T_LPAREN, _T_RPAREN, _T_DECLARE, _T_ASSIGN, _T_COMMA, _T_END = range(7, 14)

_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "break", "continue", "define",
                       "template", "block", "nil", "true", "false"})
_WS = " \t\r\n"


class _Tok:
    __slots__ = ("kind", "val", "pos", "space")

    def __init__(self, kind: int, val: Any, pos: int, space: bool) -> None:
        self.kind, self.val, self.pos, self.space = kind, val, pos, space


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", '"': '"', "'": "'"}


def _unquote(body: str, err: Callable[[str], TemplateError]) -> str:
    """A Go interpreted string literal's body."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1] if i + 1 < len(body) else ""
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[e]
            hexd = body[i + 2:i + 2 + size]
            try:
                out.append(chr(int(hexd, 16)) if len(hexd) == size else "")
            except ValueError:
                raise err("invalid syntax") from None
            i += 2 + size
        elif e and e in "01234567":
            octal = body[i + 1:i + 4]
            try:
                out.append(chr(int(octal, 8)))
            except ValueError:
                raise err("invalid syntax") from None
            i += 4
        else:
            raise err("invalid syntax")
    return "".join(out)


class _Lexer:
    """Splits a template into text and the tokens of each action, as Go's lexer does."""

    def __init__(self, text: str) -> None:
        self.text = text

    def err(self, pos: int, msg: str) -> TemplateError:
        return TemplateError(f"template: :{self.text.count(chr(10), 0, pos) + 1}: {msg}")

    def items(self) -> list[tuple[str, Any, int]]:
        """[("text", str, pos) | ("action", [_Tok], pos)]."""
        text, n = self.text, len(self.text)
        items: list[tuple[str, Any, int]] = []
        i = 0
        trim_next = False
        while i <= n:
            j = text.find("{{", i)
            chunk = text[i:] if j < 0 else text[i:j]
            if trim_next:
                chunk = chunk.lstrip(_WS)
            if j >= 0 and text[j + 2:j + 3] == "-" and text[j + 3:j + 4] in tuple(_WS):
                chunk = chunk.rstrip(_WS)  # "{{- " trims the text before it
                start = j + 3
            else:
                start = j + 2
            if chunk:
                items.append(("text", chunk, i))
            if j < 0:
                break
            k = start
            while k < n and text[k] in _WS:
                k += 1
            if text.startswith("/*", k):
                end = text.find("*/", k + 2)
                if end < 0:
                    raise self.err(j, "unclosed comment")
                k = end + 2
                if text.startswith(" -}}", k):
                    trim_next, i = True, k + 4
                elif text.startswith("}}", k):
                    trim_next, i = False, k + 2
                else:
                    raise self.err(j, "comment ends before closing delimiter")
                continue
            toks, i, trim_next = self._action(start)
            items.append(("action", toks, j))
        return items

    def _action(self, i: int) -> tuple[list[_Tok], int, bool]:
        text, n = self.text, len(self.text)
        toks: list[_Tok] = []
        space = True
        while True:
            if i >= n:
                raise self.err(i, "unclosed action")
            if text.startswith(" -}}", i) or text.startswith("\t-}}", i) \
                    or text.startswith("\n-}}", i) or text.startswith("\r-}}", i):
                return toks, i + 4, True
            if text.startswith("}}", i):
                return toks, i + 2, False
            c = text[i]
            if c in _WS:
                while i < n and text[i] in _WS:
                    i += 1
                if text.startswith("-}}", i) and text[i - 1] in _WS:
                    return toks, i + 3, True
                space = True
                continue
            start = i
            if c == '"':
                k = i + 1
                while k < n and text[k] != '"':
                    if text[k] == "\n":
                        raise self.err(start, "unterminated quoted string")
                    k += 2 if text[k] == "\\" else 1
                if k >= n:
                    raise self.err(start, "unterminated quoted string")
                val = _unquote(text[i + 1:k], lambda m: self.err(start, m))
                toks.append(_Tok(_T_STRING, val, start, space))
                i = k + 1
            elif c == "`":
                k = text.find("`", i + 1)
                if k < 0:
                    raise self.err(start, "unterminated raw quoted string")
                toks.append(_Tok(_T_STRING, text[i + 1:k], start, space))
                i = k + 1
            elif c == "'":
                k = i + 1
                while k < n and text[k] != "'":
                    k += 2 if text[k] == "\\" else 1
                if k >= n:
                    raise self.err(start, "unterminated character constant")
                val = _unquote(text[i + 1:k], lambda m: self.err(start, m))
                if len(val) != 1:
                    raise self.err(start, f"malformed character constant: {text[i:k + 1]}")
                toks.append(_Tok(_T_CHAR, ord(val), start, space))
                i = k + 1
            elif c == "|":
                toks.append(_Tok(_T_PIPE, "|", start, space))
                i += 1
            elif c == "(":
                toks.append(_Tok(_T_LPAREN, "(", start, space))
                i += 1
            elif c == ")":
                toks.append(_Tok(_T_RPAREN, ")", start, space))
                i += 1
            elif c == ",":
                toks.append(_Tok(_T_COMMA, ",", start, space))
                i += 1
            elif text.startswith(":=", i):
                toks.append(_Tok(_T_DECLARE, ":=", start, space))
                i += 2
            elif c == "=":
                toks.append(_Tok(_T_ASSIGN, "=", start, space))
                i += 1
            elif c == "$":
                k = i + 1
                while k < n and _is_alnum(text[k]):
                    k += 1
                toks.append(_Tok(_T_VAR, text[i:k], start, space))
                i = k
            elif c == ".":
                if i + 1 < n and text[i + 1].isdigit():
                    i = self._number(i, toks, space)
                elif i + 1 < n and _is_alnum(text[i + 1]):
                    k = i + 1
                    while k < n and _is_alnum(text[k]):
                        k += 1
                    toks.append(_Tok(_T_FIELD, text[i + 1:k], start, space))
                    i = k
                else:
                    toks.append(_Tok(_T_DOT, ".", start, space))
                    i += 1
            elif c.isdigit() or (c in "+-" and i + 1 < n and (text[i + 1].isdigit()
                                                             or text[i + 1] == ".")):
                i = self._number(i, toks, space)
            elif _is_alnum(c):
                k = i
                while k < n and _is_alnum(text[k]):
                    k += 1
                toks.append(_Tok(_T_IDENT, text[i:k], start, space))
                i = k
            else:
                raise self.err(start, f"unexpected {c!r} in command".replace("'", '"', 2)
                               if c != '"' else "unexpected quote")
            space = False

    def _number(self, i: int, toks: list[_Tok], space: bool) -> int:
        text, n = self.text, len(self.text)
        k = i
        while k < n and (_is_alnum(text[k]) or text[k] in ".+-"):
            if text[k] in "+-" and k > i and text[k - 1] not in "eEpP":
                break
            k += 1
        lit = text[i:k]
        clean = lit.replace("_", "")
        val: Any
        try:
            if clean.lower().lstrip("+-").startswith(("0x", "0o", "0b")) \
                    and "." not in clean and "p" not in clean.lower():
                val = int(clean, 0)
            elif all(ch.isdigit() or ch in "+-" for ch in clean):
                stripped = clean.lstrip("+-")
                val = int(clean, 8 if len(stripped) > 1 and stripped[0] == "0" else 10)
            else:
                val = float(clean)
        except ValueError:
            raise self.err(i, f'bad number syntax: "{lit}"') from None
        toks.append(_Tok(_T_NUMBER, val, i, space))
        return k


# --- template: parse tree -----------------------------------------------------------------------

class _Node:
    __slots__ = ("pos",)
    pos: int


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, text: str, pos: int) -> None:
        self.text, self.pos = text, pos


class _Field(_Node):
    __slots__ = ("names",)

    def __init__(self, names: list[str], pos: int) -> None:
        self.names, self.pos = names, pos

    def __str__(self) -> str:
        return "." + ".".join(self.names)


class _Var(_Node):
    __slots__ = ("name", "names")

    def __init__(self, name: str, names: list[str], pos: int) -> None:
        self.name, self.names, self.pos = name, names, pos

    def __str__(self) -> str:
        return self.name + "".join("." + x for x in self.names)


class _Dot(_Node):
    __slots__ = ()

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def __str__(self) -> str:
        return "."


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str, pos: int) -> None:
        self.name, self.pos = name, pos

    def __str__(self) -> str:
        return self.name


class _Lit(_Node):
    __slots__ = ("value", "src")

    def __init__(self, value: Any, src: str, pos: int) -> None:
        self.value, self.src, self.pos = value, src, pos

    def __str__(self) -> str:
        return self.src


class _Chain(_Node):
    __slots__ = ("node", "names")

    def __init__(self, node: _Node, names: list[str], pos: int) -> None:
        self.node, self.names, self.pos = node, names, pos

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + x for x in self.names)


class _Cmd(_Node):
    __slots__ = ("args",)

    def __init__(self, args: list[_Node], pos: int) -> None:
        self.args, self.pos = args, pos

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Pipe(_Node):
    __slots__ = ("decl", "assign", "cmds")

    def __init__(self, decl: list[str], assign: bool, cmds: list[_Cmd], pos: int) -> None:
        self.decl, self.assign, self.cmds, self.pos = decl, assign, cmds, pos

    def __str__(self) -> str:
        head = (", ".join(self.decl) + (" = " if self.assign else " := ")) if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipe, pos: int) -> None:
        self.pipe, self.pos = pipe, pos


class _Control(_Node):
    __slots__ = ("kind", "pipe", "body", "other")

    def __init__(self, kind: str, pipe: _Pipe, body: list[_Node], other: list[_Node] | None,
                 pos: int) -> None:
        self.kind, self.pipe, self.body, self.other, self.pos = kind, pipe, body, other, pos


class _Jump(_Node):
    __slots__ = ("kind",)

    def __init__(self, kind: str, pos: int) -> None:
        self.kind, self.pos = kind, pos


class _Parser:
    def __init__(self, text: str, funcs: Mapping[str, Any]) -> None:
        self.lexer = _Lexer(text)
        self.items = self.lexer.items()
        self.i = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    def err(self, pos: int, msg: str) -> TemplateError:
        return self.lexer.err(pos, msg)

    def parse(self) -> list[_Node]:
        body, stop = self._list()
        if stop is not None:
            kind, _, pos = stop
            raise self.err(pos, f"unexpected {{{{{kind}}}}}")
        return body

    def _list(self) -> tuple[list[_Node], tuple[str, list[_Tok], int] | None]:
        """Nodes up to an {{else …}} or {{end}} (returned, not consumed further) or EOF."""
        nodes: list[_Node] = []
        while self.i < len(self.items):
            kind, val, pos = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(_Text(val, pos))
                continue
            toks: list[_Tok] = val
            head = toks[0] if toks else None
            word = head.val if head is not None and head.kind == _T_IDENT else None
            if word in ("end", "else"):
                return nodes, (word, toks[1:], pos)
            if word in ("if", "range", "with"):
                nodes.append(self._control(word, toks[1:], pos))
            elif word in ("break", "continue"):
                if len(toks) > 1:
                    raise self.err(pos, f"unexpected {toks[1].val!r} in {{{{{word}}}}}")
                if not self.range_depth:
                    raise self.err(pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                nodes.append(_Jump(word, pos))
            elif word in ("define", "template", "block"):
                raise self.err(pos, f"{{{{{word}}}}} is not supported in --format")
            else:
                pipe = self._pipeline(toks, "command", pos)
                nodes.append(_Action(pipe, pos))
        return nodes, None

    def _control(self, kind: str, toks: list[_Tok], pos: int) -> _Control:
        mark = len(self.vars)
        pipe = self._pipeline(toks, kind, pos)
        if kind == "range":
            self.range_depth += 1
        body, stop = self._list()
        if kind == "range":
            self.range_depth -= 1
        if stop is None:
            raise self.err(len(self.lexer.text), "unexpected EOF")
        other: list[_Node] | None = None
        if stop[0] == "else":
            rest = stop[1]
            if rest and rest[0].kind == _T_IDENT and rest[0].val in ("if", "with") \
                    and kind in ("if", "with") and rest[0].val == kind:
                # {{else if …}}: a nested control sharing this one's {{end}}
                other = [self._control(rest[0].val, rest[1:], stop[2])]
                del self.vars[mark:]
                return _Control(kind, pipe, body, other, pos)
            if rest:
                raise self.err(stop[2], f"unexpected {rest[0].val!r} in else")
            other, stop2 = self._list()
            if stop2 is None:
                raise self.err(len(self.lexer.text), "unexpected EOF")
            if stop2[0] != "end":
                raise self.err(stop2[2], "expected end; found {{else}}")
        elif stop[1]:
            raise self.err(stop[2], f"unexpected {stop[1][0].val!r} in end")
        del self.vars[mark:]
        return _Control(kind, pipe, body, other, pos)

    def _pipeline(self, toks: list[_Tok], context: str, pos: int) -> _Pipe:
        decl: list[str] = []
        assign = False
        k = 0
        # "$x :=", "$x =", "$i, $e :="
        if toks and toks[0].kind == _T_VAR:
            names = [toks[0].val]
            j = 1
            if context == "range" and len(toks) > 2 and toks[1].kind == _T_COMMA \
                    and toks[2].kind == _T_VAR:
                names.append(toks[2].val)
                j = 3
            if len(toks) > j and toks[j].kind in (_T_DECLARE, _T_ASSIGN):
                assign = toks[j].kind == _T_ASSIGN
                if len(names) > 1 and assign:
                    raise self.err(pos, "range can only initialize variables")
                decl = names
                k = j + 1
                if assign:
                    for name in names:
                        if name not in self.vars:
                            raise self.err(pos, f'undefined variable "{name}"')
        if k < len(toks):
            pos = toks[k].pos  # Go places a pipeline at its first command
        cmds: list[_Cmd] = []
        cmd_args: list[_Node] = []
        end = len(toks)
        cmd_pos = pos
        while k < end:
            t = toks[k]
            if t.kind == _T_PIPE:
                if not cmd_args:
                    raise self.err(pos, "missing command")
                cmds.append(_Cmd(cmd_args, cmd_pos))
                cmd_args = []
                k += 1
                continue
            if cmd_args and not t.space and t.kind != _T_RPAREN:
                raise self.err(pos, f"unexpected {t.val!r} in operand")
            if not cmd_args:
                cmd_pos = t.pos
            node, k = self._operand(toks, k, pos)
            cmd_args.append(node)
        if cmd_args:
            cmds.append(_Cmd(cmd_args, cmd_pos))
        elif cmds:
            raise self.err(pos, "missing command")
        if not cmds:
            raise self.err(pos, f"missing value for {context}")
        for c in cmds[1:]:
            first = c.args[0]
            if isinstance(first, (_Lit, _Dot)) or (isinstance(first, _Ident)
                                                    and first.name in ("nil",)):
                raise self.err(pos, f"non executable command in pipeline stage {cmds.index(c) + 1}")
        for name in decl:
            if not assign:
                self.vars.append(name)
        return _Pipe(decl, assign, cmds, pos)

    def _operand(self, toks: list[_Tok], k: int, pos: int) -> tuple[_Node, int]:
        t = toks[k]
        node: _Node
        if t.kind == _T_FIELD:
            names = [t.val]
            k += 1
            while k < len(toks) and toks[k].kind == _T_FIELD and not toks[k].space:
                names.append(toks[k].val)
                k += 1
            return _Field(names, t.pos), k
        if t.kind == _T_VAR:
            if t.val not in self.vars:
                raise self.err(pos, f'undefined variable "{t.val}"')
            k += 1
            names = []
            while k < len(toks) and toks[k].kind == _T_FIELD and not toks[k].space:
                names.append(toks[k].val)
                k += 1
            return _Var(t.val, names, t.pos), k
        if t.kind == _T_DOT:
            node, k = _Dot(t.pos), k + 1
        elif t.kind == _T_STRING:
            node, k = _Lit(t.val, _quote(t.val), t.pos), k + 1
        elif t.kind in (_T_NUMBER, _T_CHAR):
            node, k = _Lit(t.val, go_sprint(t.val), t.pos), k + 1
        elif t.kind == _T_IDENT:
            if t.val in ("true", "false"):
                node = _Lit(t.val == "true", t.val, t.pos)
            elif t.val == "nil":
                node = _Ident("nil", t.pos)
            elif t.val in _KEYWORDS:
                raise self.err(pos, f"unexpected <{t.val}> in command")
            elif t.val not in self.funcs:
                raise self.err(pos, f'function "{t.val}" not defined')
            else:
                node = _Ident(t.val, t.pos)
            k += 1
        elif t.kind == _T_LPAREN:
            depth, j = 1, k + 1
            while j < len(toks) and depth:
                depth += {_T_LPAREN: 1, _T_RPAREN: -1}.get(toks[j].kind, 0)
                j += 1
            if depth:
                raise self.err(pos, "unclosed left paren")
            node = self._pipeline(toks[k + 1:j - 1], "parenthesized pipeline", pos)
            node.pos = t.pos
            k = j
        elif t.kind == _T_RPAREN:
            raise self.err(pos, "unexpected right paren")
        else:
            raise self.err(pos, f"unexpected {t.val!r} in operand")
        if k < len(toks) and toks[k].kind == _T_FIELD and not toks[k].space:
            names = []
            while k < len(toks) and toks[k].kind == _T_FIELD and not toks[k].space:
                names.append(toks[k].val)
                k += 1
            if isinstance(node, _Lit):
                raise self.err(pos, f"unexpected . after term {node.src!r}")
            node = _Chain(node, names, node.pos)
        return node, k


# --- template: functions ------------------------------------------------------------------------

# Parameter kinds: "s" string, "i" int, "l" []string, "a" any; None = variadic any.
_STR, _INT, _LIST, _ANY = "string", "int", "[]string", "interface {}"


def _docker_json(v: Any) -> str:
    return go_json(v, escape_html=False)


def _title(s: str) -> str:
    """strings.Title: upper-case the first letter of each word."""
    out: list[str] = []
    prev_sep = True
    for ch in s:
        out.append(ch.upper() if prev_sep else ch)
        if ord(ch) < 0x80:
            prev_sep = not (ch.isalnum() or ch == "_")
        else:
            prev_sep = ch.isspace()
    return "".join(out)


def _split(s: str, sep: str) -> list[str]:
    return list(s) if sep == "" else s.split(sep)


def _pad(s: str, prefix: int, suffix: int) -> str:
    return s if s == "" else " " * prefix + s + " " * suffix


def _truncate(s: str, length: int) -> str:
    raw = s.encode()
    return s if len(raw) < length else raw[:max(length, 0)].decode(errors="replace")


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            if key in item:
                item = item[key]
            else:
                str_values = all(isinstance(x, str) for x in item.values())
                item = "" if str_values else None
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise ValueError(f"cannot index slice/array with type {_go_type(key)}")
            if not 0 <= key < len(item):
                raise ValueError(f"index out of range: {key}")
            item = item[key] if not isinstance(item, str) else item.encode()[key]
        elif item is None or item is MISSING:
            raise ValueError("index of untyped nil")
        else:
            raise ValueError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise ValueError(f"can't slice item of type {_go_type(item)}")
    if len(idx) > 2 + (not isinstance(item, str)):
        raise ValueError("too many slice indexes")
    bounds = [int(x) for x in idx]
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise ValueError(f"index out of range: {hi if hi > len(item) else lo}")
    return item[lo:hi]


def _len(v: Any) -> int:
    if isinstance(v, (str, list, tuple, Mapping)):
        return len(v.encode()) if isinstance(v, str) else len(v)
    raise ValueError(f"len of type {_go_type(v)}")


def _basic(v: Any) -> tuple[str, Any]:
    if isinstance(v, bool):
        return "bool", v
    if isinstance(v, (int, float)):
        return "number", v
    if isinstance(v, str):
        return "string", v
    if v is None or v is MISSING:
        return "nil", None
    raise ValueError("invalid type for comparison")


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise ValueError("missing argument for comparison")
    ka, va = _basic(a)
    for b in others:
        kb, vb = _basic(b)
        if ka != kb and "nil" not in (ka, kb):
            raise ValueError("incompatible types for comparison")
        if va == vb and ka == kb:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, va = _basic(a)
    kb, vb = _basic(b)
    if ka != kb:
        raise ValueError("incompatible types for comparison")
    if ka in ("bool", "nil"):
        raise ValueError("invalid type for comparison")
    return bool(va < vb)


def _html(*args: Any) -> str:
    s = _sprint(args)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;"),
                 ("\0", "\ufffd")):
        s = s.replace(a, b)
    return s


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus
    return quote_plus(_sprint(args), safe="")


# name -> (function, parameter kinds or None for variadic)
_FUNCS: dict[str, tuple[Callable[..., Any], tuple[str, ...] | None]] = {
    # docker's (github.com/docker/cli/templates)
    "json": (_docker_json, (_ANY,)),
    "split": (_split, (_STR, _STR)),
    "join": (lambda v, sep: sep.join(v), (_LIST, _STR)),
    "title": (_title, (_STR,)),
    "lower": (str.lower, (_STR,)),
    "upper": (str.upper, (_STR,)),
    "pad": (_pad, (_STR, _INT, _INT)),
    "truncate": (_truncate, (_STR, _INT)),
    # Go's builtins ("and" and "or" are evaluated lazily by the executor)
    "and": (lambda *a: a[-1], None),
    "or": (lambda *a: a[-1], None),
    "not": (lambda v: not _truth(v), (_ANY,)),
    "len": (_len, (_ANY,)),
    "index": (_index, None),
    "slice": (_slice, None),
    "print": (lambda *a: _sprint(a), None),
    "printf": (lambda f, *a: _printf(f, a), None),
    "println": (lambda *a: " ".join(go_sprint(x) for x in a) + "\n", None),
    "eq": (_eq, None),
    "ne": (lambda a, b: not _eq(a, b), (_ANY, _ANY)),
    "lt": (_lt, (_ANY, _ANY)),
    "le": (lambda a, b: _lt(a, b) or _eq(a, b), (_ANY, _ANY)),
    "gt": (lambda a, b: not (_lt(a, b) or _eq(a, b)), (_ANY, _ANY)),
    "ge": (lambda a, b: not _lt(a, b), (_ANY, _ANY)),
    "html": (_html, None),
    "urlquery": (_urlquery, None),
}

_MIN_ARGS = {"and": 1, "or": 1, "index": 1, "slice": 1, "printf": 1, "eq": 1}


def _identity(v: Any, *_: Any) -> Any:
    return v


# docker's HeaderFunctions: a table's header keeps the column title intact.
_HEADER_FUNCS = dict(_FUNCS)
_HEADER_FUNCS.update({
    "json": (_identity, (_STR,)), "split": (_identity, (_STR, _STR)),
    "join": (_identity, (_STR, _STR)), "title": (_identity, (_STR,)),
    "lower": (_identity, (_STR,)), "upper": (_identity, (_STR,)),
    "truncate": (_identity, (_STR, _INT)),
})


def _truth(v: Any) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, Mapping)):
        return bool(v)
    return True


# --- template: executor -------------------------------------------------------------------------

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _ExecError(Exception):
    def __init__(self, node: _Node, msg: str) -> None:
        super().__init__(msg)
        self.node, self.msg = node, msg


class Template:
    """A parsed Go template. `Template("{{.ID}}\\t{{json .Labels}}").execute(row)`.

    missingkey: "default" (a GoMap's missing key prints "<no value>") or "error"
    (Go's Option("missingkey=error"), as `docker inspect` uses on raw JSON).
    """

    def __init__(self, text: str, *, missingkey: str = "default") -> None:
        if missingkey not in ("default", "error", "invalid", "zero"):
            raise TemplateError(f'unrecognized option: missingkey={missingkey}')
        self.text = text
        self.missingkey = missingkey
        self.nodes = _Parser(text, _FUNCS).parse()

    def execute(self, data: Any, *, type_name: str | None = None) -> str:
        """The text the template produces for `data`; TemplateError with Go's message if it
        fails. `type_name` names the data's type in "can't evaluate field" errors (docker's
        "*formatter.ImageContext"); by default Go's name for the Python value's type."""
        out: list[str] = []
        self._execute(data, out, _FUNCS, type_name)
        return "".join(out)

    def _execute(self, data: Any, out: list[str], funcs: Mapping[str, Any],
                 type_name: str | None) -> None:
        ex = _Exec(self, data, out, funcs, type_name)
        try:
            ex.walk_list(data, self.nodes)
        except _ExecError as e:
            raise TemplateError(self._where(e.node, e.msg)) from None

    def _where(self, node: _Node, msg: str) -> str:
        before = self.text[:node.pos].encode()
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1)
        context = str(node)
        if len(context) > 20:
            context = context[:20] + "..."
        return f'template: :{line}:{col}: executing "" at <{context}>: {msg}'


class _Exec:
    def __init__(self, tmpl: Template, root: Any, out: list[str], funcs: Mapping[str, Any],
                 type_name: str | None) -> None:
        self.tmpl = tmpl
        self.out = out
        self.funcs = funcs
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.root = root
        self.type_name = type_name

    # statements

    def walk_list(self, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            self.walk(dot, node)

    def walk(self, dot: Any, node: _Node) -> None:
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Action):
            # a {{$x := …}} stays visible until the enclosing block's {{end}}
            value = self.pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.out.append(self.printable(node, value))
        elif isinstance(node, _Control):
            mark = len(self.vars)
            try:
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    value = self.pipeline(dot, node.pipe)
                    if _truth(value):
                        self.walk_list(value if node.kind == "with" else dot, node.body)
                    elif node.other is not None:
                        self.walk_list(dot, node.other)
            finally:
                del self.vars[mark:]
        elif isinstance(node, _Jump):
            raise _Break() if node.kind == "break" else _Continue()

    def walk_range(self, dot: Any, node: _Control) -> None:
        pipe = node.pipe
        decl, pipe.decl = pipe.decl, []
        try:
            value = self.pipeline(dot, pipe)
        finally:
            pipe.decl = decl
        if isinstance(value, Mapping):
            items: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value, key=str)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None or value is MISSING:
            items = []
        else:
            raise _ExecError(node.pipe, f"range can't iterate over {go_sprint(value)}")
        mark = len(self.vars)
        for key, elem in items:
            del self.vars[mark:]
            if len(decl) == 1:
                self.vars.append((decl[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], elem))
            try:
                self.walk_list(elem, node.body)
            except _Continue:
                continue
            except _Break:
                break
        del self.vars[mark:]
        if not items and node.other is not None:
            self.walk_list(dot, node.other)

    def printable(self, node: _Node, value: Any) -> str:
        if callable(value):
            raise _ExecError(node, "can't print value of type func")
        return go_sprint(value)

    # expressions

    def pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value: Any = _NOFINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if value is _NOFINAL:
            value = MISSING
        for name in pipe.decl:
            if pipe.assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == name:
                        self.vars[i] = (name, value)
                        break
            else:
                self.vars.append((name, value))
        return value

    def command(self, dot: Any, cmd: _Cmd, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.field_chain(dot, dot, first, first.names, cmd.args, final)
        if isinstance(first, _Var):
            value = self.variable(first, first.name)
            if first.names:
                return self.field_chain(dot, value, first, first.names, cmd.args, final)
            self.no_args(first, cmd.args, final)
            return value
        if isinstance(first, _Chain):
            value = self.arg_value(dot, first.node)
            return self.field_chain(dot, value, first, first.names, cmd.args, final)
        if isinstance(first, _Ident):
            if first.name == "nil":
                raise _ExecError(first, "nil is not a command")
            return self.call(dot, first, cmd.args, final)
        self.no_args(first, cmd.args, final)
        if isinstance(first, _Pipe):
            return self.pipeline_scoped(dot, first)
        if isinstance(first, _Dot):
            return dot
        assert isinstance(first, _Lit)
        return first.value

    def no_args(self, node: _Node, args: list[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _NOFINAL:
            raise _ExecError(node, f"can't give argument to non-function {node}")

    def pipeline_scoped(self, dot: Any, pipe: _Pipe) -> Any:
        mark = len(self.vars)
        try:
            return self.pipeline(dot, pipe)
        finally:
            if not pipe.decl or pipe.assign:
                del self.vars[mark:]

    def variable(self, node: _Node, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise _ExecError(node, f"undefined variable: {name}")

    def field_chain(self, dot: Any, receiver: Any, node: _Node, names: list[str],
                    args: list[_Node], final: Any) -> Any:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            receiver = self.field(dot, receiver, node, name, args if last else [],
                                  final if last else _NOFINAL, i == 0 and isinstance(node, _Field))
        return receiver

    def field(self, dot: Any, receiver: Any, node: _Node, name: str, args: list[_Node],
              final: Any, on_dot: bool) -> Any:
        has_args = len(args) > 1 or final is not _NOFINAL
        if receiver is MISSING:
            if self.tmpl.missingkey == "error":
                raise _ExecError(node, f'nil data; no entry for key "{name}"')
            return MISSING
        if isinstance(receiver, GoMap):
            if has_args:
                raise _ExecError(node, f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            if self.tmpl.missingkey == "error":
                raise _ExecError(node, f'map has no entry for key "{name}"')
            return "" if self.tmpl.missingkey == "zero" else MISSING
        if isinstance(receiver, Mapping) and name in receiver:
            value = receiver[name]
            if callable(value):
                call_args = [self.arg_value(dot, a) for a in args[1:]]
                if final is not _NOFINAL:
                    call_args.append(final)
                try:
                    return value(*call_args)
                except TypeError as e:
                    raise _ExecError(node, f"wrong number of args for {name}: {e}") from None
                except (ValueError, LookupError) as e:
                    raise _ExecError(node, f"error calling {name}: {e}") from None
            if has_args:
                raise _ExecError(node, f"{name} has arguments but cannot be invoked as function")
            return value
        if receiver is None:
            raise _ExecError(node, f"nil pointer evaluating interface {{}}.{name}")
        type_name = (self.type_name if on_dot and receiver is self.root and self.type_name
                     else _go_type(receiver))
        raise _ExecError(node, f"can't evaluate field {name} in type {type_name}")

    def arg_value(self, dot: Any, node: _Node) -> Any:
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Lit):
            return node.value
        if isinstance(node, _Ident):
            if node.name == "nil":
                return None
            return self.call(dot, node, [node], _NOFINAL)
        if isinstance(node, _Field):
            return self.field_chain(dot, dot, node, node.names, [node], _NOFINAL)
        if isinstance(node, _Var):
            value = self.variable(node, node.name)
            if node.names:
                return self.field_chain(dot, value, node, node.names, [node], _NOFINAL)
            return value
        if isinstance(node, _Chain):
            value = self.arg_value(dot, node.node)
            return self.field_chain(dot, value, node, node.names, [node], _NOFINAL)
        if isinstance(node, _Pipe):
            return self.pipeline_scoped(dot, node)
        raise _ExecError(node, f"can't handle {node}")

    def call(self, dot: Any, ident: _Ident, args: list[_Node], final: Any) -> Any:
        name = ident.name
        fn, params = self.funcs[name]
        arg_nodes = args[1:]
        nargs = len(arg_nodes) + (final is not _NOFINAL)
        if params is not None and nargs != len(params):
            raise _ExecError(ident, f"wrong number of args for {name}: "
                                    f"want {len(params)} got {nargs}")
        if params is None and nargs < _MIN_ARGS.get(name, 0):
            raise _ExecError(ident, f"wrong number of args for {name}: "
                                    f"want at least {_MIN_ARGS[name]} got {nargs}")
        if name in ("and", "or"):
            value: Any = None
            values = [(n, None) for n in arg_nodes]
            if final is not _NOFINAL:
                values.append((None, final))
            for n, v in values:
                value = self.arg_value(dot, n) if n is not None else v
                if _truth(value) == (name == "or"):
                    return value
            return value
        values = [self.arg_value(dot, n) for n in arg_nodes]
        if final is not _NOFINAL:
            values.append(final)
        if params is not None:
            for i, (v, kind) in enumerate(zip(values, params)):
                values[i] = self.convert(arg_nodes[i] if i < len(arg_nodes) else ident, v, kind)
        elif name == "printf" and not isinstance(values[0], str):
            self.convert(arg_nodes[0] if arg_nodes else ident, values[0], _STR)
        try:
            return fn(*values)
        except (ValueError, LookupError, TypeError, ZeroDivisionError) as e:
            raise _ExecError(ident, f"error calling {name}: {e}") from None

    def convert(self, node: _Node, v: Any, kind: str) -> Any:
        if kind == _ANY:
            return None if v is MISSING else v
        if v is MISSING or v is None:
            raise _ExecError(node, f"invalid value; expected {kind}")
        ok = ((kind == _STR and isinstance(v, str))
              or (kind == _INT and isinstance(v, int) and not isinstance(v, bool))
              or (kind == _LIST and isinstance(v, (list, tuple))
                  and all(isinstance(x, str) for x in v)))
        if not ok:
            if kind == _INT and isinstance(node, _Lit) and isinstance(v, float):
                raise _ExecError(node, f"expected integer; found {node.src}")
            raise _ExecError(node, f"wrong type for value; expected {kind}; got {_go_type(v)}")
        return v


_NOFINAL: Any = object()


# --- Go's text/tabwriter as docker configures it ------------------------------------------------

def _text_width(s: str) -> int:
    """go-runewidth's StringWidth: East Asian wide characters count 2, combining marks 0."""
    if s.isascii():
        return len(s)
    import unicodedata
    width = 0
    for ch in s:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter.NewWriter(out, minwidth, 1, padding, ' ', 0) fed `text` then flushed:
    cells are tab-terminated; a column is the run of consecutive lines that have a cell at
    that index, as wide as its widest cell plus padding (at least minwidth); the text after
    a line's last tab is not part of a column and is never padded."""
    return "\n".join(_tabwrite_block(block, minwidth, padding) for block in text.split("\f"))


def _tabwrite_block(text: str, minwidth: int, padding: int) -> str:
    raw_lines = text.split("\n")
    lines: list[list[tuple[str, int]]] = []
    for raw in raw_lines[:-1]:
        cells = raw.replace("\v", "\t").split("\t")
        lines.append([(c, _text_width(c)) for c in cells])
    # the unterminated last line: only its tab-terminated cells are cells
    tail_cells = raw_lines[-1].replace("\v", "\t").split("\t")
    tail = tail_cells.pop()
    lines.append([(c, _text_width(c)) for c in tail_cells])
    out: list[str] = []
    _tw_format(lines, 0, len(lines), [], minwidth, padding, out)
    out.append(tail)
    return "".join(out)


def _tw_format(lines: list[list[tuple[str, int]]], line0: int, line1: int, widths: list[int],
               minwidth: int, padding: int, out: list[str]) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _tw_write(lines, line0, this, widths, out)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, lines[this][column][1] + padding)
            this += 1
        widths.append(width)
        _tw_format(lines, line0, this, widths, minwidth, padding, out)
        widths.pop()
        line0 = this
    _tw_write(lines, line0, line1, widths, out)


def _tw_write(lines: list[list[tuple[str, int]]], line0: int, line1: int, widths: list[int],
              out: list[str]) -> None:
    for i in range(line0, line1):
        for j, (cell, w) in enumerate(lines[i]):
            out.append(cell)
            if j < len(widths):
                out.append(" " * (widths[j] - w))
        if i + 1 < len(lines):
            out.append("\n")


# --- docker's formatter -------------------------------------------------------------------------

def _pre_format(fmt: str) -> tuple[str, bool]:
    """formatter.Context.preFormat: strip "table", trim spaces, turn `\\t` `\\n` into tab and
    newline (everywhere, quoted strings included, as docker does)."""
    table = fmt.startswith("table")
    body = fmt[len("table"):] if table else ("{{json .}}" if fmt == "json" else fmt)
    body = body.strip(" ")
    return body.replace("\\t", "\t").replace("\\n", "\n"), table


def _header_row(headers: Mapping[str, str]) -> GoMap:
    return GoMap(headers)


def render(rows: Iterable[Mapping[str, Any]], fmt: str | None, *, default_table: str,
           headers: Mapping[str, str] | None = None, quiet: bool = False,
           quiet_format: str = "{{.ID}}", type_name: str | None = None) -> str:
    """What docker's formatter prints for `rows` with `--format fmt`.

    fmt None, "" or "table" is `default_table` ("{{.ID}}" with quiet=True); "json" is one
    `{{json .}}` per row (keys sorted, as docker's contexts marshal); "table TEMPLATE" prints a
    header (each field's title from `headers`, "<no value>" when absent, as docker) and the
    rows through the tabwriter; any other template prints one line per row, no header."""
    if not fmt or fmt == "table":
        fmt = quiet_format if quiet else default_table
    body, table = _pre_format(fmt)
    try:
        tmpl = Template(body)
    except TemplateError as e:
        raise TemplateError(f"template parsing error: {e}") from None
    buf: list[str] = []
    for row in rows:
        data = Row(row) if type(row) is dict else row
        try:
            tmpl._execute(data, buf, _FUNCS, type_name)
        except TemplateError as e:
            raise TemplateError(f"template parsing error: {e}") from None
        buf.append("\n")
    if not table:
        return "".join(buf)
    header: list[str] = []
    try:  # docker ignores the header's execution error and keeps what was written
        tmpl._execute(_header_row(headers or {}), header, _HEADER_FUNCS, None)
    except TemplateError:
        pass
    return tabwrite("".join(header) + "\n" + "".join(buf))


# --- --filter -----------------------------------------------------------------------------------

def parse_filters(values: Iterable[str], allowed: Iterable[str] | None = None
                  ) -> dict[str, list[str]]:
    """`--filter key=value` (repeatable) as docker's FilterOpt parses it (key lower-cased and
    trimmed, value trimmed), values by key in order; checked against `allowed` as the daemon's
    filters.Validate does ("invalid filter 'foo'"). None allows every key."""
    out: dict[str, list[str]] = {}
    for value in values:
        if "=" not in value:
            raise InvalidArgument(f'invalid argument "{value}" for "-f, --filter" flag: '
                                  "bad format of filter (expected name=value)")
        key, _, val = value.partition("=")
        key = key.strip().lower()
        out.setdefault(key, []).append(val.strip())
    if allowed is not None:
        accepted = set(allowed)
        for key in out:
            if key not in accepted:
                raise InvalidArgument(f"invalid filter '{key}'")
    return out


# --- small helpers the commands share -------------------------------------------------------------

def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time ("2026-11-28T04:16:10.245228553Z",
    "…+01:00"); 0.0 for Go's zero time or text that is not one."""
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
    """Go's time.RFC3339 in UTC, whole seconds (docker's `history -H=false`)."""
    import time as _time
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(ts))


def ellipsis(text: str, width: int) -> str:
    """docker's stringutils.Ellipsis: cut to `width` characters, the last one "…"."""
    if len(text) <= width:
        return text
    return text[:width - 1] + "…" if width > 1 else text[:width]


def json_indent(v: Any) -> str:
    """json.MarshalIndent(v, "", "    "), as `docker inspect` prints."""
    return go_json(v, indent="    ")
