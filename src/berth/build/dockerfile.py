"""The Dockerfile parser: text to a list of `Instruction`s, as buildkit's parser splits them.

This mirrors moby/buildkit frontend/dockerfile/parser (parser.go, line_parsers.go,
split_command.go, directives.go) plus the few checks its instructions package makes on the
raw nodes (unknown instruction, SHELL not JSON, ONBUILD triggers). No variable is expanded
here: arguments keep their quotes and escapes exactly where buildkit keeps them, and the
builder runs them through `berth.build.shell.ShellLex` later.

Lines. Parser directives (`# syntax=`, `# escape=`, `# check=`) count only before anything
else: the first line that is not such a directive (an instruction, a blank line, any other
comment) ends them; a repeated directive is an error. The escape character (`\\` or a
backtick) at the end of a line, optionally followed by spaces and tabs, continues the
instruction on the next line; it is removed, the two pieces are joined as they are (the next
line keeps its indentation). Comment lines inside a continuation are dropped; empty ones too,
with a warning. `#` starts a comment only at the start of a line.

Arguments (`Instruction.args`), per buildkit's dispatch table:

- ENV, LABEL: (key, value, key, value, ...). `ENV k v w` (legacy: the whole rest after the
  first whitespace is the value, verbatim) or `ENV a=1 b="x y"`: split into words the way
  buildkit's parseWords does — quotes and escape characters stay in both key and value
  (`b="x y"` gives key `b`, value `"x y"`; `a=x\\ y` gives value `x\\ y`), to be removed by
  ShellLex.process_word. A word without `=` in the new form is an error.
- ARG: one arg per word, `name` or `name=default` (quotes kept).
- RUN, CMD, ENTRYPOINT, SHELL: a JSON array of strings gives json=True and the strings;
  anything else (also broken JSON) is shell form, args = (rest of line,). A JSON array
  holding a non-string is an error. SHELL must be JSON.
- COPY, ADD, VOLUME: JSON array as above, else whitespace-separated words (quotes kept).
- FROM, EXPOSE: whitespace-separated words.
- WORKDIR, USER, STOPSIGNAL, MAINTAINER: (rest of line,).
- HEALTHCHECK: (type, *cmd): ("NONE",), ("CMD", "shell text") or ("CMD", *json) with json=True.
- ONBUILD: args = (trigger text,) — buildkit's ONBUILD expression, the original with
  `ONBUILD` removed — and `sub`, the trigger parsed as an instruction.

Flags (`--name=value`, `--name`) are taken from the start of every instruction's arguments,
quotes and escapes removed; `--` ends them. Which flags an instruction accepts is the
builder's business.

Heredocs (RUN, COPY, ADD, and ONBUILD of those; not in JSON form): any word of the line of
the form `[n]<<[-]WORD` starts one; the body lines follow the instruction, up to a line equal
to WORD (with `<<-`: after its leading tabs). A quoted WORD (`'EOF'`, `"EOF"`, `E"O"F`)
means: no expansion. `Heredoc.content` has, for `<<-`, each line's leading tabs removed
(buildkit does that when it uses the content).

Raises: DockerfileError (an InvalidArgument) naming the file and line.
"""

from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass

from berth.errors import InvalidArgument

from .shell import ShellError, ShellLex, go_isspace

__all__ = ["Dockerfile", "DockerfileError", "Heredoc", "Instruction", "flag_value",
           "parse", "parse_heredoc_word"]

INSTRUCTIONS = frozenset({
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
    "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume",
    "workdir",
})
_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})
_DIRECTIVES = frozenset({"syntax", "escape", "check"})

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")  # buildkit's reWhitespace (no newline)
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_HEREDOC = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z", re.DOTALL)
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed; `line` is 1-based (0: no particular line)."""

    def __init__(self, message: str, *, filename: str = "Dockerfile", line: int = 0) -> None:
        where = f"{filename}:{line}" if line > 0 else filename
        super().__init__(f"{where}: {message}")
        self.filename = filename
        self.line = line
        self.problem = message


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool
    chomp: bool


@dataclass(frozen=True)
class Instruction:
    cmd: str
    args: tuple[str, ...]
    json: bool
    flags: tuple[tuple[str, str | None], ...]
    original: str
    line: int
    end_line: int
    heredocs: tuple[Heredoc, ...] = ()
    sub: Instruction | None = None


@dataclass(frozen=True)
class Dockerfile:
    instructions: tuple[Instruction, ...]
    directives: dict[str, str]
    escape: str
    warnings: tuple[str, ...]


def flag_value(inst: Instruction, name: str) -> str | None:
    """The value of the last `--name=value` of `inst`; None if absent or given bare."""
    value = None
    for flag, v in inst.flags:
        if flag == name:
            value = v
    return value


def _go_strip(s: str) -> str:
    start, end = 0, len(s)
    while start < end and go_isspace(s[start]):
        start += 1
    while end > start and go_isspace(s[end - 1]):
        end -= 1
    return s[start:end]


def _go_lstrip(s: str) -> str:
    i = 0
    while i < len(s) and go_isspace(s[i]):
        i += 1
    return s[i:]


class _ParseError(Exception):
    """A problem found on the current line; parse() adds the location."""


# -- nodes: what buildkit's parser produces, before the instruction checks -----------------------


@dataclass
class _Node:
    cmd: str                      # as written
    args: list[str]
    json: bool
    flags: list[str]
    original: str
    sub: _Node | None = None
    line: int = 0
    end_line: int = 0
    heredocs: tuple[Heredoc, ...] = ()


def _split_command(line: str, escape: str) -> tuple[str, list[str], str]:
    parts = _WHITESPACE.split(_go_strip(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1], escape)
    return parts[0], flags, _go_strip(rest)


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading `--flag[=value]` words (quotes and escapes removed) and the rest of the line."""
    words: list[str] = []
    buf: list[str] = []
    in_word = in_quote = False
    quote = ""
    blank_ok = False
    pos, n = 0, len(line)
    while True:
        if not in_word and not in_quote:
            if pos == n:
                break
            ch = line[pos]
            if go_isspace(ch):
                pos += 1
                continue
            if not line.startswith("--", pos):
                return line[pos:], words
            in_word = True
        if pos == n:
            word = "".join(buf)
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        ch = line[pos]
        if in_quote:
            if ch == quote:
                in_quote = False
            else:
                if ch == escape:
                    if pos + 1 == n:
                        in_quote = False
                        pos += 1
                        continue
                    pos += 1
                    ch = line[pos]
                buf.append(ch)
            pos += 1
            continue
        if go_isspace(ch):
            word = "".join(buf)
            in_word = False
            if word == "--":
                return line[pos:], words
            if blank_ok or word:
                words.append(word)
            buf = []
            blank_ok = False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
            in_quote = True
            pos += 1
            continue
        if ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        buf.append(ch)
        pos += 1
    return "", words


def _parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words, quotes and escapes kept (buildkit's parseWords)."""
    words: list[str] = []
    buf: list[str] = []
    phase = 0  # 0: between words, 1: in a word, 2: in quotes
    quote = ""
    blank_ok = False
    pos, n = 0, len(rest)
    while True:
        if phase == 0:
            if pos == n:
                break
            if go_isspace(rest[pos]):
                pos += 1
                continue
            phase = 1
        if pos == n:
            if blank_ok or buf:
                words.append("".join(buf))
            break
        ch = rest[pos]
        if phase == 1:
            if go_isspace(ch):
                phase = 0
                if blank_ok or buf:
                    words.append("".join(buf))
                buf = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = 2
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue  # an escape at the end is dropped
                buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        # in quotes
        if ch == quote:
            phase = 1
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = 1
                pos += 1
                continue
            buf.append(ch)
            pos += 1
            ch = rest[pos]
        buf.append(ch)
        pos += 1
    return words


def _parse_name_val(rest: str, key: str, escape: str) -> list[str]:
    words = _parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _ParseError(f"{key} must have two arguments")
        return [parts[0], parts[1]]
    out: list[str] = []
    for word in words:
        if "=" not in word:
            quoted = _json.dumps(word, ensure_ascii=False)
            raise _ParseError(f"Syntax error - can't find = in {quoted}."
                              " Must be of the form: name=value")
        k, v = word.split("=", 1)
        out += [k, v]
    return out


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # Go's encoding/json knows no NaN or Infinity


def _parse_json(rest: str) -> list[str] | None:
    """The strings of a JSON array, None if `rest` is not a JSON array at all."""
    rest = _go_lstrip(rest)
    if not rest.startswith("["):
        return None
    try:
        value = _json.loads(rest, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(s, str) for s in value):
        raise _ParseError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _maybe_json(rest: str) -> tuple[list[str], bool]:
    if rest == "":
        return [], False
    values = _parse_json(rest)
    if values is not None:
        return values, True
    return [rest], False


def _maybe_json_list(rest: str) -> tuple[list[str], bool]:
    values = _parse_json(rest)
    if values is not None:
        return values, True
    return _whitespace_words(rest), False


def _whitespace_words(rest: str) -> list[str]:
    return _WHITESPACE.split(rest) if rest else []


def _health(rest: str) -> tuple[list[str], bool]:
    sep = 0
    while sep < len(rest) and not go_isspace(rest[sep]):
        sep += 1
    if sep == 0:
        return [], False
    nxt = sep
    while nxt < len(rest) and go_isspace(rest[nxt]):
        nxt += 1
    cmd, is_json = _maybe_json(rest[nxt:])
    return [rest[:sep], *cmd], is_json


def _node_from_line(line: str, escape: str) -> _Node:
    cmd, flags, rest = _split_command(line, escape)
    kind = cmd.lower()
    is_json = False
    sub = None
    args: list[str]
    if kind in ("env", "label"):
        args = _parse_name_val(rest, kind.upper(), escape)
    elif kind == "arg":
        args = _parse_words(rest, escape)
    elif kind in ("run", "cmd", "entrypoint", "shell"):
        args, is_json = _maybe_json(rest)
    elif kind in ("copy", "add", "volume"):
        args, is_json = _maybe_json_list(rest)
    elif kind in ("from", "expose"):
        args = _whitespace_words(rest)
    elif kind in ("workdir", "user", "stopsignal", "maintainer"):
        args = [rest] if rest else []
    elif kind == "healthcheck":
        args, is_json = _health(rest)
    elif kind == "onbuild":
        args = []
        if rest:
            sub = _node_from_line(rest, escape)
    else:
        args = []  # buildkit's parser ignores what it does not know; checked later
    return _Node(cmd, args, is_json, flags, line, sub)


def _can_contain_heredoc(node: _Node) -> bool:
    if node.cmd.lower() == "onbuild" and node.sub is not None:
        node = node.sub
    return node.cmd.lower() in _HEREDOC_INSTRUCTIONS and not node.json


# -- heredocs --------------------------------------------------------------------------------------


def parse_heredoc_word(word: str) -> Heredoc | None:
    """The heredoc that one word (`<<EOF`, `<<-'EOF'`, `3<<EOF`) opens, else None.

    The returned content is empty. Buildkit's ParseHeredoc: the builder uses it to tell which
    COPY/ADD sources are heredocs and whether `RUN <<EOF` is a bare script.
    Raises ShellError for an unterminated quote in the name.
    """
    m = _HEREDOC.match(word)
    if m is None or not m.group(3):
        return None
    rest = m.group(3)
    words = ShellLex("\\", skip_unset_env=True).process_words(rest, {})
    if len(words) != 1:
        return None
    raw = ShellLex("\\", skip_unset_env=True, raw_quotes=True).process_words(rest, {})
    if len(raw) != 1:
        raise ShellError(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    return Heredoc(name=words[0], content="", expand=quotes(words[0]) == quotes(raw[0]),
                   chomp=m.group(2) == "-")


def _heredocs_from_line(line: str) -> list[Heredoc]:
    lex = ShellLex("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lex.process_words(line, {})
    except ShellError:
        return []  # buildkit ignores the error here: no heredocs
    docs = []
    for word in words:
        doc = parse_heredoc_word(word)
        if doc is not None:
            docs.append(doc)
    return docs


# -- the line loop ---------------------------------------------------------------------------------


class _Lines:
    def __init__(self, text: str) -> None:
        lines = text.split("\n")
        self.lines = [s + "\n" for s in lines[:-1]]
        if lines[-1]:
            self.lines.append(lines[-1])
        self.index = 0

    def next(self) -> str | None:
        if self.index >= len(self.lines):
            return None
        self.index += 1
        return self.lines[self.index - 1]


def _trim_newline(s: str) -> str:
    return s.rstrip("\r\n")


def _is_comment(s: str) -> bool:
    return _go_lstrip(s).startswith("#")


class _Directives:
    def __init__(self) -> None:
        self.done = False
        self.seen: dict[str, str] = {}
        self.escape = "\\"
        self._continuation = self._continuation_regex("\\")

    @staticmethod
    def _continuation_regex(escape: str) -> re.Pattern[str]:
        e = re.escape(escape)
        return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z", re.DOTALL)

    def feed(self, line: str) -> bool:
        """Looks at one line for a parser directive; True if it was one."""
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        m = _DIRECTIVE.match(_go_lstrip(line[1:]))
        if m is None or m.group(1).lower() not in _DIRECTIVES:
            self.done = True
            return False
        key, value = m.group(1).lower(), m.group(2)
        if key in self.seen:
            raise _ParseError(f"only one {key} parser directive can be used")
        self.seen[key] = value
        if key == "escape":
            if value not in ("\\", "`"):
                raise _ParseError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self._continuation = self._continuation_regex(value)
        return True

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """(line without its continuation character, whether the instruction ends here)."""
        if self._continuation.search(line):
            return self._continuation.sub(lambda m: m.group(1) or "", line), False
        return line, True


def parse(text: str | bytes, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile. Bytes are read as UTF-8 (undecodable bytes kept as surrogates)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    nodes, directives, warnings = _parse_nodes(text, filename)
    if not nodes:
        raise DockerfileError("the Dockerfile has no instructions", filename=filename)
    instructions = tuple(_instruction(node, filename, top=True) for node in nodes)
    return Dockerfile(instructions=instructions, directives=dict(directives.seen),
                      escape=directives.escape, warnings=tuple(warnings))


def _parse_nodes(text: str, filename: str) -> tuple[list[_Node], _Directives, list[str]]:
    d = _Directives()
    src = _Lines(text)
    nodes: list[_Node] = []
    warnings: list[str] = []
    current = 0

    def fail(err: Exception, line: int) -> DockerfileError:
        problem = err.problem if isinstance(err, ShellError) else str(err)
        return DockerfileError(problem, filename=filename, line=line)

    while (raw := src.next()) is not None:
        token = _go_lstrip(_trim_newline(raw))
        try:
            d.feed(token)
        except _ParseError as err:
            raise fail(err, current + 1) from None
        current += 1
        start = current
        piece = "" if _is_comment(token) else token
        piece, ends = d.trim_continuation(piece)
        if ends and not piece:
            continue
        buf = [piece]
        empty_continuation = False
        while not ends and (raw := src.next()) is not None:
            token = _trim_newline(raw)
            try:
                d.feed(token)
            except _ParseError as err:
                raise fail(err, current + 1) from None
            current += 1
            if _is_comment(raw):
                continue
            if not _go_lstrip(token):
                empty_continuation = True
                continue
            piece, ends = d.trim_continuation(token)
            buf.append(piece)
        line = "".join(buf)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {line}")
        try:
            node = _node_from_line(line, d.escape)
        except _ParseError as err:
            raise fail(err, start) from None
        if _can_contain_heredoc(node) and "<<" in line:
            try:
                docs = _heredocs_from_line(line)
            except ShellError as err:
                raise fail(err, start) from None
            bodies = []
            for doc in docs:
                body: list[str] = []
                while True:
                    raw = src.next()
                    if raw is None:
                        raise DockerfileError("unterminated heredoc",
                                              filename=filename, line=start)
                    current += 1
                    candidate = _trim_newline(raw)
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        break
                    body.append(raw)
                content = "".join(body)
                if doc.chomp:
                    content = _LEADING_TABS.sub("", content)
                bodies.append(Heredoc(doc.name, content, doc.expand, doc.chomp))
            node.heredocs = tuple(bodies)
        node.line, node.end_line = start, current
        nodes.append(node)
    return nodes, d, warnings


# -- nodes to instructions (the checks of buildkit's instructions package) -------------------------


def _flag_pair(word: str) -> tuple[str, str | None]:
    name, eq, value = word.partition("=")
    return name[2:], (value if eq else None)


def _instruction(node: _Node, filename: str, *, top: bool) -> Instruction:
    kind = node.cmd.lower()

    def error(message: str) -> DockerfileError:
        return DockerfileError(message, filename=filename, line=node.line)

    if kind not in INSTRUCTIONS and top:
        raise error(f"unknown instruction: {node.cmd}")
    args = tuple(node.args)
    sub = None
    if kind == "shell" and top:
        if not node.args:
            raise error("SHELL requires at least one argument")
        if not node.json:
            raise error("SHELL requires the arguments to be in JSON form")
    if kind == "onbuild" and top:
        if node.sub is None:
            raise error("ONBUILD requires at least one argument")
        trigger = node.sub.cmd.upper()
        if trigger == "ONBUILD":
            raise error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise error(f"{trigger} isn't allowed as an ONBUILD trigger")
        node.sub.line, node.sub.end_line = node.line, node.end_line
        node.sub.heredocs = node.heredocs
        sub = _instruction(node.sub, filename, top=False)
        args = (_ONBUILD_PREFIX.sub("", node.original, count=1),)
    return Instruction(
        cmd=kind, args=args, json=node.json,
        flags=tuple(_flag_pair(f) for f in node.flags),
        original=node.original, line=node.line, end_line=node.end_line,
        heredocs=node.heredocs, sub=sub)
