"""docker's save-archive documents: manifest.json and repositories as docker 20 and podman write
them, the symlinked layer files in the fixtures, docker 25's blob paths and index names, and
hostile paths refused."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from berth.errors import ImageFormatError
from berth.oci import docker, reference
from berth.oci.image_spec import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ImageConfig

FIXTURES = Path("/work/shared/fixtures")
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="fixtures not present")
H = "a" * 64


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    assert f is not None
    return f.read()


def _resolve(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """Follow symlinks inside the archive, as a loader must (at most 8 hops)."""
    for _ in range(8):
        info = tar.getmember(name)
        if not info.issym():
            return info
        name = docker.resolve_link(name, info.linkname)
    raise AssertionError("symlink loop")


@needs_fixtures
@pytest.mark.parametrize("name, newline", [("docker20-busybox", True), ("docker20-layers", True),
                                           ("docker20-multi", True),
                                           ("podman-docker-layers", False)])
def test_fixture_manifest_json(name: str, newline: bool) -> None:
    with tarfile.open(FIXTURES / f"{name}.tar") as tar:
        names = {m.name for m in tar.getmembers()}
        assert docker.detect_format(names) == docker.FORMAT_DOCKER_LEGACY
        raw = _read(tar, "manifest.json")
        images = docker.parse_manifest_json(raw)
        # docker's own bytes come back exactly; podman writes no final newline
        assert docker.dump_manifest_json(images) == (raw if newline else raw + b"\n")
        repos = docker.parse_repositories(_read(tar, "repositories"))
        if newline:
            assert docker.dump_repositories(repos) == _read(tar, "repositories")
        for im in images:
            cfg = ImageConfig.from_bytes(_read(tar, im.config))
            assert docker.legacy_config_path(cfg.id) == im.config or name.startswith("podman")
            assert len(im.layers) == len(cfg.diff_ids)
            for path, diff_id in zip(im.layers, cfg.diff_ids):
                info = _resolve(tar, path)
                assert info.isfile()
                f = tar.extractfile(info)
                assert f is not None
                assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == diff_id
            # repositories points each tag at the directory of the top layer
            for ref in im.references():
                top = repos[ref.familiar_repository][ref.tag]
                if not name.startswith("podman"):
                    assert im.layers[-1] == f"{top}/layer.tar"


@needs_fixtures
def test_fixture_symlinked_layers() -> None:
    """docker stores a shared layer once and links the other directory to it; podman links
    every <id>/layer.tar to <diff hex>.tar at the root."""
    with tarfile.open(FIXTURES / "docker20-multi.tar") as tar:
        links = [m for m in tar.getmembers() if m.issym()]
        assert [docker.resolve_link(m.name, m.linkname) for m in links] == \
            ["4bb5048dea48bca9f7c80398d5ccf3dade00ecfbec80f5224bbdc9452fded9eb/layer.tar"]
    with tarfile.open(FIXTURES / "podman-docker-layers.tar") as tar:
        for m in tar.getmembers():
            if m.issym():
                target = docker.resolve_link(m.name, m.linkname)
                assert "/" not in target and target.endswith(".tar")


@needs_fixtures
def test_fixture_legacy_layer_json_matches_docker() -> None:
    with tarfile.open(FIXTURES / "docker20-layers.tar") as tar:
        child, parent = ("20572ddb9d0043fb5c3e3c0f1cf71def27e60f7825950846495ecb073b28dfa7",
                         "5bbf88d6d47daae70017cd4c1be31aac38104184ec8d9137cc8c04ec13e1ee37")
        assert docker.legacy_layer_json(child, parent) == _read(tar, f"{child}/json")
        base = "35215591bf4a48675a1f419a451fdf3132fff3a78def80c3f373dfb58fcf3766"
        assert docker.legacy_layer_json(base) == _read(tar, f"{base}/json")
        assert _read(tar, f"{base}/VERSION") == docker.LEGACY_VERSION


def test_detect_format() -> None:
    assert docker.detect_format({"manifest.json", "index.json", "oci-layout", "repositories"}) \
        == docker.FORMAT_DOCKER_OCI
    assert docker.detect_format({"index.json", "oci-layout"}) == docker.FORMAT_OCI
    with pytest.raises(ImageFormatError, match="not a docker or OCI image archive"):
        docker.detect_format({"etc/passwd"})


def test_manifest_json_roundtrip_docker25_paths() -> None:
    cfg, layer = "sha256:" + "c" * 64, "sha256:" + "d" * 64
    im = docker.ArchiveImage(docker.blob_path(cfg), ("busybox:latest",), (docker.blob_path(layer),),
                             extra={"Parent": "x"})
    raw = docker.dump_manifest_json([im])
    assert raw.startswith(b'[{"Config":"blobs/sha256/' + b"c" * 64 + b'","RepoTags":["busybox')
    assert docker.parse_manifest_json(raw) == (im,)
    assert docker.blob_digest(im.config) == cfg
    assert docker.blob_digest("cc.json") == ""
    assert docker.blob_digest("blobs/sha256/xyz") == ""


def test_untagged_image_has_null_repo_tags() -> None:
    im = docker.ArchiveImage(f"{H}.json", (), (f"{H}/layer.tar",))
    assert json.loads(docker.dump_manifest_json([im]))[0]["RepoTags"] is None
    assert docker.parse_manifest_json(docker.dump_manifest_json([im]))[0].repo_tags == ()


def test_layer_sources() -> None:
    doc = [{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"],
            "LayerSources": {"sha256:" + H: {
                "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                "size": 5, "digest": "sha256:" + "b" * 64, "urls": ["https://x/y"]}}}]
    (im,) = docker.parse_manifest_json(json.dumps(doc).encode())
    assert im.layer_sources["sha256:" + H].urls == ("https://x/y",)
    assert json.loads(docker.dump_manifest_json([im])) == doc


def test_repositories_for() -> None:
    refs = [reference.parse("busybox:1"), reference.parse("localhost:5000/a/b:x"),
            reference.parse("busybox")]
    repos = docker.repositories_for([(refs, H)])
    assert repos == {"busybox": {"1": H, "latest": H}, "localhost:5000/a/b": {"x": H}}
    assert docker.parse_repositories(docker.dump_repositories(repos)) == repos


def test_legacy_ids_are_deterministic_and_chained() -> None:
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    ids = docker.legacy_layer_ids([a, b])
    assert ids == docker.legacy_layer_ids([a, b])
    assert ids[0] == docker.legacy_layer_ids([a])[0]
    assert ids[1] != docker.legacy_layer_ids([b])[0]  # depends on the parent
    assert docker.legacy_paths(ids[1]) == (f"{ids[1]}/layer.tar", f"{ids[1]}/json",
                                           f"{ids[1]}/VERSION")
    assert docker.legacy_config_path("sha256:" + H) == f"{H}.json"


def test_index_names() -> None:
    ref = reference.parse("busybox")
    ann = docker.index_annotations(ref)
    assert ann == {ANNOTATION_IMAGE_NAME: "docker.io/library/busybox:latest",
                   ANNOTATION_REF_NAME: "latest"}
    assert docker.name_from_annotations(ann) == ref
    assert docker.name_from_annotations({ANNOTATION_REF_NAME: "latest"}) is None
    assert str(docker.name_from_annotations({ANNOTATION_REF_NAME: "localhost/x:1"})) == \
        "localhost/x:1"
    assert docker.name_from_annotations({}) is None
    with pytest.raises(ImageFormatError, match="annotation"):
        docker.name_from_annotations({ANNOTATION_IMAGE_NAME: "Bad Name"})


# -- hostile input ---------------------------------------------------------------------------

HOSTILE_PATHS = ["/etc/passwd", "../x.json", "a/../../x", "a/b/../../../etc", "..", "", ".",
                 "./", "a\0b", "a\\..\\b", 5, None]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=[repr(p) for p in HOSTILE_PATHS])
def test_hostile_paths_refused(path: object) -> None:
    with pytest.raises(ImageFormatError, match="manifest.json"):
        docker.parse_manifest_json(json.dumps([{"Config": path, "Layers": []}]).encode())
    with pytest.raises(ImageFormatError, match=r"manifest.json\[0\].Layers\[1\]"):
        docker.parse_manifest_json(
            json.dumps([{"Config": "c.json", "Layers": ["ok/layer.tar", path]}]).encode())


def test_archive_path_normalises() -> None:
    assert docker.archive_path("./a//b/./c", "f") == "a/b/c"
    assert docker.archive_path("a..b/c..", "f") == "a..b/c.."


@pytest.mark.parametrize("member, target", [
    ("a/layer.tar", "/etc/passwd"), ("a/layer.tar", "../../etc/passwd"),
    ("layer.tar", "../x"), ("a/layer.tar", ".."), ("a/layer.tar", ""),
    ("../a", "b"),
])
def test_hostile_links_refused(member: str, target: str) -> None:
    with pytest.raises(ImageFormatError):
        docker.resolve_link(member, target)


def test_links_inside_resolve() -> None:
    assert docker.resolve_link("a/layer.tar", "../b/layer.tar") == "b/layer.tar"
    assert docker.resolve_link("a/b/c", "../../d") == "d"
    assert docker.resolve_link("a/x", "./y") == "a/y"


@pytest.mark.parametrize("doc, field", [
    ({}, "must be an array"),
    ([1], r"manifest.json\[0\]: must be an object"),
    ([{"Layers": []}], r"manifest.json\[0\].Config"),
    ([{"Config": "c", "Layers": "l"}], r"manifest.json\[0\].Layers"),
    ([{"Config": "c", "Layers": [], "RepoTags": "a:b"}], r"manifest.json\[0\].RepoTags"),
    ([{"Config": "c", "Layers": [], "RepoTags": ["Bad:1"]}], r"RepoTags\[0\].*lowercase"),
    ([{"Config": "c", "Layers": [], "RepoTags": ["busybox"]}], r"RepoTags\[0\].*name:tag"),
    ([{"Config": "c", "Layers": [], "RepoTags": [f"b@sha256:{H}"]}], r"RepoTags\[0\]"),
    ([{"Config": "c", "Layers": [], "LayerSources": []}], "LayerSources"),
    ([{"Config": "c", "Layers": [], "LayerSources": {"x": {}}}], "LayerSources"),
])
def test_bad_manifest_json(doc: object, field: str) -> None:
    with pytest.raises(ImageFormatError, match=field):
        docker.parse_manifest_json(json.dumps(doc).encode())


@pytest.mark.parametrize("doc, field", [
    ([], "must be an object"),
    ({"Bad": {"1": H}}, "lowercase"),
    ({"a": []}, "tag -> id"),
    ({"a": {"-x": H}}, "invalid tag"),
    ({"a": {"1": "xyz"}}, "not an id"),
])
def test_bad_repositories(doc: object, field: str) -> None:
    with pytest.raises(ImageFormatError, match=field):
        docker.parse_repositories(json.dumps(doc).encode())


def test_not_json() -> None:
    with pytest.raises(ImageFormatError, match="manifest.json: not valid JSON"):
        docker.parse_manifest_json(b"\x00\x01garbage")
