"""Images over the store: records, tags, resolution, removal, history and inspect.

    ImageStore(root)            the images of one BERTH_ROOT (berth.db, blobs/, layers/)
      add_image(config, layers, tags=, event=)   unpack missing layers, record in one transaction
      tag / untag / resolve / get / list / remove / gc
      layer_dirs / history / inspect             docker's views of an image

Layers are unpacked once into `<root>/layers/<chain-id hex>/` and shared read-only. An unpack
goes to `<root>/layers/.ingest-*/` and is renamed into place; losing the rename to a concurrent
add of the same layer discards ours. The uncompressed-or-not layer tar is kept as a blob, teed
while unpacking (one extra sequential write, no extra read), so `save` can give back the exact
bytes whose digest is the diff_id (or, compressed, whose decompression is).

The image, its image_layers rows, layer refcounts (one per image using the layer), tags and the
events describing them are written in one transaction. A failure before it commits leaves no
image and no tag; what it unpacked or stored meanwhile has no row, and `gc()` removes it.
Removal deletes layer directories and blobs only after its transaction committed.

Concurrency: adds take a shared lock on `<root>/layers/.lock` (adds run side by side), remove and
gc an exclusive one (they delete files an add might be about to record).

The removal rules (docker's image_delete.go) are the pure function `plan_removal`; resolution
of short ids the pure `match_id_prefix`.

Raises: NoSuchImage (NotFound), AmbiguousImage (InvalidArgument), ImageConflict (Conflict),
ImageFormatError, InvalidArgument (bad reference).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from berth.errors import Conflict, ImageFormatError, InvalidArgument, NotFound
from berth.oci import reference as refs
from berth.oci.digest import Digest, chain_ids
from berth.oci.image_spec import (
    CONFIG_TYPES,
    DOCKER_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    ImageConfig,
)
from berth.store import layers as layerstore
from berth.store.blobs import BlobStore, BlobWriter
from berth.store.db import Database

__all__ = [
    "AmbiguousImage", "HistoryRow", "Image", "ImageConflict", "ImageStore", "LayerSource",
    "NoSuchImage", "RemovalPlan", "match_id_prefix", "plan_removal",
]

_LAYER_MEDIA = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_ZERO_TIME = "0001-01-01T00:00:00Z"
_HEX = frozenset("0123456789abcdef")
_INGEST_PREFIX = ".ingest-"
_LOCK_NAME = ".lock"


class NoSuchImage(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such image: {ref}")
        self.ref = ref


class AmbiguousImage(InvalidArgument):
    def __init__(self, prefix: str, matches: Sequence[str]) -> None:
        super().__init__(f"ambiguous image id prefix {prefix!r}: matches "
                         f"{', '.join(m.removeprefix('sha256:')[:12] for m in matches)}")
        self.prefix = prefix
        self.matches = tuple(matches)


class ImageConflict(Conflict):
    pass


class LayerSource(NamedTuple):
    """One layer to add: its diff_id and how to open its tar stream (plain, gzip or zstd).
    A layer made on this machine may come ready: `directory` (in overlay form, on the
    store's filesystem) is its content and `tar` its uncompressed tar, whose digest is the
    diff_id, and `size` its apparent size; both are moved into the store, not copied."""

    diff_id: str
    open: Callable[[], BinaryIO]
    directory: str | None = None
    tar: str | None = None
    size: int = 0


@dataclass(frozen=True, slots=True)
class Image:
    id: str  # sha256:<hex> of the config bytes
    repo_tags: tuple[str, ...]  # familiar form, sorted: ("busybox:latest",)
    repo_digests: tuple[str, ...]  # "busybox@sha256:..." when a manifest digest is known
    created: str  # the config's `created`, as written
    size: int  # sum of the layers' unpacked sizes
    config: ImageConfig
    layers: tuple[str, ...]  # chain ids, bottom first
    references: tuple[str, ...] = ()  # full tags: docker.io/library/busybox:latest
    manifest_digest: str = ""
    added_ns: int = 0
    last_tag_ns: int = 0

    @property
    def dangling(self) -> bool:
        return not self.repo_tags

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


class HistoryRow(NamedTuple):
    """A row of `docker image history`: newest first."""

    id: str  # the image id on the top row, "<missing>" below it
    created: str  # RFC 3339 as in the config ("" when absent)
    created_by: str
    size: int  # the layer's unpacked size; 0 for an empty_layer entry
    comment: str
    tags: tuple[str, ...] = ()  # on the top row: the image's tags (familiar)


# --- pure decisions ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RemovalPlan:
    untag: tuple[str, ...]  # full references to drop
    delete: bool  # delete the image (and its layers whose refcount reaches 0)
    records: tuple[tuple[str, str], ...]  # ("Untagged", familiar) ... ("Deleted", id)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _familiar(reference: str) -> str:
    return refs.parse(reference).familiar()


def plan_removal(image_id: str, tags: Sequence[str], *, by_ref: str | None, force: bool,
                 users: Sequence[str] = ()) -> RemovalPlan:
    """What `docker rmi` does, as data (daemon/images/image_delete.go).

    `tags` are the image's full references, `by_ref` the full reference the user named (None
    when removing by id), `users` the containers using the image. A used image is never
    deleted here (its layers lie under the containers' overlays): with force it loses its
    tags and stays, dangling. Raises ImageConflict.
    """
    tags = sorted(tags)
    short = _short(image_id)
    if by_ref is not None:
        if by_ref not in tags:
            raise NoSuchImage(_familiar(by_ref))
        if users and len(tags) == 1 and not force:
            raise ImageConflict(
                f"conflict: unable to remove repository reference {_familiar(by_ref)!r} (must "
                f"force) - container {users[0][:12]} is using its referenced image {short}")
        untagged = (("Untagged", _familiar(by_ref)),)
        if len(tags) > 1 or users:  # other tags remain, or a container keeps it (quietly)
            return RemovalPlan((by_ref,), False, untagged)
        return RemovalPlan((by_ref,), True, (*untagged, ("Deleted", image_id)))
    if users and not force:
        raise ImageConflict(f"conflict: unable to delete {short} (must be forced) - image is "
                            f"being used by stopped container {users[0][:12]}")
    if len(tags) > 1 and not force:
        raise ImageConflict(f"conflict: unable to delete {short} (must be forced) - image is "
                            "referenced in multiple repositories")
    untagged = tuple(("Untagged", _familiar(t)) for t in tags)
    if users:
        return RemovalPlan(tuple(tags), False, untagged)
    return RemovalPlan(tuple(tags), True, (*untagged, ("Deleted", image_id)))


def match_id_prefix(text: str, ids: Sequence[str]) -> str | None:
    """The one id in `ids` (sha256:<hex>) that `text` (hex, with or without `sha256:`) starts;
    None when none or when `text` is not a hex prefix; AmbiguousImage when several."""
    prefix = text.removeprefix("sha256:")
    if not prefix or len(prefix) > 64 or not _HEX.issuperset(prefix):
        return None
    found = sorted(i for i in ids if i.removeprefix("sha256:").startswith(prefix))
    if len(found) > 1:
        raise AmbiguousImage(text, found)
    return found[0] if found else None


def _parse_tag_target(text: str) -> refs.Reference:
    ref = refs.parse(text)
    if ref.digest:
        raise InvalidArgument(f"refusing to create a tag with a digest reference: {text}")
    return ref


def rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction trimmed); zero time for 0."""
    if not ns:
        return _ZERO_TIME
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    tail = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{base}{tail}Z"


# --- effects -------------------------------------------------------------------------------------

class _Tee:
    """A read-only stream that copies what is read into a blob writer and keeps the head."""

    def __init__(self, raw: BinaryIO, out: BlobWriter) -> None:
        self._raw = raw
        self._out = out
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            if len(self.head) < 4:
                self.head += data[:4 - len(self.head)]
            self._out.write(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


# (layer chain ids, blob digests) whose rows a transaction deleted: files to remove after it
_Freed = tuple[list[str], list[str]]


class _Unpacked(NamedTuple):
    size: int
    blob: tuple[str, int, str] | None  # digest, size, media type
    unpacked: bool = True  # False: kept as its blob, unpacked on first use


class ImageStore:
    """The images of one BERTH_ROOT. `in_use(image_id) -> [container ids]` lets the engine
    refuse to remove an image a container uses."""

    def __init__(self, root: str | os.PathLike[str], *,
                 in_use: Callable[[str], builtins.list[str]] | None = None,
                 keep_layer_blobs: bool = True, db: Database | None = None) -> None:
        self.root = Path(root)
        self._owns_db = db is None  # the engine lends its own: it closes it
        self.db = Database(self.root) if db is None else db
        self.blobs = BlobStore(self.root)
        self.layers_dir = self.root / "layers"
        self.in_use = in_use
        self.keep_layer_blobs = keep_layer_blobs

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths and locks ------------------------------------------------------------------------

    def layer_path(self, chain_id: str) -> Path:
        return self.layers_dir / Digest.parse(chain_id).encoded

    @contextlib.contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.layers_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    # -- adding ---------------------------------------------------------------------------------

    def add_image(self, config_bytes: bytes, layers: Sequence[LayerSource], *,
                  tags: Sequence[str] = (), event: str | None = "load",
                  manifest_digest: str = "", parent: str = "",
                  unpack: bool = True) -> Image:
        """Record an image from its config and layer streams (in rootfs.diff_ids order).
        `parent`: the image a build step started from (docker's Parent; hides an untagged
        intermediate from `images` and lets `rmi` delete it with its child). No event when
        `event` is None. `unpack=False` (load) keeps new layers as their verified blobs and
        unpacks each on first use (`layer_dirs`)."""
        cfg = ImageConfig.from_bytes(config_bytes)
        image_id = cfg.id
        if len(layers) != len(cfg.diff_ids):
            raise ImageFormatError(
                f"image {_short(image_id)}: the config lists {len(cfg.diff_ids)} layers "
                f"(rootfs.diff_ids), {len(layers)} were given")
        for i, (src, want) in enumerate(zip(layers, cfg.diff_ids)):
            if Digest.parse(src.diff_id) != Digest.parse(want):
                raise ImageFormatError(
                    f"image {_short(image_id)}: layer {i} is {src.diff_id}, but the config's "
                    f"rootfs.diff_ids[{i}] is {want}")
        targets = [_parse_tag_target(t) for t in tags]
        chains = [str(c) for c in chain_ids(cfg.diff_ids)]
        with self._lock(fcntl.LOCK_SH):
            have = {r[0]: r[1:] for r in self.db.read(
                f"SELECT chain_id, unpacked_size, unpacked, blob_digest FROM layers WHERE "
                f"chain_id IN ({','.join('?' * len(chains))})", chains)} if chains else {}
            done: dict[str, _Unpacked] = {}
            todo = []
            for chain, src in zip(chains, layers):
                size, unpacked, blob = have.get(chain, (0, 1, None))
                if chain in have and self.layer_path(chain).is_dir():
                    done[chain] = _Unpacked(int(size), None)
                elif chain in have and not unpacked and blob and self.blobs.exists(blob):
                    done[chain] = _Unpacked(int(size), None, False)  # kept packed
                else:
                    todo.append((chain, src))
            done.update(self._unpack_all(todo, unpack))
            if not self.blobs.exists(image_id):
                self.blobs.put(config_bytes, image_id)
            now = time.time_ns()
            with self.db.transaction() as tx:
                new = tx.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() \
                    is None
                if new:
                    self._record_image(tx, cfg, chains, done, manifest_digest, now, parent)
                if event is not None:
                    self.db.record_event("image", event, image_id, {
                        "name": targets[0].familiar() if targets else image_id})
                for ref in targets:
                    self._set_tag(tx, str(ref), image_id, now)
        return self.get(image_id)

    def _unpack_all(self, todo: Sequence[tuple[str, LayerSource]],
                    unpack: bool = True) -> dict[str, _Unpacked]:
        """Unpack missing layers (or, without `unpack`, keep them as verified blobs), several
        at a time: each goes to its own directory, and decompression, hashing and file writes
        release the GIL."""
        def one(chain: str, src: LayerSource) -> _Unpacked:
            if not unpack and src.directory is None and self.keep_layer_blobs:
                return self._keep_packed(src)
            return self._unpack_layer(chain, src)
        if len(todo) < 2:
            return {chain: one(chain, src) for chain, src in todo}
        from concurrent.futures import ThreadPoolExecutor
        workers = min(len(todo), max(2, os.cpu_count() or 1), 4)
        with ThreadPoolExecutor(workers, thread_name_prefix="unpack") as pool:
            futures = [(chain, pool.submit(one, chain, src)) for chain, src in todo]
            errors = [f.exception() for _, f in futures if f.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
            return {chain: f.result() for chain, f in futures}

    def _keep_packed(self, src: LayerSource) -> _Unpacked:
        """Store the layer's blob, verified (diff_id, entry names) and measured by a scan,
        without unpacking it."""
        with src.open() as raw, self.blobs.ingest() as w:
            tee = _Tee(raw, w)
            info = layerstore.scan(tee, expected_diff_id=src.diff_id, name=src.diff_id)
            tee.drain()
        assert w.digest is not None
        kind = layerstore.detect_compression(tee.head)
        return _Unpacked(info.size, (str(w.digest), w.size, _LAYER_MEDIA[kind]), False)

    def ensure_unpacked(self, image: Image | str) -> None:
        """Unpack the layers of `image` that were kept packed (a load), from their blobs,
        several at a time; a concurrent unpack of the same layer is harmless (the first
        rename wins)."""
        img = self._image(image)
        if not img.layers:
            return
        rows = self.db.read(
            f"SELECT chain_id, diff_id, blob_digest FROM layers WHERE unpacked = 0 AND "
            f"chain_id IN ({','.join('?' * len(img.layers))})", list(img.layers))
        todo = [(chain, LayerSource(diff_id, (lambda b=blob: self.blobs.open(b))))
                for chain, diff_id, blob in rows if not self.layer_path(chain).is_dir()]
        with self._lock(fcntl.LOCK_SH):
            done = self._unpack_all(todo) if todo else {}
            with self.db.transaction() as tx:
                for chain, _d, _b in rows:
                    if chain in done:
                        tx.execute("UPDATE layers SET unpacked = 1, unpacked_size = ? "
                                   "WHERE chain_id = ?", (done[chain].size, chain))
                    else:
                        tx.execute("UPDATE layers SET unpacked = 1 WHERE chain_id = ?",
                                   (chain,))

    def _unpack_layer(self, chain: str, src: LayerSource) -> _Unpacked:
        final = self.layer_path(chain)
        if src.directory is not None and src.tar is not None:
            digest = self.blobs.adopt(src.tar, src.diff_id)
            size_of_tar = self.blobs.size(digest)
            try:
                os.rename(src.directory, final)
            except OSError as e:  # a concurrent add won: same content, keep theirs
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                    raise
                shutil.rmtree(src.directory, ignore_errors=True)
            return _Unpacked(src.size, (str(digest), size_of_tar, _LAYER_MEDIA["none"]))
        ingest = Path(tempfile.mkdtemp(prefix=_INGEST_PREFIX, dir=self.layers_dir))
        try:
            dest = ingest / final.name
            blob = None
            with src.open() as raw:
                if self.keep_layer_blobs:
                    with self.blobs.ingest() as w:
                        tee = _Tee(raw, w)
                        info = layerstore.unpack(tee, dest, expected_diff_id=src.diff_id)
                        tee.drain()  # bytes after the end of a compressed stream
                    assert w.digest is not None
                    kind = layerstore.detect_compression(tee.head)
                    blob = (str(w.digest), w.size, _LAYER_MEDIA[kind])
                else:
                    info = layerstore.unpack(raw, dest, expected_diff_id=src.diff_id)
            try:
                os.rename(dest, final)
            except OSError as e:  # a concurrent add won: same content, keep theirs
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                    raise
            return _Unpacked(info.size, blob)
        finally:
            shutil.rmtree(ingest, ignore_errors=True)

    def _record_image(self, tx: Any, cfg: ImageConfig, chains: Sequence[str],
                      done: dict[str, _Unpacked], manifest_digest: str, now: int,
                      parent: str = "") -> None:
        image_id = cfg.id
        for pos, (chain, diff_id) in enumerate(zip(chains, cfg.diff_ids)):
            info = done[chain]
            blob = info.blob
            if blob is not None:
                tx.execute("INSERT OR IGNORE INTO blobs (digest, size, media_type) "
                           "VALUES (?, ?, ?)", blob)
            tx.execute(
                "INSERT OR IGNORE INTO layers (chain_id, diff_id, parent, blob_digest, "
                "unpacked_size, refcount, unpacked) VALUES (?, ?, ?, ?, ?, 0, ?)",
                (chain, diff_id, chains[pos - 1] if pos else None,
                 blob[0] if blob else None, info.size, int(info.unpacked)))
            if info.unpacked:  # a layer kept packed that is now unpacked too
                tx.execute("UPDATE layers SET unpacked = 1 WHERE chain_id = ? AND unpacked = 0",
                           (chain,))
            if blob is not None:
                tx.execute("UPDATE layers SET blob_digest = ? WHERE chain_id = ? "
                           "AND blob_digest IS NULL", (blob[0], chain))
            tx.execute("UPDATE layers SET refcount = refcount + 1 WHERE chain_id = ?", (chain,))
        size = sum(int(r[0]) for r in (
            tx.execute("SELECT unpacked_size FROM layers WHERE chain_id = ?", (c,)).fetchone()
            for c in chains))
        media = cfg.doc.get("mediaType") if cfg.doc.get("mediaType") in CONFIG_TYPES \
            else DOCKER_CONFIG
        tx.execute("INSERT OR IGNORE INTO blobs (digest, size, media_type) VALUES (?, ?, ?)",
                   (image_id, len(cfg.raw), media))
        tx.execute("INSERT INTO images (id, created, size, parent, manifest_digest, added_ns, "
                   "last_tag_ns) VALUES (?, ?, ?, ?, ?, ?, 0)",
                   (image_id, cfg.created, size, parent, manifest_digest, now))
        tx.executemany("INSERT INTO image_layers (image_id, position, chain_id) VALUES (?, ?, ?)",
                       [(image_id, i, c) for i, c in enumerate(chains)])

    # -- tags -----------------------------------------------------------------------------------

    def _set_tag(self, tx: Any, reference: str, image_id: str, now: int) -> None:
        tx.execute("INSERT INTO tags (reference, image_id) VALUES (?, ?) ON CONFLICT(reference) "
                   "DO UPDATE SET image_id = excluded.image_id", (reference, image_id))
        tx.execute("UPDATE images SET last_tag_ns = ? WHERE id = ?", (now, image_id))
        self.db.record_event("image", "tag", image_id, {"name": _familiar(reference)})

    def tag(self, source: str, target: str) -> str:
        """Point `target` at the image `source` names; a tag it held elsewhere moves (the old
        image may be left dangling, as docker does). Returns the full target reference."""
        ref = _parse_tag_target(target)
        with self.db.transaction() as tx:
            image_id = self.resolve(source)
            self._set_tag(tx, str(ref), image_id, time.time_ns())
        return str(ref)

    def untag(self, reference: str) -> str:
        """Remove one tag (never the image). Returns the familiar form removed."""
        ref = refs.parse(reference)
        with self.db.transaction() as tx:
            row = tx.execute("SELECT image_id FROM tags WHERE reference = ?",
                             (str(ref),)).fetchone()
            if row is None:
                raise NoSuchImage(ref.familiar())
            tx.execute("DELETE FROM tags WHERE reference = ?", (str(ref),))
            self.db.record_event("image", "untag", row[0], {"name": ref.familiar()})
        return ref.familiar()

    # -- lookup ---------------------------------------------------------------------------------

    def _resolve(self, text: str) -> tuple[str, str | None]:
        """(image id, the full reference that named it or None)."""
        if not isinstance(text, str) or not text:
            raise NoSuchImage(str(text))
        if refs.is_image_id(text):
            image_id = "sha256:" + text.removeprefix("sha256:")
            if self.db.read("SELECT 1 FROM images WHERE id = ?", (image_id,)):
                return image_id, None
            raise NoSuchImage(text)
        ref: refs.Reference | None = None
        bad: InvalidArgument | None = None
        try:
            ref = refs.parse(text)
        except InvalidArgument as e:
            bad = e
        if ref is not None:
            if ref.digest:
                rows = self.db.read(
                    "SELECT DISTINCT i.id FROM images i JOIN tags t ON t.image_id = i.id "
                    "WHERE i.manifest_digest = ? AND substr(t.reference, 1, ?) = ?",
                    (ref.digest, len(ref.repository) + 1, ref.repository + ":"))
                if len(rows) == 1:
                    return rows[0][0], None
            else:
                rows = self.db.read("SELECT image_id FROM tags WHERE reference = ?", (str(ref),))
                if rows:
                    return rows[0][0], str(ref)
        prefix = text.removeprefix("sha256:")
        if prefix and _HEX.issuperset(prefix) and len(prefix) < 64:
            ids = [r[0] for r in self.db.read(
                "SELECT id FROM images WHERE substr(id, 1, ?) = ?",
                (len(prefix) + 7, "sha256:" + prefix))]
            found = match_id_prefix(text, ids)
            if found is not None:
                return found, None
        if bad is not None and not text.startswith("sha256:"):
            raise bad
        raise NoSuchImage(ref.familiar() if ref is not None else text)

    def resolve(self, ref_or_id: str) -> str:
        """The full id (sha256:<hex>) of the image a full or short id or a reference names."""
        return self._resolve(ref_or_id)[0]

    def get(self, ref_or_id: str) -> Image:
        image_id = self.resolve(ref_or_id)
        images = self._load([image_id])
        if not images:
            raise NoSuchImage(ref_or_id)
        return images[0]

    def _image(self, image: Image | str) -> Image:
        return image if isinstance(image, Image) else self.get(image)

    def _load(self, ids: Sequence[str] | None = None) -> builtins.list[Image]:
        where, params = "", ()
        if ids is not None:  # one image (get) must not cost a scan of all of them
            where, params = f" WHERE {{col}} IN ({','.join('?' * len(ids))})", tuple(ids)
        rows = self.db.read("SELECT id, created, size, manifest_digest, added_ns, last_tag_ns "
                            "FROM images" + where.format(col="id") + " ORDER BY added_ns DESC, id",
                            params)
        tags: dict[str, builtins.list[str]] = {}
        for reference, image_id in self.db.read(
                "SELECT reference, image_id FROM tags" + where.format(col="image_id"), params):
            tags.setdefault(image_id, []).append(reference)
        layers: dict[str, builtins.list[str]] = {}
        for image_id, chain in self.db.read(
                "SELECT image_id, chain_id FROM image_layers" + where.format(col="image_id")
                + " ORDER BY image_id, position", params):
            layers.setdefault(image_id, []).append(chain)
        out = []
        for image_id, created, size, mdigest, added_ns, last_tag_ns in rows:
            full = sorted(tags.get(image_id, ()))
            parsed = [refs.parse(r) for r in full]
            digests = sorted({f"{p.familiar_repository}@{mdigest}" for p in parsed}) \
                if mdigest else []
            cfg = ImageConfig.from_bytes(self.blobs.read(image_id), f"image {image_id} config")
            out.append(Image(image_id, tuple(p.familiar() for p in parsed), tuple(digests),
                             created or "", int(size), cfg, tuple(layers.get(image_id, ())),
                             tuple(full), mdigest or "", int(added_ns), int(last_tag_ns)))
        return out

    def layer_dirs(self, image: Image | str) -> builtins.list[str]:
        """The image's unpacked layer directories, bottom first (for store.snapshots); layers
        kept packed since a load are unpacked now."""
        img = self._image(image)
        self.ensure_unpacked(img)
        return [str(self.layer_path(c)) for c in img.layers]

    def layer_sizes(self, image: Image | str) -> builtins.list[int]:
        img = self._image(image)
        sizes = dict(self.db.read(
            "SELECT l.chain_id, l.unpacked_size FROM layers l JOIN image_layers il "
            "ON il.chain_id = l.chain_id WHERE il.image_id = ?", (img.id,)))
        return [int(sizes[c]) for c in img.layers]

    def refcount(self, chain_id: str) -> int:
        rows = self.db.read("SELECT refcount FROM layers WHERE chain_id = ?", (chain_id,))
        return int(rows[0][0]) if rows else 0

    def layer_blob(self, chain_id: str) -> tuple[str, str] | None:
        """(digest, media type) of the tar a layer was unpacked from, if kept."""
        rows = self.db.read("SELECT b.digest, b.media_type FROM layers l JOIN blobs b "
                            "ON b.digest = l.blob_digest WHERE l.chain_id = ?", (chain_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    # -- views ----------------------------------------------------------------------------------

    def history(self, image: Image | str) -> builtins.list[HistoryRow]:
        """`docker image history` rows, newest first (daemon/images/image_history.go)."""
        img = self._image(image)
        sizes = self.layer_sizes(img)
        rows: builtins.list[HistoryRow] = []
        n = 0
        for h in img.config.history:
            size = 0
            if not h.empty_layer:
                if n >= len(sizes):
                    raise ImageFormatError(f"image {img.short_id}: too many non-empty layers "
                                           "in History section")
                size = sizes[n]
                n += 1
            rows.append(HistoryRow("<missing>", h.created, h.created_by, size, h.comment))
        # docker names the rows of the images below it that are here: each parent (a build
        # step) owns the history entry at its own history's end
        owners = {len(img.config.history) - 1: img}
        parent = self._parent_of(img.id)
        while parent:
            try:
                p = self._image(parent)
            except NotFound:
                break
            owners.setdefault(len(p.config.history) - 1, p)
            parent = self._parent_of(p.id)
        for pos, owner in owners.items():
            if 0 <= pos < len(rows):
                rows[pos] = rows[pos]._replace(id=owner.id, tags=owner.repo_tags)
        rows.reverse()
        return rows

    def inspect(self, image: Image | str) -> dict[str, Any]:
        """`docker image inspect` as docker 25 shows it (no VirtualSize; Container and
        ContainerConfig only when the config carries them)."""
        img = self._image(image)
        cfg = img.config
        doc = cfg.doc
        out: dict[str, Any] = {
            "Id": img.id,
            "RepoTags": list(img.repo_tags),
            "RepoDigests": list(img.repo_digests),
            "Parent": "",
            "Comment": doc.get("comment") or "",
            "Created": cfg.created or _ZERO_TIME,
        }
        if doc.get("container"):
            out["Container"] = doc["container"]
        if doc.get("container_config"):
            out["ContainerConfig"] = _docker_container_config(doc["container_config"])
        out["DockerVersion"] = doc.get("docker_version") or ""
        out["Author"] = cfg.author
        out["Config"] = _docker_container_config(doc.get("config"))
        out["Architecture"] = cfg.architecture
        if cfg.variant:
            out["Variant"] = cfg.variant
        out["Os"] = cfg.os
        if doc.get("os.version"):
            out["OsVersion"] = doc["os.version"]
        out["Size"] = img.size
        out["GraphDriver"] = {"Name": "overlay2", "Data": self._graph_data(img)}
        out["RootFS"] = {"Type": "layers", "Layers": list(cfg.diff_ids)}
        out["Metadata"] = {"LastTagTime": rfc3339_nano(img.last_tag_ns)}
        return out

    def _graph_data(self, img: Image) -> dict[str, str]:
        dirs = self.layer_dirs(img)
        if not dirs:
            return {}
        top = dirs[-1]
        data: dict[str, str] = {}
        if len(dirs) > 1:
            data["LowerDir"] = ":".join(reversed(dirs[:-1]))
        # images are never mounted: MergedDir and WorkDir name where docker's would be
        data.update(MergedDir=top + ".merged", UpperDir=top, WorkDir=top + ".work")
        return data

    # -- removal --------------------------------------------------------------------------------

    def remove(self, ref_or_id: str, force: bool = False) -> builtins.list[tuple[str, str]]:
        """`docker rmi`: untag, or delete the image and its layers no other image uses.
        Returns docker's records: ("Untagged", "busybox:latest"), ("Deleted", "sha256:...")."""
        with self._lock(fcntl.LOCK_EX):
            image_id, by_ref = self._resolve(ref_or_id)
            users = list(self.in_use(image_id)) if self.in_use is not None else []
            freed: builtins.list[str] = []
            blobs: builtins.list[str] = []
            with self.db.transaction() as tx:
                tags = [r[0] for r in tx.execute("SELECT reference FROM tags WHERE image_id = ?",
                                                 (image_id,))]
                plan = plan_removal(image_id, tags, by_ref=by_ref, force=force, users=users)
                children = self._children(tx, image_id)
                if plan.delete and children:
                    if by_ref is None:
                        raise ImageConflict(
                            f"conflict: unable to delete {_short(image_id)} (cannot be forced)"
                            " - image has dependent child images")
                    plan = RemovalPlan(plan.untag, False, tuple(
                        r for r in plan.records if r[0] != "Deleted"))
                for t in plan.untag:
                    tx.execute("DELETE FROM tags WHERE reference = ?", (t,))
                    self.db.record_event("image", "untag", image_id, {"name": _familiar(t)})
                records = list(plan.records)
                if plan.delete:
                    gone = [image_id]
                    parent = self._parent(tx, image_id)
                    freed, blobs = self._delete_image(tx, image_id)
                    self.db.record_event("image", "delete", image_id, {"name": image_id})
                    # docker deletes the untagged build steps below it that nothing else uses
                    while parent and not tx.execute("SELECT 1 FROM tags WHERE image_id = ?",
                                                    (parent,)).fetchone() \
                            and not self._children(tx, parent) \
                            and not (self.in_use is not None and self.in_use(parent)):
                        gone.append(parent)
                        records.append(("Deleted", parent))
                        nxt = self._parent(tx, parent)
                        more, more_blobs = self._delete_image(tx, parent)
                        freed += more
                        blobs += more_blobs
                        self.db.record_event("image", "delete", parent, {"name": parent})
                        parent = nxt
            self._remove_files(freed, blobs)
        return [*records, *(("Deleted", c) for c in freed)]

    @staticmethod
    def _children(tx: Any, image_id: str) -> builtins.list[str]:
        return [r[0] for r in tx.execute("SELECT id FROM images WHERE parent = ?", (image_id,))]

    def _parent_of(self, image_id: str) -> str:
        row = self.db.read("SELECT parent FROM images WHERE id = ?", (image_id,))
        return str(row[0][0] or "") if row else ""

    @staticmethod
    def _parent(tx: Any, image_id: str) -> str:
        row = tx.execute("SELECT parent FROM images WHERE id = ?", (image_id,)).fetchone()
        return str(row[0] or "") if row else ""

    def _delete_image(self, tx: Any, image_id: str) -> _Freed:
        chains = [r[0] for r in tx.execute(
            "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY position DESC",
            (image_id,))]
        tx.execute("DELETE FROM images WHERE id = ?", (image_id,))
        for c in chains:
            tx.execute("UPDATE layers SET refcount = refcount - 1 WHERE chain_id = ?", (c,))
        return self._drop_unreferenced(tx)  # its config blob too, now that no image has it

    def _drop_unreferenced(self, tx: Any) -> _Freed:
        """Delete rows of layers with refcount 0 (top first), of layer blobs no layer uses and of
        config blobs no image has."""
        freed: builtins.list[str] = []
        while True:
            rows = [r[0] for r in tx.execute(
                "SELECT chain_id FROM layers l WHERE refcount = 0 AND NOT EXISTS "
                "(SELECT 1 FROM layers c WHERE c.parent = l.chain_id) ORDER BY rowid")]
            if not rows:
                break
            for c in rows:
                tx.execute("DELETE FROM layers WHERE chain_id = ?", (c,))
            freed.extend(rows)
        blobs = [r[0] for r in tx.execute(
            "SELECT digest FROM blobs b WHERE media_type IN (?, ?, ?) AND NOT EXISTS "
            "(SELECT 1 FROM layers l WHERE l.blob_digest = b.digest)",
            tuple(_LAYER_MEDIA.values()))]
        blobs += [r[0] for r in tx.execute(  # config blobs of no image (a failed add's)
            "SELECT digest FROM blobs WHERE media_type IN (?, ?) AND "
            "digest NOT IN (SELECT id FROM images)", tuple(CONFIG_TYPES))]
        for d in blobs:
            tx.execute("DELETE FROM blobs WHERE digest = ?", (d,))
        return freed, blobs

    def _remove_files(self, chains: Sequence[str], blobs: Sequence[str]) -> None:
        for c in chains:
            shutil.rmtree(self.layer_path(c), ignore_errors=True)
        for d in blobs:
            with contextlib.suppress(NotFound):
                self.blobs.delete(d)

    def gc(self) -> builtins.list[str]:
        """Remove what no image references: layer rows with refcount 0, layer directories and
        unpack leftovers without a row, blobs without a row (a failed add's), layer blobs no
        layer uses, config blobs of no image. Returns the paths removed."""
        removed: builtins.list[str] = []
        with self._lock(fcntl.LOCK_EX):
            with self.db.transaction() as tx:
                freed, blobs = self._drop_unreferenced(tx)
                known = {Digest.parse(r[0]).encoded
                         for r in tx.execute("SELECT chain_id FROM layers")}
                recorded = {Digest.parse(r[0]).encoded
                            for r in tx.execute("SELECT digest FROM blobs")}
            self._remove_files(freed, blobs)
            removed += [str(self.layer_path(c)) for c in freed]
            removed += [str(self.blobs.path(d)) for d in blobs]
            with contextlib.suppress(FileNotFoundError):
                for name in sorted(os.listdir(self.layers_dir)):
                    if name == _LOCK_NAME or name in known:
                        continue
                    path = self.layers_dir / name
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(str(path))
            for d in list(self.blobs.walk()):
                if d.encoded not in recorded:
                    with contextlib.suppress(NotFound):
                        self.blobs.delete(d)
                    removed.append(str(self.blobs.path(d)))
        return removed

    def list(self, all: bool = False) -> builtins.list[Image]:
        """Images, newest added first. Without `all`, dangling images that are the parent of
        another image or a build cache entry (intermediate build steps) are hidden, as
        `docker images` does."""
        images = self._load()
        if all:
            return images
        hidden = {r[0] for r in self.db.read(
            "SELECT parent FROM images WHERE parent != '' UNION SELECT image_id FROM build_cache")}
        return [i for i in images if not (i.dangling and i.id in hidden)]


_CONFIG_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("Tty", False), ("OpenStdin", False),
    ("StdinOnce", False), ("Env", None), ("Cmd", None), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("OnBuild", None), ("Labels", None),
)


def _docker_container_config(v: Any) -> dict[str, Any]:
    """An image config's `config` in the shape docker's inspect prints (Go's container.Config:
    every field present, the optional ones only when set)."""
    src = v if isinstance(v, dict) else {}
    out: dict[str, Any] = {k: src.get(k, d) for k, d in _CONFIG_DEFAULTS}
    for k in ("Hostname", "Domainname", "User", "Image", "WorkingDir"):
        if out[k] is None:
            out[k] = ""
    for k, x in src.items():
        if k not in out:
            out[k] = x
    return out
