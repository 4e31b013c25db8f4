"""The build context: a directory (or a tarball on stdin, unpacked to one) seen through
`.dockerignore`, and the sources of COPY/ADD resolved in it as docker resolves them.

Only the files that survive `.dockerignore` are listed, read for checksums and copied. The
checksum of a COPY source is over each file's path, type, mode, link target and content (not
its mtime, as BuildKit), so touching a file keeps the cache and editing it does not; content
digests are remembered by (inode, size, mtime, ctime), so an unchanged tree is not read again.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidArgument, NotFound

__all__ = ["Context", "Entry", "SourceNotFound", "glob_match", "has_glob"]


class SourceNotFound(NotFound):
    exit_code = 1


_GLOB = re.compile(r"(?<!\\)[*?\[]")


def has_glob(path: str) -> bool:
    return bool(_GLOB.search(path))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match as a regex: `*` and `?` stop at '/', `[...]`/`[^...]` classes,
    `\\` escapes."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("^", "!") else i + 1)
            if j < 0:
                raise InvalidArgument(f"syntax error in pattern: {pattern!r}")
            body = pattern[i + 1:j]
            if body[:1] in ("^", "!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, path: str) -> bool:
    return _glob_regex(pattern).match(path) is not None


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing to copy: `path` on the host, `rel` its name below the copied source (""
    for the source itself), its lstat."""

    path: str
    rel: str
    st: os.stat_result


def clean(src: str) -> str:
    """A source path inside its root: '/a/../b/' -> 'b'; '..' cannot leave the root."""
    return os.path.normpath("/" + src).lstrip("/").replace("//", "/") if src else ""


class Context:
    """`root`: a directory on the host; `patterns`: .dockerignore's (None: nothing ignored,
    for a stage's or image's root filesystem)."""

    def __init__(self, root: str | os.PathLike[str], patterns: Sequence[str] | None = None,
                 *, digests: dict[str, tuple[tuple[int, ...], str]] | None = None) -> None:
        self.root = Path(root)
        self.patterns = list(patterns or [])
        self.filtered = patterns is not None and bool(self.patterns)
        self._files: set[str] | None = None
        self._sorted: list[str] | None = None
        self.digests = digests if digests is not None else {}

    # -- what survives .dockerignore ------------------------------------------------------------

    def files(self) -> list[str]:
        if self._sorted is None:
            if self.filtered:
                from .ignore import context_files
                self._sorted = sorted(context_files(self.root, self.patterns))
            else:
                self._sorted = sorted(_walk_all(self.root))
            self._files = set(self._sorted)
        return self._sorted

    def _exists(self, rel: str) -> bool:
        if rel == "":
            return True
        if not self.filtered:
            return os.path.lexists(self.root / rel)
        self.files()
        assert self._files is not None
        return rel in self._files

    def _below(self, rel: str) -> Iterator[str]:
        if not self.filtered:
            for r in _walk_all(self.root / rel if rel else self.root):
                yield f"{rel}/{r}" if rel else r
            return
        prefix = rel + "/" if rel else ""
        for f in self.files():
            if f.startswith(prefix):
                yield f

    # -- sources -----------------------------------------------------------------------------

    def resolve(self, src: str, what: str) -> list[tuple[str, list[Entry]]]:
        """The sources `src` names: [(source rel path, [entries])]; a directory's entries are
        its contents (rel below it), a file's is itself (rel ""). Wildcards match names in the
        context. Raises SourceNotFound as docker words it."""
        rel = clean(src)
        if has_glob(rel):
            rx = _glob_regex(rel)
            hits = [f for f in self.files() if rx.match(f)]
            # a match inside a matched directory is part of that directory's copy
            tops = [h for h in hits if not any(h.startswith(o + "/") for o in hits)]
            if not tops:
                raise SourceNotFound(f"{what} failed: no source files were specified "
                                     f"(no file in the build context matches {src!r})")
            return [(t, self._entries(t)) for t in tops]
        if not self._exists(rel) or not os.path.lexists(self.root / rel if rel else self.root):
            raise SourceNotFound(
                f"{what} failed: file not found in build context or excluded by "
                f".dockerignore: stat {src}: file does not exist")
        return [(rel, self._entries(rel))]

    def _entries(self, rel: str) -> list[Entry]:
        top = self.root / rel if rel else self.root
        st = os.lstat(top)
        if not stat.S_ISDIR(st.st_mode):
            return [Entry(str(top), "", st)]
        out = [Entry(str(top), "", st)]
        plen = len(rel) + 1 if rel else 0
        for f in self._below(rel):
            p = self.root / f
            out.append(Entry(str(p), f[plen:], os.lstat(p)))
        return out

    # -- checksums ---------------------------------------------------------------------------

    def file_digest(self, path: str, st: os.stat_result) -> str:
        sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = self.digests.get(path)
        if known is not None and tuple(known[0]) == sig:
            return known[1]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        self.digests[path] = (sig, digest)
        return digest

    def checksum(self, sources: Sequence[tuple[str, list[Entry]]]) -> tuple[str, dict[str, str]]:
        """(digest of everything copied, {path: per-entry digest}) — the second says which
        file changed when a cached step misses."""
        per: dict[str, str] = {}
        for top, entries in sources:
            for e in entries:
                name = f"{top}/{e.rel}" if top and e.rel else (e.rel or top)
                mode = e.st.st_mode
                if stat.S_ISREG(mode):
                    d = "f" + self.file_digest(e.path, e.st)
                elif stat.S_ISLNK(mode):
                    d = "l" + os.readlink(e.path)
                elif stat.S_ISDIR(mode):
                    d = "d"
                else:
                    d = f"s{mode:o}:{e.st.st_rdev}"
                per[name or "."] = f"{stat.S_IMODE(mode):o}:{d}"
        h = hashlib.sha256()
        for k in sorted(per):
            h.update(f"{k}\0{per[k]}\n".encode())
        return h.hexdigest(), per


def _walk_all(top: Path) -> Iterator[str]:
    """Every path below `top` (not following symlinks), relative, '/'-separated."""
    stack = [("", str(top))]
    while stack:
        rel, path = stack.pop()
        try:
            with os.scandir(path) as it:
                items = sorted(it, key=lambda e: e.name)
        except (NotADirectoryError, FileNotFoundError):
            continue
        for e in items:
            r = f"{rel}/{e.name}" if rel else e.name
            yield r
            if e.is_dir(follow_symlinks=False):
                stack.append((r, e.path))
