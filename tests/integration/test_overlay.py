"""store/mount.py on the real kernel: overlay unions, copy-up, whiteouts, 128 layers through the
new mount API, the mount(2) short-name fallback, read-only views and clean unmounts."""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.store import _mountapi
from berth.store import mount as mnt
from berth.store.snapshots import Method, Mount, Snapshots


@pytest.fixture
def snaps(berth_env) -> Iterator[Snapshots]:
    s = Snapshots(berth_env.root)
    yield s
    # whatever a test mounted under its root is gone before the leak check runs
    for point in reversed(mnt.mounts_under(berth_env.root)):
        mnt.unmount(point, detach=True)


def make_layers(base: Path, n: int, *, name_width: int = 20) -> list[str]:
    """n layer directories, bottom first, layer i holding file f<i> with text i."""
    out = []
    for i in range(n):
        d = base / "layers" / (f"{i:04d}-" + "d" * name_width) / "diff"
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        out.append(str(d))
    return out


def mounted(m: Mount, **kw) -> Method:
    method = mnt.mount(m, **kw)
    assert mnt.is_mounted(m.target)
    return method


def test_two_layers_union_copy_up_and_whiteout(snaps: Snapshots, berth_env) -> None:
    bottom, top = (berth_env.tmp / "bottom", berth_env.tmp / "top")
    for d in (bottom, top):
        d.mkdir()
    (bottom / "shared").write_text("bottom")
    (bottom / "only-bottom").write_text("b")
    (bottom / "gone").write_text("hidden by the top layer's whiteout")
    (top / "shared").write_text("top")
    (top / "only-top").write_text("t")
    os.mknod(top / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlayfs whiteout

    [m] = snaps.prepare("c1", [str(bottom), str(top)])
    try:
        assert mounted(m) is Method.NEW_API
        merged = Path(m.target)
        assert sorted(os.listdir(merged)) == ["only-bottom", "only-top", "shared"]
        assert (merged / "shared").read_text() == "top"
        assert not (merged / "gone").exists()

        (merged / "only-bottom").write_text("changed")  # copy-up
        (merged / "new").write_text("n")
        os.unlink(merged / "only-top")
        upper = Path(m.upper or "")
        assert (upper / "only-bottom").read_text() == "changed"
        assert (bottom / "only-bottom").read_text() == "b"  # the layer is untouched
        assert (upper / "new").read_text() == "n"
        st = os.lstat(upper / "only-top")  # deletion recorded as a whiteout in upper
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
        assert (top / "only-top").exists()
        assert mnt.overlay_mounts_under(berth_env.root) == [m.target]
    finally:
        mnt.unmount(m.target)
    assert not mnt.is_mounted(m.target)
    assert mnt.overlay_mounts_under(berth_env.root) == []
    assert os.listdir(m.target) == []


def test_two_containers_share_layers_copy_up_only_in_own_upper(snaps: Snapshots,
                                                               berth_env) -> None:
    lows = make_layers(berth_env.tmp, 2)
    [a] = snaps.prepare("a", lows)
    [b] = snaps.prepare("b", lows)
    try:
        mnt.mount_all([a, b])
        Path(a.target, "f0").write_text("a wrote")
        assert Path(b.target, "f0").read_text() == "0"
        assert Path(a.upper or "", "f0").exists() and not Path(b.upper or "", "f0").exists()
    finally:
        mnt.unmount(a.target)
        mnt.unmount(b.target)


def test_128_layers_through_new_api(snaps: Snapshots, berth_env) -> None:
    lows = make_layers(berth_env.tmp, 128, name_width=100)
    [m] = snaps.prepare("big", lows)
    assert len(m.options()) > 4096  # would not fit mount(2) with full paths
    try:
        t = time.perf_counter()
        assert mounted(m, method=Method.NEW_API) is Method.NEW_API
        took = time.perf_counter() - t
        names = set(os.listdir(m.target))
        assert names == {f"f{i}" for i in range(128)}
        assert Path(m.target, "f127").read_text() == "127"
        print(f"new API: 128 layers mounted in {took * 1000:.1f} ms")
    finally:
        mnt.unmount(m.target)
    assert mnt.overlay_mounts_under(berth_env.root) == []


def test_layer_order_top_wins(snaps: Snapshots, berth_env) -> None:
    lows = make_layers(berth_env.tmp, 5)
    for i, d in enumerate(lows):
        Path(d, "who").write_text(str(i))
    for method in (Method.NEW_API, Method.MOUNT, Method.MOUNT_SHORT):
        [m] = snaps.prepare(f"order-{method}", lows)
        try:
            mounted(m, method=method)
            assert Path(m.target, "who").read_text() == "4"  # the last (top) layer
        finally:
            mnt.unmount(m.target)


@pytest.mark.parametrize("n", [40, 128])
def test_short_name_fallback(snaps: Snapshots, berth_env, n: int) -> None:
    lows = make_layers(berth_env.tmp, n, name_width=100)
    [m] = snaps.prepare(f"short{n}", lows)
    try:
        t = time.perf_counter()
        assert mounted(m, method=Method.MOUNT_SHORT) is Method.MOUNT_SHORT
        took = time.perf_counter() - t
        assert set(os.listdir(m.target)) == {f"f{i}" for i in range(n)}
        links = snaps.short_base() / "l"
        assert len(os.listdir(links)) == n
        assert {os.readlink(links / name) for name in os.listdir(links)} == set(lows)
        print(f"mount(2) short names: {n} layers mounted in {took * 1000:.1f} ms")
    finally:
        mnt.unmount(m.target)
    assert Path.cwd() != snaps.short_base()  # our cwd never moved


def test_falls_back_when_new_api_missing(snaps: Snapshots, berth_env,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fsopen(fstype: str) -> int:
        raise OSError(errno.ENOSYS, "fsopen: Function not implemented")

    monkeypatch.setattr(_mountapi, "fsopen", no_fsopen)
    few = make_layers(berth_env.tmp / "few", 3)
    many = make_layers(berth_env.tmp / "many", 64, name_width=100)
    [a] = snaps.prepare("few", few)
    [b] = snaps.prepare("many", many)
    try:
        assert mounted(a) is Method.MOUNT  # full paths fit in a page
        assert mounted(b) is Method.MOUNT_SHORT
        assert len(os.listdir(b.target)) == 64
    finally:
        mnt.unmount(a.target)
        mnt.unmount(b.target)


def test_falls_back_when_overlayfs_refuses_lowerdir_plus(snaps: Snapshots, berth_env,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = _mountapi.fsconfig_string

    def old_overlayfs(fs_fd: int, key: str, value: str) -> None:
        if key == "lowerdir+":  # as a kernel before 6.8 answers
            raise OSError(errno.EINVAL, "fsconfig lowerdir+=x: Invalid argument: "
                                        "e overlay: Unknown parameter 'lowerdir+'")
        real(fs_fd, key, value)

    monkeypatch.setattr(_mountapi, "fsconfig_string", old_overlayfs)
    [m] = snaps.prepare("old", make_layers(berth_env.tmp, 48, name_width=100))
    try:
        assert mounted(m) is Method.MOUNT_SHORT
        assert len(os.listdir(m.target)) == 48
    finally:
        mnt.unmount(m.target)


def test_real_errors_do_not_fall_back(snaps: Snapshots, berth_env) -> None:
    lows = make_layers(berth_env.tmp, 2)
    not_a_dir = berth_env.tmp / "file"
    not_a_dir.write_text("")
    [m] = snaps.prepare("bad", [*lows, str(not_a_dir)])
    with pytest.raises(mnt.MountFailed) as info:
        mnt.mount(m)
    assert info.value.step == f"fsconfig lowerdir+ {not_a_dir}"  # from the new API itself
    assert info.value.errno == errno.EINVAL
    assert "not a directory" in str(info.value)  # the kernel's own message, from the fs fd
    assert not getattr(info.value, "__notes__", None)  # no fallback was tried
    assert not mnt.is_mounted(m.target)


def test_view_is_read_only(snaps: Snapshots, berth_env) -> None:
    lows = make_layers(berth_env.tmp, 3)
    [m] = snaps.view("ro", lows)
    try:
        mounted(m)
        assert sorted(os.listdir(m.target)) == ["f0", "f1", "f2"]
        with pytest.raises(OSError) as info:
            Path(m.target, "x").write_text("no")
        assert info.value.errno == errno.EROFS
    finally:
        mnt.unmount(m.target)


def test_missing_layer_is_a_clear_error(snaps: Snapshots, berth_env) -> None:
    lows = make_layers(berth_env.tmp, 2)
    missing = str(berth_env.tmp / "no-such-layer")
    [m] = snaps.prepare("bad", [*lows, missing])
    for method in (Method.NEW_API, Method.MOUNT_SHORT):
        with pytest.raises(mnt.MountFailed) as info:
            mnt.mount(m, method=method)
        assert m.target in str(info.value)
        assert not mnt.is_mounted(m.target)
    assert info.value.errno == errno.ENOENT and "short names" in info.value.step
    with pytest.raises(mnt.MountFailed, match="lowerdir\\+ " + missing):
        mnt.mount(m, method=Method.NEW_API)


def test_unmount_leaves_nothing(snaps: Snapshots, berth_env) -> None:
    lows = make_layers(berth_env.tmp, 2)
    [m] = snaps.prepare("u", lows)
    mnt.mount(m)
    mnt.unmount(m.target, detach=True)
    assert mnt.overlay_mounts_under(berth_env.root) == []
    mnt.unmount(m.target)  # not mounted: nothing to do, no error
    for path in snaps.remove("u"):
        assert path.is_dir()
