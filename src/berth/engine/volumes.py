"""Volumes: docker's `local` driver, records in berth.db, data under `<root>/volumes/<name>/_data`.

    Volumes(db, root)                       the volumes of one BERTH_ROOT
      create(name="", driver=, labels=, options=) / get / list / users / inspect
      remove(name, force=False)             refused while a container (in any state) uses it
      prune(all=, filters=, dry_run=)       unused volumes (anonymous ones unless all), sizes

    plan_uses(image_volumes, mounts)        pure: which volume goes where for a new container
    spec_mounts(root, uses)                 the binds of those volumes in config.json
    claim(tx, db, root, uses)               in Engine.create's transaction: missing volumes made
    release(tx, db, root, cid, remove)      in destroy's transaction: anonymous volumes dropped
    attach(db, root, run, cid, rootfs)      the monitor, before the container starts: typed
                                            volumes mounted, copy-up, `mount` events
    detach(db, root, run, cid)              the monitor, after it exited: unmounted, sizes,
                                            `unmount` events

A container's record (its config JSON, key "volumes") lists the volumes it uses, so "in use"
and the container's removal are one transaction. A volume with `type`/`device`/`o` options is
mounted on its `_data` while at least one running container uses it (the users, by container
and monitor pid, are kept in `<run>/volumes/<name>.users` under flock): `type=tmpfs` a tmpfs,
`type=none|bind` with `o=bind` a bind of the host path `device`. Sizes (the `size` column, for
`system df`) are walked when a volume is created, when a container using it exits, and when
prune measures what it reclaims; a volume with mount options counts 0 (its data is not in the
store), as docker's df skips such volumes.

Everything read from the container's root (copy-up) is walked without following a symlink out
of it; removal never descends into a mount. Light on imports: the monitor loads this module.

Raises: NoSuchVolume, VolumeInUse, InvalidArgument.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.errors import Conflict, InvalidArgument, NotFound, RuntimeFailure

from . import procs
from .options import parse_key_values

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

    from berth.store.db import Database

    from .options import BindMount

__all__ = ["ANONYMOUS_LABEL", "NoSuchVolume", "Volume", "VolumeInUse", "VolumeUse", "Volumes",
           "attach", "check_name", "claim", "detach", "parse_key_values", "plan_uses",
           "release", "spec_mounts", "validate_options"]

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_VALID_OPTS = ("type", "o", "device", "size")
_MANDATORY = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
# mount(2) flags understood in `o=` (the rest is passed to the filesystem as data)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS = 1, 2, 4, 8, 16
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
_FLAGS = {"ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False), "nosuid": (MS_NOSUID, True),
          "suid": (MS_NOSUID, False), "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
          "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
          "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False),
          "noatime": (MS_NOATIME, True), "atime": (MS_NOATIME, False),
          "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
          "relatime": (MS_RELATIME, True), "norelatime": (MS_RELATIME, False),
          "strictatime": (MS_STRICTATIME, True), "bind": (MS_BIND, True),
          "rbind": (MS_BIND | MS_REC, True), "defaults": (0, True)}


class NoSuchVolume(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"get {name}: no such volume")
        self.name = name


class VolumeInUse(Conflict):
    def __init__(self, name: str, users: Sequence[str]) -> None:
        super().__init__(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self.name = name
        self.users = list(users)


# --- pure: names, options, plans -----------------------------------------------------------------

def check_name(name: str) -> str:
    """docker's local driver: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so never '/', never '..' first)."""
    if len(name) == 1:
        raise InvalidArgument(f"create {name}: volume name is too short, names should be at "
                              "least two alphanumeric characters")
    if not _NAME_RE.fullmatch(name) or len(name) > 255:
        raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local '
                              f'volume name, only "{NAME_CHARS}" are allowed. If you intended '
                              "to pass a host directory, use absolute path")
    return name


def validate_options(opts: Mapping[str, str]) -> dict[str, str]:
    """docker's local-driver options (`type`, `device`, `o`; `size` needs quotas, which berth
    has not), limited to what berth mounts: type=tmpfs, and type=none|bind with o=bind|rbind
    of an existing host directory `device`."""
    out = dict(opts)
    for key in out:
        if key not in _VALID_OPTS:
            raise InvalidArgument(f'invalid option: "{key}"')
    if "size" in out:
        raise InvalidArgument("quota size requested but no quota support")
    for key, required in _MANDATORY.items():
        if key in out:
            for r in required:
                if r not in out:
                    raise InvalidArgument(f'missing required option: "{r}"')
    kind = out.get("type")
    if kind is None:
        return out
    flags, _ = mount_flags(out.get("o", ""))
    if kind == "tmpfs":
        if flags & MS_BIND:
            raise InvalidArgument("a tmpfs volume cannot take o=bind")
    elif kind in ("none", "bind"):
        if not flags & MS_BIND:
            raise InvalidArgument(f"type={kind} needs o=bind (or rbind) to bind a host path")
        device = out["device"]
        if not device.startswith("/"):
            raise InvalidArgument(f"invalid mount path: '{device}' mount path must be absolute")
        if not os.path.isdir(device):
            raise InvalidArgument(f"bind source path does not exist or is not a directory: "
                                  f"{device}")
    else:
        raise InvalidArgument(f"berth's local driver mounts type=tmpfs, or type=none with "
                              f"o=bind; not type={kind}")
    return out


def mount_flags(o: str) -> tuple[int, str]:
    """`o=` as mount(2) flags and the filesystem's data string (what `mount -o` does)."""
    flags = 0
    data = []
    for word in (w.strip() for w in o.split(",")):
        if not word:
            continue
        if word in _FLAGS:
            bit, on = _FLAGS[word]
            flags = (flags | bit) if on else (flags & ~bit)
        else:
            data.append(word)
    return flags, ",".join(data)


@dataclass(frozen=True)
class VolumeUse:
    """One volume mounted in one container (kept in the container's record as a dict)."""
    name: str
    destination: str
    readonly: bool = False
    copy: bool = True  # docker's copy-up (`volume-nocopy` / `:nocopy` turn it off)
    anonymous: bool = False
    labels: dict[str, str] = field(default_factory=dict)  # for a volume this use creates
    options: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "destination": self.destination, "rw": not self.readonly,
                "copy": self.copy, "anonymous": self.anonymous}


def _volume_extras(m: BindMount) -> tuple[bool, dict[str, str], dict[str, str]]:
    """(copy, labels, options) from a volume mount's options: `nocopy`, `label:k=v`,
    `opt:k=v`, `driver:NAME` (engine/options.py puts them there)."""
    copy = True
    labels: dict[str, str] = {}
    opts: dict[str, str] = {}
    for o in m.options:
        kind, _, rest = o.partition(":")
        if o == "nocopy":
            copy = False
        elif kind == "label":
            k, _, v = rest.partition("=")
            labels[k] = v
        elif kind == "opt":
            k, _, v = rest.partition("=")
            opts[k] = v
        elif kind == "driver" and rest not in ("", "local"):
            raise InvalidArgument(f"volume driver {rest!r} not found (berth has the local "
                                  "driver)")
    return copy, labels, opts


def plan_uses(image_volumes: Mapping[str, Any] | None, mounts: Sequence[BindMount], *,
              new_name: Callable[[], str] = lambda: os.urandom(32).hex()) -> list[VolumeUse]:
    """The volumes a new container mounts: `-v NAME:/p`, `-v /p`, `--mount type=volume`, then
    the image's VOLUMEs that no mount of the caller covers (each a new anonymous volume).
    Refuses two mounts on one destination (docker's "Duplicate mount point")."""
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise InvalidArgument(f"Duplicate mount point: {m.target}")
        seen.add(m.target)
    uses = []
    for m in mounts:
        if m.kind != "volume":
            continue
        copy, labels, opts = _volume_extras(m)
        if m.source:
            check_name(m.source)
        if opts:
            validate_options(opts)
        uses.append(VolumeUse(m.source or new_name(), m.target, m.readonly, copy,
                              not m.source, labels, opts))
    for path in sorted(image_volumes or {}):
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidArgument(f"image volume {path!r}: the path must be absolute")
        target = posixpath.normpath(path)
        if target == "/":
            raise InvalidArgument("image volume '/': cannot mount a volume over /")
        if target in seen:
            continue
        seen.add(target)
        uses.append(VolumeUse(new_name(), target, anonymous=True))
    return uses


def spec_mounts(root: str | os.PathLike[str], uses: Sequence[VolumeUse]) -> list[dict[str, Any]]:
    """config.json mounts: each volume's `_data` bound at its destination."""
    return [{"destination": u.destination, "type": "bind",
             "source": str(data_dir(root, u.name)),
             "options": ["rbind", "ro" if u.readonly else "rw"]} for u in uses]


def data_dir(root: str | os.PathLike[str], name: str) -> Path:
    return Path(root) / "volumes" / check_name(name) / "_data"


def natural_key(name: str) -> list[Any]:
    """sortorder.NaturalLess, docker's order of `volume ls`: digit runs compare as numbers."""
    return [(0, int(p), p) if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name) if p]


def labels_match(labels: Mapping[str, str], want: Sequence[str], negate: bool = False) -> bool:
    """`label=k` / `label=k=v` (all must match); `label!=…` (none may match)."""
    def one(w: str) -> bool:
        key, eq, value = w.partition("=")
        return key in labels and (not eq or labels[key] == value)
    return not any(one(w) for w in want) if negate else all(one(w) for w in want)


# --- records --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Volume:
    name: str
    driver: str
    labels: dict[str, str]
    options: dict[str, str]
    created_ns: int
    anonymous: bool
    size: int

    @property
    def typed(self) -> bool:
        """Mounted from elsewhere (tmpfs, a host path): its data is not in the store."""
        return bool(self.options.get("type") or self.options.get("device"))


_COLUMNS = "name, driver, labels, options, created_ns, anonymous, size"


def _volume(row: Sequence[Any]) -> Volume:
    return Volume(row[0], row[1], json.loads(row[2]), json.loads(row[3]), row[4], bool(row[5]),
                  row[6])


_USERS_SQL = ("SELECT c.id FROM containers c, json_each(c.config, '$.volumes') v "
              "WHERE json_extract(v.value, '$.name') = ? ORDER BY c.created_ns")


def _users(conn: Any, name: str) -> list[str]:
    return list(dict.fromkeys(r[0] for r in conn.execute(_USERS_SQL, (name,)).fetchall()))


class Volumes:
    """The volumes of one BERTH_ROOT."""

    def __init__(self, db: Database, root: str | os.PathLike[str]) -> None:
        self.db = db
        self.root = Path(root)

    def create(self, name: str = "", *, driver: str = "local",
               labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None) -> Volume:
        """docker's `volume create`: an existing name is returned as it is (docker's rule);
        without a name a random 64-hex one is made, and the volume is anonymous (docker
        labels it so, and `volume prune` takes it without -a)."""
        if driver != "local":
            raise InvalidArgument(f"create {name}: volume driver {driver!r} not found (berth "
                                  "has the local driver)")
        if name:
            check_name(name)
        opts = validate_options(options or {})
        use = VolumeUse(name or os.urandom(32).hex(), "/", labels=dict(labels or {}),
                        options=opts)
        with self.db.transaction() as tx:
            _ensure(tx, self.db, self.root, use, anonymous=not name)
        return self.get(use.name)

    def get(self, name: str) -> Volume:
        rows = self.db.read(f"SELECT {_COLUMNS} FROM volumes WHERE name = ?", (name,))
        if not rows:
            raise NoSuchVolume(name)
        return _volume(rows[0])

    def list(self) -> list[Volume]:
        rows = self.db.read(f"SELECT {_COLUMNS} FROM volumes")
        return sorted((_volume(r) for r in rows), key=lambda v: natural_key(v.name))

    def users(self, name: str) -> list[str]:
        return [r[0] for r in self.db.read(_USERS_SQL, (name,))]

    def used_names(self) -> set[str]:
        return {r[0] for r in self.db.read(
            "SELECT DISTINCT json_extract(v.value, '$.name') FROM containers c, "
            "json_each(c.config, '$.volumes') v")}

    def mountpoint(self, name: str) -> str:
        return str(data_dir(self.root, name))

    def inspect(self, name: str) -> dict[str, Any]:
        """docker's `volume inspect` document (its key order)."""
        v = self.get(name)
        return {"CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                           time.gmtime(v.created_ns / 1e9)),
                "Driver": v.driver, "Labels": dict(sorted(v.labels.items())) or None,
                "Mountpoint": self.mountpoint(v.name), "Name": v.name,
                "Options": dict(sorted(v.options.items())) or None, "Scope": "local"}

    def remove(self, name: str, force: bool = False) -> None:
        """docker's `volume rm`: refused while a container uses it; `force` ignores a name
        that does not exist."""
        with self.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone() is None:
                if force:
                    return
                raise NoSuchVolume(name)
            users = _users(tx, name)
            if users:
                raise VolumeInUse(name, users)
            trash = _delete(tx, self.db, self.root, name)
        discard([trash])

    def prune_plan(self, *, all: bool = False,
                   filters: Mapping[str, Sequence[str]] | None = None) -> list[Volume]:
        """What `volume prune` removes: local volumes no container uses, without mount
        options (their data is elsewhere, as docker skips them), anonymous ones unless `all`,
        matching `label=`/`label!=`."""
        f = filters or {}
        used = self.used_names()
        return [v for v in self.list()
                if v.name not in used and v.driver == "local" and not v.options
                and (all or v.anonymous)
                and labels_match(v.labels, f.get("label", []))
                and labels_match(v.labels, f.get("label!", []), negate=True)]

    def prune(self, *, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None,
              dry_run: bool = False) -> tuple[list[tuple[str, int]], int]:
        """([(name, size)], bytes reclaimed). Sizes are walked once here; with `dry_run` the
        plan is only measured."""
        plan = self.prune_plan(all=all, filters=filters)
        done: list[tuple[str, int]] = []
        for v in plan:
            size = tree_size(data_dir(self.root, v.name))
            if dry_run:
                done.append((v.name, size))
                continue
            with self.db.transaction() as tx:
                if _users(tx, v.name) or tx.execute("SELECT 1 FROM volumes WHERE name = ?",
                                                    (v.name,)).fetchone() is None:
                    continue  # taken (or removed) meanwhile
                tx.execute("UPDATE volumes SET size = ? WHERE name = ?", (size, v.name))
                trash = _delete(tx, self.db, self.root, v.name)
            discard([trash])
            done.append((v.name, size))
        reclaimed = sum(s for _, s in done)
        if not dry_run:
            self.db.record_event("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return done, reclaimed


def _ensure(tx: sqlite3.Connection, db: Database, root: Path, use: VolumeUse, *,
            anonymous: bool) -> None:
    if tx.execute("SELECT 1 FROM volumes WHERE name = ?", (use.name,)).fetchone():
        return
    labels = dict(use.labels)
    if anonymous:
        labels[ANONYMOUS_LABEL] = ""
    data = data_dir(root, use.name)
    data.parent.parent.mkdir(mode=0o701, parents=True, exist_ok=True)
    data.parent.mkdir(mode=0o755, exist_ok=True)
    data.mkdir(mode=0o755, exist_ok=True)
    tx.execute(f"INSERT INTO volumes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (use.name, "local", json.dumps(labels), json.dumps(use.options),
                time.time_ns(), int(anonymous), tree_size(data)))
    db.record_event("volume", "create", use.name, {"driver": "local"})


def _delete(tx: sqlite3.Connection, db: Database, root: Path, name: str) -> Path | None:
    """Drop the record and move the directory aside (atomic with the record); `discard`
    removes it after the transaction."""
    tx.execute("DELETE FROM volumes WHERE name = ?", (name,))
    db.record_event("volume", "destroy", name, {"driver": "local"})
    vdir = data_dir(root, name).parent
    _unmount_all(vdir)
    trash = vdir.with_name(f".trash-{name}-{os.urandom(4).hex()}")
    try:
        os.rename(vdir, trash)
    except FileNotFoundError:
        return None
    return trash


def discard(paths: Sequence[Path | None]) -> None:
    for p in paths:
        if p is not None:
            remove_tree(p)


# --- containers' use ------------------------------------------------------------------------------

def claim(tx: sqlite3.Connection, db: Database, root: str | os.PathLike[str],
          uses: Sequence[VolumeUse]) -> None:
    """In the transaction that records a new container: the volumes it names that do not
    exist yet are created (as docker does), anonymous ones too."""
    for u in uses:
        _ensure(tx, db, Path(root), u, anonymous=u.anonymous)


def uses_of(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(config.get("volumes") or [])


def release(tx: sqlite3.Connection, db: Database, root: str | os.PathLike[str], cid: str,
            remove: bool | None) -> list[Path | None]:
    """In the transaction that removes a container: its anonymous volumes that no other
    container uses are dropped when `remove` (None: when it was an --rm container). Returns
    what `discard` removes after the commit."""
    row = tx.execute("SELECT config, auto_remove FROM containers WHERE id = ?",
                     (cid,)).fetchone()
    if row is None:
        return []
    if remove is None:
        remove = bool(row[1])
    if not remove:
        return []
    out = []
    for u in uses_of(json.loads(row[0])):
        name = u.get("name", "")
        if not u.get("anonymous") or [c for c in _users(tx, name) if c != cid]:
            continue
        vrow = tx.execute("SELECT anonymous FROM volumes WHERE name = ?", (name,)).fetchone()
        if vrow is None or not vrow[0]:
            continue
        out.append(_delete(tx, db, Path(root), name))
    return out


def container_mounts(root: str | os.PathLike[str], config: Mapping[str, Any]
                     ) -> list[dict[str, Any]]:
    """docker's `Mounts` of a container's inspect, for its volumes."""
    return [{"Type": "volume", "Name": u["name"], "Source": str(data_dir(root, u["name"])),
             "Destination": u["destination"], "Driver": "local", "Mode": "",
             "RW": bool(u.get("rw", True)), "Propagation": ""} for u in uses_of(config)]


def attach(db: Database, root: str, run: str, cid: str, rootfs: str) -> None:
    """Before the container starts (its root mounted at `rootfs`): mount typed volumes on
    their `_data`, fill new empty volumes from the image (first start only, as docker copies
    at create), record `volume mount` events."""
    rows = db.read("SELECT config, started_ns FROM containers WHERE id = ?", (cid,))
    if not rows:
        return
    first = not rows[0][1]
    for u in uses_of(json.loads(rows[0][0])):
        name = u["name"]
        vrows = db.read(f"SELECT {_COLUMNS} FROM volumes WHERE name = ?", (name,))
        if not vrows:
            raise NoSuchVolume(name)
        vol = _volume(vrows[0])
        data = data_dir(root, name)
        data.mkdir(parents=True, exist_ok=True)
        if vol.typed:
            _mount_shared(run, vol, data, cid)
        if first and u.get("copy", True):
            copy_up(rootfs, u["destination"], data)
        db.record_event("volume", "mount", name, {
            "container": cid, "destination": u["destination"], "driver": "local",
            "propagation": "", "read/write": "true" if u.get("rw", True) else "false"})


def detach(db: Database, root: str, run: str, cid: str) -> None:
    """After the container exited (or failed to start): unmount typed volumes no running
    container uses any more, record sizes and `volume unmount` events."""
    rows = db.read("SELECT config FROM containers WHERE id = ?", (cid,))
    if not rows:
        return
    for name in dict.fromkeys(u["name"] for u in uses_of(json.loads(rows[0][0]))):
        vrows = db.read(f"SELECT {_COLUMNS} FROM volumes WHERE name = ?", (name,))
        if not vrows:
            continue
        vol = _volume(vrows[0])
        data = data_dir(root, name)
        if vol.typed:
            _unmount_shared(run, vol, data, cid)
        size = 0 if vol.typed else tree_size(data)
        with db.transaction() as tx:
            tx.execute("UPDATE volumes SET size = ? WHERE name = ?", (size, name))
            db.record_event("volume", "unmount", name, {"container": cid, "driver": "local"})


# --- typed volumes: mounted while used ------------------------------------------------------------

@contextlib.contextmanager
def _users_file(run: str, name: str) -> Iterator[dict[str, int]]:
    """The containers (-> monitor pid) that have `name` mounted, under an exclusive flock."""
    import fcntl
    d = os.path.join(run, "volumes")
    os.makedirs(d, exist_ok=True)
    fd = os.open(os.path.join(d, f"{check_name(name)}.users"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
        try:
            users = {str(k): int(v) for k, v in json.loads(raw or b"{}").items()}
        except (ValueError, AttributeError):
            users = {}
        yield users
        data = json.dumps(users).encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, data)
    finally:
        os.close(fd)



def _mount_shared(run: str, vol: Volume, data: Path, cid: str) -> None:
    from berth.store import mount as mnt
    with _users_file(run, vol.name) as users:
        users[cid] = os.getpid()
        if not mnt.is_mounted(data):
            try:
                mount_typed(vol.options, data)
            except BaseException:
                users.pop(cid, None)
                raise


def _unmount_shared(run: str, vol: Volume, data: Path, cid: str) -> None:
    from berth.store import mount as mnt
    with _users_file(run, vol.name) as users:
        users.pop(cid, None)
        for other, pid in list(users.items()):
            if not procs.alive(pid):
                users.pop(other)
        if not users:
            mnt.unmount(data, detach=True)


def mount_typed(options: Mapping[str, str], data: Path) -> None:
    """docker's local driver: mount(device, _data, type, o); for a bind, o=bind of device."""
    from berth.store import _mountapi as sys_
    opts = validate_options(options)
    flags, fsdata = mount_flags(opts.get("o", ""))
    kind, device = opts["type"], opts["device"]
    try:
        if flags & MS_BIND:
            sys_.mount(device, str(data), None, flags & (MS_BIND | MS_REC), None)
            rest = flags & ~(MS_BIND | MS_REC)
            if rest:
                sys_.mount("", str(data), None, MS_BIND | MS_REMOUNT | rest, None)
        else:
            sys_.mount(device, str(data), kind, flags, fsdata or None)
    except OSError as e:
        with contextlib.suppress(OSError):
            from berth.store import mount as mnt
            mnt.unmount(data, detach=True)
        raise RuntimeFailure(f"failed to mount local volume: mount {device}:{data}, "
                             f"type {kind}, o={opts.get('o', '')}: {e.strerror}") from e


def _unmount_all(path: Path) -> None:
    from berth.store import mount as mnt
    for point in sorted(mnt.mounts_under(path), key=len, reverse=True):
        mnt.unmount(point, detach=True)


# --- copy-up, sizes, removal ----------------------------------------------------------------------

def resolve_in_root(root: str, path: str) -> str | None:
    """`path` inside `root` with every symlink followed as if `root` were `/` (an absolute
    link restarts at root, `..` stops there): the real path, or None when a component is
    missing or not a directory. The result has no symlink among its components. The walk is
    store.inroot's `scoped_resolve`."""
    from berth.store.inroot import scoped_resolve
    missing = False

    def lookup(rel: str) -> tuple[str, str]:
        nonlocal missing
        cur = os.path.join(root, rel)
        try:
            st = os.lstat(cur)
        except (FileNotFoundError, NotADirectoryError):
            missing = True
            return ("missing", "")
        if stat.S_ISLNK(st.st_mode):
            return ("link", os.readlink(cur))
        return ("dir" if stat.S_ISDIR(st.st_mode) else "other", "")

    try:
        rel = scoped_resolve(path, lookup)
    except OSError:  # ELOOP
        raise InvalidArgument(f"{path}: too many levels of symbolic links") from None
    return None if missing else os.path.join(root, rel) if rel else root


def copy_up(rootfs: str, destination: str, data: Path) -> bool:
    """docker's copy of the image's directory into a new volume: only when the volume is
    empty and the directory exists; owners, modes, times, xattrs, hard links, devices kept.
    True when it copied."""
    src = resolve_in_root(rootfs, destination)
    if src is None:
        return False
    st = os.lstat(src)
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot mount volume over existing file, file exists "
                              f"{destination}")
    with os.scandir(data) as it:
        if any(True for _ in it):
            return False
    _copy_dir(src, str(data), {})
    _copy_meta(src, str(data), st)
    return True


def _copy_dir(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        st = e.stat(follow_symlinks=False)
        s, d = e.path, os.path.join(dst, e.name)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir(s, d, links)
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or \
                stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], d, follow_symlinks=False)
                continue
            if stat.S_ISREG(mode):
                _copy_file(s, d)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            else:
                os.mknod(d, mode, st.st_rdev)
            if st.st_nlink > 1:
                links[key] = d
        else:
            continue  # sockets are not content
        _copy_meta(s, d, st)


def _copy_file(src: str, dst: str) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600)
        try:
            while True:
                try:
                    n = os.copy_file_range(fin, fout, 1 << 30)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP,
                                       errno.EINVAL):
                        raise
                    while chunk := os.read(fin, 1 << 20):
                        os.write(fout, chunk)
                    break
                if n == 0:
                    break
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    link = stat.S_ISLNK(st.st_mode)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not link:  # after chown, which clears set-id bits
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    for n in names:  # after chown too: it drops security.capability
        try:
            os.setxattr(dst, n, os.getxattr(src, n, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes of the files under `path` (each inode once), not crossing into other mounts."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    seen: set[int] = set()
    total = 0
    stack = [os.fspath(path)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev == top.st_dev:
                        stack.append(e.path)
                elif st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
    return total


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a volume's directory; never descends into a mount (unmounted first, and a
    directory on another device is left alone)."""
    p = Path(path)
    try:
        top = os.lstat(p)
    except FileNotFoundError:
        return
    _unmount_all(p)

    def rm(d: str) -> bool:
        clean = True
        with os.scandir(d) as it:
            entries = list(it)
        for e in entries:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != top.st_dev:
                    clean = False
                    continue
                if rm(e.path):
                    os.rmdir(e.path)
                else:
                    clean = False
            else:
                os.unlink(e.path)
        return clean

    if stat.S_ISDIR(top.st_mode):
        if rm(str(p)):
            os.rmdir(p)
    else:
        os.unlink(p)
