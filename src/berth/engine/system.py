"""`system df` and the prunes: read the records once, plan as data, then apply.

    load_snapshot(db, root)          the records df and the prunes need: a few SQL queries, one
                                     stat per container log; never a walk of a layer
    disk_usage(snapshot)             docker's df figures (pure)
    plan_container_prune / plan_image_prune / plan_builder_prune / plan_system_prune
                                     what a prune removes and frees (pure): `--dry-run` prints it
    apply(engine, plan)              the removals, each through Engine.remove / ImageStore.remove
                                     (one transaction each, with their events), then one `prune`
                                     event per prune, as docker records

Where the bytes go (docs/system.md): every layer counts once, in Images when an image of that
category uses it, else in Build Cache. Build Cache images are the build steps and nothing
else: untagged images that a build cache entry points at and no container uses. Every other
image (tagged, used by a container, or a dangling image that is no build step) is in Images.
A step below a kept image shares all its layers with that image (a parent's layers are a prefix
of its child's), so it adds nothing to Build Cache: its entry is `Shared`.

The removal rules are ImageStore.remove's (docker's image_delete.go), simulated on the snapshot
so that a dry run names exactly the images, layers and cache entries a real run deletes.

Raises: InvalidArgument (bad filter).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from berth.errors import BerthError, InvalidArgument, NotFound

from . import procs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.store.db import Database

    from .containers import Engine

__all__ = [
    "BuilderPlan", "CacheRecord", "ContainerPlan", "ContainerRecord", "DiskUsage", "ImagePlan",
    "ImageRecord", "PruneFilters", "Report", "Snapshot", "SystemPlan", "Usage", "VolumePlan",
    "VolumeRecord", "apply",
    "disk_usage", "load_snapshot", "parse_prune_filters", "plan_builder_prune",
    "plan_container_prune", "plan_image_prune", "plan_system_prune",
]

_NS = 1_000_000_000
ACTIVE_STATES = ("running", "restarting")  # a paused container is a running one here
CONTAINER_FILTERS = frozenset({"label", "label!", "until"})
IMAGE_FILTERS = frozenset({"dangling", "label", "label!", "until"})
BUILDER_FILTERS = frozenset({"label", "label!", "until", "unused-for", "id"})
SYSTEM_FILTERS = frozenset({"label", "label!", "until"})


# --- the records ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: str
    tags: tuple[str, ...]  # full references, sorted
    parent: str
    layers: tuple[str, ...]  # chain ids, bottom first
    created: str  # the config's `created` (RFC 3339)
    added_ns: int = 0


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    id: str
    name: str
    image_id: str
    image_ref: str
    status: str  # created | running | restarting | exited | dead
    created_ns: int
    labels: Mapping[str, str] = field(default_factory=dict)
    size_rw: int = 0  # the writable layer, as recorded (containers.size_rw)
    log_size: int = 0  # json-file log and its rotations
    has_log: bool = False
    command: tuple[str, ...] = ()
    started_ns: int = 0
    finished_ns: int = 0
    exit_code: int = 0
    volumes: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class CacheRecord:
    key: str  # sha256:<hex>, the entry's id
    image_id: str
    parent_id: str
    size: int  # the layer the step made (0 for a step that made none)
    created_ns: int
    last_used_ns: int
    created_by: str = ""
    use_count: int | None = None  # when the store counts uses

    @property
    def id(self) -> str:
        return self.key.removeprefix("sha256:")


@dataclass(frozen=True, slots=True)
class VolumeRecord:
    name: str
    anonymous: bool
    local: bool  # the local driver without mount options: its data is in the store
    labels: Mapping[str, str]
    size: int  # as recorded (volumes.size; 0 for one mounted from elsewhere)
    created_ns: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the store recorded, read once: the input of every pure function below."""

    images: Mapping[str, ImageRecord]
    layer_sizes: Mapping[str, int]  # chain id -> unpacked_size
    refcounts: Mapping[str, int]  # chain id -> refcount as recorded
    layer_parents: Mapping[str, str]  # chain id -> parent chain id ("" at the bottom)
    containers: Sequence[ContainerRecord]
    cache: Sequence[CacheRecord]
    layer_blobs: Mapping[str, str] = field(default_factory=dict)  # chain id -> blob digest
    blob_sizes: Mapping[str, int] = field(default_factory=dict)  # digest -> bytes
    leftovers: Sequence[tuple[str, int]] = ()  # (path, apparent size) no record explains
    now_ns: int = 0
    volumes: Sequence[VolumeRecord] = ()
    volume_users: Mapping[str, Sequence[str]] = field(default_factory=dict)  # name -> cids
    layer_order: Mapping[str, int] = field(default_factory=dict)  # chain id -> rowid

    def without(self, containers: Iterable[str] = (), images: Iterable[str] = (),
                cache: Iterable[str] = (), layers: Iterable[str] = (),
                untagged: Iterable[str] = ()) -> Snapshot:
        """The snapshot after a prune removed these (ids, cache keys, chain ids, references)."""
        gone_c, gone_i, gone_k = set(containers), set(images), set(cache)
        gone_l, gone_t = set(layers), set(untagged)
        imgs = {i: (replace(r, tags=tuple(t for t in r.tags if t not in gone_t))
                    if gone_t.intersection(r.tags) else r)
                for i, r in self.images.items() if i not in gone_i}
        refcounts = {c: n for c, n in self.refcounts.items() if c not in gone_l}
        for i in gone_i:
            for c in self.images[i].layers if i in self.images else ():
                if c in refcounts:
                    refcounts[c] -= 1
        users = {n: [c for c in cids if c not in gone_c] for n, cids in self.volume_users.items()}
        return replace(
            self, images=imgs, refcounts=refcounts, volume_users=users,
            layer_sizes={c: s for c, s in self.layer_sizes.items() if c not in gone_l},
            layer_parents={c: p for c, p in self.layer_parents.items() if c not in gone_l},
            containers=[c for c in self.containers if c.id not in gone_c],
            cache=[r for r in self.cache if r.key not in gone_k and r.image_id not in gone_i])


def _table_columns(db: Database, table: str) -> set[str]:
    return {r[1] for r in db.read(f"PRAGMA table_info({table})")}


def _rfc3339_ns(text: str) -> int:
    """Nanoseconds of an RFC 3339 time ("2026-11-28T04:16:10.245228553Z", "…+01:00"); 0 for
    Go's zero time or text that is not one."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                     r"(Z|z|[+-]\d\d:\d\d)?", (text or "").strip())
    if not m or m.group(1) == "0001":
        return 0
    import calendar
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    zone = m.group(8) or "Z"
    offset = 0 if zone in "Zz" else (1 if zone[0] == "+" else -1) * (
        int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    frac = int((m.group(7) or "0").ljust(9, "0"))
    return (calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset) * _NS + frac



def _log_size(root: Path, cid: str, max_file: int) -> tuple[bool, int]:
    base = root / "containers" / cid / f"{cid}-json.log"
    total, found = 0, False
    for p in [base, *(base.with_name(f"{base.name}.{n}") for n in range(1, max_file))]:
        try:
            total += p.stat().st_size
            found = True
        except OSError:
            continue
    return found, total


def load_snapshot(db: Database, root: str | os.PathLike[str], *, leftovers: bool = False
                  ) -> Snapshot:
    """The records of one BERTH_ROOT: one query per table, one stat per container log, and
    (with `leftovers`) one listing of layers/, containers/ and snapshots/."""
    root = Path(root)
    tags: dict[str, list[str]] = {}
    for ref, image_id in db.read("SELECT reference, image_id FROM tags"):
        tags.setdefault(image_id, []).append(ref)
    layers_of: dict[str, list[str]] = {}
    for image_id, chain in db.read(
            "SELECT image_id, chain_id FROM image_layers ORDER BY image_id, position"):
        layers_of.setdefault(image_id, []).append(chain)
    images = {r[0]: ImageRecord(r[0], tuple(sorted(tags.get(r[0], ()))), r[3] or "",
                                tuple(layers_of.get(r[0], ())), r[1] or "", int(r[4] or 0))
              for r in db.read("SELECT id, created, size, parent, added_ns FROM images")}
    sizes: dict[str, int] = {}
    refcounts: dict[str, int] = {}
    parents: dict[str, str] = {}
    layer_blobs: dict[str, str] = {}
    order: dict[str, int] = {}
    for chain, size, refcount, parent, blob, rowid in db.read(
            "SELECT chain_id, unpacked_size, refcount, parent, blob_digest, rowid FROM layers"):
        sizes[chain], refcounts[chain], parents[chain] = int(size), int(refcount), parent or ""
        order[chain] = int(rowid)
        if blob:
            layer_blobs[chain] = blob
    blob_sizes = {d: int(s) for d, s in db.read("SELECT digest, size FROM blobs")}
    has_rw = "size_rw" in _table_columns(db, "containers")
    containers = []
    volume_users: dict[str, list[str]] = {}
    for row in db.read("SELECT id, name, image_id, image_ref, created_ns, status, monitor_pid, "
                       "started_ns, finished_ns, exit_code, config"
                       + (", size_rw" if has_rw else "") + " FROM containers "
                       "ORDER BY created_ns DESC"):
        cid, name, image_id, image_ref, created_ns, status, monitor, started, finished, code, \
            cfg = row[:11]
        config = json.loads(cfg or "{}")
        if status in ACTIVE_STATES and monitor and not procs.alive(int(monitor)):
            status = "dead"  # its monitor is gone (Engine.refresh says the same)
        has_log, log_size = _log_size(root, cid, int((config.get("log") or {}).get(
            "max_file", 1)))
        vols = [v.get("name", "") for v in config.get("volumes") or () if isinstance(v, dict)]
        for v in dict.fromkeys(vols):
            volume_users.setdefault(v, []).append(cid)
        containers.append(ContainerRecord(
            cid, name, image_id, image_ref or "", status, int(created_ns),
            dict(config.get("labels") or {}), int(row[11] or 0) if has_rw else 0, log_size,
            has_log, tuple(config.get("args") or ()), int(started), int(finished), int(code),
            len(vols)))
    cache_cols = _table_columns(db, "build_cache")
    uses = "use_count" if "use_count" in cache_cols else "NULL"
    cache = [CacheRecord(r[0], r[1], r[2] or "", int(r[3]), int(r[4]), int(r[5]), r[6] or "",
                         None if r[7] is None else int(r[7]))
             for r in db.read("SELECT key, image_id, parent_id, size, created_ns, last_used_ns, "
                              f"created_by, {uses} FROM build_cache")]
    volumes = []
    if "volumes" in db.tables():  # (store v6) the volumes' own engineer records their sizes
        for name, driver, labels, options, created, anonymous, size in db.read(
                "SELECT name, driver, labels, options, created_ns, anonymous, size "
                "FROM volumes"):
            local = driver == "local" and not json.loads(options or "{}")
            volumes.append(VolumeRecord(name, bool(anonymous), local,
                                        json.loads(labels or "{}"), int(size) if local else 0,
                                        int(created)))
    snap = Snapshot(images, sizes, refcounts, parents, containers, cache, layer_blobs,
                    blob_sizes, now_ns=time.time_ns(), volumes=volumes,
                    volume_users=volume_users, layer_order=order)
    if leftovers:
        snap = replace(snap, leftovers=find_leftovers(root, snap))
    return snap


def _apparent_size(path: Path) -> int:
    """Bytes of regular files and symlinks under `path`, each inode once (as layer sizes)."""
    seen: dict[tuple[int, int], int] = {}
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                s = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            seen[(s.st_dev, s.st_ino)] = s.st_size
    return sum(seen.values())


def find_leftovers(root: Path, snap: Snapshot) -> list[tuple[str, int]]:
    """Entries of layers/, containers/ and snapshots/ that no record explains (an interrupted
    add's .ingest-*, a layer directory without a row, a removed container's files), and layer
    rows no image uses. Only those are measured; a sound store costs three listings."""
    from berth.oci.digest import Digest
    known_layers = {Digest.parse(c).encoded for c in snap.layer_sizes}
    cids = {c.id for c in snap.containers}
    out: list[tuple[str, int]] = []
    for sub, known, skip in (("layers", known_layers, {".lock"}), ("containers", cids, set()),
                             ("snapshots", cids, set())):
        try:
            names = sorted(os.listdir(root / sub))
        except OSError:
            continue
        for n in names:
            if n in skip or n in known:
                continue
            if sub == "snapshots" and n.startswith("export-"):
                continue  # a running `export`'s view
            out.append((str(root / sub / n), _apparent_size(root / sub / n)))
    for chain, n in sorted(snap.refcounts.items()):
        if n <= 0:
            out.append((f"layer {chain} (no image uses it)", snap.layer_sizes.get(chain, 0)))
    return out


# --- df ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Usage:
    """One row of df: docker's TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE (bytes)."""

    type: str
    total: int
    active: int
    size: int
    reclaimable: int
    percent: bool = True  # docker prints "(N%)" after RECLAIMABLE (not for Build Cache)


@dataclass(frozen=True, slots=True)
class ImageUsage:
    image: ImageRecord
    size: int
    shared_size: int
    containers: int


@dataclass(frozen=True, slots=True)
class CacheUsage:
    record: CacheRecord
    in_use: bool
    shared: bool


@dataclass(frozen=True, slots=True)
class DiskUsage:
    rows: tuple[Usage, ...]  # Images, Containers, Local Volumes, Build Cache
    extra: tuple[Usage, ...]  # beyond docker: Container Logs, Layer Archives, Leftovers
    images: tuple[ImageUsage, ...]
    containers: tuple[ContainerRecord, ...]
    cache: tuple[CacheUsage, ...]


def build_cache_images(snap: Snapshot) -> set[str]:
    """The images that are only build steps: untagged, pointed at by a cache entry, used by
    no container."""
    cached = {r.image_id for r in snap.cache}
    used = {c.image_id for c in snap.containers}
    return {i for i in cached if i in snap.images and not snap.images[i].tags and i not in used}


def disk_usage(snap: Snapshot) -> DiskUsage:
    steps = build_cache_images(snap)
    kept = [r for i, r in snap.images.items() if i not in steps]
    users: dict[str, int] = {}
    for c in snap.containers:
        users[c.image_id] = users.get(c.image_id, 0) + 1
    img_layers = {c for r in kept for c in r.layers}
    used_layers = {c for i in users if i in snap.images for c in snap.images[i].layers}
    step_layers = {c for i in steps for c in snap.images[i].layers} - img_layers
    size = snap.layer_sizes.get
    images_size = sum(size(c, 0) for c in img_layers)
    images_free = sum(size(c, 0) for c in img_layers - used_layers)
    cache_size = sum(size(c, 0) for c in step_layers)
    rows = (
        Usage("Images", len(kept), sum(1 for r in kept if users.get(r.id)), images_size,
              images_free),
        Usage("Containers", len(snap.containers), sum(1 for c in snap.containers if c.active),
              sum(c.size_rw for c in snap.containers),
              sum(c.size_rw for c in snap.containers if not c.active)),
        Usage("Local Volumes", len(snap.volumes),
              sum(1 for v in snap.volumes if snap.volume_users.get(v.name)),
              sum(v.size for v in snap.volumes),
              sum(v.size for v in snap.volumes if not snap.volume_users.get(v.name))),
        Usage("Build Cache", len(snap.cache), sum(1 for r in snap.cache if r.image_id in users),
              cache_size, cache_size, percent=False),
    )
    # per image: docker's SharedSize is the layers another listed image uses too
    refs: dict[str, int] = {}
    for r in kept:
        for c in set(r.layers):
            refs[c] = refs.get(c, 0) + 1
    per_image = tuple(ImageUsage(r, sum(size(c, 0) for c in set(r.layers)),
                                 sum(size(c, 0) for c in set(r.layers) if refs[c] > 1),
                                 users.get(r.id, 0))
                      for r in sorted(kept, key=lambda r: (-_rfc3339_ns(r.created),
                                                           -r.added_ns, r.id)))
    per_cache = []
    for rec in snap.cache:
        img = snap.images.get(rec.image_id)
        shared = rec.image_id not in steps or (img is not None and img_layers.issuperset(
            img.layers))
        per_cache.append(CacheUsage(rec, rec.image_id in users, shared))
    # beyond docker
    logs = [c for c in snap.containers if c.has_log]
    blob_layers = {c: d for c, d in snap.layer_blobs.items() if snap.refcounts.get(c, 0) > 0}
    live_blobs = set(blob_layers.values()) | set(snap.images)
    archives = sum(snap.blob_sizes.get(d, 0) for d in live_blobs)
    archives_used = {d for c, d in blob_layers.items() if c in used_layers} | set(users)
    extra = (
        Usage("Container Logs", len(logs), sum(1 for c in logs if c.active),
              sum(c.log_size for c in logs), sum(c.log_size for c in logs if not c.active)),
        Usage("Layer Archives", len(live_blobs & set(snap.blob_sizes)),
              len(archives_used & set(snap.blob_sizes)), archives,
              archives - sum(snap.blob_sizes.get(d, 0) for d in archives_used)),
        Usage("Leftovers", len(snap.leftovers), 0, sum(s for _, s in snap.leftovers),
              sum(s for _, s in snap.leftovers)),
    )
    cache_sorted = sorted(per_cache, key=lambda u: (u.record.last_used_ns, u.record.key))
    return DiskUsage(rows, extra, per_image, tuple(snap.containers), tuple(cache_sorted))


# --- filters -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PruneFilters:
    until_ns: int | None = None
    labels: tuple[str, ...] = ()  # "key" or "key=value": all must match
    not_labels: tuple[str, ...] = ()  # label!=: none may match
    ids: tuple[str, ...] = ()  # builder: cache id prefixes
    raw: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def labels_match(self, labels: Mapping[str, str]) -> bool:
        """docker's matchLabels: every `label` matches, and no `label!`."""
        def one(want: str) -> bool:
            key, eq, value = want.partition("=")
            return key in labels and (not eq or labels[key] == value)
        return all(one(w) for w in self.labels) and not (
            self.not_labels and any(one(w) for w in self.not_labels))

    @property
    def uses_labels(self) -> bool:
        return bool(self.labels or self.not_labels)


def parse_prune_filters(values: Mapping[str, Sequence[str]], accepted: Iterable[str], *,
                        now: float | None = None) -> PruneFilters:
    """`--filter` values by key (as cli/format.parse_filters gives them) checked as the daemon
    checks them: unknown keys ("invalid filter 'x'"), one `until` at most, its value a Go
    duration, an RFC 3339 time or a Unix timestamp."""
    from .events import parse_timestamp
    ok = set(accepted)
    for key in values:
        if key not in ok:
            raise InvalidArgument(f"invalid filter '{key}'")
    until = [*values.get("until", ()), *values.get("unused-for", ())]
    if values.get("until") and values.get("unused-for"):
        raise InvalidArgument('conflicting filters: "until" and "unused-for"')
    if len(until) > 1:
        raise InvalidArgument("more than one until filter specified")
    until_ns = None
    if until:
        try:
            until_ns = parse_timestamp(until[0], now)
        except (InvalidArgument, ValueError) as e:
            raise InvalidArgument(f"invalid value for 'until' filter: {e}") from None
    for v in values.get("dangling", ()):
        if v.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={v}'")
    return PruneFilters(until_ns, tuple(values.get("label", ())), tuple(values.get("label!", ())),
                        tuple(values.get("id", ())),
                        {k: tuple(v) for k, v in values.items()})


# --- plans ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ContainerPlan:
    remove: tuple[ContainerRecord, ...]

    @property
    def reclaimed(self) -> int:
        """The writable layers (docker's figure) and the logs, which go with them."""
        return sum(c.size_rw + c.log_size for c in self.remove)


@dataclass(frozen=True, slots=True)
class ImageStep:
    target: str  # what ImageStore.remove is given: a full reference or an image id
    records: tuple[tuple[str, str], ...]  # ("Untagged", "bb:1"), ("Deleted", id or chain id)


@dataclass(frozen=True, slots=True)
class ImagePlan:
    steps: tuple[ImageStep, ...]
    freed_layers: tuple[str, ...]
    deleted_images: tuple[str, ...]
    untagged: tuple[str, ...]  # full references
    reclaimed: int
    cache_keys: tuple[str, ...] = ()  # the cache entries that go with the deleted images

    @property
    def records(self) -> list[tuple[str, str]]:
        return [r for s in self.steps for r in s.records]


@dataclass(frozen=True, slots=True)
class BuilderPlan:
    images: ImagePlan  # the step images removed (their entries go with them)
    forget: tuple[str, ...]  # -a: cache keys of steps kept images stand on (rows only)

    @property
    def cache_keys(self) -> tuple[str, ...]:
        return (*self.images.cache_keys, *self.forget)

    @property
    def reclaimed(self) -> int:
        return self.images.reclaimed


@dataclass(frozen=True, slots=True)
class VolumePlan:
    remove: tuple[VolumeRecord, ...]
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def reclaimed(self) -> int:
        return sum(v.size for v in self.remove)


@dataclass(frozen=True, slots=True)
class SystemPlan:
    containers: ContainerPlan
    images: ImagePlan
    builder: BuilderPlan
    volumes: VolumePlan | None = None

    @property
    def reclaimed(self) -> int:
        return self.containers.reclaimed + self.images.reclaimed + self.builder.reclaimed + (
            self.volumes.reclaimed if self.volumes is not None else 0)


def plan_container_prune(snap: Snapshot, filters: PruneFilters = PruneFilters()
                         ) -> ContainerPlan:
    """docker's ContainerPrune: every container not running (paused and restarting ones
    run), created at or before `until`, whose labels match."""
    out = [c for c in snap.containers if not c.active
           and (filters.until_ns is None or c.created_ns <= filters.until_ns)
           and filters.labels_match(c.labels)]
    return ContainerPlan(tuple(sorted(out, key=lambda c: (c.created_ns, c.id))))


class _Conflict(Exception):
    pass


class _Model:
    """ImageStore.remove (docker's image_delete.go) on a copy of the records."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.tags = {i: list(r.tags) for i, r in snap.images.items()}
        self.parent = {i: r.parent for i, r in snap.images.items()}
        self.children: dict[str, set[str]] = {}
        for i, r in snap.images.items():
            if r.parent:
                self.children.setdefault(r.parent, set()).add(i)
        self.users: dict[str, int] = {}
        for c in snap.containers:
            self.users[c.image_id] = self.users.get(c.image_id, 0) + 1
        self.refcount = dict(snap.refcounts)
        self.layer_children: dict[str, int] = {}
        for c, p in snap.layer_parents.items():
            if p:
                self.layer_children[p] = self.layer_children.get(p, 0) + 1
        self.gone: list[str] = []
        self.freed: list[str] = []
        self.untagged: list[str] = []

    def alive(self, image_id: str) -> bool:
        return image_id in self.tags

    def remove(self, target: str) -> list[tuple[str, str]]:
        from berth.oci import reference as refs
        if target.startswith("sha256:"):
            image_id, by_ref = target, None
        else:
            by_ref = target
            image_id = next((i for i, t in self.tags.items() if target in t), "")
        if not self.alive(image_id):
            raise _Conflict(target)
        tags = sorted(self.tags[image_id])
        users = self.users.get(image_id, 0)
        if by_ref is not None:
            if users and len(tags) == 1:
                raise _Conflict(target)
            untag, delete = [by_ref], not (len(tags) > 1 or users)
        else:
            if users or len(tags) > 1:
                raise _Conflict(target)
            untag, delete = tags, True
        if delete and self.children.get(image_id):
            if by_ref is None:
                raise _Conflict(target)
            delete = False
        records = [("Untagged", refs.parse(t).familiar()) for t in untag]
        for t in untag:
            self.tags[image_id].remove(t)
            self.untagged.append(t)
        if delete:
            parent = self.parent.get(image_id, "")
            self._delete(image_id)
            records.append(("Deleted", image_id))
            while parent and self.alive(parent) and not self.tags[parent] \
                    and not self.children.get(parent) and not self.users.get(parent):
                nxt = self.parent.get(parent, "")
                self._delete(parent)
                records.append(("Deleted", parent))
                parent = nxt
            freed = self._drop()
            records += [("Deleted", c) for c in freed]
        return records

    def _delete(self, image_id: str) -> None:
        del self.tags[image_id]
        self.gone.append(image_id)
        parent = self.parent.get(image_id, "")
        if parent in self.children:
            self.children[parent].discard(image_id)
        img = self.snap.images[image_id]
        for c in img.layers:
            if c in self.refcount:
                self.refcount[c] -= 1

    def _drop(self) -> list[str]:
        """ImageStore._drop_unreferenced: rows with refcount 0, top first."""
        out: list[str] = []
        while True:
            batch = sorted((c for c, n in self.refcount.items()
                            if n <= 0 and not self.layer_children.get(c)),
                           key=lambda c: (self.snap.layer_order.get(c, 0), c))  # the scan's
            if not batch:
                return out
            for c in batch:
                del self.refcount[c]
                p = self.snap.layer_parents.get(c, "")
                if p:
                    self.layer_children[p] -= 1
            out += batch
            self.freed += batch

    def plan(self, steps: list[ImageStep]) -> ImagePlan:
        gone = set(self.gone)
        keys = tuple(r.key for r in self.snap.cache if r.image_id in gone)
        return ImagePlan(tuple(steps), tuple(self.freed), tuple(self.gone),
                         tuple(self.untagged),
                         sum(self.snap.layer_sizes.get(c, 0) for c in self.freed), keys)

    def run(self, targets: Iterable[str]) -> ImagePlan:
        steps = []
        for t in targets:
            try:
                records = self.remove(t)
            except _Conflict:
                continue  # docker's prune skips a conflict quietly
            steps.append(ImageStep(t, tuple(records)))
        return self.plan(steps)


Labels = Callable[[str], Mapping[str, str]]


def _no_labels(_image_id: str) -> Mapping[str, str]:
    return {}


def _newest_first(snap: Snapshot, ids: Iterable[str]) -> list[str]:
    """Children before parents (a child is always added after its parent)."""
    return sorted(ids, key=lambda i: (-snap.images[i].added_ns, i))


def plan_image_prune(snap: Snapshot, filters: PruneFilters = PruneFilters(), *,
                     all: bool = False, labels: Labels = _no_labels) -> ImagePlan:
    """docker's ImagePrune. Dangling (the default): untagged images without children (a build
    step below a kept image has one) that no container uses; each goes with its untagged
    parents that nothing else needs. `all`: every image no container uses, each of its tags
    in turn (beyond docker, an image a container uses keeps all its tags). `until` compares
    the image's `created`, labels the image config's."""
    model = _Model(snap)
    targets: list[str] = []
    for i in _newest_first(snap, snap.images):
        img = snap.images[i]
        if model.users.get(i):
            continue
        if not img.tags and model.children.get(i):
            continue
        if img.tags and not all:
            continue
        if filters.until_ns is not None and (not _rfc3339_ns(img.created)
                                             or _rfc3339_ns(img.created) > filters.until_ns):
            continue
        if filters.uses_labels and not filters.labels_match(labels(i)):
            continue
        targets += list(img.tags) if img.tags else [i]
    return model.run(targets)


def plan_builder_prune(snap: Snapshot, filters: PruneFilters = PruneFilters(), *,
                       all: bool = False, labels: Labels = _no_labels) -> BuilderPlan:
    """The build cache no kept image needs: the step images without children that are only
    build steps (untagged, no container), each with its untagged parents that nothing else
    needs. `all` also forgets the entries of the steps kept images stand on (their images
    stay, as those images' parents: no space, but the next build runs every step again).
    `until` compares an entry's last use, `id` prefixes its id; label filters (which docker
    ignores here) the step image's labels."""
    steps = build_cache_images(snap)

    def wanted(rec: CacheRecord) -> bool:
        if filters.until_ns is not None and (rec.last_used_ns or rec.created_ns) > \
                filters.until_ns:
            return False
        if filters.ids and not any(rec.id.startswith(p.removeprefix("sha256:"))
                                   for p in filters.ids):
            return False
        return not filters.uses_labels or filters.labels_match(labels(rec.image_id))

    by_image: dict[str, list[CacheRecord]] = {}
    for rec in snap.cache:
        by_image.setdefault(rec.image_id, []).append(rec)
    model = _Model(snap)
    heads = [i for i in steps if not model.children.get(i)
             and builtins.all(wanted(r) for r in by_image.get(i, ()))]
    plan = model.run(_newest_first(snap, heads))
    forget: tuple[str, ...] = ()
    if all:
        gone = set(plan.deleted_images)
        forget = tuple(sorted(r.key for r in snap.cache
                              if r.image_id not in gone and wanted(r)))
    return BuilderPlan(plan, forget)


def plan_system_prune(snap: Snapshot, filters: PruneFilters = PruneFilters(), *,
                      all: bool = False, volumes: bool = False,
                      labels: Labels = _no_labels) -> SystemPlan:
    """docker's order: containers, (networks: not in berth yet), volumes, images, build cache;
    each on what the one before leaves. The volumes' sizes are the recorded ones (the apply
    walks them again, as `volume prune` does)."""
    if volumes and filters.until_ns is not None:
        raise InvalidArgument('ERROR: The "until" filter is not supported with "--volumes"')
    cplan = plan_container_prune(snap, filters)
    after_c = snap.without(containers=[c.id for c in cplan.remove])
    vplan = None
    if volumes:  # docker's system prune --volumes: anonymous local volumes nobody uses
        vplan = VolumePlan(tuple(
            v for v in after_c.volumes if v.local and v.anonymous
            and not after_c.volume_users.get(v.name) and filters.labels_match(v.labels)),
            {k: v for k, v in filters.raw.items() if k in ("label", "label!")})
    iplan = plan_image_prune(after_c, filters, all=all, labels=labels)
    after_i = after_c.without(images=iplan.deleted_images, layers=iplan.freed_layers,
                              untagged=iplan.untagged)
    bplan = plan_builder_prune(after_i, filters, all=all, labels=labels)
    return SystemPlan(cplan, iplan, bplan, vplan)


# --- apply ---------------------------------------------------------------------------------------

@dataclass
class Report:
    """What a prune did: docker's PruneReport fields."""

    containers: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # ("Untagged"|"Deleted", x)
    cache: list[str] = field(default_factory=list)  # cache ids
    volumes: list[str] = field(default_factory=list)
    reclaimed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _apply_containers(engine: Engine, plan: ContainerPlan, report: Report) -> None:
    reclaimed = 0
    for c in plan.remove:
        try:
            engine.remove(c.id)
        except BerthError:
            continue  # started or removed meanwhile: docker skips it too
        report.containers.append(c.id)
        reclaimed += c.size_rw + c.log_size
    report.reclaimed += reclaimed
    engine.db.record_event("container", "prune", "", {"reclaimed": str(reclaimed)})


def _apply_images(engine: Engine, snap: Snapshot, plan: ImagePlan, report: Report
                  ) -> tuple[int, list[str]]:
    """Each step through ImageStore.remove; returns (bytes freed, image ids deleted)."""
    reclaimed, deleted = 0, []
    for step in plan.steps:
        try:
            records = engine.images.remove(step.target)
        except BerthError:
            continue  # a container, tag or child appeared meanwhile: kept, as docker does
        for kind, ident in records:
            report.images.append((kind, ident))
            if kind == "Deleted":
                if ident in snap.layer_sizes and ident not in snap.images:
                    reclaimed += snap.layer_sizes[ident]
                else:
                    deleted.append(ident)
    return reclaimed, deleted


def apply(engine: Engine, snap: Snapshot,
          plan: ContainerPlan | ImagePlan | BuilderPlan | SystemPlan) -> Report:
    """Carry out a plan made from `snap`; a `prune` event per prune, as docker records."""
    report = Report()
    if isinstance(plan, (ContainerPlan, SystemPlan)):
        _apply_containers(engine, plan if isinstance(plan, ContainerPlan) else plan.containers,
                          report)
    if isinstance(plan, SystemPlan) and plan.volumes is not None:
        from .volumes import Volumes  # its prune walks the sizes and records its event
        done, freed = Volumes(engine.db, engine.root).prune(all=False,
                                                            filters=plan.volumes.filters)
        report.volumes += [name for name, _ in done]
        report.reclaimed += freed
    if isinstance(plan, (ImagePlan, SystemPlan)):
        iplan = plan if isinstance(plan, ImagePlan) else plan.images
        freed, _ = _apply_images(engine, snap, iplan, report)
        report.reclaimed += freed
        engine.db.record_event("image", "prune", "", {"reclaimed": str(freed)})
    if isinstance(plan, (BuilderPlan, SystemPlan)):
        bplan = plan if isinstance(plan, BuilderPlan) else plan.builder
        keys_of: dict[str, list[str]] = {}
        for r in snap.cache:
            keys_of.setdefault(r.image_id, []).append(r.key)
        images = Report()
        freed, deleted = _apply_images(engine, snap, bplan.images, images)
        report.cache += [k.removeprefix("sha256:") for i in deleted for k in keys_of.get(i, ())]
        if bplan.forget:
            report.cache += [k.removeprefix("sha256:") for k in forget_cache(engine.db,
                                                                             bplan.forget)]
        report.reclaimed += freed
        engine.db.record_event("builder", "prune", "", {"reclaimed": str(freed)})
    return report


def forget_cache(db: Database, keys: Sequence[str]) -> list[str]:
    """Delete build cache entries (rows only: their images stay, as parents of kept
    images), in one transaction; the keys that were there."""
    gone: list[str] = []
    with db.transaction() as tx:
        for k in keys:
            if tx.execute("DELETE FROM build_cache WHERE key = ?", (k,)).rowcount:
                gone.append(k)
    return gone


def image_labels(engine: Engine) -> Labels:
    """Labels of an image's config (read on first need, once per image)."""
    seen: dict[str, Mapping[str, str]] = {}

    def labels(image_id: str) -> Mapping[str, str]:
        if image_id not in seen:
            try:
                seen[image_id] = dict(engine.images.get(image_id).config.config.labels or {})
            except (NotFound, BerthError):
                seen[image_id] = {}
        return seen[image_id]
    return labels

