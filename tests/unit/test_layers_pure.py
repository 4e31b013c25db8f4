"""The pure decisions of berth.store.layers: entry names, symlink resolution, whiteout names,
compression detection. No filesystem, no root."""

from __future__ import annotations

import pytest

from berth.errors import ImageFormatError
from berth.store.layers import (
    OPAQUE_MARKER, UnsafePath, clean_entry_name, detect_compression, resolve_link, whiteout_of,
    whiteout_name,
)


@pytest.mark.parametrize("name, parts", [
    ("etc/passwd", ("etc", "passwd")),
    ("./etc/passwd", ("etc", "passwd")),
    ("etc//x/./y/", ("etc", "x", "y")),
    ("./", ()),
    (".", ()),
    ("a..b/..c", ("a..b", "..c")),
])
def test_clean_entry_name(name: str, parts: tuple[str, ...]) -> None:
    assert clean_entry_name(name) == parts


@pytest.mark.parametrize("name, problem", [
    ("/etc/x", "absolute"),
    ("../../etc/x", "'..'"),
    ("a/../../etc", "'..'"),
    ("a/../b", "'..'"),
    ("..", "'..'"),
])
def test_clean_entry_name_refuses(name: str, problem: str) -> None:
    with pytest.raises(UnsafePath) as exc:
        clean_entry_name(name, "sha256:abc")
    assert isinstance(exc.value, ImageFormatError)
    assert problem in str(exc.value)
    assert exc.value.entry == name
    assert "sha256:abc" in str(exc.value) and name in str(exc.value)


@pytest.mark.parametrize("parent, target, result", [
    ("", "usr/lib", "usr/lib"),
    ("lib", "../usr/lib", "usr/lib"),
    ("a/b", "..", "a"),
    ("a", "..", ""),
    ("a", ".", "a"),
    ("a", "../..", None),
    ("", "..", None),
    ("a/b", "../../../etc", None),
    ("", "/etc", None),
    ("a", "/usr/lib", None),
    ("a", "", None),
])
def test_resolve_link(parent: str, target: str, result: str | None) -> None:
    assert resolve_link(parent, target) == result


@pytest.mark.parametrize("base, kind", [
    (".wh.foo", ("file", "foo")),
    (".wh..foo", ("file", ".foo")),
    (OPAQUE_MARKER, ("opaque", None)),
    (".wh..wh.plnk", ("meta", None)),
    (".wh..wh..tmp", ("meta", None)),
    (".wh.", ("meta", None)),
    (".wh..", ("meta", None)),
    (".wh...", ("meta", None)),
    ("foo", None),
    ("x.wh.foo", None),
    (".whfoo", None),
])
def test_whiteout_of(base: str, kind: tuple[str, str | None] | None) -> None:
    assert whiteout_of(base) == kind


def test_whiteout_name_round_trips() -> None:
    for name in ("foo", ".hidden", "with space", "ünïcode"):
        assert whiteout_of(whiteout_name(name)) == ("file", name)


@pytest.mark.parametrize("head, kind", [
    (b"\x1f\x8b\x08\x00", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"etc/", "none"),
    (b"", "none"),
    (b"\x1f", "none"),
])
def test_detect_compression(head: bytes, kind: str) -> None:
    assert detect_compression(head) == kind
