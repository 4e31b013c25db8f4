"""store/snapshots.py: plans only — lower order, short names, which mount method fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.store.snapshots import (
    FSCONFIG_MAX_STRING,
    MAX_LOWERS,
    Method,
    Mount,
    ShortNames,
    Snapshots,
    TooManyLayers,
    choose_method,
    short_id,
)

ROOT = "/var/lib/berth"


def layers(n: int, width: int = 80) -> list[str]:
    """n layer directories, bottom first, each path about `width` characters long."""
    pad = "x" * max(0, width - 40)
    return [f"{ROOT}/layers/{i:04d}-{pad}/diff" for i in range(n)]


def test_prepare_lists_lowers_top_first() -> None:
    snaps = Snapshots(ROOT)
    [m] = snaps.prepare("c1", ["/l/base", "/l/mid", "/l/top"])
    assert m.type == "overlay"
    assert m.lowers == ("/l/top", "/l/mid", "/l/base")
    assert m.upper == f"{ROOT}/snapshots/c1/upper"
    assert m.work == f"{ROOT}/snapshots/c1/work"
    assert m.target == f"{ROOT}/snapshots/c1/merged"
    assert m.writable and not m.readonly
    assert m.options() == (f"lowerdir=/l/top:/l/mid:/l/base,upperdir={ROOT}/snapshots/c1/upper,"
                           f"workdir={ROOT}/snapshots/c1/work")
    assert m.dirs() == (m.upper, m.work, m.target)


def test_prepare_without_parents_binds_upper() -> None:
    [m] = Snapshots(ROOT).prepare("scratch", [])
    assert m.type == "bind" and m.source == m.upper and not m.readonly


def test_view_is_read_only() -> None:
    [m] = Snapshots(ROOT).view("v", ["/l/a", "/l/b"])
    assert m.type == "overlay" and m.readonly and m.upper is None and m.work is None
    assert m.lowers == ("/l/b", "/l/a")
    assert m.options() == "lowerdir=/l/b:/l/a"
    [one] = Snapshots(ROOT).view("v1", ["/l/a"])
    assert one.type == "bind" and one.source == "/l/a" and one.readonly
    with pytest.raises(InvalidArgument):
        Snapshots(ROOT).view("v0", [])


def test_remove_returns_the_snapshot_dir() -> None:
    assert Snapshots(ROOT).remove("c1") == [Path(ROOT, "snapshots", "c1")]


@pytest.mark.parametrize("key", ["", "../etc", "a/b", ".hidden", "x" * 200])
def test_bad_keys_refused(key: str) -> None:
    with pytest.raises(InvalidArgument):
        Snapshots(ROOT).prepare(key, ["/l/a"])


def test_duplicate_parent_refused() -> None:
    with pytest.raises(InvalidArgument, match="twice"):
        Snapshots(ROOT).prepare("c", ["/l/a", "/l/a"])


def test_options_escape_separators() -> None:
    m = Mount(type="overlay", target="/t", lowers=("/a:b", "/c,d"), readonly=True)
    assert m.options() == r"lowerdir=/a\:b:/c\,d"


def test_short_names_are_stable_short_and_distinct() -> None:
    lows = layers(128)
    a = ShortNames.plan("/base", lows)
    b = ShortNames.plan("/base", lows)
    assert a == b  # pure: same input, same names
    assert len(set(a.lowers)) == 128
    assert all(n.startswith("l/") and len(n) == 12 for n in a.lowers)
    assert [a.links[n] for n in a.lowers] == lows
    assert short_id(lows[0]) == a.lowers[0][2:]


def test_short_name_clash_takes_a_longer_id() -> None:
    target = "/l/one"
    taken = {f"l/{short_id(target)}": "/somewhere/else"}
    plan = ShortNames.plan("/base", [target], existing=taken)
    assert plan.lowers[0] != f"l/{short_id(target)}"
    assert plan.links[plan.lowers[0]] == target
    # an existing link to the same target is reused
    same = ShortNames.plan("/base", [target], existing={f"l/{short_id(target)}": target})
    assert same.lowers == (f"l/{short_id(target)}",)


def test_short_names_use_the_mount_order() -> None:
    [m] = Snapshots(ROOT).prepare("c", ["/l/bottom", "/l/top"])
    short = ShortNames.plan("/base", m.lowers)
    opts = short.options(m)
    assert opts.startswith(f"lowerdir={short.lowers[0]}:{short.lowers[1]},upperdir=")
    assert short.links[short.lowers[0]] == "/l/top"


def test_few_layers_fit_every_method() -> None:
    [m] = Snapshots(ROOT).prepare("c", layers(3))
    assert choose_method(m) is Method.NEW_API
    assert choose_method(m, new_api=False) is Method.MOUNT


def test_many_long_layers_need_new_api_or_short_names() -> None:
    [m] = Snapshots(ROOT).prepare("c", layers(128, width=120))
    assert len(m.options()) > 4096
    assert choose_method(m) is Method.NEW_API
    assert choose_method(m, new_api=False) is Method.MOUNT_SHORT
    with pytest.raises(TooManyLayers):
        choose_method(m, new_api=False, force=Method.MOUNT)


def test_page_size_decides_between_full_and_short() -> None:
    [m] = Snapshots(ROOT).prepare("c", layers(40, width=100))
    need = len(m.options()) + 1
    assert choose_method(m, new_api=False, page_size=need) is Method.MOUNT
    assert choose_method(m, new_api=False, page_size=need - 1) is Method.MOUNT_SHORT


def test_nothing_fits_without_new_api() -> None:
    [m] = Snapshots(ROOT).prepare("c", layers(400))
    assert choose_method(m) is Method.NEW_API
    with pytest.raises(TooManyLayers, match="one page"):
        choose_method(m, new_api=False)


def test_overlayfs_layer_limit() -> None:
    [m] = Snapshots(ROOT).prepare("c", layers(MAX_LOWERS + 1, width=40))
    with pytest.raises(TooManyLayers, match=str(MAX_LOWERS)):
        choose_method(m)


def test_path_too_long_for_fsconfig_falls_back() -> None:
    long_dir = "/l/" + "y" * FSCONFIG_MAX_STRING
    [m] = Snapshots(ROOT).prepare("c", [long_dir, "/l/b"])
    assert choose_method(m) is Method.MOUNT


def test_forced_method_is_checked() -> None:
    [m] = Snapshots(ROOT).prepare("c", layers(50))
    assert choose_method(m, force=Method.MOUNT_SHORT) is Method.MOUNT_SHORT
    assert choose_method(m, force=Method.NEW_API) is Method.NEW_API


def test_mountinfo_parsing_unescapes_and_filters(tmp_path: Path) -> None:
    from berth.store import mount as mnt  # only parses a file here: no kernel objects

    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 0:40 / /r/snapshots/a/merged rw,relatime - overlay overlay rw,lowerdir=l/x\n"
        "41 22 0:41 / /r/snapshots/with\\040space/merged rw shared:1 - overlay overlay rw\n"
        "42 22 0:42 / /r/other rw - tmpfs tmpfs rw\n"
        "43 22 0:43 / /rx/merged rw - overlay overlay rw\n")
    entries = mnt._mountinfo(str(info))
    assert ("/r/snapshots/with space/merged", "overlay") in entries
    overlays = sorted(p for p, t in entries if t == "overlay" and p.startswith("/r/"))
    assert overlays == ["/r/snapshots/a/merged", "/r/snapshots/with space/merged"]
