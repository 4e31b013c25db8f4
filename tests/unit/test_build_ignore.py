""".dockerignore reading, matching and context walking.

Sources: moby/patternmatcher patternmatcher_test.go (TestMatches, matchTests, compileTests, the
TestCleanPatterns* tests) and ignorefile/ignorefile_test.go (TestReadAll); tonistiigi/fsutil
filter_test.go (the walks BuildKit does over a context); docker's .dockerignore documentation
(the `*/temp*`, `**/*.go`, `*.md` / `!README*.md` examples).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.build.ignore import PatternMatcher, clean, context_files, read_patterns
from berth.errors import InvalidArgument


def test_read_patterns() -> None:
    # ignorefile_test.go TestReadAll
    text = ("test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n"
            "! /inverted/abs/path\n!\n! ")
    assert read_patterns(text) == ["test1", "test2", "a/file/here", "lastfile",
                                   "!inverted/abs/path", "!", "!"]


@pytest.mark.parametrize(("text", "patterns"), [
    ("\ufeff*.md\r\n./b/../c/\n  x  \n", ["*.md", "c", "x"]),  # BOM, CRLF, Clean, trimming
    (" # not a comment\n#comment\n", ["# not a comment"]),  # "#" only in column 1
    ("/\n//a//b\n", ["/", "a/b"]),
])
def test_read_patterns_cleaning(text: str, patterns: list[str]) -> None:
    assert read_patterns(text) == patterns


@pytest.mark.parametrize(("path", "cleaned"), [
    ("", "."), ("a/./b/../c/", "a/c"), ("/..", "/"), ("../../a", "../../a"), ("a/../..", ".."),
    ("./x", "x"), ("//a", "/a"),
])
def test_clean(path: str, cleaned: str) -> None:
    assert clean(path) == cleaned  # Go's filepath.Clean


# patternmatcher_test.go TestMatches: (pattern, path, excluded)
SINGLE = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "/", True), ("**/", "/", True), ("**", "dir/file", True), ("**/", "dir/file", True),
    ("**", "dir/file/", True), ("**/", "dir/file/", True), ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True), ("dir/**", "dir/file", True), ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True), ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True), ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True), ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True), ("**file", "file", True),
    ("**file", "dir/file", True), ("**/file", "dir/file", True), ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True), ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True), ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True), ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True), (".*", ".foo", True), (".*", "foo", False),
    ("abc.def", "abcdef", False), ("abc.def", "abc.def", True), ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False), ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False),
    ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),
    # matchTests (TestMatch: filepath.Match cases through the matcher)
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False), ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False), ("[\\]a]", "]", True),
    ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False),
    ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False), ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), SINGLE)
def test_single_pattern(pattern: str, path: str, excluded: bool) -> None:
    pm = PatternMatcher([pattern])
    assert pm.excluded(path) is excluded
    # MatchesUsingParentResult: walking down from the top gives the same answer here.
    parts = clean(path).split("/")
    parent = False
    for i in range(1, len(parts)):
        parent = pm.excluded("/".join(parts[:i]), parent)
    assert pm.excluded(path, parent) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    # patternmatcher_test.go multiPatternTests and the Test*Exclusion* tests
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go"], ".", False),  # the context itself is never excluded
    ([], "/any/path/there", False),
    # docker's .dockerignore documentation
    (["*/temp*", "*/*/temp*", "temp?"], "somedir/temporary.txt", True),
    (["*/temp*", "*/*/temp*", "temp?"], "somedir/temp", True),
    (["*/temp*", "*/*/temp*", "temp?"], "somedir/subdir/temporary.txt", True),
    (["*/temp*", "*/*/temp*", "temp?"], "tempa", True),
    (["*/temp*", "*/*/temp*", "temp?"], "temporary.txt", False),
    (["*/temp*", "*/*/temp*", "temp?"], "a/b/c/temp", False),
    (["**/*.go"], "main.go", True),
    (["**/*.go"], "a/b/c.go", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-x.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    (["foo/bar"], "bar", False),
])
def test_patterns(patterns: list[str], path: str, excluded: bool) -> None:
    assert PatternMatcher(patterns).excluded(path) is excluded


def test_leading_slash() -> None:
    # docs: "/foo/bar" and "foo/bar" both exclude bar in foo and nothing else (ReadAll strips
    # the leading slash; the matcher itself takes patterns as given).
    pm = PatternMatcher(read_patterns("/foo/bar\n"))
    assert pm.excluded("foo/bar") and pm.excluded("foo/bar/x")
    assert not pm.excluded("bar") and not pm.excluded("x/foo/bar")


@pytest.mark.parametrize("pattern", [
    # matchTests with filepath.ErrBadPattern; TestMatchesWithMalformedPatterns
    "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
    "!",  # TestSingleExclamationError
])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(InvalidArgument):
        PatternMatcher(["ok", pattern])


def test_cleaned_patterns_and_exceptions() -> None:
    # TestCleanPatterns*: empty patterns dropped, whitespace trimmed, exceptions noted
    assert PatternMatcher(["docs", "config", ""]).patterns == ["docs", "config"]
    assert not PatternMatcher(["docs", "config"]).has_exceptions
    assert PatternMatcher(["docs", "  !docs/README.md"]).has_exceptions
    assert PatternMatcher(["docs", "!docs/README.md  "]).has_exceptions
    assert PatternMatcher(["docs/", "./a/../b"]).patterns == ["docs", "b"]


@pytest.mark.parametrize(("pattern", "kind", "regex"), [
    # patternmatcher_test.go compileTests (slash): match type and regexp
    ("*", "regexp", r"^[^/]*$"), ("file*", "regexp", r"^file[^/]*$"),
    ("*file", "regexp", r"^[^/]*file$"), ("a*/b", "regexp", r"^a[^/]*/b$"),
    ("**", "suffix", None), ("**/**", "regexp", r"^(.*/)?.*$"), ("dir/**", "prefix", None),
    ("**/dir", "suffix", None), ("**/dir2/*", "regexp", r"^(.*/)?dir2/[^/]*$"),
    ("**/dir2/**", "regexp", r"^(.*/)?dir2/.*$"), ("**file", "suffix", None),
    ("**/file*txt", "regexp", r"^(.*/)?file[^/]*txt$"),
    ("**/**/*.txt", "regexp", r"^(.*/)?(.*/)?[^/]*\.txt$"), ("a[b-d]e", "regexp", r"^a[b-d]e$"),
    (".*", "regexp", r"^\.[^/]*$"), ("abc.def", "exact", None),
    ("abc?def", "regexp", r"^abc[^/]def$"), ("**/foo/bar", "suffix", None),
    ("a(b)c/def", "exact", None), ("a.|)$(}+{bc", "exact", None),
])
def test_compile(pattern: str, kind: str, regex: str | None) -> None:
    (compiled,) = PatternMatcher([pattern])._patterns
    assert ["exact", "prefix", "suffix", "regexp"][compiled.kind] == kind
    got = compiled.regex.pattern.replace("\\Z", "$") if compiled.regex else None
    assert got == regex


# -- context_files ---------------------------------------------------------------------------------

def _tree(root: Path, entries: list[str]) -> None:
    """"d/" a directory, "a -> b" a symlink, anything else a file."""
    for entry in entries:
        if entry.endswith("/"):
            (root / entry).mkdir(parents=True)
        elif " -> " in entry:
            name, target = entry.split(" -> ")
            os.symlink(target, root / name)
        else:
            (root / entry).parent.mkdir(parents=True, exist_ok=True)
            (root / entry).write_text(entry)


@pytest.mark.parametrize(("entries", "patterns", "expected"), [
    # fsutil TestWalkerSimple / TestWalkerExclude
    (["foo", "foo2"], [], ["foo", "foo2"]),
    (["bar", "foo/", "foo2", "foo/bar2"], ["foo*", "!foo/bar2"], ["bar", "foo", "foo/bar2"]),
    # fsutil TestFSWalkNested: an excluded dir is listed when something in it comes back
    (["foo/", "foo/bar"], ["foo", "!foo/bar"], ["foo", "foo/bar"]),
    (["foo/", "foo/bar"], ["foo"], []),
    # fsutil TestWalkerPermissionDenied (readable here): **/bar and its content go
    (["foo/", "foo/bar/", "foo/bar/x"], ["**/bar"], ["foo"]),
    # docker docs: "*.md" then "!README*.md" then "README-secret.md"
    (["README.md", "README-secret.md", "CHANGES.md", "src/a.md", "src/main.go"],
     ["*.md", "!README*.md", "README-secret.md"],
     ["README.md", "src", "src/a.md", "src/main.go"]),
    # a directory pattern drops the whole tree; "**" patterns reach into subdirectories
    (["a/", "a/b/", "a/b/c.txt", "a/d.txt", "e.txt", "f/g.go", "f/h/i.go", "j.go"],
     ["a/b", "**/*.go"], ["a", "a/d.txt", "e.txt", "f", "f/h"]),
    # "*" then exceptions: include-list style; parents of re-included files are listed
    (["src/", "src/app/main.py", "src/app/x.pyc", "docs/x", "Dockerfile"],
     ["*", "!src/app/*.py", "!Dockerfile"],
     ["Dockerfile", "src", "src/app", "src/app/main.py"]),
    # symlinks are listed, not followed
    (["d/", "d/f", "l -> d", "m -> missing"], ["d"], ["l", "m"]),
    # fsutil TestFilteredOpenInvert's pattern stack
    (["foo/bar/baz/x", "foo/bar/baz/y", "foo/bar/z", "foo/w"],
     ["foo", "!foo/bar", "foo/bar/baz", "!foo/bar/baz/x"],
     ["foo", "foo/bar", "foo/bar/baz", "foo/bar/baz/x", "foo/bar/z"]),
])
def test_context_files(tmp_path: Path, entries: list[str], patterns: list[str],
                       expected: list[str]) -> None:
    _tree(tmp_path, entries)
    assert context_files(tmp_path, patterns) == expected


def test_context_files_skips_unreadable_excluded_dir(tmp_path: Path) -> None:
    # fsutil TestWalkerPermissionDenied: an excluded directory that cannot be read is no error
    # when it is only entered because an exception might re-include something in it.
    if os.geteuid() == 0:
        pytest.skip("root reads any directory")
    _tree(tmp_path, ["foo/", "foo/bar/"])
    (tmp_path / "foo" / "bar").chmod(0)
    try:
        assert context_files(tmp_path, ["**/bar", "!foo/bar/baz"]) == ["foo"]
        with pytest.raises(PermissionError):
            context_files(tmp_path, [])
    finally:
        (tmp_path / "foo" / "bar").chmod(0o700)
