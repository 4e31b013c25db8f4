"""The pure decisions of berth.store.layers: entry names, symlink resolution, whiteout names,
compression detection. No filesystem, no root."""

from __future__ import annotations

import pytest

from berth.errors import ImageFormatError
from berth.store.layers import (
    OPAQUE_MARKER, UnsafePath, clean_entry_name, detect_compression, resolve_in_root, whiteout_of,
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


# A fake tree for resolve_in_root: rel path -> ('dir', '') or ('link', target) or ('other', '').
TREE = {
    "usr": ("dir", ""), "usr/lib": ("dir", ""), "lib": ("link", "usr/lib"),
    "x": ("dir", ""), "x/y": ("dir", ""), "x/y/up": ("link", "../.."), "x/up": ("link", ".."),
    "b": ("link", "x/up/.."), "etc": ("link", "/etc"), "esc": ("link", "../../etc"),
    "loop": ("link", "loop"), "file": ("other", ""), "empty": ("link", ""),
    "viaup": ("link", "x/y/up/usr"),
}


def _lookup(rel: str) -> tuple[str, str]:
    return TREE.get(rel, ("missing", ""))


@pytest.mark.parametrize("path, result", [
    ("", ""),
    ("usr/lib", "usr/lib"),
    ("lib", "usr/lib"),
    ("x/y/up", ""),
    ("x/y/up/usr/lib", "usr/lib"),
    ("viaup/lib", "usr/lib"),  # a link inside a link's target is followed too
    ("x/up", ""),
])
def test_resolve_in_root_follows_links_inside(path: str, result: str) -> None:
    parts = tuple(p for p in path.split("/") if p)
    assert resolve_in_root(parts, _lookup, entry=path) == result


@pytest.mark.parametrize("path, problem", [
    ("etc", "absolute"),
    ("esc", "points outside"),
    ("b", "points outside"),  # x/up -> .. is the root, and .. of the root is outside
    ("loop", "too many symlinks"),
])
def test_resolve_in_root_refuses_escapes(path: str, problem: str) -> None:
    with pytest.raises(UnsafePath) as exc:
        resolve_in_root((path,), _lookup, entry=f"{path}/x", layer="L")
    assert problem in str(exc.value) and exc.value.entry == f"{path}/x"


@pytest.mark.parametrize("path", ["file", "nope", "empty", "file/x"])
def test_resolve_in_root_missing_or_not_a_dir(path: str) -> None:
    with pytest.raises(ImageFormatError) as exc:
        resolve_in_root(tuple(path.split("/")), _lookup, entry=path)
    assert not isinstance(exc.value, UnsafePath)


def test_resolve_in_root_caches_real_dirs() -> None:
    known: set[str] = set()
    seen: list[str] = []

    def lookup(rel: str) -> tuple[str, str]:
        seen.append(rel)
        return _lookup(rel)

    resolve_in_root(("usr", "lib"), lookup, entry="usr/lib/x", known=known)
    assert known == {"usr", "usr/lib"}
    seen.clear()
    resolve_in_root(("usr", "lib"), lookup, entry="usr/lib/y", known=known)
    assert seen == []


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


def test_zstandard_is_imported_only_for_zstd_layers() -> None:
    import subprocess
    import sys

    code = ("import sys, berth.store.layers, berth.store.blobs; "
            "print('zstandard' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
