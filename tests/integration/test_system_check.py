"""`system check` finds injected damage — a flipped byte in a layer tar or a config, a deleted
layer directory (with and without its tar), a dangling tag, a wrong refcount — and garbage, and
`--repair` mends each so that a second check is clean and the other images are untouched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
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
    import shutil
    shutil.rmtree(store.layer_path(chain))
    mended(store, {("layer_missing", chain)})
    assert (store.layer_path(chain) / "app/one").read_bytes() == before
    assert store.get("app:1")


def test_deleted_layer_dir_without_its_tar_removes_the_images_using_it(
        store: ImageStore) -> None:
    import shutil
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
