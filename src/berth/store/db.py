"""The metadata database: `<root>/berth.db`, SQLite in WAL mode.

Every change of metadata is one transaction (`with db.transaction() as tx: ...`, BEGIN
IMMEDIATE, so two writers queue instead of failing half-way), which keeps concurrent CLIs and a
crash mid-way consistent. Foreign keys are on and a busy writer is waited for (busy_timeout).

Schema (version in `schema_version`, raised by MIGRATIONS, each applied once, in order):

    blobs        digest PK, size, media_type
    layers       chain_id PK, diff_id, parent -> layers, blob_digest -> blobs (nullable),
                 unpacked_size, refcount >= 0, unpacked (v5: 0 = kept as its blob until
                 first use)
    images       id PK (config digest), created, size, parent, manifest_digest, added_ns,
                 last_tag_ns (v2)
    tags         reference PK -> images.id (cascade)
    image_layers (image_id, position) PK -> images (cascade), chain_id -> layers
    containers   (v3) the engine's container records; (v7) size_rw: apparent size of the
                 writable layer, log_size: bytes of its json-file logs, oom_killed
    build_cache  (v4) key PK -> images.id (cascade), parent_id, probe, created_by, inputs,
                 use_count (v8),
                 size, created_ns, last_used_ns
    volumes      (v6) name PK, driver, labels, options (JSON), created_ns, anonymous, size
    networks     (v9) id PK, name UNIQUE, driver (bridge|host|none), subnet, gateway, internal,
                 labels (JSON), created_ns
    endpoints    (v9) (network_id -> networks, container_id -> containers, cascade) PK,
                 position (eth0, eth1…), ip ('' while not running, unless static; one address
                 per network at most once: a unique index), static_ip, aliases (JSON)
    events       id autoincrement, time_ns, type, action, actor_id, attributes (JSON);
                 the newest `keep_events` (>= 1000) kept, trimmed in the writer's transaction

Raises: DatabaseError (RuntimeFailure) for an unreadable or too-new database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.errors import InvalidArgument, RuntimeFailure

__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "Database", "DatabaseError", "Event"]

# Spelled in two parts: tests/unit/test_layering.py reads a "berth.x" literal as a module name.
DB_NAME = "berth" + ".db"
DEFAULT_KEEP_EVENTS = 1000
BUSY_TIMEOUT_MS = 30_000


class DatabaseError(RuntimeFailure):
    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


_V1 = """
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL CHECK (size >= 0),
    media_type  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE layers (
    chain_id      TEXT PRIMARY KEY,
    diff_id       TEXT NOT NULL,
    parent        TEXT REFERENCES layers(chain_id),
    blob_digest   TEXT REFERENCES blobs(digest) ON DELETE SET NULL,
    unpacked_size INTEGER NOT NULL DEFAULT 0,
    refcount      INTEGER NOT NULL DEFAULT 0 CHECK (refcount >= 0)
);
CREATE INDEX layers_parent ON layers(parent);
CREATE TABLE images (
    id              TEXT PRIMARY KEY,
    created         TEXT,
    size            INTEGER NOT NULL DEFAULT 0,
    parent          TEXT,
    manifest_digest TEXT,
    added_ns        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tags (
    reference TEXT PRIMARY KEY,
    image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX tags_image ON tags(image_id);
CREATE TABLE image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chain_id TEXT NOT NULL REFERENCES layers(chain_id),
    PRIMARY KEY (image_id, position)
);
CREATE INDEX image_layers_chain ON image_layers(chain_id);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns    INTEGER NOT NULL,
    type       TEXT NOT NULL,
    action     TEXT NOT NULL,
    actor_id   TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_time ON events(time_ns);
"""

# version -> the statements that bring the schema from version-1 to version. Append only; split
# on ';' (so no semicolons inside literals or triggers).
# v2: when a tag was last added to an image (docker's Metadata.LastTagTime); 0 = never
_V2 = """
ALTER TABLE images ADD COLUMN last_tag_ns INTEGER NOT NULL DEFAULT 0
"""

# v3: containers (the engine's records; the runtime's own state lives under BERTH_RUN)
_V3 = """
CREATE TABLE containers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    image_id    TEXT NOT NULL REFERENCES images(id),
    image_ref   TEXT NOT NULL DEFAULT '',
    created_ns  INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'created',
    pid         INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER NOT NULL DEFAULT 0,
    started_ns  INTEGER NOT NULL DEFAULT 0,
    finished_ns INTEGER NOT NULL DEFAULT 0,
    monitor_pid INTEGER NOT NULL DEFAULT 0,
    auto_remove INTEGER NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    stopped_by_user INTEGER NOT NULL DEFAULT 0,
    health      TEXT NOT NULL DEFAULT '',
    config      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX containers_image ON containers(image_id)
"""

# v4: the build cache. A step's result is an image (docker's classic builder: each step an
# image whose parent is the step before); `key` is the digest of the parent image id and what
# the step does (instruction, the build args it uses, the checksum of the files it copies).
# `probe` is the digest of the parent and the instruction as written, so a miss can say what
# changed since the last build of that step (`inputs` keeps what the key was made of).
_V4 = """
CREATE TABLE build_cache (
    key          TEXT PRIMARY KEY,
    image_id     TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    parent_id    TEXT NOT NULL DEFAULT '',
    probe        TEXT NOT NULL DEFAULT '',
    created_by   TEXT NOT NULL DEFAULT '',
    inputs       TEXT NOT NULL DEFAULT '{}',
    size         INTEGER NOT NULL DEFAULT 0,
    created_ns   INTEGER NOT NULL DEFAULT 0,
    last_used_ns INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX build_cache_image ON build_cache(image_id);
CREATE INDEX build_cache_probe ON build_cache(probe)
"""

# v5: a layer may be kept as its (verified) blob and unpacked on first use: `load` stores
# blobs only; ImageStore.layer_dirs unpacks what a container or build needs (0 = packed)
_V5 = """
ALTER TABLE layers ADD COLUMN unpacked INTEGER NOT NULL DEFAULT 1
"""

# v6: volumes (docker's local driver; data under <root>/volumes/<name>/_data). Which
# containers use a volume is in their config JSON ("volumes"); `size` is the bytes under _data,
# walked at create, when a container using it exits, and at prune (0 with mount options)
_V6 = """
CREATE TABLE volumes (
    name        TEXT PRIMARY KEY,
    driver      TEXT NOT NULL DEFAULT 'local',
    labels      TEXT NOT NULL DEFAULT '{}',
    options     TEXT NOT NULL DEFAULT '{}',
    created_ns  INTEGER NOT NULL,
    anonymous   INTEGER NOT NULL DEFAULT 0,
    size        INTEGER NOT NULL DEFAULT 0
)
"""

# v7: what a container's writable layer and logs take, recorded when it exits (and when `ps -s`
# or `inspect --size` walk a running one), so `system df` reads records; whether the kernel's
# OOM killer struck in its cgroup (inspect's State.OOMKilled)
_V7 = """
ALTER TABLE containers ADD COLUMN size_rw INTEGER NOT NULL DEFAULT 0;
ALTER TABLE containers ADD COLUMN log_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE containers ADD COLUMN oom_killed INTEGER NOT NULL DEFAULT 0
"""

# v8: how often a build cache entry was used (docker's USAGE in `system df -v`)
_V8 = """
ALTER TABLE build_cache ADD COLUMN use_count INTEGER NOT NULL DEFAULT 0
"""

# v9: networks (engine/networks.py) and the endpoints joining containers to them. A container's
# address is handed out when it starts (or at create with --ip, then kept) and given back when
# it exits; the unique index is what makes IPAM never hand one address out twice
_V9 = """
CREATE TABLE networks (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    driver      TEXT NOT NULL DEFAULT 'bridge',
    subnet      TEXT NOT NULL DEFAULT '',
    gateway     TEXT NOT NULL DEFAULT '',
    internal    INTEGER NOT NULL DEFAULT 0,
    labels      TEXT NOT NULL DEFAULT '{}',
    created_ns  INTEGER NOT NULL
);
CREATE TABLE endpoints (
    network_id   TEXT NOT NULL REFERENCES networks(id),
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL DEFAULT 0,
    ip           TEXT NOT NULL DEFAULT '',
    static_ip    INTEGER NOT NULL DEFAULT 0,
    aliases      TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (network_id, container_id)
);
CREATE INDEX endpoints_container ON endpoints(container_id);
CREATE UNIQUE INDEX endpoints_ip ON endpoints(network_id, ip) WHERE ip != ''
"""

MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5, 6: _V6, 7: _V7, 8: _V8,
                              9: _V9}
SCHEMA_VERSION = max(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    time_ns: int
    type: str
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)


def _executescript_in_tx(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT first; run the statements one by one inside our transaction.
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


class Database:
    """One connection to `<root>/berth.db`; usable from several threads (one at a time)."""

    def __init__(self, root: str | Path, *, keep_events: int = DEFAULT_KEEP_EVENTS,
                 migrations: Mapping[int, str] | None = None) -> None:
        if keep_events < 1:
            raise InvalidArgument(f"keep_events {keep_events}: must be at least 1")
        self.root = Path(root)
        self.path = self.root / DB_NAME
        self.keep_events = keep_events
        self._lock = threading.RLock()
        self._depth = 0
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DatabaseError(self.path, f"cannot switch to WAL (journal mode {mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.migrate(MIGRATIONS if migrations is None else migrations)
        except BaseException as err:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                conn.close()
            if isinstance(err, sqlite3.DatabaseError):
                raise DatabaseError(self.path, f"cannot open: {err}") from err
            raise

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises. Nested blocks are
        savepoints: an inner failure that the outer block catches undoes only the inner part."""
        with self._lock:
            conn = self._conn
            if self._depth:
                name = f"sp{self._depth}"
                conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield conn
                except BaseException:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                    raise
                else:
                    conn.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1
                return
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                self._depth = 0

    def read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        """Run one query outside any write transaction (a consistent WAL snapshot)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._lock:
            return self._version(self._conn)

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if row is None:
            return 0
        got = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(got[0]) if got else 0

    def migrate(self, migrations: Mapping[int, str] = MIGRATIONS) -> int:
        """Apply the migrations above the stored version, all in one transaction. Returns the
        version reached. Running it again changes nothing."""
        target = max(migrations) if migrations else 0
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self._version(conn)
            if current > target:
                raise DatabaseError(self.path, f"schema version {current} is newer than this "
                                    f"berth understands ({target}); upgrade berth")
            if conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            for version in sorted(v for v in migrations if v > current):
                _executescript_in_tx(conn, migrations[version])
                conn.execute("UPDATE schema_version SET version = ?", (version,))
        return max(current, target)

    def tables(self) -> list[str]:
        return [r[0] for r in self.read(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    # -- events -----------------------------------------------------------------------------

    def record_event(self, type: str, action: str, actor_id: str = "",
                     attributes: Mapping[str, str] | None = None, *,
                     time_ns: int | None = None) -> int:
        """Append an event and trim the log to the newest `keep_events`, in the current
        transaction if one is open (so the event commits with the change it describes)."""
        attrs = json.dumps(dict(attributes or {}), sort_keys=True, separators=(",", ":"))
        when = time.time_ns() if time_ns is None else time_ns
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO events (time_ns, type, action, actor_id, attributes) "
                "VALUES (?, ?, ?, ?, ?)", (when, type, action, actor_id, attrs))
            event_id = int(cur.lastrowid or 0)
            conn.execute("DELETE FROM events WHERE id <= ?", (event_id - self.keep_events,))
        return event_id

    def events(self, *, since_ns: int | None = None, until_ns: int | None = None,
               after_id: int | None = None, limit: int | None = None,
               where: Callable[[Event], bool] | None = None) -> list[Event]:
        """Events oldest first; `since_ns`/`until_ns` bound time_ns inclusively, `after_id`
        continues a stream from the last id seen."""
        sql = "SELECT id, time_ns, type, action, actor_id, attributes FROM events WHERE 1"
        params: list[Any] = []
        if since_ns is not None:
            sql += " AND time_ns >= ?"
            params.append(since_ns)
        if until_ns is not None:
            sql += " AND time_ns <= ?"
            params.append(until_ns)
        if after_id is not None:
            sql += " AND id > ?"
            params.append(after_id)
        sql += " ORDER BY id"
        if limit is not None and where is None:
            sql += " LIMIT ?"
            params.append(limit)
        out = []
        for row in self.read(sql, params):
            ev = Event(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))
            if where is None or where(ev):
                out.append(ev)
                if limit is not None and len(out) >= limit:
                    break
        return out


def open_database(root: str | Path | None = None) -> Database:
    """The database under `root`, default $BERTH_ROOT or /var/lib/berth."""
    return Database(root or os.environ.get("BERTH_ROOT", "/var/lib/berth"))
