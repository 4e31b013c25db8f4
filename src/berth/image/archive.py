"""Image archives: `load` of docker (≤ 24 and ≥ 25) and OCI archives, `save` as docker 25 does.

    load(store, source)               every image of a tar (file path or stream) -> LoadResult
    save(store, names, out)           a docker-25 archive of the named images on a binary stream

Reading. The archive is a hostile tar. It is opened from a seekable file (a stream such as
stdin, and an archive compressed as a whole, is first spooled into the store's ingest area),
its members are indexed once by normalised name (`oci.docker.archive_path`), and links between
members are followed inside the archive only (`resolve_link`, a few hops). Every document is
parsed and checked — manifest.json or index.json, each manifest's and config's digest and size,
the layer count against rootfs.diff_ids — before the first layer is unpacked, so a malformed
archive adds nothing. Layers are then read straight from their byte range in the archive, their
blob digest verified while they stream (a layer with a wrong digest never becomes visible) and
their diff_id verified by `store.layers.unpack`. Each image is then one `ImageStore.add_image`
transaction: a crash or error leaves at most images that were complete before it.

Writing. docker 25's layout: `blobs/sha256/<hex>` for configs, uncompressed layer tars and OCI
manifests; `index.json` with one descriptor per tag (annotated with the full name and the tag);
`manifest.json` and `repositories` for older loaders; `oci-layout`. Entries are sorted, owned by
0:0 with mtime 0, and written as bare ustar headers, so saving the same images twice gives the
same bytes. Layer tars are copied from the kept layer blob with `os.sendfile` (or decompressed,
when it was loaded compressed). `save_to_file` writes next to the target and renames into place.

Raises: ImageFormatError for a bad archive, NoSuchImage for an unknown name, InvalidArgument.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import io
import lzma
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from berth.errors import ImageFormatError, InvalidArgument
from berth.oci import docker as dk
from berth.oci import reference as refs
from berth.oci.digest import Digest, Hasher
from berth.oci.image_spec import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    layer_compression,
    oci_layout_bytes,
    parse_oci_layout,
)
from berth.store import layers as layerstore

from .images import ImageStore, LayerSource, NoSuchImage, rfc3339_nano

__all__ = ["LoadResult", "load", "save", "save_to_file", "select_images"]

_MAX_DOC = 16 << 20  # manifests, indexes and configs above this are refused
_MAX_LINK_HOPS = 8
_MAX_MEMBERS = 1_000_000
_CHUNK = 1 << 20
_BLOCK = 512
_SPOOL_PREFIX = ".ingest-archive-"


# --- reading the tar -----------------------------------------------------------------------------

class _Member(NamedTuple):
    kind: str  # "file" or "link" (symlink or hardlink: `target` is an archive path)
    offset: int  # where the data starts in the archive
    size: int
    target: str = ""


class _Section:
    """A read-only stream over bytes [offset, offset+size) of a file, on its own descriptor,
    that hashes what it reads and, when `digest` is given, checks it at the end (on EOF, or
    on leaving a `with` block without an error: the rest is read first)."""

    def __init__(self, path: str, offset: int, size: int, digest: str | None, what: str) -> None:
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close/__exit__)
        self._f.seek(offset)
        self._left = size
        self._want = Digest.parse(digest) if digest else None
        self._hasher = Hasher() if digest else None
        self._what = what
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            self._check()
            return b""
        if n is None or n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        if not data:
            raise ImageFormatError(f"{self._what}: archive truncated "
                                   f"({self._left} bytes missing)")
        self._left -= len(data)
        if self._hasher is not None:
            self._hasher.update(data)
        if self._left == 0:
            self._check()
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def _check(self) -> None:
        if self._checked or self._hasher is None or self._want is None:
            return
        self._checked = True
        actual = self._hasher.digest()
        if actual != self._want:
            raise ImageFormatError(f"{self._what}: content digest {actual} does not match "
                                   f"{self._want}")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Section:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                while self.read(_CHUNK):
                    pass
        finally:
            self.close()


class _Archive:
    """The members of an image archive tar, by normalised name."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.members: dict[str, _Member] = {}
        try:
            with tarfile.open(path, mode="r:", errors="surrogateescape") as tar:
                for i, m in enumerate(tar):
                    if i >= _MAX_MEMBERS:
                        raise ImageFormatError(f"archive has more than {_MAX_MEMBERS} entries")
                    self._index(m)
        except (tarfile.TarError, EOFError, UnicodeError) as e:
            raise ImageFormatError(f"not a valid image archive (tar): {e}") from None

    def _index(self, m: tarfile.TarInfo) -> None:
        name = m.name.rstrip("/")
        if name in ("", "."):
            return
        try:
            path = dk.archive_path(name, f"archive entry {m.name!r}")
        except ImageFormatError:
            return  # never named by a document we accept, so never read
        if m.isreg():
            self.members[path] = _Member("file", m.offset_data, m.size)
        elif m.issym():
            self.members[path] = _Member("link", 0, 0, dk.resolve_link(path, m.linkname))
        elif m.islnk():
            self.members[path] = _Member("link", 0, 0,
                                         dk.archive_path(m.linkname, f"hardlink {m.name!r}"))
        else:
            self.members.pop(path, None)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.members)

    def member(self, name: str, what: str) -> _Member:
        name = dk.archive_path(name, what)
        for _ in range(_MAX_LINK_HOPS):
            m = self.members.get(name)
            if m is None:
                raise ImageFormatError(f"{what}: {name!r} is not in the archive")
            if m.kind == "file":
                return m
            name = m.target
        raise ImageFormatError(f"{what}: {name!r}: too many levels of links")

    def read(self, name: str, what: str, *, digest: str | None = None,
             size: int | None = None) -> bytes:
        m = self.member(name, what)
        if m.size > _MAX_DOC:
            raise ImageFormatError(f"{what}: {m.size} bytes is too large for a JSON document")
        self._check_size(m, size, what)
        with _Section(self.path, m.offset, m.size, digest, what) as s:
            return s.read()

    def section(self, name: str, what: str, *, digest: str | None = None,
                size: int | None = None) -> _Section:
        m = self.member(name, what)
        self._check_size(m, size, what)
        return _Section(self.path, m.offset, m.size, digest, what)

    @staticmethod
    def _check_size(m: _Member, size: int | None, what: str) -> None:
        if size is not None and m.size != size:
            raise ImageFormatError(f"{what}: size is {m.size} bytes, its descriptor says {size}")


# --- planning a load -----------------------------------------------------------------------------

class _LayerPlan(NamedTuple):
    diff_id: str
    path: str
    digest: str | None  # the blob's digest when the archive names it (blobs/sha256/..., OCI)
    size: int | None


class _ImagePlan(NamedTuple):
    config: ImageConfig
    layers: tuple[_LayerPlan, ...]
    tags: tuple[refs.Reference, ...]
    what: str


def _check_config(cfg: ImageConfig, n_layers: int, what: str) -> None:
    if len(cfg.diff_ids) != n_layers:
        raise ImageFormatError(f"{what}: the config lists {len(cfg.diff_ids)} layers "
                               f"(rootfs.diff_ids), the manifest {n_layers}")


def _plan_docker(ar: _Archive) -> list[_ImagePlan]:
    """manifest.json layouts (docker ≤ 24, podman, skopeo; docker ≥ 25)."""
    entries = dk.parse_manifest_json(ar.read(dk.MANIFEST_JSON, dk.MANIFEST_JSON))
    if dk.REPOSITORIES in ar.names:
        dk.parse_repositories(ar.read(dk.REPOSITORIES, dk.REPOSITORIES))
    plans = []
    for i, e in enumerate(entries):
        what = f"{dk.MANIFEST_JSON}[{i}]"
        digest = dk.blob_digest(e.config) or None
        raw = ar.read(e.config, f"{what}.Config", digest=digest)
        cfg = ImageConfig.from_bytes(raw, f"{what} config {e.config}")
        _check_config(cfg, len(e.layers), what)
        layers = []
        for j, (path, diff_id) in enumerate(zip(e.layers, cfg.diff_ids)):
            ar.member(path, f"{what}.Layers[{j}]")  # present (a foreign layer is not)
            layers.append(_LayerPlan(diff_id, path, dk.blob_digest(path) or None, None))
        plans.append(_ImagePlan(cfg, tuple(layers), e.references(), what))
    return plans


def _read_blob(ar: _Archive, d: Descriptor, what: str) -> bytes:
    return ar.read(dk.blob_path(d.digest), what, digest=d.digest, size=d.size)


def _host_platform() -> tuple[str, str]:
    m = os.uname().machine
    return "linux", {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _plan_oci(ar: _Archive) -> list[_ImagePlan]:
    """An OCI image layout (oci-archive of podman, skopeo, buildkit)."""
    parse_oci_layout(ar.read(dk.OCI_LAYOUT, dk.OCI_LAYOUT))
    index = Index.from_bytes(ar.read(dk.INDEX_JSON, dk.INDEX_JSON), dk.INDEX_JSON)
    plans = []
    for i, d in enumerate(index.manifests):
        what = f"{dk.INDEX_JSON}.manifests[{i}]"
        name = dk.name_from_annotations(d.annotations)
        if d.media_type in INDEX_TYPES:
            d = _pick_platform(ar, d, what)
        elif d.media_type not in MANIFEST_TYPES:
            continue  # an artifact or attestation: not an image
        manifest = Manifest.from_bytes(_read_blob(ar, d, what), f"manifest {d.digest}")
        raw = _read_blob(ar, manifest.config, f"manifest {d.digest}: config")
        cfg = ImageConfig.from_bytes(raw, f"config {manifest.config.digest}")
        _check_config(cfg, len(manifest.layers), f"manifest {d.digest}")
        layers = []
        for j, (ld, diff_id) in enumerate(zip(manifest.layers, cfg.diff_ids)):
            lw = f"manifest {d.digest}: layers[{j}]"
            layer_compression(ld.media_type)  # a known layer type, or an error naming it
            path = dk.blob_path(ld.digest)
            ar.member(path, lw)
            layers.append(_LayerPlan(diff_id, path, ld.digest, ld.size))
        plans.append(_ImagePlan(cfg, tuple(layers), (name,) if name else (), what))
    if not plans:
        raise ImageFormatError(f"{dk.INDEX_JSON}: no image manifest in the archive")
    return plans


def _pick_platform(ar: _Archive, d: Descriptor, what: str) -> Descriptor:
    index = Index.from_bytes(_read_blob(ar, d, what), f"index {d.digest}")
    os_, arch = _host_platform()
    for m in index.manifests:
        p = m.platform
        if m.media_type in MANIFEST_TYPES and (p is None or (p.os == os_ and p.architecture == arch)):
            if m.digest and dk.blob_path(m.digest) in ar.names:
                return m
    raise ImageFormatError(f"index {d.digest}: no manifest for {os_}/{arch} in the archive")


def _plan(ar: _Archive) -> list[_ImagePlan]:
    fmt = dk.detect_format(ar.names)
    return _plan_oci(ar) if fmt == dk.FORMAT_OCI else _plan_docker(ar)


# --- load ----------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    images: list[str] = field(default_factory=list)  # ids, in archive order
    lines: list[str] = field(default_factory=list)  # docker's output lines


_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _open_decompressed(head: bytes, f: BinaryIO) -> BinaryIO | None:
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(f)  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(f)  # type: ignore[return-value]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(f)  # type: ignore[no-any-return]
    return None


@contextlib.contextmanager
def _seekable_tar(store: ImageStore, source: str | os.PathLike[str] | BinaryIO) -> Iterator[str]:
    """The path of the archive as a plain tar on disk: the file itself when it is one, else a
    spool in the store's layers area (removed afterwards; left by a crash, `gc` removes it)."""
    f: BinaryIO
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open(source, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise InvalidArgument(f"open {source}: no such file or directory") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{source}: is a directory, not an image archive") from None
    else:
        f = source
    spool = None
    try:
        seekable = False
        with contextlib.suppress(OSError, ValueError, AttributeError):
            seekable = f.seekable() and os.path.isfile(f"/proc/self/fd/{f.fileno()}")
        head = f.read(6) if seekable else b""
        if seekable and not any(head.startswith(m) for m in _COMPRESSED):
            path = f"/proc/self/fd/{f.fileno()}"
            f.seek(0)
            yield os.readlink(path) if isinstance(source, (str, os.PathLike)) else path
            return
        store.layers_dir.mkdir(parents=True, exist_ok=True)
        fd, spool = tempfile.mkstemp(prefix=_SPOOL_PREFIX, dir=store.layers_dir)
        with os.fdopen(fd, "wb") as out:
            raw: BinaryIO = f
            if not seekable:
                head = f.read(6)
                raw = _Prefixed(head, f)  # type: ignore[assignment]
            else:
                f.seek(0)
            dec = _open_decompressed(head, raw)
            try:
                shutil.copyfileobj(dec or raw, out, _CHUNK)
            except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
                if isinstance(e, OSError) and e.errno is not None and not isinstance(
                        e, gzip.BadGzipFile):
                    raise
                raise ImageFormatError(f"archive: bad compressed stream: {e}") from None
        yield spool
    finally:
        if spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool)
        if isinstance(source, (str, os.PathLike)):
            f.close()


class _Prefixed(io.RawIOBase):
    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(b))
        b[:len(data)] = data
        return len(data)


def load(store: ImageStore, source: str | os.PathLike[str] | BinaryIO, *,
         unpack: bool = False) -> LoadResult:
    """Load every image of a docker or OCI archive into the store (docker's `load`). New
    layers are stored as their verified blobs and unpacked on first use (`unpack=True`:
    now)."""
    result = LoadResult()
    with store._lock(fcntl.LOCK_SH), _seekable_tar(store, source) as path:
        ar = _Archive(path)
        if not ar.members:
            raise ImageFormatError("archive is empty: no image to load")
        plans = _plan(ar)  # everything checked before anything is unpacked
        for plan in plans:
            sources = [LayerSource(lp.diff_id, _opener(ar, lp, f"{plan.what} layer {lp.path}"))
                       for lp in plan.layers]
            replaced = {}
            for ref in plan.tags:
                with contextlib.suppress(NoSuchImage):
                    old = store.resolve(str(ref))
                    if old != plan.config.id:
                        replaced[ref.familiar()] = old
            image = store.add_image(plan.config.raw, sources, tags=[str(r) for r in plan.tags],
                                    event="load", unpack=unpack)
            result.images.append(image.id)
            for name, old in replaced.items():
                result.lines.append(f"The image {name} already exists, renaming the old one "
                                    f"with ID {old} to empty string")
            if plan.tags:
                result.lines += [f"Loaded image: {r.familiar()}" for r in plan.tags]
            else:
                result.lines.append(f"Loaded image ID: {image.id}")
    return result


def _opener(ar: _Archive, lp: _LayerPlan, what: str) -> Any:
    return lambda: ar.section(lp.path, what, digest=lp.digest, size=lp.size)


# --- save ----------------------------------------------------------------------------------------

class _Selected(NamedTuple):
    image_id: str
    tags: tuple[refs.Reference, ...]


def select_images(store: ImageStore, names: Sequence[str]) -> list[_Selected]:
    """Which images and tags `save NAME...` writes, in docker's way: `repo:tag` that tag, a bare
    `repo` every tag of it, an id the image without a tag (unless also named by a tag)."""
    if not names:
        raise InvalidArgument("save: requires at least 1 argument (an image name or id)")
    order: list[str] = []
    tags: dict[str, list[refs.Reference]] = {}

    def add(image_id: str, ref: refs.Reference | None) -> None:
        if image_id not in tags:
            order.append(image_id)
            tags[image_id] = []
        if ref is not None and ref not in tags[image_id]:
            tags[image_id].append(ref)

    for name in names:
        bare = None
        with contextlib.suppress(InvalidArgument):
            bare = refs.parse(name, default_tag=False)
        if bare is not None and not bare.tag and not bare.digest and not refs.is_image_id(name):
            found = [(r, i) for r, i in store.db.read(
                "SELECT reference, image_id FROM tags WHERE substr(reference, 1, ?) = ? "
                "ORDER BY reference", (len(bare.repository) + 1, bare.repository + ":"))]
            if found:
                for r, i in found:
                    add(i, refs.parse(r))
                continue
        image_id, by_ref = store._resolve(name)
        add(image_id, refs.parse(by_ref) if by_ref else None)
    return [_Selected(i, tuple(tags[i])) for i in order]


class _TarWriter:
    """Bare ustar entries (0:0, mtime 0) and Go's two-block end, on a binary stream."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.fd = _fileno(out)

    def _header(self, name: str, size: int, kind: bytes, mode: int) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.type, ti.mode, ti.mtime = size, kind, mode, 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        self.out.write(ti.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self.out.write(b"\0" * (_BLOCK - size % _BLOCK))

    def dir(self, name: str) -> None:
        self._header(name + "/", 0, tarfile.DIRTYPE, 0o755)

    def bytes(self, name: str, data: bytes) -> None:
        self._header(name, len(data), tarfile.REGTYPE, 0o644)
        self.out.write(data)
        self._pad(len(data))

    def file(self, name: str, path: str | os.PathLike[str], size: int) -> None:
        self._header(name, size, tarfile.REGTYPE, 0o644)
        with open(path, "rb") as src:
            if os.fstat(src.fileno()).st_size != size:
                raise ImageFormatError(f"{path}: stored size changed while saving")
            if self.fd is not None:
                self.out.flush()
                left, off = size, 0
                while left:
                    n = os.sendfile(self.fd, src.fileno(), off, min(left, 1 << 30))
                    if n == 0:
                        raise ImageFormatError(f"{path}: short read while saving")
                    off += n
                    left -= n
            else:
                shutil.copyfileobj(src, self.out, _CHUNK)
        self._pad(size)

    def stream(self, name: str, chunks: Iterator[bytes], size: int) -> None:
        self._header(name, size, tarfile.REGTYPE, 0o644)
        written = 0
        for c in chunks:
            written += len(c)
            self.out.write(c)
        if written != size:
            raise ImageFormatError(f"{name}: {written} bytes written, {size} expected")
        self._pad(size)

    def close(self) -> None:
        self.out.write(b"\0" * (2 * _BLOCK))
        self.out.flush()


def _fileno(out: BinaryIO) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


class _Layer(NamedTuple):
    diff_id: str
    blob: str  # the kept blob's digest
    compression: str


def _layer_of(store: ImageStore, chain: str, diff_id: str, image: str) -> _Layer:
    kept = store.layer_blob(chain)
    if kept is None:
        raise ImageFormatError(
            f"image {image[:19]}: the tar of layer {diff_id} is not kept in the store; "
            "it cannot be saved (`berth system check` tells more)")
    digest, media = kept
    return _Layer(diff_id, digest, layer_compression(media))


def _decompressed_chunks(store: ImageStore, layer: _Layer) -> Iterator[bytes]:
    with store.blobs.open(layer.blob) as f:
        dec: Any
        if layer.compression == "gzip":
            dec = gzip.GzipFile(fileobj=f, mode="rb")
        else:
            import zstandard
            dec = zstandard.ZstdDecompressor().stream_reader(f)
        with dec:
            while chunk := dec.read(_CHUNK):
                yield chunk


def save(store: ImageStore, names: Sequence[str], out: BinaryIO) -> list[str]:
    """Write the named images as one docker-25 archive on `out`. Returns the image ids."""
    selected = select_images(store, names)
    images = [(s, store.get(s.image_id)) for s in selected]
    tw = _TarWriter(out)
    blobs: dict[str, tuple[str, Any]] = {}  # hex -> ("bytes", data) | ("layer", _Layer, size)
    manifest_json: list[dk.ArchiveImage] = []
    index_entries: list[Descriptor] = []
    repos: list[tuple[list[refs.Reference], str]] = []
    for sel, img in images:
        cfg = img.config
        layer_descs = []
        for chain, diff_id in zip(img.layers, cfg.diff_ids):
            layer = _layer_of(store, chain, diff_id, img.id)
            hexd = Digest.parse(diff_id).encoded
            if hexd not in blobs:
                size = store.blobs.size(layer.blob) if layer.compression == "none" else \
                    sum(len(c) for c in _decompressed_chunks(store, layer))
                blobs[hexd] = ("layer", layer, size)
            layer_descs.append(Descriptor(OCI_LAYER, diff_id, blobs[hexd][2]))
        blobs[Digest.parse(img.id).encoded] = ("bytes", cfg.raw)
        manifest = Manifest.build(Descriptor(OCI_CONFIG, img.id, len(cfg.raw)), layer_descs)
        blobs[Digest.parse(manifest.digest).encoded] = ("bytes", manifest.raw)
        mdesc = Descriptor(OCI_MANIFEST, manifest.digest, len(manifest.raw))
        if sel.tags:
            index_entries += [mdesc._replace(annotations=dk.index_annotations(r))
                              for r in sel.tags]
        else:
            index_entries.append(mdesc)
        manifest_json.append(dk.ArchiveImage(
            dk.blob_path(img.id), tuple(r.familiar() for r in sel.tags),
            tuple(dk.blob_path(d) for d in cfg.diff_ids)))
        if cfg.diff_ids:
            repos.append((list(sel.tags), Digest.parse(cfg.diff_ids[-1]).encoded))
    tw.dir("blobs")
    tw.dir("blobs/sha256")
    for hexd in sorted(blobs):
        entry = blobs[hexd]
        name = f"blobs/sha256/{hexd}"
        if entry[0] == "bytes":
            tw.bytes(name, entry[1])
            continue
        layer, size = entry[1], entry[2]
        if layer.compression == "none":
            tw.file(name, store.blobs.path(layer.blob), size)
        else:
            tw.stream(name, _decompressed_chunks(store, layer), size)
    tw.bytes(dk.INDEX_JSON, Index.build(index_entries).raw + b"\n")
    tw.bytes(dk.MANIFEST_JSON, dk.dump_manifest_json(manifest_json))
    tw.bytes(dk.OCI_LAYOUT, oci_layout_bytes())
    repositories = dk.repositories_for(repos)
    if repositories:
        tw.bytes(dk.REPOSITORIES, dk.dump_repositories(repositories))
    tw.close()
    for sel, img in images:
        name = sel.tags[0].familiar() if sel.tags else img.id
        store.db.record_event("image", "save", img.id, {"name": name})
    return [img.id for _, img in images]


def save_to_file(store: ImageStore, names: Sequence[str], path: str | os.PathLike[str]) -> list[str]:
    """`save -o PATH`: written beside PATH and renamed over it, so PATH is never half-written."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidArgument(f"failed to save image: invalid output path: "
                              f"directory {str(parent)!r} does not exist")
    if target.is_dir():
        raise InvalidArgument(f"failed to save image: {path} is a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out:
            ids = save(store, names, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return ids


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- import --------------------------------------------------------------------------------------

_EMPTY_CONTAINER_CONFIG: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None}


def import_rootfs(store: ImageStore, source: str | os.PathLike[str] | BinaryIO, *,
                  reference: str | None = None, changes: Sequence[str] = (),
                  message: str = "", source_name: str = "-") -> str:
    """`docker import`: a root filesystem tar (plain, gzip, bzip2, xz or zstd) becomes a
    one-layer image whose config is docker's import config with `changes` applied. Returns the
    image id. The layer's diff_id is the digest of the uncompressed tar, as docker computes it."""
    import time as _time

    from berth.image.changes import apply_changes

    target = None
    if reference:
        target = refs.parse(reference)
        if target.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {reference}")
    config = apply_changes(_EMPTY_CONTAINER_CONFIG, changes)
    for key in ("Env", "Cmd", "Entrypoint", "Volumes", "OnBuild", "Labels"):
        config.setdefault(key, None)
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise InvalidArgument(f"open {source}: no such file or directory"
                              if not os.path.exists(source) else f"{source}: not a regular file")
    with store._lock(fcntl.LOCK_SH):
        store.layers_dir.mkdir(parents=True, exist_ok=True)
        fd, spool = tempfile.mkstemp(prefix=_SPOOL_PREFIX, dir=store.layers_dir)
        try:
            hasher = Hasher()
            f = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source  # noqa: SIM115
            try:
                head = f.read(6)
                dec = _open_decompressed(head, _Prefixed(head, f))  # type: ignore[arg-type]
                src: Any = dec or _Prefixed(head, f)
                with os.fdopen(fd, "wb") as out:
                    try:
                        while chunk := src.read(_CHUNK):
                            hasher.update(chunk)
                            out.write(chunk)
                    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, ValueError) as e:
                        raise ImageFormatError(f"import: bad compressed stream: {e}") from None
                    except OSError as e:
                        if e.errno is None:
                            raise ImageFormatError(f"import: bad compressed stream: {e}") from None
                        raise
            finally:
                if isinstance(source, (str, os.PathLike)):
                    f.close()
            if os.path.getsize(spool) == 0:
                raise ImageFormatError("import: the input is empty, not a tar archive")
            diff_id = str(hasher.digest())
            created = rfc3339_nano(_time.time_ns())
            msg = message or f"Imported from {source_name}"
            arch = _host_platform()[1]
            doc = {"architecture": arch, "comment": msg, "config": config, "created": created,
                   "docker_version": "berth", "history": [{"created": created, "comment": msg}],
                   "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
            cfg = ImageConfig.from_doc(doc)

            def opener() -> BinaryIO:
                return open(spool, "rb")

            image = store.add_image(cfg.raw, [LayerSource(diff_id, opener)],
                                    tags=[str(target)] if target else [], event="import")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool)
    return image.id

