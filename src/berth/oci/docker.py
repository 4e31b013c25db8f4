"""docker's image archive (`docker save` / `docker load`) documents, as pure data.

Two layouts share the root `manifest.json` (`[{Config, RepoTags, Layers, LayerSources?}]`, paths
relative to the archive root) and `repositories` (`{repo: {tag: id}}`):

- docker ≤ 24 ("legacy"): `<config hex>.json`, and per layer `<v1 id>/layer.tar`, `<v1 id>/json`,
  `<v1 id>/VERSION` ("1.0"). A layer stored once for several images may be a symlink
  (`<id>/layer.tar -> ../<other id>/layer.tar`); podman's docker-archive links every
  `<id>/layer.tar` to `<diff hex>.tar` at the root.
- docker ≥ 25: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) with
  `manifest.json` naming the same blobs; index.json annotates each manifest with the full name
  (`io.containerd.image.name`) and the tag alone (`org.opencontainers.image.ref.name`).

Every path read from an archive is hostile: `archive_path` and `resolve_link` refuse absolute
paths and `..` that leave the archive. No tar I/O here: the image archive module reads members
and hands their bytes to these functions.

Raises: ImageFormatError, naming the document and field.
"""

from __future__ import annotations

import hashlib
import re
from collections import namedtuple

from berth.errors import ImageFormatError, InvalidArgument
from berth.oci import fastjson, reference
from berth.oci.image_spec import (
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, check_digest, load_json,
    parse_descriptor)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MANIFEST_JSON = "manifest.json"
REPOSITORIES = "repositories"
INDEX_JSON = "index.json"
OCI_LAYOUT = "oci-layout"
LEGACY_VERSION = b"1.0"
# docker's legacy layer json has this epoch date for layers it did not build itself
_EPOCH = "1970-01-01T00:00:00Z"
_HEX64 = re.compile(r"[a-f0-9]{64}")

# archive layouts, as detect_format names them
FORMAT_DOCKER_LEGACY = "docker-legacy"  # docker ≤ 24, podman, skopeo docker-archive
FORMAT_DOCKER_OCI = "docker-oci"        # docker ≥ 25: manifest.json plus an OCI layout
FORMAT_OCI = "oci"                      # oci-archive (podman, skopeo, buildkit)


# -- paths -----------------------------------------------------------------------------------

def archive_path(v: Any, f: str) -> str:
    """A path named in an archive document, normalised (`./a//b` -> `a/b`).

    Refused: non-strings, empty paths, absolute paths, NUL or backslash, any `..` component.
    """
    if not isinstance(v, str):
        raise ImageFormatError(f"{f}: must be a path string, not {type(v).__name__}")
    if v.startswith("/"):
        raise ImageFormatError(f"{f}: absolute path {v!r} in archive")
    if "\0" in v or "\\" in v:
        raise ImageFormatError(f"{f}: invalid character in path {v!r}")
    parts = [p for p in v.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageFormatError(f"{f}: path {v!r} leaves the archive")
    if not parts:
        raise ImageFormatError(f"{f}: empty path {v!r}")
    return "/".join(parts)


def resolve_link(member: str, linkname: str, f: str = "") -> str:
    """Where a symlink member of the archive points, as an archive path.

    `resolve_link("a/layer.tar", "../b/layer.tar") == "b/layer.tar"`. An absolute target or one
    that climbs above the archive root is refused. The caller follows at most a few links.
    """
    what = f or member
    member = archive_path(member, what)
    if not isinstance(linkname, str) or not linkname or linkname.startswith("/") or \
            "\0" in linkname:
        raise ImageFormatError(f"{what}: symlink target {linkname!r} is not inside the archive")
    parts = member.split("/")[:-1]
    for p in linkname.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise ImageFormatError(f"{what}: symlink target {linkname!r} leaves the archive")
            parts.pop()
        else:
            parts.append(p)
    if not parts:
        raise ImageFormatError(f"{what}: symlink target {linkname!r} is the archive root")
    return "/".join(parts)


def blob_path(digest: str) -> str:
    """`sha256:ab..` -> `blobs/sha256/ab..` (the OCI layout's content path)."""
    algo, _, enc = check_digest(digest, "digest").partition(":")
    return f"blobs/{algo}/{enc}"


def blob_digest(path: str) -> str:
    """The digest an archive path names if it is `blobs/<alg>/<hex>`, else ""."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            return check_digest(f"{parts[1]}:{parts[2]}", path)
        except ImageFormatError:
            return ""
    return ""


def detect_format(names: set[str] | frozenset[str]) -> str:
    """Which layout an archive is, from its (normalised) member names."""
    if MANIFEST_JSON in names:
        return FORMAT_DOCKER_OCI if INDEX_JSON in names else FORMAT_DOCKER_LEGACY
    if INDEX_JSON in names and OCI_LAYOUT in names:
        return FORMAT_OCI
    raise ImageFormatError("archive has neither manifest.json nor index.json and oci-layout: "
                           "not a docker or OCI image archive")


# -- manifest.json ---------------------------------------------------------------------------

class ArchiveImage(namedtuple("ArchiveImage", "config repo_tags layers layer_sources extra",
                              defaults=({}, {}))):
    """One entry of manifest.json: archive paths of the config and layers (base first)."""

    __slots__ = ()
    config: str
    repo_tags: tuple[str, ...]  # as written (`busybox:anchor`, `localhost/x:1`)
    layers: tuple[str, ...]
    layer_sources: dict[str, Descriptor]  # foreign layers: diff_id -> descriptor
    extra: dict[str, Any]  # fields docker does not define (kept, written back)

    def references(self) -> tuple[reference.Reference, ...]:
        """RepoTags normalised as docker does (`busybox:anchor` -> docker.io/library/...)."""
        return tuple(_repo_tag(t, f"RepoTags[{i}]") for i, t in enumerate(self.repo_tags))

    def to_doc(self) -> dict[str, Any]:
        d: dict[str, Any] = {"Config": self.config,
                             "RepoTags": list(self.repo_tags) if self.repo_tags else None,
                             "Layers": list(self.layers)}
        if self.layer_sources:
            d["LayerSources"] = {k: v.to_doc() for k, v in self.layer_sources.items()}
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d


def _repo_tag(v: Any, f: str) -> reference.Reference:
    if not isinstance(v, str):
        raise ImageFormatError(f"{f}: must be a string, not {type(v).__name__}")
    try:
        ref = reference.parse(v, default_tag=False)
    except InvalidArgument as e:
        raise ImageFormatError(f"{f}: {e}") from None
    if not ref.tag or ref.digest:
        raise ImageFormatError(f"{f}: {v!r} is not a name:tag reference")
    return ref


def parse_manifest_json(raw: bytes) -> tuple[ArchiveImage, ...]:
    """manifest.json of a docker archive: every path checked, every RepoTag a name:tag."""
    doc = load_json(raw, MANIFEST_JSON)
    if not isinstance(doc, list):
        raise ImageFormatError(f"{MANIFEST_JSON}: must be an array, not {type(doc).__name__}")
    out = []
    for i, e in enumerate(doc):
        f = f"{MANIFEST_JSON}[{i}]"
        if not isinstance(e, dict):
            raise ImageFormatError(f"{f}: must be an object, not {type(e).__name__}")
        if "Config" not in e:
            raise ImageFormatError(f"{f}.Config: is required")
        tags = e.get("RepoTags")
        if tags is None:
            tags = []
        if not isinstance(tags, list):
            raise ImageFormatError(f"{f}.RepoTags: must be an array of strings")
        for j, t in enumerate(tags):
            _repo_tag(t, f"{f}.RepoTags[{j}]")
        layers = e.get("Layers")
        if not isinstance(layers, list):
            raise ImageFormatError(f"{f}.Layers: must be an array of paths")
        sources_v = e.get("LayerSources")
        if sources_v is None:
            sources_v = {}
        if not isinstance(sources_v, dict):
            raise ImageFormatError(f"{f}.LayerSources: must be an object")
        sources = {check_digest(k, f"{f}.LayerSources"): parse_descriptor(v, f"{f}.LayerSources[{k}]")
                   for k, v in sources_v.items()}
        out.append(ArchiveImage(
            archive_path(e["Config"], f"{f}.Config"), tuple(tags),
            tuple(archive_path(p, f"{f}.Layers[{j}]") for j, p in enumerate(layers)),
            sources, {k: v for k, v in e.items()
                      if k not in ("Config", "RepoTags", "Layers", "LayerSources")}))
    return tuple(out)


def dump_manifest_json(images: list[ArchiveImage] | tuple[ArchiveImage, ...]) -> bytes:
    """manifest.json as docker writes it: compact, docker's key order, RepoTags null if none,
    and a final newline (docker 20's bytes exactly; podman omits the newline)."""
    return fastjson.dumps([im.to_doc() for im in images]).encode() + b"\n"


# -- repositories ----------------------------------------------------------------------------

def parse_repositories(raw: bytes) -> dict[str, dict[str, str]]:
    """`repositories`: {familiar repo: {tag: top layer id (64 hex)}}. Only checked: loaders
    take names from manifest.json, as docker does when both exist."""
    doc = load_json(raw, REPOSITORIES)
    if not isinstance(doc, dict):
        raise ImageFormatError(f"{REPOSITORIES}: must be an object")
    for repo, tags in doc.items():
        f = f"{REPOSITORIES}[{repo!r}]"
        try:
            reference.parse_repository(repo)
        except InvalidArgument as e:
            raise ImageFormatError(f"{f}: {e}") from None
        if not isinstance(tags, dict):
            raise ImageFormatError(f"{f}: must be an object of tag -> id")
        for tag, ident in tags.items():
            try:
                reference.validate_tag(tag)
            except InvalidArgument as e:
                raise ImageFormatError(f"{f}: {e}") from None
            if not isinstance(ident, str) or not _HEX64.fullmatch(ident.removeprefix("sha256:")):
                raise ImageFormatError(f"{f}[{tag!r}]: not an id: {ident!r}")
    return doc


def dump_repositories(repos: dict[str, dict[str, str]]) -> bytes:
    """As docker writes it: keys sorted (a Go map), compact, a final newline."""
    return fastjson.dumps(repos, sort_keys=True).encode() + b"\n"


def repositories_for(images: list[tuple[list[reference.Reference], str]]) -> dict[str, dict[str, str]]:
    """Build `repositories` from (references, top layer id) pairs, in docker's familiar names."""
    out: dict[str, dict[str, str]] = {}
    for refs, top in images:
        for r in refs:
            if r.tag:
                out.setdefault(r.familiar_repository, {})[r.tag] = top
    return out


# -- the legacy (docker ≤ 24) per-layer directories ------------------------------------------

def legacy_layer_ids(diff_ids: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Deterministic v1 layer ids (64 hex) for a chain of layers: each depends on the layer and
    all below it, so the same image always gets the same directory names."""
    out: list[str] = []
    parent = ""
    for i, d in enumerate(diff_ids):
        check_digest(d, f"diff_ids[{i}]")
        seed = fastjson.dumps({"layer_id": d, "parent": parent}, sort_keys=True)
        parent = hashlib.sha256(seed.encode()).hexdigest()
        out.append(parent)
    return tuple(out)


def legacy_layer_json(layer_id: str, parent: str = "", *, os: str = "linux") -> bytes:
    """`<id>/json` as docker 20 writes it for a layer."""
    doc: dict[str, Any] = {"id": layer_id}
    if parent:
        doc["parent"] = parent
    doc["created"] = _EPOCH
    doc["container_config"] = {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
        "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}
    doc["os"] = os
    return fastjson.dumps(doc).encode()


def legacy_paths(layer_id: str) -> tuple[str, str, str]:
    """(layer.tar, json, VERSION) paths of a legacy layer directory."""
    if not _HEX64.fullmatch(layer_id):
        raise ImageFormatError(f"legacy layer id must be 64 hex characters: {layer_id!r}")
    return f"{layer_id}/layer.tar", f"{layer_id}/json", f"{layer_id}/VERSION"


def legacy_config_path(config_digest: str) -> str:
    """`<hex>.json`, where docker ≤ 24 stores an image's config."""
    return check_digest(config_digest, "config digest").partition(":")[2] + ".json"


# -- names in index.json (docker 25 and OCI archives) ----------------------------------------

def index_annotations(ref: reference.Reference) -> dict[str, str]:
    """What docker 25 writes on a manifest descriptor in index.json for a tagged image."""
    ann = {ANNOTATION_IMAGE_NAME: str(ref)}
    if ref.tag:
        ann[ANNOTATION_REF_NAME] = ref.tag
    return ann


def name_from_annotations(annotations: dict[str, str]) -> reference.Reference | None:
    """The image name a manifest descriptor in index.json carries, or None.

    `io.containerd.image.name` (docker 25, containerd) is a full reference. The OCI
    `org.opencontainers.image.ref.name` is a full reference for podman and skopeo
    (`localhost/fixture/layers:1`, `fixture/layers:1`) but only a tag for docker 25 and
    buildkit (`latest`), which cannot name an image alone.
    """
    for key in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME):
        value = annotations.get(key, "")
        if not value or (key == ANNOTATION_REF_NAME and "/" not in value and ":" not in value):
            continue
        try:
            ref = reference.parse(value)
        except InvalidArgument as e:
            raise ImageFormatError(f"index.json annotation {key}: {e}") from None
        return ref
    return None
