"""berth.store.layers on the real kernel: unpack of plain/gzip/zstd layers with every kind of
entry, whiteouts that an overlay mount honours, hostile tars that are contained, and diff/pack
that round-trip through unpack."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.errors import ImageFormatError
from berth.oci.digest import sha256_of
from berth.store.blobs import DigestMismatch
from berth.store.layers import (
    OPAQUE_XATTR, LayerExists, UnsafePath, diff, pack, unpack,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # `conftest` names two modules here (tests/ and tests/conformance/)
    from conftest import BerthEnv

# --- building layers -------------------------------------------------------------------------

Entry = tuple[tarfile.TarInfo, "bytes | None"]


def _ti(name: str, kind: bytes, mode: int, **kw: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = kw.pop("mtime", 1_600_000_000)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def f(name: str, data: bytes = b"data", mode: int = 0o644, **kw: Any) -> Entry:
    ti = _ti(name, tarfile.REGTYPE, mode, **kw)
    ti.size = len(data)
    return ti, data


def d(name: str, mode: int = 0o755, **kw: Any) -> Entry:
    return _ti(name, tarfile.DIRTYPE, mode, **kw), None


def sym(name: str, target: str, **kw: Any) -> Entry:
    return _ti(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw), None


def hard(name: str, target: str, **kw: Any) -> Entry:
    return _ti(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw), None


def dev(name: str, kind: bytes, major: int, minor: int, mode: int = 0o666) -> Entry:
    return _ti(name, kind, mode, devmajor=major, devminor=minor), None


def tar_bytes(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(raw: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(raw)
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(raw)
    return raw


# --- looking at directories ------------------------------------------------------------------

def listing(top: Path) -> dict[str, tuple[Any, ...]]:
    """What a directory holds, as comparable data: type, mode, owner, mtime (s), content, link,
    device, xattrs (minus overlay's own, except opaque), hardlink group."""
    out: dict[str, tuple[Any, ...]] = {}
    first: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(top))
            st = os.lstat(p)
            m = st.st_mode
            content: Any = None
            if stat.S_ISREG(m):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(m):
                content = os.readlink(p)
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                content = (os.major(st.st_rdev), os.minor(st.st_rdev))
            xattrs = tuple(sorted(
                (n, os.getxattr(p, n, follow_symlinks=False))
                for n in os.listxattr(p, follow_symlinks=False)
                if not n.startswith("trusted.overlay.") or n == OPAQUE_XATTR))
            whiteout = stat.S_ISCHR(m) and st.st_rdev == 0
            link = None
            # the kernel links all whiteouts of an upper dir to one shared inode: not a hardlink
            if not stat.S_ISDIR(m) and st.st_nlink > 1 and not whiteout:
                link = first.setdefault(st.st_ino, rel)
            out[rel] = (stat.S_IFMT(m), None if whiteout else stat.S_IMODE(m), st.st_uid,
                        st.st_gid, None if stat.S_ISDIR(m) else int(st.st_mtime), content,
                        xattrs, link)
    return out


def stray_temp_dirs(parent: Path) -> list[str]:
    return sorted(n for n in os.listdir(parent) if ".tmp-" in n)


@pytest.fixture
def layers(berth_env: BerthEnv) -> Path:
    p = berth_env.root / "layers"
    p.mkdir()
    return p


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    mounted: list[Path] = []
    yield mounted
    for m in reversed(mounted):
        subprocess.run(["umount", str(m)], check=False)


def overlay(target: Path, lowers: list[Path], mounted: list[Path], upper: Path | None = None,
            work: Path | None = None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    opts = "lowerdir=" + ":".join(str(x) for x in lowers)
    if upper is not None and work is not None:
        opts += f",upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], check=True)
    mounted.append(target)


def umount(target: Path, mounted: list[Path]) -> None:
    subprocess.run(["umount", str(target)], check=True)
    mounted.remove(target)


# --- unpack ----------------------------------------------------------------------------------

RICH: list[Entry] = [
    d("./", mode=0o755),
    d("etc", mode=0o755, mtime=1_500_000_000),
    f("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", mode=0o644),
    f("etc/shadow", b"root:*:1::::::\n", mode=0o640, gid=42),
    d("tmp", mode=0o1777),
    d("usr/bin", mode=0o755),  # parent "usr" is implied
    f("usr/bin/su", b"\x7fELF" + b"\0" * 1000, mode=0o4755),
    f("usr/bin/wall", b"#!/bin/sh\n", mode=0o2755, uid=0, gid=5),
    hard("usr/bin/su-again", "usr/bin/su"),
    sym("usr/bin/sh", "busybox"),
    sym("lib", "usr/lib"),
    d("home/user", mode=0o700, uid=1000, gid=1000),
    f("home/user/.profile", b"export PS1='$ '\n", uid=1000, gid=1000, mtime=1_234_567_890),
    dev("dev/null", tarfile.CHRTYPE, 1, 3),
    dev("dev/sda", tarfile.BLKTYPE, 8, 0, mode=0o660),
    _ti("run/fifo", tarfile.FIFOTYPE, 0o600), None,
    f("ünïcode name with spaces", b"u"),
    f("a/" + "long" * 40 + "/file", b"long path"),
]
# the FIFO above was written as two list items to keep the table aligned; fix it up
RICH = [e if isinstance(e, tuple) else (e, None) for e in RICH if e is not None]  # type: ignore


def _with_xattrs() -> list[Entry]:
    ti, data = f("usr/bin/ping", b"ping", mode=0o755)
    ti.pax_headers = {"SCHILY.xattr.user.comment": "hello",
                      "SCHILY.xattr.user.bin": b"\xff\x80\x00bin".decode("utf-8",
                                                                         "surrogateescape"),
                      "SCHILY.xattr.security.capability":
                          b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                          b"\x00\x00\x00\x00".decode("utf-8", "surrogateescape")}
    return [(ti, data)]


@pytest.mark.parametrize("how", ["none", "gzip", "zstd"])
def test_unpack_every_kind_of_entry(layers: Path, how: str) -> None:
    raw = tar_bytes(RICH + _with_xattrs())
    src = layers / f"layer.tar.{how}"
    src.write_bytes(compress(raw, how))
    info = unpack(src, layers / "l1")
    root = layers / "l1"
    assert info.diff_id == sha256_of(raw)  # over the uncompressed stream
    assert stray_temp_dirs(layers) == []

    def st(rel: str) -> os.stat_result:
        return os.lstat(root / rel)

    assert (root / "etc/passwd").read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert stat.S_IMODE(st("etc/shadow").st_mode) == 0o640 and st("etc/shadow").st_gid == 42
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777
    assert stat.S_IMODE(st("usr/bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(st("usr/bin/wall").st_mode) == 0o2755 and st("usr/bin/wall").st_gid == 5
    assert st("usr/bin/su").st_ino == st("usr/bin/su-again").st_ino
    assert st("usr/bin/su").st_nlink == 2
    assert os.readlink(root / "usr/bin/sh") == "busybox"
    assert os.readlink(root / "lib") == "usr/lib"
    assert st("home/user").st_uid == 1000 and stat.S_IMODE(st("home/user").st_mode) == 0o700
    assert st("home/user/.profile").st_mtime == 1_234_567_890
    assert st("etc").st_mtime == 1_500_000_000  # dir mtimes survive their children
    assert stat.S_ISCHR(st("dev/null").st_mode) and st("dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(st("dev/sda").st_mode) and st("dev/sda").st_rdev == os.makedev(8, 0)
    assert stat.S_ISFIFO(st("run/fifo").st_mode)
    assert (root / "ünïcode name with spaces").read_bytes() == b"u"
    assert (root / ("a/" + "long" * 40 + "/file")).read_bytes() == b"long path"
    ping = root / "usr/bin/ping"
    assert os.getxattr(ping, "user.comment") == b"hello"
    assert os.getxattr(ping, "user.bin") == b"\xff\x80\x00bin"  # binary values survive
    assert os.getxattr(ping, "security.capability")[:4] == b"\x01\x00\x00\x02"
    # apparent size as docker counts it: regular files (each inode once) + symlink targets
    regular = [e for e in RICH + _with_xattrs() if e[0].isreg()]
    expected = sum(ti.size for ti, _ in regular) + len("busybox") + len("usr/lib")
    assert info.size == expected


def test_unpack_from_a_stream_and_expected_diff_id(layers: Path) -> None:
    raw = tar_bytes([f("x", b"1")])
    info = unpack(io.BytesIO(gzip.compress(raw)), layers / "a", expected_diff_id=sha256_of(raw))
    assert info.diff_id == sha256_of(raw)
    with pytest.raises(DigestMismatch):
        unpack(io.BytesIO(raw), layers / "b", expected_diff_id=sha256_of(b"other"))
    assert not (layers / "b").exists() and stray_temp_dirs(layers) == []


def test_unpack_into_existing_dir_is_a_conflict(layers: Path) -> None:
    (layers / "a").mkdir()
    with pytest.raises(LayerExists):
        unpack(io.BytesIO(tar_bytes([f("x")])), layers / "a")


def test_multi_member_gzip_and_concatenated_zstd_frames(layers: Path) -> None:
    raw = tar_bytes([f("x", b"1" * 100_000), f("y", b"2")])
    half = len(raw) // 2
    two = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    assert unpack(io.BytesIO(two), layers / "g").diff_id == sha256_of(raw)
    import zstandard

    c = zstandard.ZstdCompressor()
    frames = c.compress(raw[:half]) + c.compress(raw[half:])
    assert unpack(io.BytesIO(frames), layers / "z").diff_id == sha256_of(raw)


def test_overlay_xattrs_in_a_tar_are_dropped(layers: Path) -> None:
    ti, _ = d("dir")
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y",
                      "SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    unpack(io.BytesIO(tar_bytes([(ti, None)])), layers / "a")
    assert os.listxattr(layers / "a/dir") == []


# --- whiteouts and overlay -------------------------------------------------------------------

def test_whiteouts_become_overlay_form_and_hide_lower_files(
        layers: Path, mounts: list[Path]) -> None:
    l1 = [d("d"), f("d/a", b"a"), f("d/b", b"b"), d("o"), f("o/x", b"x"), d("o/sub"),
          f("o/sub/y"), f("top", b"t")]
    l2 = [d("d"), f("d/.wh.a", b""), d("o"), f("o/.wh..wh..opq", b""), f("o/new", b"n"),
          f(".wh.top", b""), f(".wh..wh.plnk", b"")]
    unpack(io.BytesIO(tar_bytes(l1)), layers / "1")
    info = unpack(io.BytesIO(gzip.compress(tar_bytes(l2))), layers / "2")
    two = layers / "2"
    st = os.lstat(two / "d/a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert stat.S_ISCHR(os.lstat(two / "top").st_mode)
    assert os.getxattr(two / "o", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(two)) == ["d", "o", "top"]  # no .wh. names, aufs meta skipped
    assert sorted(os.listdir(two / "o")) == ["new"]
    assert info.size == 1

    merged = layers / "merged"
    overlay(merged, [two, layers / "1"], mounts)
    try:
        assert sorted(os.listdir(merged)) == ["d", "o"]
        assert sorted(os.listdir(merged / "d")) == ["b"]
        assert sorted(os.listdir(merged / "o")) == ["new"]  # opaque: lower x and sub hidden
        assert (merged / "o/new").read_bytes() == b"n"
    finally:
        umount(merged, mounts)


# --- hostile layers --------------------------------------------------------------------------

def _canary() -> str:
    return f"berth-test-{uuid.uuid4().hex}"


def hostile_cases(canary: str) -> dict[str, list[Entry]]:
    return {
        "dotdot": [f(f"../../{canary}", b"pwned")],
        "dotdot-etc": [f(f"../../etc/{canary}", b"pwned")],
        "nested-dotdot": [d("a"), f(f"a/../../{canary}", b"pwned")],
        "absolute": [f(f"/etc/{canary}", b"pwned")],
        "symlink-absolute-then-write": [sym("a", "/etc"), f(f"a/{canary}", b"pwned")],
        "symlink-relative-escape": [sym("a", "../../../../../../../../etc"),
                                    f(f"a/{canary}", b"pwned")],
        "symlink-chain-escape": [d("x"), sym("x/up", ".."), sym("b", "x/up/.."),
                                 f(f"b/{canary}", b"pwned")],
        "symlink-dir-then-mkdir": [sym("a", "/etc"), d(f"a/{canary}")],
        "hardlink-absolute": [hard("shadow", "/etc/shadow")],
        "hardlink-dotdot": [hard("shadow", "../../../../../../../etc/shadow")],
        "hardlink-through-symlink": [sym("e", "/etc"), hard("shadow", "e/shadow")],
        "hardlink-missing": [hard("x", "nope")],
        "whiteout-through-symlink": [sym("a", "/etc"), f(f"a/.wh.{canary}", b"")],
    }


CASES = sorted(hostile_cases("x"))


@pytest.mark.parametrize("case", CASES)
def test_hostile_layers_are_contained(berth_env: BerthEnv, layers: Path, case: str) -> None:
    canary = _canary()
    entries = hostile_cases(canary)[case]
    dest = layers / "sub" / "dest"
    (layers / "sub").mkdir()
    outside = [Path("/etc") / canary, berth_env.tmp / canary, layers / canary,
               berth_env.root / canary, berth_env.tmp / "etc" / canary, Path("/") / canary]
    etc_shadow = os.stat("/etc/shadow")
    try:
        with pytest.raises(ImageFormatError) as exc:
            unpack(io.BytesIO(tar_bytes(entries)), dest)
        assert str(exc.value)  # names the layer entry
        if case != "hardlink-missing":
            assert isinstance(exc.value, UnsafePath), exc.value
            assert exc.value.entry in {ti.name for ti, _ in entries}
        assert not dest.exists()
        assert stray_temp_dirs(layers / "sub") == []
        for p in outside:
            assert not os.path.lexists(p), f"{case} wrote {p}"
        assert os.stat("/etc/shadow").st_nlink == etc_shadow.st_nlink
    finally:
        for p in outside:
            if os.path.lexists(p):
                if p.is_dir():
                    p.rmdir()
                else:
                    p.unlink()


def test_symlinks_inside_the_layer_are_followed(layers: Path) -> None:
    """A relative symlink that stays inside may be a parent (usr-merge layouts)."""
    entries = [d("usr/lib"), sym("lib", "usr/lib"), f("lib/libc.so", b"c"),
               d("x/y"), sym("x/y/up", "../.."), f("x/y/up/at-root", b"r")]
    unpack(io.BytesIO(tar_bytes(entries)), layers / "a")
    assert (layers / "a/usr/lib/libc.so").read_bytes() == b"c"
    assert (layers / "a/at-root").read_bytes() == b"r"


def test_later_entry_replaces_symlink_instead_of_writing_through(layers: Path) -> None:
    canary = _canary()
    entries = [sym("a", f"/tmp/{canary}"), f("a", b"file now")]
    unpack(io.BytesIO(tar_bytes(entries)), layers / "l")
    assert (layers / "l/a").read_bytes() == b"file now"
    assert not os.path.lexists(f"/tmp/{canary}")


def _oversized_pax_header() -> bytes:
    ti, data = f("big", b"x")
    ti.pax_headers = {"SCHILY.xattr.user.big": "A" * (2 << 20)}
    return gzip.compress(tar_bytes([(ti, data)]))


@pytest.mark.parametrize("damage", ["truncated-gzip", "truncated-data", "garbage",
                                    "bad-second-header", "empty", "truncated-zstd",
                                    "oversized-pax-header"])
def test_broken_streams_are_format_errors(layers: Path, damage: str) -> None:
    raw = tar_bytes([f("a", os.urandom(50_000)), f("b", b"b" * 5000)])
    data = {
        "truncated-gzip": lambda: gzip.compress(raw)[:-5000],
        "truncated-data": lambda: raw[:20_000],
        "garbage": lambda: os.urandom(4096),
        "bad-second-header": lambda: raw[:512 + 50_176] + b"\x01" * 512 + raw[512 + 50_176 + 512:],
        "empty": lambda: b"",
        "truncated-zstd": lambda: compress(raw, "zstd")[:-3000],
        "oversized-pax-header": _oversized_pax_header,
    }[damage]()
    with pytest.raises(ImageFormatError):
        unpack(io.BytesIO(data), layers / "l")
    assert not (layers / "l").exists() and stray_temp_dirs(layers) == []


# --- diff and pack ---------------------------------------------------------------------------

def test_diff_of_an_overlay_upper_round_trips(layers: Path, mounts: list[Path]) -> None:
    base = [d("etc"), f("etc/hosts", b"127.0.0.1 localhost\n"), f("etc/motd", b"hi"),
            d("var/cache"), f("var/cache/a", b"a"), f("var/cache/b", b"b"),
            f("usr/bin/tool", b"v1", mode=0o755), d("keep"), f("keep/k", b"k")]
    lower = layers / "lower"
    unpack(io.BytesIO(tar_bytes(base)), lower)
    upper, work, merged = layers / "upper", layers / "work", layers / "merged"
    upper.mkdir()
    work.mkdir()
    overlay(merged, [lower], mounts, upper, work)
    try:
        (merged / "etc/motd").unlink()  # -> whiteout
        (merged / "etc/hosts").write_text("10.0.0.1 db\n")  # copy-up
        import shutil

        shutil.rmtree(merged / "var/cache")
        (merged / "var/cache").mkdir()  # -> opaque dir
        (merged / "var/cache/new").write_bytes(b"new")
        (merged / "usr/bin/tool").chmod(0o4750)
        os.chown(merged / "usr/bin/tool", 0, 7)
        (merged / "srv").mkdir(mode=0o700)
        (merged / "srv/data").write_bytes(os.urandom(10_000))
        os.link(merged / "srv/data", merged / "srv/data.link")
        os.symlink("../etc/hosts", merged / "srv/hosts")
        os.mkfifo(merged / "srv/fifo")
        os.setxattr(merged / "srv/data", "user.tag", b"v")
        os.utime(merged / "srv/data", (1_000_000_000, 1_000_000_000))
        view = listing(merged)
    finally:
        umount(merged, mounts)

    out = layers / "c.tar"
    packed = diff([lower], upper, out)
    with tarfile.open(out) as t:
        names = t.getnames()
    assert "etc/.wh.motd" in names and "var/cache/.wh..wh..opq" in names
    assert names.index("var/cache") < names.index("var/cache/.wh..wh..opq")
    assert packed.diff_id == sha256_of(out.read_bytes())
    assert packed.tar_size == out.stat().st_size
    assert packed.size == len("10.0.0.1 db\n") + 3 + 10_000 + len("../etc/hosts") + 2

    again = diff([lower], upper, layers / "c2.tar")
    assert again.diff_id == packed.diff_id  # deterministic

    info = unpack(out, layers / "c")
    assert info.diff_id == packed.diff_id and info.size == packed.size
    assert listing(layers / "c") == listing(upper)

    merged2 = layers / "merged2"
    overlay(merged2, [layers / "c", lower], mounts)
    try:
        assert listing(merged2) == view
    finally:
        umount(merged2, mounts)


def test_pack_is_deterministic_and_round_trips(layers: Path) -> None:
    unpack(io.BytesIO(tar_bytes(RICH + _with_xattrs())), layers / "src")
    a = pack(layers / "src", layers / "a.tar")
    b = pack(layers / "src", layers / "b.tar")
    assert a.diff_id == b.diff_id
    assert (layers / "a.tar").read_bytes() == (layers / "b.tar").read_bytes()
    info = unpack(layers / "a.tar", layers / "copy")
    assert info.diff_id == a.diff_id and info.size == a.size
    assert listing(layers / "copy") == listing(layers / "src")
    with tarfile.open(layers / "a.tar") as t:
        assert all(m.uname == "" and m.gname == "" for m in t.getmembers())


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_sparse_files_from_gnu_tar(berth_env: BerthEnv, layers: Path, fmt: str) -> None:
    src = berth_env.tmp / "sparse-src"
    src.mkdir()
    with open(src / "holey", "wb") as fh:
        fh.seek(5 << 20)
        fh.write(b"end")
        fh.seek(1 << 20)
        fh.write(b"middle")
    (src / "after").write_bytes(b"after")
    tar = berth_env.tmp / f"sparse-{fmt}.tar"
    subprocess.run(["tar", "-S", f"--format={fmt}", "-C", str(src), "-cf", str(tar), "."],
                   check=True)
    info = unpack(tar, layers / "s")
    assert (layers / "s/holey").read_bytes() == (src / "holey").read_bytes()
    assert (layers / "s/after").read_bytes() == b"after"
    assert info.diff_id == sha256_of(tar.read_bytes())
