"""`system check` finds injected damage — a flipped byte in a layer tar or a config, a deleted
layer directory (with and without its tar), a dangling tag, a wrong refcount, an image listing
an unrecorded layer — and garbage, and `--repair` mends each so that a second check is clean and
the other images are untouched. A check alone changes nothing; what an interrupted add leaves is
garbage, never damage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest

from berth.image import fsck
from berth.image.images import ImageStore, LayerSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


BASE = tar_of({"etc/base": b"base\n" * 100})
APP = tar_of({"app/one": b"1\n"})
OTHER = tar_of({"app/two": b"2\n"})


def add(store: ImageStore, tars: list[bytes], tag: str) -> str:
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    return store.add_image(config, [LayerSource(d, lambda t=t: io.BytesIO(t))
                                    for d, t in zip(diff_ids, tars)], tags=[tag]).id


@pytest.fixture
def store(berth_env: BerthEnv):
    s = ImageStore(berth_env.root)
    add(s, [BASE, APP], "app:1")
    add(s, [BASE, OTHER], "other:1")
    assert fsck.check(s).problems == []
    yield s
    s.close()


def flip(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def sql(store: ImageStore, statement: str, *params: object) -> None:
    conn = sqlite3.connect(store.root / "berth.db")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def mended(store: ImageStore, expect: set[tuple[str, str]]) -> list[str]:
    report = fsck.check(store)
    assert {(p.kind, p.subject) for p in report.damage} == expect, report.lines()
    assert report.lines()[-1].startswith(f"{len(expect)} problem")
    actions = fsck.repair(store, report)
    assert actions
    assert fsck.check(store).problems == [], fsck.check(store).lines()
    return actions


def app_layer(store: ImageStore) -> str:
    return store.get("app:1").layers[1]


def test_flipped_byte_in_a_layer_tar(store: ImageStore) -> None:
    chain = app_layer(store)
    blob = store.layer_blob(chain)[0]
    flip(store.blobs.path(blob))
    mended(store, {("blob_corrupt", blob)})
    assert store.layer_blob(chain) is None  # forgotten; the unpacked layer still serves
    assert (Path(store.layer_path(chain)) / "app/one").read_bytes() == b"1\n"
    assert store.get("app:1") and store.get("other:1")


def test_flipped_byte_in_a_config_removes_that_image_only(store: ImageStore) -> None:
    image_id = store.resolve("app:1")
    flip(store.blobs.path(image_id))
    actions = mended(store, {("blob_corrupt", image_id)})
    assert any("removed image" in a for a in actions)
    assert [i.repo_tags for i in store.list()] == [("other:1",)]
    assert Path(store.layer_dirs("other:1")[0]).is_dir()  # the shared base stays


def test_deleted_layer_dir_is_unpacked_again_from_its_tar(store: ImageStore) -> None:
    chain = app_layer(store)
    before = (store.layer_path(chain) / "app/one").read_bytes()
    shutil.rmtree(store.layer_path(chain))
    mended(store, {("layer_missing", chain)})
    assert (store.layer_path(chain) / "app/one").read_bytes() == before
    assert store.get("app:1")


def test_deleted_layer_dir_without_its_tar_removes_the_images_using_it(
        store: ImageStore) -> None:
    base = store.get("app:1").layers[0]
    blob = store.layer_blob(base)[0]
    shutil.rmtree(store.layer_path(base))
    store.blobs.path(blob).unlink()
    mended(store, {("layer_missing", base), ("blob_missing", blob)})
    assert store.list(all=True) == []


def test_dangling_tag_and_wrong_refcount(store: ImageStore) -> None:
    sql(store, "INSERT INTO tags (reference, image_id) VALUES (?, ?)",
        "docker.io/library/ghost:1", "sha256:" + "e" * 64)
    chain = app_layer(store)
    sql(store, "UPDATE layers SET refcount = 7 WHERE chain_id = ?", chain)
    mended(store, {("tag_dangling", "docker.io/library/ghost:1"), ("refcount_wrong", chain)})
    assert store.refcount(chain) == 1
    assert sorted(t for i in store.list() for t in i.repo_tags) == ["app:1", "other:1"]


def test_garbage_is_listed_apart_and_removed(store: ImageStore) -> None:
    (store.layers_dir / ".ingest-abc").mkdir()
    (store.layers_dir / ".ingest-abc" / "x").write_text("half")
    stray = store.blobs.dir / ("f" * 64)
    stray.write_bytes(b"nobody's")
    report = fsck.check(store)
    assert report.damage == []
    assert {p.subject for p in report.garbage} == {str(store.layers_dir / ".ingest-abc"),
                                                    str(stray)}
    fsck.repair(store, report)
    assert fsck.check(store).problems == []
    assert not stray.exists() and store.get("app:1")


# --- what stays untouched ----------------------------------------------------------------------

def tree(path: Path) -> dict[str, tuple[int, str]]:
    """Every entry under `path`: mode and content (file digest, link target or device)."""
    out: dict[str, tuple[int, str]] = {}
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(top, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = str(st.st_rdev)
            else:
                what = ""
            out[os.path.relpath(full, path)] = (st.st_mode, what)
    return out


def state(store: ImageStore) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """The store's files (the database's own aside) and its records."""
    files = {k: v for k, v in tree(store.root).items() if not k.startswith("berth.db")}
    conn = sqlite3.connect(store.root / "berth.db")
    try:
        records = list(conn.iterdump())
    finally:
        conn.close()
    return files, records


def lasting(files: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    """`files` without the blob ingest area (created on the first write, empty after)."""
    return {k: v for k, v in files.items() if k != "blobs/ingest"}


def other_is_whole(store: ImageStore, before: dict[str, dict[str, tuple[int, str]]]) -> None:
    """other:1 still resolves, and its layer directories hold what they held."""
    img = store.get("other:1")
    assert {c: tree(store.layer_path(c)) for c in img.layers} == before
    assert all(store.refcount(c) >= 1 for c in img.layers)


def layers_of_other(store: ImageStore) -> dict[str, dict[str, tuple[int, str]]]:
    return {c: tree(store.layer_path(c)) for c in store.get("other:1").layers}


def events(store: ImageStore, action: str) -> list[str]:
    return [e.actor_id for e in store.db.events() if e.type == "image" and e.action == action]


# --- more tests ----------------------------------------------------------------------------------

def test_a_clean_store_reports_nothing_and_repair_does_nothing(store: ImageStore) -> None:
    report = fsck.check(store)
    assert report.problems == [] and report.lines() == ["no problems found"]
    before = state(store)
    assert fsck.repair(store, report) == []
    assert state(store) == before


def test_check_alone_changes_nothing(store: ImageStore) -> None:
    chain = app_layer(store)
    flip(store.blobs.path(store.layer_blob(chain)[0]))
    shutil.rmtree(store.layer_path(store.get("other:1").layers[1]))
    sql(store, "INSERT INTO tags (reference, image_id) VALUES (?, ?)",
        "docker.io/library/ghost:1", "sha256:" + "e" * 64)
    (store.layers_dir / ".ingest-left").mkdir()
    before = state(store)
    report = fsck.check(store)
    assert len(report.damage) == 3 and len(report.garbage) == 1
    assert state(store) == before


def test_report_lines_name_the_subject_and_the_fix(store: ImageStore) -> None:
    blob = store.layer_blob(app_layer(store))[0]
    flip(store.blobs.path(blob))
    (store.layers_dir / ".ingest-left").mkdir()
    lines = fsck.check(store).lines()
    assert len(lines) == 3
    assert blob in lines[0] and "does not match its digest" in lines[0] and "repair" in lines[0]
    assert lines[1].startswith("garbage") and ".ingest-left" in lines[1]
    assert lines[2] == "1 problem, 1 garbage item"


def test_restored_layer_is_identical_and_the_other_image_untouched(store: ImageStore) -> None:
    chain = app_layer(store)
    content = tree(store.layer_path(chain))
    size = store.layer_sizes("app:1")[1]
    others = layers_of_other(store)
    shutil.rmtree(store.layer_path(chain))
    actions = mended(store, {("layer_missing", chain)})
    assert any(chain in a for a in actions)
    assert tree(store.layer_path(chain)) == content
    assert store.layer_sizes("app:1")[1] == size
    assert store.layer_blob(chain) is not None  # the tar stays, `save` still works
    assert [n for n in os.listdir(store.layers_dir) if n.startswith(".")] == [".lock"]
    other_is_whole(store, others)


def test_unrestorable_layer_removes_only_the_image_using_it(store: ImageStore) -> None:
    app = store.get("app:1")
    chain = app.layers[1]
    blob = store.layer_blob(chain)[0]
    others = layers_of_other(store)
    shutil.rmtree(store.layer_path(chain))
    store.blobs.path(blob).unlink()
    mended(store, {("layer_missing", chain), ("blob_missing", blob)})
    assert [i.repo_tags for i in store.list(all=True)] == [("other:1",)]
    assert app.id in events(store, "delete")
    assert store.db.read("SELECT 1 FROM layers WHERE chain_id = ?", (chain,)) == []
    assert not store.blobs.path(app.id).exists()  # its config went with it
    assert store.refcount(app.layers[0]) == 1  # the shared base, now only other's
    other_is_whole(store, others)


def test_corrupt_tar_under_a_missing_layer_removes_the_image(store: ImageStore) -> None:
    app = store.get("app:1")
    chain = app.layers[1]
    blob = store.layer_blob(chain)[0]
    others = layers_of_other(store)
    flip(store.blobs.path(blob))
    shutil.rmtree(store.layer_path(chain))
    report = fsck.check(store)
    assert {(p.kind, p.subject) for p in report.damage} == {("layer_missing", chain),
                                                             ("blob_corrupt", blob)}
    assert "remove the images" in next(p.fix for p in report.damage if p.subject == chain)
    fsck.repair(store, report)
    assert fsck.check(store).problems == []
    assert [i.repo_tags for i in store.list(all=True)] == [("other:1",)]
    other_is_whole(store, others)


def test_corrupt_config_records_the_deletion_and_frees_its_own_layer(store: ImageStore) -> None:
    app = store.get("app:1")
    others = layers_of_other(store)
    flip(store.blobs.path(app.id))
    mended(store, {("blob_corrupt", app.id)})
    assert app.id in events(store, "delete")
    assert not store.layer_path(app.layers[1]).exists()  # used by app:1 alone
    assert not store.blobs.path(app.id).exists()
    other_is_whole(store, others)


def test_missing_config_file_removes_the_image(store: ImageStore) -> None:
    app = store.resolve("app:1")
    others = layers_of_other(store)
    store.blobs.path(app).unlink()
    mended(store, {("blob_missing", app)})
    assert [i.repo_tags for i in store.list(all=True)] == [("other:1",)]
    other_is_whole(store, others)


def test_image_listing_an_unrecorded_layer_is_removed(store: ImageStore) -> None:
    app = store.resolve("app:1")
    others = layers_of_other(store)
    sql(store, "INSERT INTO image_layers (image_id, position, chain_id) VALUES (?, 9, ?)",
        app, "sha256:" + "d" * 64)
    mended(store, {("image_layer_missing", app)})
    assert [i.repo_tags for i in store.list(all=True)] == [("other:1",)]
    other_is_whole(store, others)


def test_every_kind_of_leftover_is_garbage(store: ImageStore) -> None:
    """What a killed add or load leaves: unpack and spool leftovers, a blob temp file, a layer
    directory and blob files renamed into place but never recorded."""
    before = state(store)
    others = layers_of_other(store)
    half = store.layers_dir / ".ingest-1a2b"
    (half / ("c" * 64)).mkdir(parents=True)
    (half / ("c" * 64) / "f").write_text("half")
    (store.layers_dir / ".ingest-archive-xyz").write_bytes(b"spooled")
    (store.layers_dir / ("a" * 64)).mkdir()
    (store.layers_dir / ("a" * 64) / "f").write_text("unrecorded layer")
    store.blobs.ingest_dir.mkdir(parents=True, exist_ok=True)
    (store.blobs.ingest_dir / "tmp-123").write_bytes(b"half a blob")
    data = b"an unrecorded blob"
    stray = store.blobs.dir / hashlib.sha256(data).hexdigest()
    stray.write_bytes(data)
    report = fsck.check(store)
    assert report.damage == []
    assert {p.subject for p in report.garbage} == {
        str(half), str(store.layers_dir / ".ingest-archive-xyz"),
        str(store.layers_dir / ("a" * 64)), str(store.blobs.ingest_dir / "tmp-123"), str(stray)}
    assert all(p.kind == "garbage" for p in report.garbage)
    assert report.lines()[-1] == "0 problems, 5 garbage items"
    actions = fsck.repair(store, report)
    assert len(actions) == 5
    assert fsck.check(store).problems == []
    files, records = state(store)
    assert records == before[1]
    assert lasting(files) == lasting(before[0])
    other_is_whole(store, others)


def test_a_failed_add_leaves_garbage_not_damage(store: ImageStore) -> None:
    """Layers unpacked and their tars stored before a later layer failed have no record:
    garbage, which repair removes, leaving the store as it was before the add."""
    before = state(store)

    class Broken(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if self.tell() > 512:
                raise OSError("the stream broke")
            return super().read(min(n, 256) if n > 0 else 256)

    fresh = [tar_of({"new/one": b"n1\n"}), tar_of({"new/two": b"n2\n"})]
    big = tar_of({"big": os.urandom(1 << 16)})
    tars = [*fresh, big]
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    layers = [LayerSource(d, lambda t=t: io.BytesIO(t)) for d, t in zip(diff_ids, fresh)]
    layers.append(LayerSource(diff_ids[2], lambda: Broken(big)))
    with pytest.raises(OSError):
        store.add_image(config, layers, tags=["broken:1"])
    report = fsck.check(store)
    assert report.damage == []
    chains = ["sha256:" + hashlib.sha256(t).hexdigest() for t in fresh]
    chains[1] = "sha256:" + hashlib.sha256(f"{chains[0]} {diff_ids[1]}".encode()).hexdigest()
    assert {p.subject for p in report.garbage} == {
        *(str(store.blobs.path(d)) for d in diff_ids[:2]),  # the tars, kept as blobs
        *(str(store.layer_path(c)) for c in chains)}  # the unpacked layers
    fsck.repair(store, report)
    assert fsck.check(store).problems == []
    files, records = state(store)
    assert records == before[1]
    assert lasting(files) == lasting(before[0])


def test_repair_keeps_a_broken_image_a_container_uses(berth_env: BerthEnv) -> None:
    users = {"c" * 64}
    s = ImageStore(berth_env.root, in_use=lambda image_id: sorted(users))
    try:
        image_id = add(s, [BASE, APP], "used:1")
        flip(s.blobs.path(s.layer_blob(s.get("used:1").layers[1])[0]))
        import shutil
        shutil.rmtree(s.layer_path(s.get("used:1").layers[1]))
        actions = fsck.repair(s)
        assert any("kept image" in a and "cccccccccccc" in a for a in actions)
        assert s.get("used:1").id == image_id
        assert fsck.check(s).damage  # still reported, until the container is gone
        users.clear()
        fsck.repair(s)
        assert fsck.check(s).problems == []
    finally:
        s.close()
