"""OCI image-spec documents (descriptor, manifest, index, image config, oci-layout) and docker's
v2 schema 2 equivalents, as validated, typed data.

`parse_descriptor`, `Manifest.from_bytes`, `Index.from_bytes` and `ImageConfig.from_bytes` are the
edges where an image's JSON is checked; every error names the field (`layers[2].digest`,
`config.ExposedPorts`, `history[3].empty_layer`). Documents read from elsewhere keep their exact
bytes (`raw`) and their whole parsed object (`doc`): an image id is the sha256 of the config bytes
as stored, and fields this module does not model (docker's `container_config`, `docker_version`,
podman's extras) round-trip untouched. Documents berth makes are serialised by `canonical_json`.

Raises: ImageFormatError.
"""

from __future__ import annotations

from collections import namedtuple

from berth.errors import ImageFormatError
from berth.oci import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# -- media types -----------------------------------------------------------------------------

OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

# layer media type -> compression: "none", "gzip" or "zstd"
LAYER_COMPRESSION = {
    OCI_LAYER: "none", OCI_LAYER_NONDIST: "none", DOCKER_LAYER: "none",
    OCI_LAYER_GZIP: "gzip", OCI_LAYER_NONDIST_GZIP: "gzip", DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_FOREIGN: "gzip",
    OCI_LAYER_ZSTD: "zstd", OCI_LAYER_NONDIST_ZSTD: "zstd", DOCKER_LAYER_ZSTD: "zstd",
}

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
# containerd (and docker 25's save) put the full reference here; ref.name holds only the tag
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

IMAGE_LAYOUT_VERSION = "1.0.0"

# RFC 6838 type/subtype, as the image-spec's schema checks it (by hand: `re` costs milliseconds
# at import, and the engine reads image configs on the way to every container start)
_MT_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_MT_REST = _MT_FIRST | frozenset("!#$&^_.+-")
_DIGEST_HEX = {"sha256": 64, "sha512": 128}


def layer_compression(media_type: str) -> str:
    """"none", "gzip" or "zstd" for a layer media type; ImageFormatError for anything else."""
    try:
        return LAYER_COMPRESSION[media_type]
    except KeyError:
        raise ImageFormatError(f"unsupported layer media type {media_type!r}") from None


def sha256_digest(data: bytes) -> str:
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(doc: Any) -> bytes:
    """Compact JSON with sorted keys: the same document always gives the same bytes."""
    return fastjson.dumps(doc, sort_keys=True).encode()


def load_json(data: bytes | str, what: str) -> Any:
    try:
        return fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageFormatError(f"{what}: not valid JSON: {e}") from None


# -- typed readers: each names the field it reads --------------------------------------------

def _err(f: str, problem: str) -> ImageFormatError:
    return ImageFormatError(f"{f}: {problem}")


def _obj(v: Any, f: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _err(f, f"must be an object, not {type(v).__name__}")
    return v


def _str(v: Any, f: str, *, empty: bool = True) -> str:
    if not isinstance(v, str):
        raise _err(f, f"must be a string, not {type(v).__name__}")
    if not empty and not v:
        raise _err(f, "must not be empty")
    return v


def _int(v: Any, f: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(f, f"must be an integer, not {type(v).__name__}")
    if lo is not None and v < lo:
        raise _err(f, f"must be >= {lo}, got {v}")
    return v


def _bool(v: Any, f: str) -> bool:
    if not isinstance(v, bool):
        raise _err(f, f"must be true or false, not {v!r}")
    return v


def _strs(v: Any, f: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _err(f, f"must be an array of strings, not {type(v).__name__}")
    return tuple(_str(x, f"{f}[{i}]") for i, x in enumerate(v))


def _opt_strs(v: Any, f: str) -> tuple[str, ...] | None:
    """docker writes null for an unset Cmd/Entrypoint/Shell; keep null apart from []."""
    return None if v is None else _strs(v, f)


def _str_map(v: Any, f: str) -> dict[str, str]:
    if v is None:
        return {}
    for k, x in _obj(v, f).items():
        _str(x, f"{f}[{k!r}]")
    return dict(v)


def _set(v: Any, f: str) -> tuple[str, ...]:
    """A Go map[string]struct{} (ExposedPorts, Volumes): keys, values must be objects."""
    if v is None:
        return ()
    for k, x in _obj(v, f).items():
        if x is not None:
            _obj(x, f"{f}[{k!r}]")
    return tuple(v)


def _media_type(v: Any, f: str) -> str:
    s = _str(v, f, empty=False)
    parts = s.split("/")
    if len(parts) != 2 or not all(
            0 < len(p) < 128 and p[0] in _MT_FIRST and _MT_REST.issuperset(p) for p in parts):
        raise _err(f, f"not a media type: {s!r}")
    return s


def check_digest(v: Any, f: str) -> str:
    """A digest string `algorithm:encoded`; sha256/sha512 must have the right lowercase hex."""
    s = _str(v, f, empty=False)
    algo, colon, enc = s.partition(":")
    if not colon or not algo or not enc:
        raise _err(f, f"not a digest: {s!r}")
    want = _DIGEST_HEX.get(algo)
    if want is None:
        raise _err(f, f"unsupported digest algorithm {algo!r}")
    if len(enc) != want or not all(c in "0123456789abcdef" for c in enc):
        raise _err(f, f"{algo} digest must be {want} lowercase hex characters: {s!r}")
    return s


# -- descriptor, platform --------------------------------------------------------------------

class Platform(namedtuple("Platform", "architecture os variant os_version os_features",
                          defaults=("", "", ()))):
    __slots__ = ()
    architecture: str
    os: str
    variant: str
    os_version: str
    os_features: tuple[str, ...]

    def to_doc(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        return d


def parse_platform(v: Any, f: str) -> Platform:
    o = _obj(v, f)
    return Platform(
        _str(o.get("architecture"), f"{f}.architecture", empty=False),
        _str(o.get("os"), f"{f}.os", empty=False),
        _str(o.get("variant", ""), f"{f}.variant"),
        _str(o.get("os.version", ""), f"{f}.os.version"),
        _strs(o.get("os.features", []), f"{f}.os.features"))


class Descriptor(namedtuple(
        "Descriptor", "media_type digest size annotations urls platform artifact_type data extra",
        defaults=({}, (), None, "", None, {}))):
    """An OCI content descriptor. `extra` holds fields this module does not model."""

    __slots__ = ()
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str]
    urls: tuple[str, ...]
    platform: Platform | None
    artifact_type: str
    data: str | None  # base64, as in the document
    extra: dict[str, Any]

    def to_doc(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        d["mediaType"] = self.media_type
        d["digest"] = self.digest
        d["size"] = self.size
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = self.platform.to_doc()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.data is not None:
            d["data"] = self.data
        return d


_DESCRIPTOR_KEYS = frozenset({"mediaType", "digest", "size", "annotations", "urls", "platform",
                              "artifactType", "data"})


def parse_descriptor(v: Any, f: str) -> Descriptor:
    o = _obj(v, f)
    if "mediaType" not in o:
        raise _err(f"{f}.mediaType", "is required")
    if "size" not in o:
        raise _err(f"{f}.size", "is required")
    platform = o.get("platform")
    data = o.get("data")
    return Descriptor(
        _media_type(o["mediaType"], f"{f}.mediaType"),
        check_digest(o.get("digest"), f"{f}.digest"),
        _int(o["size"], f"{f}.size", 0),
        _str_map(o.get("annotations"), f"{f}.annotations"),
        _strs(o.get("urls", []), f"{f}.urls"),
        None if platform is None else parse_platform(platform, f"{f}.platform"),
        _media_type(o["artifactType"], f"{f}.artifactType") if "artifactType" in o else "",
        None if data is None else _str(data, f"{f}.data"),
        {k: x for k, x in o.items() if k not in _DESCRIPTOR_KEYS})


# -- manifest and index ----------------------------------------------------------------------

def _schema_version(o: dict[str, Any], what: str) -> None:
    v = o.get("schemaVersion")
    if v != 2 or isinstance(v, bool):
        raise _err(f"{what}.schemaVersion", f"must be 2, got {v!r}")


class Manifest(namedtuple("Manifest", "media_type config layers annotations subject "
                                      "artifact_type doc raw")):
    """An image manifest, OCI or docker v2 schema 2 (`media_type` tells which)."""

    __slots__ = ()
    media_type: str  # as in the document; "" when absent (allowed for OCI)
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]
    subject: Descriptor | None
    artifact_type: str
    doc: dict[str, Any]
    raw: bytes

    @property
    def is_docker(self) -> bool:
        return self.media_type == DOCKER_MANIFEST

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)

    @classmethod
    def from_bytes(cls, raw: bytes, what: str = "manifest") -> Manifest:
        o = _obj(load_json(raw, what), what)
        _schema_version(o, what)
        mt = o.get("mediaType", "")
        if mt and mt not in MANIFEST_TYPES:
            raise _err(f"{what}.mediaType", f"not an image manifest: {mt!r}")
        if "config" not in o:
            raise _err(f"{what}.config", "is required")
        if not isinstance(o.get("layers"), list):
            raise _err(f"{what}.layers", "must be an array")
        subject = o.get("subject")
        return cls(
            mt, parse_descriptor(o["config"], f"{what}.config"),
            tuple(parse_descriptor(x, f"{what}.layers[{i}]") for i, x in enumerate(o["layers"])),
            _str_map(o.get("annotations"), f"{what}.annotations"),
            None if subject is None else parse_descriptor(subject, f"{what}.subject"),
            _media_type(o["artifactType"], f"{what}.artifactType") if "artifactType" in o
            else "", o, bytes(raw))

    @classmethod
    def build(cls, config: Descriptor, layers: list[Descriptor] | tuple[Descriptor, ...], *,
              media_type: str = OCI_MANIFEST,
              annotations: dict[str, str] | None = None) -> Manifest:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                               "config": config.to_doc(), "layers": [d.to_doc() for d in layers]}
        if annotations:
            doc["annotations"] = dict(annotations)
        return cls.from_bytes(canonical_json(doc))


class Index(namedtuple("Index", "media_type manifests annotations subject doc raw")):
    """An image index (OCI) or manifest list (docker)."""

    __slots__ = ()
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str]
    subject: Descriptor | None
    doc: dict[str, Any]
    raw: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)

    @classmethod
    def from_bytes(cls, raw: bytes, what: str = "index") -> Index:
        o = _obj(load_json(raw, what), what)
        _schema_version(o, what)
        mt = o.get("mediaType", "")
        if mt and mt not in INDEX_TYPES:
            raise _err(f"{what}.mediaType", f"not an image index: {mt!r}")
        if not isinstance(o.get("manifests"), list):
            raise _err(f"{what}.manifests", "must be an array")
        subject = o.get("subject")
        return cls(
            mt, tuple(parse_descriptor(x, f"{what}.manifests[{i}]")
                      for i, x in enumerate(o["manifests"])),
            _str_map(o.get("annotations"), f"{what}.annotations"),
            None if subject is None else parse_descriptor(subject, f"{what}.subject"),
            o, bytes(raw))

    @classmethod
    def build(cls, manifests: list[Descriptor] | tuple[Descriptor, ...], *,
              media_type: str = OCI_INDEX,
              annotations: dict[str, str] | None = None) -> Index:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                               "manifests": [d.to_doc() for d in manifests]}
        if annotations:
            doc["annotations"] = dict(annotations)
        return cls.from_bytes(canonical_json(doc))


def parse_oci_layout(raw: bytes) -> str:
    """The `oci-layout` file: returns imageLayoutVersion (only 1.x is understood)."""
    o = _obj(load_json(raw, "oci-layout"), "oci-layout")
    v = _str(o.get("imageLayoutVersion"), "oci-layout.imageLayoutVersion", empty=False)
    if not v.startswith("1."):
        raise _err("oci-layout.imageLayoutVersion", f"unsupported version {v!r}")
    return v


def oci_layout_bytes() -> bytes:
    return canonical_json({"imageLayoutVersion": IMAGE_LAYOUT_VERSION})


# -- image config ----------------------------------------------------------------------------

class Healthcheck(namedtuple("Healthcheck", "test interval timeout start_period start_interval "
                                            "retries", defaults=(0, 0, 0, 0, 0))):
    """docker's HealthConfig; durations in nanoseconds, 0 = inherit/default."""

    __slots__ = ()
    test: tuple[str, ...]
    interval: int
    timeout: int
    start_period: int
    start_interval: int
    retries: int


def _healthcheck(v: Any, f: str) -> Healthcheck | None:
    if v is None:
        return None
    o = _obj(v, f)
    return Healthcheck(
        _strs(o.get("Test") or [], f"{f}.Test"),
        _int(o.get("Interval", 0), f"{f}.Interval", 0),
        _int(o.get("Timeout", 0), f"{f}.Timeout", 0),
        _int(o.get("StartPeriod", 0), f"{f}.StartPeriod", 0),
        _int(o.get("StartInterval", 0), f"{f}.StartInterval", 0),
        _int(o.get("Retries", 0), f"{f}.Retries", 0))


class ContainerConfig(namedtuple(
        "ContainerConfig", "user exposed_ports env entrypoint cmd volumes working_dir labels "
        "stop_signal healthcheck on_build shell args_escaped",
        defaults=("", (), (), None, None, (), "", {}, "", None, None, None, False))):
    """The `config` object of an image config, in docker's form (a superset of OCI's)."""

    __slots__ = ()
    user: str
    exposed_ports: tuple[str, ...]  # "8080/tcp", in document order
    env: tuple[str, ...]
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    volumes: tuple[str, ...]
    working_dir: str
    labels: dict[str, str]
    stop_signal: str
    healthcheck: Healthcheck | None
    on_build: tuple[str, ...] | None
    shell: tuple[str, ...] | None
    args_escaped: bool


def _opt_str(v: Any, f: str) -> str:
    return "" if v is None else _str(v, f)


def parse_container_config(v: Any, f: str = "config") -> ContainerConfig:
    if v is None:
        return ContainerConfig()
    o = _obj(v, f)
    return ContainerConfig(
        _opt_str(o.get("User"), f"{f}.User"),
        _set(o.get("ExposedPorts"), f"{f}.ExposedPorts"),
        _opt_strs(o.get("Env"), f"{f}.Env") or (),
        _opt_strs(o.get("Entrypoint"), f"{f}.Entrypoint"),
        _opt_strs(o.get("Cmd"), f"{f}.Cmd"),
        _set(o.get("Volumes"), f"{f}.Volumes"),
        _opt_str(o.get("WorkingDir"), f"{f}.WorkingDir"),
        _str_map(o.get("Labels"), f"{f}.Labels"),
        _opt_str(o.get("StopSignal"), f"{f}.StopSignal"),
        _healthcheck(o.get("Healthcheck"), f"{f}.Healthcheck"),
        _opt_strs(o.get("OnBuild"), f"{f}.OnBuild"),
        _opt_strs(o.get("Shell"), f"{f}.Shell"),
        _bool(o.get("ArgsEscaped", False), f"{f}.ArgsEscaped"))


class History(namedtuple("History", "created created_by author comment empty_layer",
                         defaults=("", "", "", "", False))):
    __slots__ = ()
    created: str
    created_by: str
    author: str
    comment: str
    empty_layer: bool

    def to_doc(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for key, value in (("created", self.created), ("created_by", self.created_by),
                           ("author", self.author), ("comment", self.comment)):
            if value:
                d[key] = value
        if self.empty_layer:
            d["empty_layer"] = True
        return d


def _history(v: Any, f: str) -> History:
    o = _obj(v, f)
    return History(*(_opt_str(o.get(k), f"{f}.{k}")
                     for k in ("created", "created_by", "author", "comment")),
                   _bool(o.get("empty_layer", False), f"{f}.empty_layer"))


class ImageConfig(namedtuple("ImageConfig", "architecture os variant created author config "
                                            "diff_ids history doc raw")):
    """An image config (OCI or docker). The image id is `sha256(raw)`: keep `raw` as stored."""

    __slots__ = ()
    architecture: str
    os: str
    variant: str
    created: str
    author: str
    config: ContainerConfig
    diff_ids: tuple[str, ...]  # rootfs.diff_ids, base layer first
    history: tuple[History, ...]
    doc: dict[str, Any]
    raw: bytes

    @property
    def id(self) -> str:
        """docker's image id: the digest of the config bytes exactly as stored."""
        return sha256_digest(self.raw)

    digest = id

    @property
    def platform(self) -> Platform:
        return Platform(self.architecture, self.os, self.variant,
                        self.doc.get("os.version", "") or "")

    @property
    def layer_history(self) -> tuple[History, ...]:
        """The history entries that made a layer, one per diff_id when the image is sound."""
        return tuple(h for h in self.history if not h.empty_layer)

    @classmethod
    def from_bytes(cls, raw: bytes, what: str = "image config") -> ImageConfig:
        o = _obj(load_json(raw, what), what)
        rootfs = _obj(o.get("rootfs"), f"{what}.rootfs")
        if rootfs.get("type") != "layers":
            raise _err(f"{what}.rootfs.type", f"must be 'layers', got {rootfs.get('type')!r}")
        diff_ids_v = rootfs.get("diff_ids")
        if diff_ids_v is None:
            diff_ids_v = []
        if not isinstance(diff_ids_v, list):
            raise _err(f"{what}.rootfs.diff_ids", "must be an array of digests")
        hist_v = o.get("history")
        if hist_v is None:
            hist_v = []
        if not isinstance(hist_v, list):
            raise _err(f"{what}.history", "must be an array")
        history = tuple(_history(h, f"{what}.history[{i}]") for i, h in enumerate(hist_v))
        diff_ids = tuple(check_digest(d, f"{what}.rootfs.diff_ids[{i}]")
                         for i, d in enumerate(diff_ids_v))
        # history that disagrees with diff_ids is not refused: images in the wild have it, and
        # docker only loses the per-layer mapping (see `layer_history`)
        return cls(
            _str(o.get("architecture"), f"{what}.architecture", empty=False),
            _str(o.get("os"), f"{what}.os", empty=False),
            _opt_str(o.get("variant"), f"{what}.variant"),
            _opt_str(o.get("created"), f"{what}.created"),
            _opt_str(o.get("author"), f"{what}.author"),
            parse_container_config(o.get("config"), f"{what}.config"),
            diff_ids, history, o, bytes(raw))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ImageConfig:
        """A config berth makes (import, commit, build): serialised canonically, then parsed."""
        return cls.from_bytes(canonical_json(doc))

    def derive(self, **fields: Any) -> ImageConfig:
        """A new config with top-level fields replaced (`config=`, `history=`, `rootfs=`...,
        as JSON values); every other field, known or not, is kept."""
        doc = dict(self.doc)
        doc.update(fields)
        return ImageConfig.from_doc(doc)

    def add_layer(self, diff_id: str, history: History) -> ImageConfig:
        """This config with one more layer on top (for commit and build)."""
        rootfs = dict(self.doc.get("rootfs") or {"type": "layers"})
        rootfs["diff_ids"] = [*self.diff_ids, check_digest(diff_id, "diff_id")]
        hist = [*(self.doc.get("history") or []), history.to_doc()]
        return self.derive(rootfs=rootfs, history=hist)

