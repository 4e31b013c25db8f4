"""image/images.py on the real kernel: layers unpacked once and shared, sizes, tag/untag/rmi
rules and their records, layers deleted only when unused, a failed add that leaves nothing
visible (and gc that cleans after it), history and inspect in docker's shape, and the overlay
planned by image/unpack.py mounted with store/mount.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from berth.errors import Conflict, ImageFormatError
from berth.image.images import Image, ImageStore, LayerSource, NoSuchImage
from berth.image.unpack import prepare_rootfs
from berth.oci.digest import chain_ids
from berth.store import mount as mnt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


# --- building layers and configs -------------------------------------------------------------

def layer_tar(entries: list[tuple[str, bytes | None]], *, compress: bool = False) -> bytes:
    """A tar of files (bytes) and directories (None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def diff_id(tar: bytes) -> str:
    if tar[:2] == b"\x1f\x8b":
        tar = gzip.decompress(tar)
    return "sha256:" + hashlib.sha256(tar).hexdigest()


BASE = layer_tar([("etc/", None), ("etc/hostname", b"base\n"), ("bin/", None),
                  ("bin/tool", b"x" * 1000), ("gone", b"to be deleted"),
                  ("etc/motd", b"hello from base\n")])
TOP = layer_tar([("etc/", None), ("etc/motd", b"hello from top\n"), (".wh.gone", b""),
                 ("app", b"app" * 100)], compress=True)
OTHER = layer_tar([("other", b"o" * 7)])


def config(tars: list[bytes], *, tag: str = "", empty_first: bool = True) -> bytes:
    history = []
    if empty_first:
        history.append({"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) "
                        "ARG X=1", "empty_layer": True})
    for i, _ in enumerate(tars):
        history.append({"created": f"2024-01-0{i + 2}T00:00:00Z",
                        "created_by": f"/bin/sh -c step {i} {tag}", "comment": f"c{i}"})
    history.append({"created": "2024-02-01T00:00:00Z",
                    "created_by": '/bin/sh -c #(nop)  CMD ["sh"]', "empty_layer": True})
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-02-01T00:00:00Z",
        "author": "tester", "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id(t) for t in tars]},
        "history": history}).encode()


def sources(tars: list[bytes]) -> list[LayerSource]:
    return [LayerSource(diff_id(t), lambda t=t: io.BytesIO(t))  # type: ignore[misc]
            for t in tars]


def file_sizes(tar: bytes) -> int:
    if tar[:2] == b"\x1f\x8b":
        tar = gzip.decompress(tar)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return sum(m.size for m in t.getmembers() if m.isfile())


def du_apparent(path: str) -> int:
    """`du -sb --apparent-size` counted as docker counts a layer: regular files and symlinks."""
    total, seen = 0, set()
    for top, dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                total += st.st_size
    return total


@pytest.fixture
def store(berth_env: BerthEnv):
    s = ImageStore(berth_env.root)
    yield s
    s.close()


def add(store: ImageStore, tars: list[bytes], **kw: object) -> Image:
    tag = str(kw.pop("tag_text", ""))
    return store.add_image(config(tars, tag=tag), sources(tars), **kw)  # type: ignore[arg-type]


# --- tests -----------------------------------------------------------------------------------

def test_add_image_unpacks_layers_and_records(store: ImageStore, berth_env: BerthEnv) -> None:
    img = store.add_image(config([BASE, TOP]), sources([BASE, TOP]), tags=["app"])
    chains = [str(c) for c in chain_ids([diff_id(BASE), diff_id(TOP)])]
    assert img.layers == tuple(chains)
    assert img.repo_tags == ("app:latest",)
    dirs = store.layer_dirs(img)
    assert dirs == [str(berth_env.root / "layers" / c[7:]) for c in chains]
    base, top = map(Path, dirs)
    assert (base / "etc/motd").read_text() == "hello from base\n"
    assert (top / "etc/motd").read_text() == "hello from top\n"
    st = os.lstat(top / "gone")  # the whiteout in overlayfs form
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    sizes = store.layer_sizes(img)
    assert sizes == [du_apparent(dirs[0]), du_apparent(dirs[1])]
    assert sizes == [file_sizes(BASE), file_sizes(TOP)]
    assert img.size == sum(sizes)
    assert store.refcount(chains[0]) == store.refcount(chains[1]) == 1
    # the tars are kept as blobs, the gzip one as given
    digest, media = store.layer_blob(chains[1]) or ("", "")
    assert media.endswith("+gzip")
    assert store.blobs.read(digest) == TOP
    assert store.blobs.read(img.id) == config([BASE, TOP])
    assert [(e.type, e.action, e.actor_id) for e in store.db.events()] == [
        ("image", "load", img.id), ("image", "tag", img.id)]
    # adding it again changes nothing but the events
    again = store.add_image(config([BASE, TOP]), sources([BASE, TOP]))
    assert again.id == img.id and store.refcount(chains[0]) == 1


def test_shared_layer_unpacked_once(store: ImageStore) -> None:
    a = add(store, [BASE, TOP], tags=["a"])
    b = add(store, [BASE, OTHER], tags=["b"], tag_text="b")
    base_chain = a.layers[0]
    assert b.layers[0] == base_chain
    assert store.refcount(base_chain) == 2
    opened = []
    src = LayerSource(diff_id(BASE), lambda: opened.append(1) or io.BytesIO(BASE))
    store.add_image(config([BASE], tag="c"), [src], tags=["c"])
    assert opened == []  # present: not even opened
    assert store.refcount(base_chain) == 3
    assert sorted(os.listdir(store.layers_dir)) == sorted(
        [".lock", *{c[7:] for i in store.list() for c in i.layers}])


def test_concurrent_adds_of_the_same_layer(store: ImageStore, berth_env: BerthEnv) -> None:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with ImageStore(berth_env.root) as s:
                s.add_image(config([BASE], tag=str(n)), sources([BASE]), tags=[f"t{n}"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    chain = diff_id(BASE)
    assert store.refcount(chain) == 4
    assert sorted(os.listdir(store.layers_dir)) == [".lock", chain[7:]]


def test_tag_untag_and_remove_rules(store: ImageStore) -> None:
    img = add(store, [BASE], tags=["busybox", "busybox:1"])
    other = add(store, [BASE, TOP], tags=["keep"])
    base_dir, top_dir = store.layer_dirs(other)
    with pytest.raises(Conflict) as e:
        store.remove(img.id)
    assert str(e.value) == (f"conflict: unable to delete {img.id[7:19]} (must be forced) - "
                            "image is referenced in multiple repositories")
    assert store.remove("busybox") == [("Untagged", "busybox:latest")]
    assert store.get("busybox:1").id == img.id
    assert store.remove("busybox:1") == [("Untagged", "busybox:1"), ("Deleted", img.id)]
    assert os.path.isdir(base_dir)  # still used by `keep`
    assert store.refcount(other.layers[0]) == 1
    with pytest.raises(NoSuchImage, match="No such image: busybox:1"):
        store.remove("busybox:1")

    store.tag("keep", "second:tag")
    out = store.remove(other.id[7:19], force=True)
    assert out == [("Untagged", "keep:latest"), ("Untagged", "second:tag"),
                   ("Deleted", other.id), ("Deleted", other.layers[1]),
                   ("Deleted", other.layers[0])]
    assert not os.path.exists(base_dir) and not os.path.exists(top_dir)
    assert store.list(all=True) == []
    assert store.db.read("SELECT count(*) FROM layers")[0][0] == 0
    assert store.db.read("SELECT count(*) FROM blobs")[0][0] == 0
    assert list(store.blobs.walk()) == []
    actions = [e.action for e in store.db.events()]
    assert actions[-6:] == ["untag", "delete", "tag", "untag", "untag", "delete"]


def test_moved_tag_leaves_a_dangling_image(store: ImageStore) -> None:
    a = add(store, [BASE], tags=["app"])
    b = add(store, [BASE, TOP], tags=["app"])
    assert store.get("app").id == b.id
    listed = {i.id: i for i in store.list()}
    assert listed[a.id].dangling and listed[a.id].repo_tags == ()
    assert store.remove(a.id[7:]) == [("Deleted", a.id)]


def test_in_use_hook(berth_env: BerthEnv) -> None:
    users: dict[str, list[str]] = {}
    with ImageStore(berth_env.root, in_use=lambda i: users.get(i, [])) as s:
        img = s.add_image(config([BASE]), sources([BASE]), tags=["app"])
        users[img.id] = ["f" * 64]
        with pytest.raises(Conflict, match="container ffffffffffff is using its referenced image"):
            s.remove("app")
        with pytest.raises(Conflict, match="being used by stopped container ffffffffffff"):
            s.remove(img.id)
        assert s.remove("app", force=True) == [("Untagged", "app:latest")]
        assert s.get(img.id).dangling and os.path.isdir(s.layer_dirs(img)[0])
        users.clear()
        assert s.remove(img.id) == [("Deleted", img.id), ("Deleted", img.layers[0])]


def test_failed_add_leaves_nothing_visible_and_gc_cleans(store: ImageStore) -> None:
    good = add(store, [OTHER], tags=["good"])
    cfg = config([BASE, TOP])
    bad = [LayerSource(diff_id(BASE), lambda: io.BytesIO(BASE)),
           LayerSource(diff_id(TOP), lambda: io.BytesIO(OTHER))]  # content is not TOP
    with pytest.raises(ImageFormatError, match="digest mismatch"):
        store.add_image(cfg, bad, tags=["broken"])
    assert [i.id for i in store.list(all=True)] == [good.id]
    with pytest.raises(NoSuchImage):
        store.resolve("broken")
    assert store.db.read("SELECT count(*) FROM layers")[0][0] == 1
    assert [e.action for e in store.db.events()] == ["load", "tag"]
    # the base layer was unpacked (and its blob kept) before the second failed: no row, gc
    base_dir = store.layer_path(diff_id(BASE))
    assert base_dir.is_dir()
    assert not [n for n in os.listdir(store.layers_dir) if n.startswith(".ingest-")]
    removed = store.gc()
    assert str(base_dir) in removed and not base_dir.exists()
    assert sorted(os.listdir(store.layers_dir)) == [".lock", good.layers[0][7:]]
    assert {str(d) for d in store.blobs.walk()} == {r[0] for r in store.db.read(
        "SELECT digest FROM blobs")}
    assert store.gc() == []
    assert store.get("good").id == good.id
    # and the same image adds fine afterwards
    assert store.add_image(cfg, sources([BASE, TOP])).layers == tuple(
        str(c) for c in chain_ids([diff_id(BASE), diff_id(TOP)]))


def test_wrong_layer_order_is_refused(store: ImageStore) -> None:
    with pytest.raises(ImageFormatError, match=r"rootfs.diff_ids\[0\]"):
        store.add_image(config([BASE, TOP]), sources([TOP, BASE]))
    with pytest.raises(ImageFormatError, match="lists 2 layers"):
        store.add_image(config([BASE, TOP]), sources([BASE]))
    assert store.list(all=True) == []
    assert not store.layers_dir.exists()  # refused before anything was written


def test_history_rows(store: ImageStore) -> None:
    img = add(store, [BASE, TOP], tags=["app"])
    rows = store.history(img)
    sizes = store.layer_sizes(img)
    assert [(r.id, r.created_by, r.size, r.comment) for r in rows] == [
        (img.id, '/bin/sh -c #(nop)  CMD ["sh"]', 0, ""),
        ("<missing>", "/bin/sh -c step 1 ", sizes[1], "c1"),
        ("<missing>", "/bin/sh -c step 0 ", sizes[0], "c0"),
        ("<missing>", "/bin/sh -c #(nop) ARG X=1", 0, ""),
    ]
    assert rows[0].tags == ("app:latest",) and rows[1].tags == ()
    assert rows[0].created == "2024-02-01T00:00:00Z"


def test_inspect_shape(store: ImageStore) -> None:
    img = add(store, [BASE, TOP], tags=["app"])
    doc = store.inspect("app")
    assert list(doc) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created",
                         "DockerVersion", "Author", "Config", "Architecture", "Os", "Size",
                         "GraphDriver", "RootFS", "Metadata"]
    assert doc["Id"] == img.id
    assert doc["RepoTags"] == ["app:latest"] and doc["RepoDigests"] == []
    assert doc["Created"] == "2024-02-01T00:00:00Z" and doc["Author"] == "tester"
    assert doc["Config"]["Cmd"] == ["sh"] and doc["Config"]["Env"] == ["PATH=/bin"]
    assert doc["Config"]["Entrypoint"] is None and doc["Config"]["Hostname"] == ""
    assert doc["Size"] == img.size
    lower, upper = store.layer_dirs(img)
    data = doc["GraphDriver"]["Data"]
    assert doc["GraphDriver"]["Name"] == "overlay2"
    assert data["LowerDir"] == lower and data["UpperDir"] == upper
    assert set(data) == {"LowerDir", "UpperDir", "MergedDir", "WorkDir"}
    assert doc["RootFS"] == {"Type": "layers", "Layers": [diff_id(BASE), diff_id(TOP)]}
    assert doc["Metadata"]["LastTagTime"].endswith("Z")
    assert doc["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    json.dumps(doc)  # serialisable as is
    untagged = add(store, [OTHER])
    assert store.inspect(untagged)["Metadata"]["LastTagTime"] == "0001-01-01T00:00:00Z"


def test_prepare_rootfs_mounts_the_image(store: ImageStore, berth_env: BerthEnv) -> None:
    img = add(store, [BASE, TOP], tags=["app"])
    mounts = prepare_rootfs(store, "app", "c1")
    [m] = mounts
    assert m.type == "overlay"
    assert list(m.lowers) == list(reversed(store.layer_dirs(img)))
    mnt.mount_all(mounts)
    try:
        merged = Path(m.target)
        assert (merged / "etc/motd").read_text() == "hello from top\n"
        assert (merged / "etc/hostname").read_text() == "base\n"
        assert (merged / "bin/tool").stat().st_size == 1000
        assert not (merged / "gone").exists()
        (merged / "etc/hostname").write_text("changed\n")  # copy-up into the upper only
        assert (Path(m.upper or "") / "etc/hostname").read_text() == "changed\n"
        assert (Path(store.layer_dirs(img)[0]) / "etc/hostname").read_text() == "base\n"
    finally:
        mnt.unmount(m.target)
    assert not mnt.is_mounted(m.target)


def test_two_containers_share_the_image_layers_copy_on_write(store: ImageStore) -> None:
    img = add(store, [BASE, TOP], tags=["app"])
    plans = [prepare_rootfs(store, "app", key)[0] for key in ("c1", "c2")]
    assert plans[0].lowers == plans[1].lowers  # the same layer directories, one copy on disk
    for m in plans:
        mnt.mount_all([m])
    try:
        one, two = (Path(m.target) for m in plans)
        (one / "etc/hostname").write_text("one\n")
        assert (two / "etc/hostname").read_text() == "base\n"
        assert (Path(plans[0].upper or "") / "etc/hostname").read_text() == "one\n"
        assert not (Path(plans[1].upper or "") / "etc/hostname").exists()
        assert (Path(store.layer_dirs(img)[0]) / "etc/hostname").read_text() == "base\n"
        assert os.stat(one / "bin/tool").st_ino == os.stat(two / "bin/tool").st_ino
    finally:
        for m in plans:
            mnt.unmount(m.target)
