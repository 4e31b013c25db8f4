"""docker cp's path rules (engine/cp_rules.py) and in-root resolution (store/inroot.py), pure:
docker's table of file/directory sources against existing/missing/file/directory
destinations, `/.` for contents, archive names that climb out, and symlinks resolved inside a
root (absolute targets restart at it, `..` stops at it)."""

from __future__ import annotations

import errno

import pytest

from berth.engine.cp_rules import (CopyError, CopyInfo, CopyPlan, clean_member, plan_copy,
                                   preserve_trailing, rebase, split_cp_arg, split_dir_entry)
from berth.store.inroot import scoped_resolve


@pytest.mark.parametrize("arg, want", [
    ("web:/etc/hosts", ("web", "/etc/hosts")),
    ("web:relative", ("web", "relative")),
    ("web:", ("web", "")),
    ("/abs/with:colon", ("", "/abs/with:colon")),
    ("./file:name.txt", ("", "./file:name.txt")),
    ("file", ("", "file")),
    ("-", ("", "-")),
])
def test_split_cp_arg(arg: str, want: tuple[str, str]) -> None:
    assert split_cp_arg(arg) == want


@pytest.mark.parametrize("path, want", [
    ("/a/b", ("/a", "b")), ("/a/b/", ("/a", "b")), ("/a/b/.", ("/a/b", ".")),
    ("/a//b/../c", ("/a", "c")), ("/.", ("/", ".")), ("b", (".", "b")),
])
def test_split_dir_entry(path: str, want: tuple[str, str]) -> None:
    assert split_dir_entry(path) == want


@pytest.mark.parametrize("cleaned, original, want", [
    ("/a/b", "a/b/", "/a/b/"), ("/a/b", "a/b/.", "/a/b/."), ("/a/b", "a/b", "/a/b"),
])
def test_preserve_trailing(cleaned: str, original: str, want: str) -> None:
    assert preserve_trailing(cleaned, original) == want


FILE = CopyInfo("/src/file", True, False)
DIR = CopyInfo("/src/dir", True, True)
CONTENTS = CopyInfo("/src/dir/.", True, True)


@pytest.mark.parametrize("src, dst, want", [
    # SRC is a file
    (FILE, CopyInfo("/d/new"), CopyPlan("/d", ("file", "new"))),
    (FILE, CopyInfo("/d/file2", True, False), CopyPlan("/d", ("file", "file2"))),
    (FILE, CopyInfo("/d", True, True), CopyPlan("/d")),
    # SRC is a directory
    (DIR, CopyInfo("/d/new"), CopyPlan("/d", ("dir", "new"))),
    (DIR, CopyInfo("/d", True, True), CopyPlan("/d")),
    (CONTENTS, CopyInfo("/d", True, True), CopyPlan("/d")),
    (CONTENTS, CopyInfo("/d/new"), CopyPlan("/d", (".", "new"))),
    # -L: the entry takes the link's name
    (CopyInfo("/src/target", True, False, "link"), CopyInfo("/d/x"), CopyPlan("/d",
                                                                             ("link", "x"))),
])
def test_plan_copy(src: CopyInfo, dst: CopyInfo, want: CopyPlan) -> None:
    assert plan_copy(src, dst) == want


@pytest.mark.parametrize("src, dst, message", [
    (FILE, CopyInfo("/d/missing/"), "no such directory"),
    (FILE, CopyInfo("/d/missing/."), "no such directory"),
    (DIR, CopyInfo("/d/file", True, False), "cannot copy directory"),
])
def test_plan_copy_errors(src: CopyInfo, dst: CopyInfo, message: str) -> None:
    with pytest.raises(CopyError, match=message):
        plan_copy(src, dst)


@pytest.mark.parametrize("name, rename, want", [
    ("dir/x", ("dir", "new"), "new/x"), ("dir", ("dir", "new"), "new"),
    ("./x", (".", "new"), "new/x"), (".", (".", "new"), "new"),
    ("dirx/y", ("dir", "new"), "dirx/y"), ("dir/x", None, "dir/x"),
])
def test_rebase(name: str, rename: tuple[str, str] | None, want: str) -> None:
    assert rebase(name, rename) == want


@pytest.mark.parametrize("name, want", [
    ("a/b", ("a", "b")), ("./a//b/", ("a", "b")), ("/etc/passwd", ("etc", "passwd")),
    ("a/../b", ("b",)), (".", ()), ("/", ()),
])
def test_clean_member(name: str, want: tuple[str, ...]) -> None:
    assert clean_member(name) == want


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "/../etc", "a\0b"])
def test_clean_member_refuses(name: str) -> None:
    with pytest.raises(CopyError):
        clean_member(name)


FS = {"etc": ("dir", ""), "etc/passwd": ("other", ""), "bin": ("dir", ""),
      "abs": ("link", "/etc"), "up": ("link", "../../../.."), "rel": ("link", "etc"),
      "loop": ("link", "loop"), "etc/self": ("link", "."), "chain": ("link", "abs/passwd")}


def lookup(rel: str) -> tuple[str, str]:
    return FS.get(rel, ("missing", ""))


@pytest.mark.parametrize("path, follow_last, want", [
    ("/abs/passwd", True, "etc/passwd"),
    ("/up/etc/passwd", True, "etc/passwd"),
    ("/../../../etc", True, "etc"),
    ("rel/passwd", True, "etc/passwd"),
    ("/abs", False, "abs"),
    ("/abs", True, "etc"),
    ("/chain", True, "etc/passwd"),
    ("/etc/self/self/passwd", True, "etc/passwd"),
    ("/missing/../x/y", True, "x/y"),
    ("/abs/new/../file", True, "etc/file"),
    ("/", True, ""),
])
def test_scoped_resolve(path: str, follow_last: bool, want: str) -> None:
    assert scoped_resolve(path, lookup, follow_last=follow_last) == want


def test_scoped_resolve_loops() -> None:
    with pytest.raises(OSError) as e:
        scoped_resolve("/loop/x", lookup)
    assert e.value.errno == errno.ELOOP
