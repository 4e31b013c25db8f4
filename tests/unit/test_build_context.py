"""The builder's pure parts: Go's filepath.Match for COPY wildcards, source path cleaning,
what a cache miss names, and the lookup of a path through overlay-form layer directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.build.builder import _differences
from berth.build.context import Context, SourceNotFound, clean, glob_match, has_glob


@pytest.mark.parametrize("pattern, path, hit", [
    # from Go's path/filepath match_test.go
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", False), ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False), ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True), ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True), ("a???b", "a☺b", False), ("*x", "xxx", True),
])
def test_glob_match_is_go_filepath_match(pattern: str, path: str, hit: bool) -> None:
    assert glob_match(pattern, path) is hit


def test_has_glob_and_clean() -> None:
    assert has_glob("data/files*") and has_glob("a?") and not has_glob("a\\*b")
    assert clean("/a/../b/") == "b" and clean("../../etc/passwd") == "etc/passwd"
    assert clean("./") == "" and clean(".") == ""


def test_context_resolve_and_checksum(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/x.txt").write_text("x")
    (tmp_path / "d/y.log").write_text("y")
    (tmp_path / "top.txt").write_text("t")
    ctx = Context(tmp_path, ["*.log", "d/*.log"])
    [(top, entries)] = ctx.resolve("d", "COPY")
    assert top == "d" and [e.rel for e in entries] == ["", "x.txt"]
    assert [t for t, _ in ctx.resolve("*.txt", "COPY")] == ["top.txt"]
    with pytest.raises(SourceNotFound, match="excluded by .dockerignore"):
        ctx.resolve("d/y.log", "COPY")
    with pytest.raises(SourceNotFound):
        ctx.resolve("nothing*", "COPY")
    first, files = ctx.checksum(ctx.resolve("d", "COPY"))
    assert set(files) == {"d", "d/x.txt"}
    os.utime(tmp_path / "d/x.txt", (1, 1))  # an mtime alone does not change it
    assert Context(tmp_path, ["*.log"]).checksum(ctx.resolve("d", "COPY"))[0] == first
    (tmp_path / "d/x.txt").write_text("changed")
    assert Context(tmp_path, ["*.log"]).checksum(ctx.resolve("d", "COPY"))[0] != first


def test_differences_name_what_changed() -> None:
    old = {"files": {"context:a": "1", "context:b": "2"}, "args": ["X=1"]}
    new = {"files": {"context:a": "1", "context:b": "3", "context:c": "4"}, "args": ["X=2"]}
    assert _differences(old, new) == ["b changed", "c is new", "build arg X: '1' -> '2'"]
