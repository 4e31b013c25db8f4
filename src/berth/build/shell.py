"""Shell-word expansion for Dockerfile arguments, as buildkit's `shell/lex.go` does it.

`ShellLex.process_word` expands variables and removes quotes and escapes, keeping spaces;
`process_words` does the same and then splits on unquoted whitespace. What is supported is
exactly lex.go's subset of POSIX parameter expansion:

    $NAME ${NAME}                      value, "" when unset
    ${NAME:-word} ${NAME-word}         word when unset (`:` also when empty)
    ${NAME:+word} ${NAME+word}         word when set (`:` only when not empty), else ""
    ${NAME:?msg}  ${NAME?msg}          error when unset (`:` also when empty)
    ${NAME#pat} ${NAME##pat}           remove the shortest / longest matching prefix
    ${NAME%pat} ${NAME%%pat}           remove the shortest / longest matching suffix
    ${NAME/pat/repl} ${NAME//pat/repl} replace the first / every match of pat

Patterns know `*`, `?` and `\\` escapes (no bracket expressions). `${#NAME}` (length),
`${NAME:=w}`, `${NAME:off:len}` and `${NAME:#pat}` are errors, as in buildkit. Positional and
special parameters ($1, $@, $#, $$, ...) are names like any other: unset unless given. A `$`
followed by anything else stays a literal `$`. Single quotes keep everything literal; double
quotes expand `$` and let the escape character escape only `"`, `$` and itself; outside quotes
the escape character escapes any character and vanishes at the end of the text.

One deliberate difference: since 2024 lex.go shares one word buffer between nested
`${...}` words, so `process_words("a${X:-b}c")` loses the "a"; here each level has its own
buffer (the earlier buildkit behaviour: ["abc"]).

Raises: ShellError (an InvalidArgument) for bad syntax or a failing `${NAME?msg}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from berth.errors import InvalidArgument

__all__ = ["ShellError", "ShellLex", "go_isspace"]

_EOF = ""
_UNTERMINATED = "unexpected end of statement while looking for matching "
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ShellError(InvalidArgument):
    """A word that cannot be expanded: bad `${}` syntax, unterminated quote, `${X?msg}`."""

    def __init__(self, problem: str, word: str | None = None) -> None:
        self.problem = problem
        self.word = word
        if word is None:
            super().__init__(problem)
        else:
            super().__init__(f"failed to process {_goquote(word)}: {problem}")


def go_isspace(ch: str) -> bool:
    """Go's unicode.IsSpace: Python's isspace minus the separators U+001C..U+001F."""
    return ch.isspace() and not ("\x1c" <= ch <= "\x1f")


def _goquote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    out.append('"')
    return "".join(out)


class _Words:
    """Splits the expanded text into words (lex.go's wordsStruct)."""

    __slots__ = ("buf", "words", "in_word")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if go_isspace(ch):
            if self.in_word and any(self.buf):
                self.words.append("".join(self.buf))
                self.buf = []
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.buf.append(text)
        self.in_word = True

    def get(self) -> list[str]:
        if any(self.buf):
            self.words.append("".join(self.buf))
            self.buf = []
            self.in_word = False
        return self.words


class _Scan:
    """One expansion run over one text (lex.go's shellWord)."""

    def __init__(self, lex: ShellLex, text: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    # -- scanner ------------------------------------------------------------------------------
    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos < len(self.text):
            self.pos += 1
            return self.text[self.pos - 1]
        return _EOF

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    # -- words --------------------------------------------------------------------------------
    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            while (ch := self.peek()) != _EOF:
                if stop and ch == stop:
                    self.next()
                    return "".join(result), words.get()
                special = self._special(ch)
                if special is not None:
                    tmp = special()
                    result.append(tmp)
                    if ch == "$":
                        words.add_string(tmp)
                    else:
                        words.add_raw_string(tmp)
                    continue
                ch = self.next()
                if ch == self.lex.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break  # an escape at the very end vanishes
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
            if stop:
                raise ShellError(_UNTERMINATED + stop)
            return "".join(result), words.get()
        finally:
            self.raw_escapes = saved

    def _special(self, ch: str) -> Callable[[], str] | None:
        if ch == "$":
            return self.process_dollar
        if ch == "<":
            return self.process_possible_heredoc
        if not self.lex.skip_process_quotes:
            if ch == "'":
                return self.process_single_quote
            if ch == '"':
                return self.process_double_quote
        return None

    def process_single_quote(self) -> str:
        out = []
        ch = self.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ShellError(_UNTERMINATED + "single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def process_double_quote(self) -> str:
        out = []
        ch = self.next()
        if self.lex.raw_quotes:
            out.append(ch)
        escape = self.lex.escape
        while True:
            peek = self.peek()
            if peek == _EOF:
                raise ShellError(_UNTERMINATED + "double-quote")
            if peek == '"':
                ch = self.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if peek == "$":
                out.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following == _EOF:
                    continue  # the loop then reports the missing quote
                if following in ('"', "$", escape):
                    ch = self.next()
            out.append(ch)

    def process_possible_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        space = []
        while self.peek() in ("\t", "\r", " "):
            space.append(self.next())
        return "<<" + "".join(space)

    def process_name(self) -> str:
        name: list[str] = []
        while (ch := self.peek()) != _EOF:
            if not name and ch.isdecimal():
                while self.peek() != _EOF and self.peek().isdecimal():
                    name.append(self.next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(self.next())
        return "".join(name)

    def process_dollar(self) -> str:
        self.next()  # the "$"
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value

        self.next()  # the "{"
        peek = self.peek()
        if peek == _EOF:
            raise ShellError("syntax error: missing '}'")
        if peek in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        chs = ch
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._substitute(name)
        if ch not in (":", "+", "-", "?", "#", "%") or ch == _EOF:
            raise ShellError(f"unsupported modifier ({chs}) in substitution")

        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
        trims = ch in ("#", "%") and ch != _EOF
        if null_is_unset and trims:
            raise ShellError(f"unsupported modifier ({chs}) in substitution")
        try:
            word, _ = self.process_stop_on("}", trims)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise
        value, found = self.get_env(name)
        if self.lex.skip_unset_env and not found:
            return "${" + name + chs + word + "}"
        if ch == "-":
            return word if not found or (null_is_unset and value == "") else value
        if ch == "+":
            return "" if not found or (null_is_unset and value == "") else word
        if ch == "?":
            if not found:
                raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if trims:
            greedy = bool(word) and word[0] == ch
            if greedy:
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        raise ShellError(f"unsupported modifier ({chs}) in substitution")

    def _substitute(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process_stop_on("/", True)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.process_stop_on("}", True)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise
        value, found = self.get_env(name)
        if self.lex.skip_unset_env and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        rx = _pattern_regex(pattern, greedy=True, anchored=False)
        if not replace_all:
            m = rx.search(value)
            return value if m is None else value[:m.start()] + replacement + value[m.end():]
        # Go's Regexp.ReplaceAllString: "$name" in the replacement is expanded (there are no
        # groups, so to ""), "$$" is a "$"; an empty match right after a match is not replaced.
        repl = _go_expand_no_groups(replacement)
        out, last, last_end = [], 0, 0
        for m in rx.finditer(value):
            out.append(value[last:m.start()])
            if m.end() > last_end or m.start() == 0:
                out.append(repl)
            else:
                out.append(m.group())
            last = last_end = m.end()
        out.append(value[last:])
        return "".join(out)


def _go_expand_no_groups(template: str) -> str:
    out, i, n = [], 0, len(template)
    while i < n:
        ch = template[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = template.find("}", i + 2)
            name = template[i + 2:end] if end >= 0 else ""
            if end >= 0 and name and all(c.isalnum() or c == "_" for c in name):
                i = end + 1
            else:
                out.append("$")
                i += 1
        else:
            j = i + 1
            while j < n and (template[j].isalnum() or template[j] == "_"):
                j += 1
            if j == i + 1:
                out.append("$")
                i += 1
            else:
                i = j
    return "".join(out)


_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell pattern (`*`, `?`, `\\` escapes) as a regex; lex.go's convertShellPatternToRegex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            nxt = pattern[i] if i < n else _EOF
            if nxt in ("}", "/") and nxt != _EOF:
                continue  # "\}" and "\/" escape the ${} syntax, not the pattern
            i += 1
            if nxt not in ("*", "?", "\\") or nxt == _EOF:
                raise ShellError(f"invalid pattern ({pattern}) in substitution: "
                                 f"invalid escape '\\{nxt}'")
            out.append("\\" + nxt)
        elif tok in _REGEX_SPECIAL:
            out.append("\\" + tok)
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each `\\x` escape pair in order (`a\\*c` -> `c\\*a`)."""
    pairs: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\" and i != n - 1:
            pairs.append(pattern[i:i + 2])
            i += 2
        else:
            pairs.append(pattern[i])
            i += 1
    return "".join(reversed(pairs))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Regexes find leftmost matches, so reverse both sides to find the rightmost one.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


class ShellLex:
    """Expands Dockerfile words (buildkit's shell.Lex).

    `escape` is the Dockerfile's escape character (`\\` or a backtick). The keyword options
    mirror lex.go's switches and exist for the parser and the builder:

    - `raw_quotes`: keep the quote characters in the result;
    - `raw_escapes`: keep the escape characters in the result;
    - `skip_unset_env`: leave references to unset variables as written (`$X`, `${X:-a}`);
    - `skip_process_quotes`: quotes are ordinary characters (buildkit expands the content of
      an unquoted COPY/ADD heredoc this way).
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_unset_env: bool = False,
                 skip_process_quotes: bool = False) -> None:
        if len(escape) != 1:
            raise InvalidArgument(f"invalid escape token {escape!r}: must be one character")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env
        self.skip_process_quotes = skip_process_quotes

    def _run(self, text: str, env: Mapping[str, str]) -> tuple[str, list[str], _Scan]:
        scan = _Scan(self, text, env)
        try:
            result, words = scan.process_stop_on(_EOF, self.raw_escapes)
        except ShellError as err:
            raise ShellError(err.problem, text) from None
        return result, words, scan

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand `word` and remove its quotes and escapes; whitespace is kept."""
        return self._run(word, env)[0]

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """Expand `text` and split it into words on unquoted (and expanded) whitespace."""
        return self._run(text, env)[1]

    def process_word_with_matches(self, word: str, env: Mapping[str, str]
                                  ) -> tuple[str, set[str], set[str]]:
        """`process_word`, plus the names looked up that were set and those that were not."""
        result, _, scan = self._run(word, env)
        return result, scan.matched, scan.unmatched

    def used_vars(self, text: str) -> set[str]:
        """The variable names `text` refers to (buildkit's matched + unmatched names).

        Never raises: text the lexer rejects (RUN lines often hold shell syntax lex.go does
        not know, like `$(cmd)` or `${#X}`) falls back to the `$NAME`/`${NAME` references.
        """
        try:
            scan = self._run(text, _Everything())[2]
        except ShellError:
            return set(_NAME_REF.findall(text))
        return scan.matched | scan.unmatched


_NAME_REF = re.compile(r"\$(?:\{#?)?([A-Za-z_][A-Za-z0-9_]*)")


class _Everything(Mapping[str, str]):
    """An environment in which every variable is set (to "x"), so `${X?}` never fails."""

    def __getitem__(self, key: str) -> str:
        return "x"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
