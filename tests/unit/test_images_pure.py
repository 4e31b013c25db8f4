"""image/images.py without root: docker's removal rules as a pure plan, short-id matching, and
resolution and tags over a real berth.db with layerless images (no unpacking needed)."""

from __future__ import annotations

import json

import pytest

from berth.errors import Conflict, ImageFormatError, InvalidArgument, NotFound
from berth.image.images import (
    AmbiguousImage,
    ImageConflict,
    ImageStore,
    NoSuchImage,
    _docker_container_config,
    rfc3339_nano,
    match_id_prefix,
    plan_removal,
)

ID = "sha256:" + "ab" * 32
BB = "docker.io/library/busybox:latest"
BB1 = "docker.io/library/busybox:1"
APP = "quay.io/me/app:v2"


# --- plan_removal --------------------------------------------------------------------------------

def test_remove_one_of_several_tags_only_untags() -> None:
    plan = plan_removal(ID, [BB, APP], by_ref=BB, force=False)
    assert plan.untag == (BB,)
    assert not plan.delete
    assert plan.records == (("Untagged", "busybox:latest"),)


def test_remove_last_tag_deletes() -> None:
    plan = plan_removal(ID, [BB], by_ref=BB, force=False)
    assert plan.delete
    assert plan.records == (("Untagged", "busybox:latest"), ("Deleted", ID))


def test_remove_by_id_single_tag_untags_and_deletes() -> None:
    plan = plan_removal(ID, [APP], by_ref=None, force=False)
    assert plan.delete and plan.untag == (APP,)
    assert plan.records == (("Untagged", "quay.io/me/app:v2"), ("Deleted", ID))


def test_remove_by_id_dangling_deletes() -> None:
    plan = plan_removal(ID, [], by_ref=None, force=False)
    assert plan.delete and plan.untag == ()
    assert plan.records == (("Deleted", ID),)


def test_remove_by_id_several_tags_needs_force() -> None:
    with pytest.raises(ImageConflict) as e:
        plan_removal(ID, [BB, BB1], by_ref=None, force=False)
    assert isinstance(e.value, Conflict)
    assert str(e.value) == ("conflict: unable to delete abababababab (must be forced) - image is "
                            "referenced in multiple repositories")
    plan = plan_removal(ID, [BB1, BB], by_ref=None, force=True)
    assert plan.delete
    assert plan.records == (("Untagged", "busybox:1"), ("Untagged", "busybox:latest"),
                            ("Deleted", ID))


def test_image_in_use_by_reference() -> None:
    users = ["c" * 64]
    with pytest.raises(ImageConflict) as e:
        plan_removal(ID, [BB], by_ref=BB, force=False, users=users)
    assert str(e.value) == ("conflict: unable to remove repository reference 'busybox:latest' "
                            "(must force) - container cccccccccccc is using its referenced image "
                            "abababababab")
    # forced: the tag goes, the image stays (dangling) under its container
    plan = plan_removal(ID, [BB], by_ref=BB, force=True, users=users)
    assert plan.untag == (BB,) and not plan.delete
    # another tag remains: untagging is fine without force
    plan = plan_removal(ID, [BB, BB1], by_ref=BB, force=False, users=users)
    assert plan.untag == (BB,) and not plan.delete


def test_image_in_use_by_id() -> None:
    with pytest.raises(ImageConflict, match="being used by stopped container 0123456789ab"):
        plan_removal(ID, [BB], by_ref=None, force=False, users=["0123456789abcdef"])
    plan = plan_removal(ID, [BB], by_ref=None, force=True, users=["0123456789abcdef"])
    assert plan.untag == (BB,) and not plan.delete


# --- id prefixes and small formats ---------------------------------------------------------------

def test_match_id_prefix() -> None:
    a, b = "sha256:" + "a1" * 32, "sha256:" + "a2" + "0" * 62
    assert match_id_prefix("a1a", [a, b]) == a
    assert match_id_prefix("sha256:a2", [a, b]) == b
    assert match_id_prefix("zz", [a, b]) is None  # not hex
    assert match_id_prefix("b", [a, b]) is None
    assert match_id_prefix("", [a, b]) is None
    with pytest.raises(AmbiguousImage) as e:
        match_id_prefix("a", [a, b])
    assert isinstance(e.value, InvalidArgument)
    assert e.value.matches == (a, b)


def test_time_format() -> None:
    assert rfc3339_nano(0) == "0001-01-01T00:00:00Z"
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"


def test_container_config_shape() -> None:
    out = _docker_container_config({"Cmd": ["sh"], "Env": ["A=1"], "Shell": ["/bin/sh", "-c"]})
    assert list(out)[:17] == ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                              "AttachStderr", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
                              "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels"]
    assert out["Cmd"] == ["sh"] and out["Entrypoint"] is None and out["Shell"] == ["/bin/sh", "-c"]
    assert _docker_container_config(None)["Env"] is None


# --- resolution and tags over a real database (layerless images) -------------------------------

def config(n: int) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "created": f"2024-01-0{n}T00:00:00Z",
                       "config": {"Cmd": [f"cmd{n}"]},
                       "rootfs": {"type": "layers", "diff_ids": []}}).encode()


@pytest.fixture
def store(tmp_path):
    s = ImageStore(tmp_path / "root")
    yield s
    s.close()


def test_resolve_forms(store: ImageStore) -> None:
    img = store.add_image(config(1), [], tags=["busybox"])
    hexid = img.id.removeprefix("sha256:")
    assert img.repo_tags == ("busybox:latest",)
    assert img.references == (BB,)
    for text in (img.id, hexid, hexid[:12], "sha256:" + hexid[:5], "busybox", "busybox:latest",
                 BB, "library/busybox"):
        assert store.resolve(text) == img.id, text
    with pytest.raises(NoSuchImage) as e:
        store.resolve("nosuch")
    assert isinstance(e.value, NotFound)
    assert str(e.value) == "No such image: nosuch:latest"
    with pytest.raises(NoSuchImage, match="No such image: " + "0" * 64):
        store.resolve("0" * 64)
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        store.resolve("Bad/Name")


def test_ambiguous_short_id(store: ImageStore) -> None:
    ids = [store.add_image(config(n), []).id for n in range(1, 10)]
    firsts = [i[7] for i in ids]
    dup = next(c for c in firsts if firsts.count(c) > 1)  # 9 ids, 16 digits: likely a clash
    with pytest.raises(AmbiguousImage):
        store.resolve(dup)


def test_tag_moves_and_untag(store: ImageStore) -> None:
    a = store.add_image(config(1), [], tags=["app:1"])
    b = store.add_image(config(2), [])
    assert store.get(b.id).dangling
    assert store.tag(b.id[7:19], "app:1") == "docker.io/library/app:1"
    assert store.get(a.id).dangling  # the tag moved, the old image stays
    assert store.get("app:1").id == b.id
    with pytest.raises(InvalidArgument, match="digest reference"):
        store.tag(b.id, "app@sha256:" + "1" * 64)
    assert store.untag("app:1") == "app:1"
    assert store.get(b.id).dangling
    with pytest.raises(NoSuchImage, match="No such image: app:1"):
        store.untag("app:1")
    actions = [(e.action, e.attributes.get("name")) for e in store.db.events()]
    assert actions == [("load", "app:1"), ("tag", "app:1"), ("load", b.id), ("tag", "app:1"),
                       ("untag", "app:1")]


def test_layer_count_must_match_config(store: ImageStore) -> None:
    with pytest.raises(ImageFormatError, match="lists 0 layers"):
        from berth.image.images import LayerSource
        src = LayerSource("sha256:" + "1" * 64, lambda: None)  # type: ignore[arg-type]
        store.add_image(config(1), [src])
    assert store.list() == []


def test_remove_layerless(store: ImageStore) -> None:
    img = store.add_image(config(1), [], tags=["x", "y"])
    assert store.remove("x") == [("Untagged", "x:latest")]
    assert store.remove("y") == [("Untagged", "y:latest"), ("Deleted", img.id)]
    assert store.list(all=True) == []
    assert not store.blobs.exists(img.id)


def test_repo_digests_and_digest_references(store: ImageStore) -> None:
    manifest = "sha256:" + "7" * 64
    img = store.add_image(config(1), [], tags=["busybox", "quay.io/x/y:2"],
                          manifest_digest=manifest)
    assert img.repo_digests == (f"busybox@{manifest}", f"quay.io/x/y@{manifest}")
    assert store.resolve(f"busybox@{manifest}") == img.id
    with pytest.raises(NoSuchImage):
        store.resolve(f"alpine@{manifest}")
    assert store.inspect(img)["RepoDigests"] == list(img.repo_digests)
    assert [i.id for i in store.list()] == [img.id]
