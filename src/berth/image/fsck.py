"""`berth system check [--repair]`: the image store checked against its records, and mended.

    report = check(store)          read only: every blob's digest, every layer directory, every
                                   reference (tags, image layers, refcounts), and garbage
    actions = repair(store, report)

Problems (each says what is wrong and what repair does):
    blob_missing / blob_corrupt    a recorded blob whose file is gone or whose content no longer
                                   matches its digest. A layer's tar: dropped (the unpacked layer
                                   still serves containers; `save` then needs the tar again). An
                                   image's config: the image cannot be described, it is removed.
    layer_missing                  a layer's directory is gone: unpacked again from its kept tar
                                   when that is sound, else every image using it is removed.
    image_layer_missing            an image lists a layer with no record: the image is removed.
    refcount_wrong                 a layer's refcount differs from the images using it: recounted.
    tag_dangling                   a tag naming no image: removed.
Garbage (not damage; what an interrupted add or load leaves): unpack and spool leftovers,
blob temp files, layer directories and blob files without a record. Repair removes it (gc).

Repair takes the store's exclusive lock, changes the records in one transaction per step and
deletes files only after it committed. After `repair`, `check` reports nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import ImageFormatError, InvalidArgument, NotFound
from berth.oci import reference as refs
from berth.oci.digest import Digest
from berth.oci.image_spec import CONFIG_TYPES
from berth.store import layers as layerstore

from .images import ImageStore

__all__ = ["Problem", "Report", "check", "repair"]


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str  # a digest, chain id, reference or path
    detail: str
    fix: str
    garbage: bool = False

    def line(self) -> str:
        what = "garbage" if self.garbage else self.kind.replace("_", " ")
        return f"{what}: {self.subject}: {self.detail} (repair: {self.fix})"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)

    @property
    def damage(self) -> list[Problem]:
        return [p for p in self.problems if not p.garbage]

    @property
    def garbage(self) -> list[Problem]:
        return [p for p in self.problems if p.garbage]

    def kinds(self) -> set[tuple[str, str]]:
        return {(p.kind, p.subject) for p in self.problems}

    def lines(self) -> list[str]:
        out = [p.line() for p in self.damage] + [p.line() for p in self.garbage]
        if not self.problems:
            out.append("no problems found")
        else:
            out.append(f"{len(self.damage)} problem{'s' if len(self.damage) != 1 else ''}, "
                       f"{len(self.garbage)} garbage item{'s' if len(self.garbage) != 1 else ''}")
        return out


def check(store: ImageStore) -> Report:
    with store._lock(fcntl.LOCK_SH):
        return _check(store)


def _check(store: ImageStore) -> Report:
    rep = Report()
    add = rep.problems.append
    db = store.db
    blobs = db.read("SELECT digest, size, media_type FROM blobs ORDER BY digest")
    layers = db.read("SELECT chain_id, diff_id, blob_digest, refcount FROM layers ORDER BY chain_id")
    packed = {r[0] for r in db.read("SELECT chain_id FROM layers WHERE unpacked = 0")}
    users: dict[str, int] = dict(db.read(
        "SELECT chain_id, count(*) FROM image_layers GROUP BY chain_id"))
    for digest, size, media in blobs:
        config = media in CONFIG_TYPES
        fix = "remove the image it describes" if config else \
            "forget the layer's tar (the unpacked layer stays)"
        path = store.blobs.path(digest)
        if not path.is_file():
            add(Problem("blob_missing", digest, "recorded, but its file is gone", fix))
            continue
        try:
            store.blobs.verify(digest)
        except ImageFormatError:
            add(Problem("blob_corrupt", digest, "content does not match its digest", fix))
            continue
        if os.path.getsize(path) != int(size):
            add(Problem("blob_corrupt", digest, f"size {os.path.getsize(path)}, recorded "
                        f"{size}", fix))
    bad_blobs = {p.subject for p in rep.problems}
    for chain, _diff_id, blob, refcount in layers:
        if chain in packed and blob is None:
            add(Problem("layer_missing", chain, "kept packed until first use, but its tar "
                        "is not recorded", "remove the images that use it"))
        elif chain not in packed and not store.layer_path(chain).is_dir():
            restorable = blob is not None and blob not in bad_blobs
            add(Problem("layer_missing", chain, "its unpacked directory is gone",
                        "unpack it again from its kept tar" if restorable
                        else "remove the images that use it (no sound tar is kept)"))
        if int(refcount) != users.get(chain, 0):
            add(Problem("refcount_wrong", chain, f"refcount {refcount}, used by "
                        f"{users.get(chain, 0)} image(s)", "recount"))
    known_chains = {c for c, *_ in layers}
    for image_id, chain in db.read("SELECT image_id, chain_id FROM image_layers "
                                   "ORDER BY image_id, position"):
        if chain not in known_chains:
            add(Problem("image_layer_missing", image_id, f"lists layer {chain}, which has no "
                        "record", "remove the image"))
    images = {r[0] for r in db.read("SELECT id FROM images")}
    for image_id in sorted(images):
        if not db.read("SELECT 1 FROM blobs WHERE digest = ?", (image_id,)) and \
                not store.blobs.path(image_id).is_file():
            add(Problem("blob_missing", image_id, "the image's config is neither recorded "
                        "nor stored", "remove the image"))
    for reference, image_id in db.read("SELECT reference, image_id FROM tags ORDER BY reference"):
        if image_id not in images:
            add(Problem("tag_dangling", reference, f"names {image_id}, which does not exist",
                        "remove the tag"))
    for digest, _size, media in blobs:
        if media in CONFIG_TYPES and digest not in images:
            add(Problem("garbage", digest, "the config of no image", "remove it", garbage=True))
    for path in _garbage(store, known_chains, {d for d, *_ in blobs}):
        add(Problem("garbage", str(path), "left by an interrupted add or load, or unrecorded",
                    "remove it", garbage=True))
    return rep


def _garbage(store: ImageStore, chains: set[str], blobs: set[str]) -> list[Path]:
    out: list[Path] = []
    dirs = {Digest.parse(c).encoded for c in chains}
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(store.layers_dir)):
            if name != ".lock" and name not in dirs:
                out.append(store.layers_dir / name)
    recorded = {Digest.parse(d).encoded for d in blobs}
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(store.blobs.dir)):
            if name not in recorded:
                out.append(store.blobs.dir / name)
    with contextlib.suppress(FileNotFoundError):
        out += [store.blobs.ingest_dir / n for n in sorted(os.listdir(store.blobs.ingest_dir))]
    return out


def repair(store: ImageStore, report: Report | None = None) -> list[str]:
    """Mend what `check` found (checked again under the exclusive lock). Returns what was
    done, one line per action."""
    done: list[str] = []
    with store._lock(fcntl.LOCK_EX):
        rep = _check(store)
        doomed: set[str] = set()  # images to remove
        files: list[Path] = []
        with store.db.transaction() as tx:
            for p in rep.damage:
                if p.kind in ("blob_missing", "blob_corrupt"):
                    media = tx.execute("SELECT media_type FROM blobs WHERE digest = ?",
                                       (p.subject,)).fetchone()
                    if media is None or media[0] in CONFIG_TYPES:
                        if tx.execute("SELECT 1 FROM images WHERE id = ?",
                                      (p.subject,)).fetchone():
                            doomed.add(p.subject)
                        tx.execute("DELETE FROM blobs WHERE digest = ?", (p.subject,))
                    else:
                        tx.execute("UPDATE layers SET blob_digest = NULL WHERE blob_digest = ?",
                                   (p.subject,))
                        tx.execute("DELETE FROM blobs WHERE digest = ?", (p.subject,))
                        done.append(f"forgot the damaged tar {p.subject}")
                    files.append(store.blobs.path(p.subject))
                elif p.kind == "tag_dangling":
                    row = tx.execute("SELECT image_id FROM tags WHERE reference = ?",
                                     (p.subject,)).fetchone()
                    tx.execute("DELETE FROM tags WHERE reference = ?", (p.subject,))
                    store.db.record_event("image", "untag", row[0] if row else "",
                                          {"name": _familiar(p.subject)})
                    done.append(f"removed the dangling tag {p.subject}")
                elif p.kind == "image_layer_missing":
                    doomed.add(p.subject)
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        for p in rep.damage:
            if p.kind == "layer_missing":
                if _restore_layer(store, p.subject):
                    done.append(f"unpacked layer {p.subject} again from its tar")
                else:
                    doomed.update(r[0] for r in store.db.read(
                        "SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ?",
                        (p.subject,)))
        for image_id in sorted(doomed):
            users = store.in_use(image_id) if store.in_use is not None else []
            if users:  # its layers lie under those containers: the user decides
                done.append(f"kept image {image_id}, which cannot be mended, because "
                            f"container(s) {', '.join(u[:12] for u in users)} use it: remove "
                            "them, then run --repair again")
                continue
            _remove_image(store, image_id)
            done.append(f"removed image {image_id} (it cannot be mended)")
        with store.db.transaction() as tx:
            tx.execute("UPDATE layers SET refcount = (SELECT count(*) FROM image_layers il "
                       "WHERE il.chain_id = layers.chain_id)")
            freed, blobs = store._drop_unreferenced(tx)
        store._remove_files(freed, blobs)
        if any(p.kind == "refcount_wrong" for p in rep.damage):
            done.append("recounted layer references")
        for path in _garbage(store, {r[0] for r in store.db.read("SELECT chain_id FROM layers")},
                             {r[0] for r in store.db.read("SELECT digest FROM blobs")}):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            done.append(f"removed garbage {path}")
    return done


def _restore_layer(store: ImageStore, chain: str) -> bool:
    row = store.db.read("SELECT diff_id, blob_digest FROM layers WHERE chain_id = ?", (chain,))
    if not row or row[0][1] is None:
        return False
    diff_id, blob = row[0]
    final = store.layer_path(chain)
    ingest = Path(tempfile.mkdtemp(prefix=".ingest-", dir=store.layers_dir))
    try:
        with store.blobs.open(blob) as f:
            info = layerstore.unpack(f, ingest / final.name, expected_diff_id=diff_id)
        os.rename(ingest / final.name, final)
        with store.db.transaction() as tx:
            tx.execute("UPDATE layers SET unpacked_size = ? WHERE chain_id = ?",
                       (info.size, chain))
        return True
    except (ImageFormatError, NotFound, OSError):
        return False
    finally:
        shutil.rmtree(ingest, ignore_errors=True)


def _familiar(reference: str) -> str:
    try:
        return refs.parse(reference).familiar()
    except InvalidArgument:
        return reference


def _remove_image(store: ImageStore, image_id: str) -> None:
    with store.db.transaction() as tx:
        for (ref,) in tx.execute("SELECT reference FROM tags WHERE image_id = ?",
                                 (image_id,)).fetchall():
            tx.execute("DELETE FROM tags WHERE reference = ?", (ref,))
            store.db.record_event("image", "untag", image_id, {"name": _familiar(ref)})
        tx.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
        tx.execute("DELETE FROM images WHERE id = ?", (image_id,))
        tx.execute("DELETE FROM blobs WHERE digest = ?", (image_id,))
        store.db.record_event("image", "delete", image_id, {"name": image_id,
                                                            "reason": "system check --repair"})
    with contextlib.suppress(FileNotFoundError):
        store.blobs.path(image_id).unlink()
