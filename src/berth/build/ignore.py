""".dockerignore: reading the file, matching paths, and listing what survives of a context.

Follows moby/patternmatcher (ignorefile.ReadAll, PatternMatcher) and the walk of
tonistiigi/fsutil's filter (what BuildKit sends of a build context).

Patterns use Go's filepath.Match syntax — `*` (any run of characters but `/`), `?` (one
character but `/`), `[a-z]`, `[^a-z]`, `\\` escapes — plus `**`, any number of directories
(`**/x`, `a/**`, `a/**/b`). A path is excluded when the last pattern that matches it, or one of
its parent directories, is not a `!` exception: `dir` excludes everything under dir, and
`!dir/keep.txt` after it brings that file back. Patterns are matched in their patternmatcher
shapes: a plain string compares whole paths, `a**` is a string prefix, `**a` a suffix, the rest
a regular expression.

One difference: patternmatcher reports a pattern whose regular expression does not compile
only when it is first used; here the PatternMatcher constructor raises.

Raises: InvalidArgument naming the bad pattern.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence

from berth.errors import InvalidArgument

__all__ = ["PatternMatcher", "clean", "context_files", "read_patterns"]


def _go_isspace(ch: str) -> bool:
    return ch.isspace() and not ("\x1c" <= ch <= "\x1f")


def _go_strip(s: str) -> str:
    start, end = 0, len(s)
    while start < end and _go_isspace(s[start]):
        start += 1
    while end > start and _go_isspace(s[end - 1]):
        end -= 1
    return s[start:end]


def clean(path: str) -> str:
    """Go's filepath.Clean for "/"-separated paths: "" -> ".", "a/./b/../c/" -> "a/c"."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(comp)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file (ignorefile.ReadAll).

    A BOM is dropped; a line starting with `#` (in its first column) is a comment; each
    pattern is trimmed of whitespace, cleaned (filepath.Clean) and loses a leading "/"; `!`
    stays in front (`! /a/b` -> `!a/b`). Blank lines are skipped.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for raw in lines:
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.startswith("#"):
            continue
        pattern = _go_strip(line)
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = _go_strip(pattern[1:])
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


# -- one pattern -----------------------------------------------------------------------------------


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif ch == "[":
            in_range = True
        elif ch == "]":
            in_range = False
        elif ch == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _chunk_syntax_ok(chunk: str) -> bool:
    """Whether filepath.Match would accept `chunk` (its ErrBadPattern checks)."""

    def get_esc(c: str) -> str | None:
        if not c or c[0] in "-]":
            return None
        if c[0] == "\\":
            c = c[1:]
            if not c:
                return None
        rest = c[1:]
        return rest if rest else None

    while chunk:
        ch = chunk[0]
        if ch == "[":
            chunk = chunk[1:]
            if chunk.startswith("^"):
                chunk = chunk[1:]
            ranges = 0
            while True:
                if chunk.startswith("]") and ranges > 0:
                    chunk = chunk[1:]
                    break
                rest = get_esc(chunk)
                if rest is None:
                    return False
                chunk = rest
                if chunk[0] == "-":
                    rest = get_esc(chunk[1:])
                    if rest is None:
                        return False
                    chunk = rest
                ranges += 1
        elif ch == "\\":
            chunk = chunk[1:]
            if not chunk:
                return False
            chunk = chunk[1:]
        else:
            chunk = chunk[1:]
    return True


def _syntax_ok(pattern: str) -> bool:
    while pattern:
        _, chunk, pattern = _scan_chunk(pattern)
        if not _chunk_syntax_ok(chunk):
            return False
    return True


_EXACT, _PREFIX, _SUFFIX, _REGEXP = range(4)
_QUOTED = frozenset(".+()|{}$")  # patternmatcher's shouldEscape set
_GO_AND_PYTHON_ESCAPES = frozenset("dDsSwWbB")


class _Pattern:
    __slots__ = ("text", "exclusion", "kind", "regex")

    def __init__(self, text: str, exclusion: bool, original: str) -> None:
        self.text = text
        self.exclusion = exclusion
        self.regex: re.Pattern[str] | None = None
        self.kind = self._compile(original)

    def _compile(self, original: str) -> int:
        p = self.text
        out = ["^"]
        kind = _EXACT
        i, n, step = 0, len(p), 0
        while i < n:
            ch = p[i]
            i += 1
            if ch == "*":
                if i < n and p[i] == "*":
                    i += 1
                    if i < n and p[i] == "/":
                        i += 1
                    if i == n:  # trailing "**": everything, like .gitignore
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            out.append(".*")
                            kind = _REGEXP
                    else:
                        out.append("(.*/)?")
                        kind = _REGEXP
                    if step == 0:
                        kind = _SUFFIX
                else:
                    out.append("[^/]*")
                    kind = _REGEXP
            elif ch == "?":
                out.append("[^/]")
                kind = _REGEXP
            elif ch in _QUOTED:
                out.append("\\" + ch)
            elif ch == "\\":
                if i < n:
                    nxt = p[i]
                    i += 1
                    if nxt.isascii() and nxt.isalnum():
                        # Go's regexp reads `\d` etc. as classes; others are errors there.
                        if nxt not in _GO_AND_PYTHON_ESCAPES:
                            raise InvalidArgument(
                                f"invalid .dockerignore pattern {original!r}: "
                                f"invalid escape sequence \\{nxt}")
                        out.append("\\" + nxt)
                    else:
                        out.append(re.escape(nxt))
                    kind = _REGEXP
                else:
                    out.append("\\\\")
            elif ch in "[]":
                out.append(ch)
                kind = _REGEXP
            else:
                out.append(ch)
            step += 1
        if kind == _REGEXP:
            out.append(r"\Z")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    self.regex = re.compile("".join(out), re.ASCII)
            except re.error as err:
                raise InvalidArgument(
                    f"invalid .dockerignore pattern {original!r}: {err}") from None
        return kind

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None

    def without_trailing_glob(self) -> str:
        text = self.text
        for tail in ("/**", "/*"):
            if text.endswith(tail):
                text = text[:-len(tail)]
        return text


def _parent_dirs(path: str) -> Iterator[str]:
    """"a/b/c" -> "a", "a/b" (filepath.Dir, then each prefix)."""
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    if parent == ".":
        return
    parts = parent.split("/")
    for i in range(len(parts)):
        yield "/".join(parts[:i + 1])


class PatternMatcher:
    """A list of .dockerignore patterns (patternmatcher.New); later patterns win."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns: list[_Pattern] = []
        self._exceptions = False
        for original in patterns:
            p = _go_strip(original)
            if not p:
                continue
            p = clean(p)
            exclusion = p[0] == "!"
            if exclusion:
                if len(p) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                p = p[1:]
                self._exceptions = True
            if not _syntax_ok(p):
                raise InvalidArgument(
                    f"invalid .dockerignore pattern {original!r}: syntax error in pattern")
            self._patterns.append(_Pattern(p, exclusion, original))

    @property
    def has_exceptions(self) -> bool:
        """Whether any pattern is a `!` exception."""
        return self._exceptions

    @property
    def patterns(self) -> list[str]:
        """The patterns as matched (cleaned, `!` kept)."""
        return [("!" if p.exclusion else "") + p.text for p in self._patterns]

    def excluded(self, relpath: str, parent_excluded: bool | None = None) -> bool:
        """Whether `relpath` ("/"-separated, relative to the context) is excluded.

        Without `parent_excluded`: patternmatcher's MatchesOrParentMatches — a pattern matching
        the path or any of its parent directories counts. With it (the result for the parent
        directory): MatchesUsingParentResult — start from the parent's result and match only
        the path itself. The context root (".") is never excluded.
        """
        path = clean(relpath)
        if path == ".":
            return False
        if parent_excluded is not None:
            matched = parent_excluded
            for pattern in self._patterns:
                if pattern.exclusion != matched:
                    continue
                if pattern.match(path):
                    matched = not pattern.exclusion
            return matched
        matched = False
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path) or any(pattern.match(d) for d in _parent_dirs(path))
            if hit:
                matched = not pattern.exclusion
        return matched

    def _match_with_parents(self, path: str, parent: list[bool] | None
                            ) -> tuple[bool, list[bool]]:
        """patternmatcher's MatchesUsingParentResults: per-pattern results of the parent."""
        info = [False] * len(self._patterns)
        matched = False
        for i, pattern in enumerate(self._patterns):
            hit = parent[i] if parent is not None else False
            if not hit:
                if pattern.exclusion != matched:
                    continue
                hit = pattern.match(path)
                if not hit and parent is None:
                    hit = any(pattern.match(d) for d in _parent_dirs(path))
            info[i] = hit
            if hit:
                matched = not pattern.exclusion
        return matched, info

    def _may_reinclude_below(self, directory: str) -> bool:
        """fsutil: can an exception pattern re-include something under an excluded dir?"""
        if not self._exceptions:
            return False
        prefix = directory + "/"
        chars = set("*[]?^\\")
        exceptions = [p for p in self._patterns if p.exclusion]
        if any(chars & set(p.without_trailing_glob()) for p in exceptions):
            return True  # not only plain prefixes: walk in to find out
        return any((p.without_trailing_glob() + "/").startswith(prefix) for p in exceptions)


def context_files(root: str | os.PathLike[str], patterns: Sequence[str]) -> list[str]:
    """Every path of `root` that survives `patterns`, relative, "/"-separated, sorted.

    Directories, files and symlinks (not followed) are listed. An excluded directory is not
    entered unless an exception pattern could re-include something in it; a directory that
    is itself excluded is listed when something under it is re-included (BuildKit sends the
    parents of what it sends). Unreadable excluded directories are skipped.
    """
    matcher = PatternMatcher(patterns)
    out: set[str] = set()

    def walk(directory: str, prefix: str, parent: list[bool] | None,
             pending: tuple[str, ...]) -> None:
        # `pending`: the excluded directories above, listed once something below survives.
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            if pending:
                return
            raise
        for entry in entries:
            rel = prefix + entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            excluded, info = matcher._match_with_parents(rel, parent)
            if excluded:
                if is_dir and matcher._may_reinclude_below(rel):
                    walk(entry.path, rel + "/", info, (*pending, rel))
                continue
            out.update(pending)
            out.add(rel)
            if is_dir:
                walk(entry.path, rel + "/", info, ())

    walk(os.fspath(root), "", None, ())
    return sorted(out)
