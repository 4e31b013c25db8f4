"""OCI/docker image documents: the fixtures' configs, manifests and indexes (written by real docker
20.10, podman 4.3 and skopeo 1.9) parse to what their .expected.json sidecars say; ids are the
sha256 of the config bytes as stored; unknown fields round-trip; bad documents name the field."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from berth.errors import ImageFormatError
from berth.oci import image_spec as spec
from helpers.schemas import validator
from berth.oci.docker import name_from_annotations, parse_manifest_json

FIXTURES = Path("/work/shared/fixtures")
DOCKER_ARCHIVES = ["docker20-busybox", "docker20-layers", "docker20-multi", "podman-docker-layers"]
OCI_ARCHIVES = ["podman-oci-layers", "skopeo-oci-layers"]

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="fixtures not present")

H = "sha256:" + "a" * 64


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    assert f is not None, name
    return f.read()


def _expected(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.expected.json").read_text())


def _check_config(cfg: spec.ImageConfig, exp: dict[str, Any]) -> None:
    """The parsed config against a sidecar image entry."""
    assert list(cfg.diff_ids) == exp["diff_ids"]
    assert (cfg.architecture, cfg.os) == (exp["architecture"], exp["os"])
    assert [{"created_by": h.created_by, "empty_layer": h.empty_layer} for h in cfg.history] \
        == exp["history"]
    assert len(cfg.layer_history) == len(cfg.diff_ids)
    raw_config = cfg.doc.get("config") or {}
    for key, value in exp["config"].items():
        assert raw_config.get(key) == value, key
    c, e = cfg.config, exp["config"]
    assert c.env == tuple(e["Env"] or ())
    assert c.cmd == (None if e["Cmd"] is None else tuple(e["Cmd"]))
    assert c.entrypoint == (None if e["Entrypoint"] is None else tuple(e["Entrypoint"]))
    assert (c.working_dir, c.user) == (e["WorkingDir"], e["User"])
    assert c.exposed_ports == tuple(e["ExposedPorts"] or ())
    assert c.volumes == tuple(e["Volumes"] or ())
    assert c.labels == (e["Labels"] or {})
    assert c.on_build == (None if e["OnBuild"] is None else tuple(e["OnBuild"]))
    hc = e["Healthcheck"]
    if hc is None:
        assert c.healthcheck is None
    else:
        assert c.healthcheck == spec.Healthcheck(
            tuple(hc["Test"]), hc.get("Interval", 0), hc.get("Timeout", 0),
            hc.get("StartPeriod", 0), hc.get("StartInterval", 0), hc.get("Retries", 0))


@needs_fixtures
@pytest.mark.parametrize("name", DOCKER_ARCHIVES)
def test_docker_archive_configs(name: str) -> None:
    exp = _expected(name)
    with tarfile.open(FIXTURES / f"{name}.tar") as tar:
        entries = parse_manifest_json(_member(tar, "manifest.json"))
        assert len(entries) == len(exp["images"])
        for entry, want in zip(entries, exp["images"]):
            assert entry.config == want["config_file_in_archive"]
            assert list(entry.layers) == want["layer_files_in_archive"]
            assert list(entry.repo_tags) == want["archive_repo_tags"]
            cfg = spec.ImageConfig.from_bytes(_member(tar, entry.config))
            # the image id is the digest of the config bytes as stored; podman prints bare hex
            assert cfg.id == want["config_digest"]
            assert cfg.id.removeprefix("sha256:") == want["image_id"].removeprefix("sha256:")
            assert hashlib.sha256(cfg.raw).hexdigest() == entry.config.split(".")[0]
            _check_config(cfg, want)


@needs_fixtures
@pytest.mark.parametrize("name", OCI_ARCHIVES)
def test_oci_archive_documents(name: str) -> None:
    want = _expected(name)["images"][0]
    with tarfile.open(FIXTURES / f"{name}.tar") as tar:
        assert spec.parse_oci_layout(_member(tar, "oci-layout")) == "1.0.0"
        raw_index = _member(tar, "index.json")
        index = spec.Index.from_bytes(raw_index)
        assert index.doc == want["index_json"]
        (desc,) = index.manifests
        assert desc.annotations[spec.ANNOTATION_REF_NAME] == want["ref_name_annotation"]
        assert desc.digest == want["manifest_digest"]
        assert desc.media_type == want["manifest_media_type"] == spec.OCI_MANIFEST
        manifest = spec.Manifest.from_bytes(_member(tar, "blobs/sha256/" + desc.digest[7:]))
        assert manifest.digest == desc.digest and len(manifest.raw) == desc.size
        assert manifest.doc == want["manifest"]
        assert not manifest.is_docker
        assert manifest.config.digest == want["config_digest"]
        assert manifest.config.media_type == want["config_media_type"]
        cfg = spec.ImageConfig.from_bytes(_member(tar, "blobs/sha256/" + manifest.config.digest[7:]))
        assert cfg.id == want["image_id"] == manifest.config.digest
        assert len(cfg.raw) == manifest.config.size
        _check_config(cfg, want)
        # layers are gzip blobs whose uncompressed digests are the config's diff_ids
        for layer, diff_id in zip(manifest.layers, cfg.diff_ids, strict=True):
            assert spec.layer_compression(layer.media_type) == "gzip"
            blob = _member(tar, "blobs/sha256/" + layer.digest[7:])
            assert spec.sha256_digest(blob) == layer.digest and len(blob) == layer.size
            assert spec.sha256_digest(gzip.decompress(blob)) == diff_id
    # podman's ref.name is a full name; skopeo's has no domain and normalises as docker does
    ref = name_from_annotations(dict(desc.annotations))
    assert ref is not None
    assert str(ref) == {"podman-oci-layers": "localhost/fixture/layers:1",
                        "skopeo-oci-layers": "docker.io/fixture/layers:1"}[name]


@needs_fixtures
def test_docker_and_oci_conversions_share_diff_ids() -> None:
    docker = _expected("docker20-layers")["images"][0]
    skopeo = _expected("skopeo-oci-layers")["images"][0]
    assert docker["diff_ids"] == skopeo["diff_ids"]
    assert docker["config"]["Healthcheck"] is not None
    assert skopeo["config"]["Healthcheck"] is None  # OCI config has no healthcheck


# -- unknown fields, canonical form ----------------------------------------------------------

CONFIG = {
    "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
    "docker_version": "20.10.24", "container_config": {"Hostname": "x"},
    "x-unknown": {"nested": [1, 2, {"z": None}]},
    "config": {"Env": ["A=1"], "Cmd": ["sh"], "Hostname": "", "Tty": False,
               "Healthcheck": {"Test": ["NONE"]}, "StopSignal": "SIGTERM", "Shell": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": [H]},
    "history": [{"created_by": "x", "author": "me", "comment": "c"},
                {"created_by": "y", "empty_layer": True}],
}


def test_config_keeps_raw_bytes_and_unknown_fields() -> None:
    raw = json.dumps(CONFIG, indent=3).encode()  # not canonical: the id must still be of these bytes
    cfg = spec.ImageConfig.from_bytes(raw)
    assert cfg.id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert cfg.raw == raw
    assert cfg.config.stop_signal == "SIGTERM" and cfg.config.shell == ("/bin/sh",)
    assert cfg.config.healthcheck == spec.Healthcheck(("NONE",))
    assert cfg.history[0] == spec.History("", "x", "me", "c", False)
    derived = cfg.derive(author="someone")
    assert derived.author == "someone"
    for key in ("docker_version", "container_config", "x-unknown"):
        assert derived.doc[key] == CONFIG[key]
    assert derived.doc["config"]["Hostname"] == "" and derived.doc["config"]["Tty"] is False
    assert derived.raw == spec.canonical_json(derived.doc)
    assert derived.id != cfg.id


def test_add_layer() -> None:
    cfg = spec.ImageConfig.from_doc(CONFIG)
    new = cfg.add_layer("sha256:" + "b" * 64, spec.History(created_by="RUN true"))
    assert new.diff_ids == (H, "sha256:" + "b" * 64)
    assert new.history[-1].created_by == "RUN true"
    assert new.doc["x-unknown"] == CONFIG["x-unknown"]
    assert len(new.layer_history) == 2


def test_canonical_json_is_stable() -> None:
    a = spec.canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]})
    assert a == b'{"a":[1,{"c":3,"d":2}],"b":1}'
    assert spec.ImageConfig.from_doc(CONFIG).raw == spec.ImageConfig.from_doc(dict(CONFIG)).raw


def test_manifest_and_index_build_roundtrip() -> None:
    cfg = spec.ImageConfig.from_doc(CONFIG)
    config_desc = spec.Descriptor(spec.OCI_CONFIG, cfg.id, len(cfg.raw))
    layer = spec.Descriptor(spec.OCI_LAYER_GZIP, "sha256:" + "c" * 64, 10,
                            annotations={"k": "v"}, extra={"x-vendor": 1})
    m = spec.Manifest.build(config_desc, [layer])
    again = spec.Manifest.from_bytes(m.raw)
    assert again.layers == (layer,) and again.config == config_desc
    assert again.doc["layers"][0]["x-vendor"] == 1
    mdesc = spec.Descriptor(spec.OCI_MANIFEST, m.digest, len(m.raw),
                            platform=spec.Platform("arm64", "linux", "v8"))
    ix = spec.Index.build([mdesc], annotations={"a": "b"})
    assert spec.Index.from_bytes(ix.raw).manifests == (mdesc,)
    assert ix.doc["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux",
                                                  "variant": "v8"}


def test_docker_v2s2_manifest_and_list() -> None:
    doc = {"schemaVersion": 2, "mediaType": spec.DOCKER_MANIFEST,
           "config": {"mediaType": spec.DOCKER_CONFIG, "size": 7, "digest": H},
           "layers": [{"mediaType": spec.DOCKER_LAYER_GZIP, "size": 1, "digest": H},
                      {"mediaType": spec.DOCKER_LAYER_FOREIGN, "size": 1, "digest": H,
                       "urls": ["https://example.com/l"]}]}
    m = spec.Manifest.from_bytes(json.dumps(doc).encode())
    assert m.is_docker and m.layers[1].urls == ("https://example.com/l",)
    assert [spec.layer_compression(x.media_type) for x in m.layers] == ["gzip", "gzip"]
    lst = {"schemaVersion": 2, "mediaType": spec.DOCKER_MANIFEST_LIST,
           "manifests": [{"mediaType": spec.DOCKER_MANIFEST, "size": 1, "digest": H,
                          "platform": {"architecture": "amd64", "os": "linux"}}]}
    assert spec.Index.from_bytes(json.dumps(lst).encode()).manifests[0].platform.os == "linux"


def test_layer_compression() -> None:
    assert spec.layer_compression(spec.OCI_LAYER) == "none"
    assert spec.layer_compression(spec.DOCKER_LAYER) == "none"
    assert spec.layer_compression(spec.OCI_LAYER_ZSTD) == "zstd"
    assert spec.layer_compression(spec.DOCKER_LAYER_GZIP) == "gzip"
    with pytest.raises(ImageFormatError, match="unsupported layer media type"):
        spec.layer_compression("application/vnd.example.thing")


# -- bad documents name the field ------------------------------------------------------------

def _manifest(**changes: Any) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": spec.OCI_MANIFEST,
                           "config": {"mediaType": spec.OCI_CONFIG, "size": 7, "digest": H},
                           "layers": [{"mediaType": spec.OCI_LAYER, "size": 1, "digest": H}]}
    doc.update(changes)
    return json.dumps(doc).encode()


LAYER = {"mediaType": spec.OCI_LAYER, "size": 1, "digest": H}

BAD_MANIFESTS = [
    (b"{", "not valid JSON"),
    (b"[]", "manifest: must be an object"),
    (_manifest(schemaVersion=1), "manifest.schemaVersion"),
    (_manifest(schemaVersion=True), "manifest.schemaVersion"),
    (_manifest(mediaType=spec.OCI_INDEX), "manifest.mediaType"),
    (_manifest(config=None), "manifest.config"),
    (_manifest(layers={}), "manifest.layers"),
    (_manifest(layers=[{**LAYER, "digest": "sha256:abc"}]), "manifest.layers[0].digest"),
    (_manifest(layers=[{**LAYER, "digest": "sha256:" + "A" * 64}]), "manifest.layers[0].digest"),
    (_manifest(layers=[{**LAYER, "digest": "md5:" + "a" * 32}]), "manifest.layers[0].digest"),
    (_manifest(layers=[{**LAYER, "size": -1}]), "manifest.layers[0].size"),
    (_manifest(layers=[{**LAYER, "size": "1"}]), "manifest.layers[0].size"),
    (_manifest(layers=[{k: v for k, v in LAYER.items() if k != "size"}]),
     "manifest.layers[0].size"),
    (_manifest(layers=[{**LAYER, "mediaType": "not a type"}]), "manifest.layers[0].mediaType"),
    (_manifest(layers=[{k: v for k, v in LAYER.items() if k != "mediaType"}]),
     "manifest.layers[0].mediaType"),
    (_manifest(layers=[{**LAYER, "annotations": {"a": 1}}]), "manifest.layers[0].annotations"),
    (_manifest(layers=[{**LAYER, "urls": "x"}]), "manifest.layers[0].urls"),
    (_manifest(layers=[{**LAYER, "platform": {"os": "linux"}}]),
     "manifest.layers[0].platform.architecture"),
    (_manifest(annotations=[]), "manifest.annotations"),
]


@pytest.mark.parametrize("raw, field", BAD_MANIFESTS, ids=[f for _, f in BAD_MANIFESTS])
def test_bad_manifest(raw: bytes, field: str) -> None:
    with pytest.raises(ImageFormatError, match=field.replace("[", r"\[").replace("]", r"\]")):
        spec.Manifest.from_bytes(raw)


def test_bad_index() -> None:
    with pytest.raises(ImageFormatError, match="index.manifests"):
        spec.Index.from_bytes(b'{"schemaVersion":2}')
    with pytest.raises(ImageFormatError, match="index.mediaType"):
        spec.Index.from_bytes(json.dumps({"schemaVersion": 2, "mediaType": spec.OCI_MANIFEST,
                                          "manifests": []}).encode())
    with pytest.raises(ImageFormatError, match="oci-layout.imageLayoutVersion"):
        spec.parse_oci_layout(b'{"imageLayoutVersion":"2.0.0"}')


def _config(**changes: Any) -> bytes:
    doc = json.loads(json.dumps(CONFIG))
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for p in parents:
            target = target[p]
        target[last] = value
    return json.dumps(doc).encode()


BAD_CONFIGS = [
    (_config(architecture=""), "architecture"),
    (_config(os=3), "os"),
    (_config(rootfs=None), "rootfs"),
    (_config(rootfs__type="layer"), "rootfs.type"),
    (_config(rootfs__diff_ids="x"), "rootfs.diff_ids"),
    (_config(rootfs__diff_ids=["sha256:1"]), r"rootfs.diff_ids\[0\]"),
    (_config(history={}), "history"),
    (_config(history=[{"empty_layer": "yes"}]), r"history\[0\].empty_layer"),
    (_config(history=[{"created_by": 1}]), r"history\[0\].created_by"),
    (_config(config__Env="A=1"), "config.Env"),
    (_config(config__Env=[1]), r"config.Env\[0\]"),
    (_config(config__Cmd="sh"), "config.Cmd"),
    (_config(config__ExposedPorts=["80/tcp"]), "config.ExposedPorts"),
    (_config(config__Volumes={"/v": 1}), "config.Volumes"),
    (_config(config__Labels={"a": 1}), "config.Labels"),
    (_config(config__Healthcheck={"Test": ["CMD"], "Retries": -1}), "config.Healthcheck.Retries"),
    (_config(config__Healthcheck={"Test": "CMD"}), "config.Healthcheck.Test"),
    (_config(config__ArgsEscaped="true"), "config.ArgsEscaped"),
    (_config(config__OnBuild={}), "config.OnBuild"),
]


@pytest.mark.parametrize("raw, field", BAD_CONFIGS, ids=[f for _, f in BAD_CONFIGS])
def test_bad_config(raw: bytes, field: str) -> None:
    with pytest.raises(ImageFormatError, match=f"image config.{field}"):
        spec.ImageConfig.from_bytes(raw)


def test_config_nulls_as_docker_writes_them() -> None:
    cfg = spec.ImageConfig.from_bytes(_config(
        config={"Env": None, "Cmd": None, "Entrypoint": None, "Volumes": None,
                "ExposedPorts": None, "Labels": None, "OnBuild": None, "Healthcheck": None},
        history=None, author=None))
    c = cfg.config
    assert (c.env, c.cmd, c.entrypoint, c.volumes, c.exposed_ports, c.labels) == \
        ((), None, None, (), (), {})
    assert cfg.history == () and cfg.author == ""
    assert spec.ImageConfig.from_bytes(_config(config=None)).config == spec.ContainerConfig()


# -- what berth writes validates against the image-spec's schemas (/work/shared/spec) ---------

_validator = validator


def test_written_documents_validate_against_schemas() -> None:
    cfg = spec.ImageConfig.from_doc({k: v for k, v in CONFIG.items()
                                     if k not in ("x-unknown",)} | {"config": {
                                         "Env": ["A=1"], "Cmd": ["sh"], "StopSignal": "SIGTERM",
                                         "ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "b"}}})
    _validator("config-schema.json").validate(json.loads(cfg.raw))
    config_desc = spec.Descriptor(spec.OCI_CONFIG, cfg.id, len(cfg.raw))
    layer = spec.Descriptor(spec.OCI_LAYER_GZIP, "sha256:" + "c" * 64, 10, annotations={"k": "v"})
    m = spec.Manifest.build(config_desc, [layer])
    _validator("image-manifest-schema.json").validate(json.loads(m.raw))
    mdesc = spec.Descriptor(spec.OCI_MANIFEST, m.digest, len(m.raw),
                            annotations={spec.ANNOTATION_REF_NAME: "latest"},
                            platform=spec.Platform("amd64", "linux"))
    ix = spec.Index.build([mdesc])
    _validator("image-index-schema.json").validate(json.loads(ix.raw))
    _validator("content-descriptor.json").validate(mdesc.to_doc())
    _validator("image-layout-schema.json").validate(json.loads(spec.oci_layout_bytes()))


@needs_fixtures
@pytest.mark.parametrize("name", OCI_ARCHIVES)
def test_fixture_oci_documents_validate(name: str) -> None:
    """The schemas accept what podman and skopeo wrote (so the validator setup is sound)."""
    want = _expected(name)["images"][0]
    _validator("image-index-schema.json").validate(want["index_json"])
    _validator("image-manifest-schema.json").validate(want["manifest"])


def test_schema_validator_refuses_a_bad_manifest() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    bad = json.loads(_manifest())
    bad["config"]["digest"] = "not a digest"
    with pytest.raises(jsonschema.ValidationError):
        _validator("image-manifest-schema.json").validate(bad)
