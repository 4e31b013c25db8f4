"""store/db.py: schema and migrations, transactions, concurrent writers, the event log."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from berth.errors import RuntimeFailure
from berth.store.db import MIGRATIONS, SCHEMA_VERSION, Database, DatabaseError

TABLES = {"blobs", "layers", "images", "tags", "image_layers", "events", "schema_version"}


@pytest.fixture
def db(tmp_path: Path):
    with Database(tmp_path) as d:
        yield d


def test_schema_created_with_wal_and_foreign_keys(db: Database, tmp_path: Path) -> None:
    assert (tmp_path / "berth.db").is_file()
    assert TABLES <= set(db.tables())
    assert db.schema_version() == SCHEMA_VERSION
    assert db.read("PRAGMA journal_mode")[0][0] == "wal"
    assert db.read("PRAGMA foreign_keys")[0][0] == 1
    assert db.read("PRAGMA busy_timeout")[0][0] > 0


def test_migration_is_idempotent(tmp_path: Path) -> None:
    Database(tmp_path).close()
    with Database(tmp_path) as d:
        assert d.migrate() == SCHEMA_VERSION
        assert d.migrate() == SCHEMA_VERSION
        assert d.read("SELECT count(*) FROM schema_version")[0][0] == 1


def test_later_migration_applied_once(tmp_path: Path) -> None:
    with Database(tmp_path) as d:
        d.record_event("image", "load", "sha256:aa")
    more = dict(MIGRATIONS)
    more[SCHEMA_VERSION + 1] = "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (7)"
    with Database(tmp_path, migrations=more) as d:
        assert d.schema_version() == SCHEMA_VERSION + 1
        assert d.read("SELECT x FROM extra") == [(7,)]
        assert len(d.events()) == 1  # old data kept
    with Database(tmp_path, migrations=more) as d:  # again: not re-applied
        assert d.read("SELECT count(*) FROM extra")[0][0] == 1


def test_newer_database_refused(tmp_path: Path) -> None:
    more = dict(MIGRATIONS)
    more[SCHEMA_VERSION + 1] = "CREATE TABLE extra (x INTEGER)"
    Database(tmp_path, migrations=more).close()
    with pytest.raises(DatabaseError, match="newer") as info:
        Database(tmp_path)
    assert isinstance(info.value, RuntimeFailure)


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "berth.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="berth.db"):
        Database(tmp_path)


def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(ValueError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO images (id) VALUES ('sha256:1')")
            tx.execute("INSERT INTO tags VALUES ('docker.io/library/a:latest', 'sha256:1')")
            raise ValueError("boom")
    assert db.read("SELECT count(*) FROM images")[0][0] == 0
    assert db.read("SELECT count(*) FROM tags")[0][0] == 0
    with db.transaction() as tx:  # usable afterwards
        tx.execute("INSERT INTO images (id) VALUES ('sha256:1')")
    assert db.read("SELECT id FROM images") == [("sha256:1",)]


def test_foreign_key_violation_rolls_back_whole_change(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO images (id) VALUES ('sha256:2')")
            tx.execute("INSERT INTO tags VALUES ('x:latest', 'sha256:missing')")
    assert db.read("SELECT count(*) FROM images")[0][0] == 0


def test_refcount_cannot_go_negative(db: Database) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO layers (chain_id, diff_id) VALUES ('sha256:c', 'sha256:d')")
    with pytest.raises(sqlite3.IntegrityError):
        with db.transaction() as tx:
            tx.execute("UPDATE layers SET refcount = refcount - 1")


def test_delete_image_cascades_tags_and_layers(db: Database) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO layers (chain_id, diff_id) VALUES ('sha256:c', 'sha256:d')")
        tx.execute("INSERT INTO images (id) VALUES ('sha256:i')")
        tx.execute("INSERT INTO tags VALUES ('a:latest', 'sha256:i')")
        tx.execute("INSERT INTO image_layers VALUES ('sha256:i', 0, 'sha256:c')")
    with db.transaction() as tx:
        tx.execute("DELETE FROM images WHERE id = 'sha256:i'")
    assert db.read("SELECT count(*) FROM tags")[0][0] == 0
    assert db.read("SELECT count(*) FROM image_layers")[0][0] == 0


def test_nested_transaction_is_a_savepoint(db: Database) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO images (id) VALUES ('sha256:outer')")
        with pytest.raises(KeyError):
            with db.transaction() as inner:
                inner.execute("INSERT INTO images (id) VALUES ('sha256:inner')")
                raise KeyError("x")
    assert db.read("SELECT id FROM images") == [("sha256:outer",)]


def test_event_recorded_in_callers_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO images (id) VALUES ('sha256:e')")
            db.record_event("image", "load", "sha256:e")
            raise RuntimeError("crash before commit")
    assert db.events() == []


def test_events_filters(db: Database) -> None:
    for i in range(10):
        db.record_event("image", "tag", f"sha256:{i}", {"name": f"x:{i}"}, time_ns=1000 + i)
    evs = db.events(since_ns=1003, until_ns=1005)
    assert [e.actor_id for e in evs] == ["sha256:3", "sha256:4", "sha256:5"]
    assert evs[0].attributes == {"name": "x:3"}
    assert evs[0].type == "image" and evs[0].action == "tag"
    assert [e.time_ns for e in db.events(after_id=evs[-1].id, limit=2)] == [1006, 1007]
    assert len(db.events(where=lambda e: e.actor_id.endswith("9"))) == 1


def test_event_log_trimmed_at_1000(db: Database) -> None:
    assert db.keep_events >= 1000
    with db.transaction():
        for i in range(1100):
            db.record_event("image", "pull", f"sha256:{i}", time_ns=i)
    evs = db.events()
    assert len(evs) == 1000
    assert evs[0].actor_id == "sha256:100" and evs[-1].actor_id == "sha256:1099"
    db.record_event("image", "delete", "sha256:last")
    evs = db.events()
    assert len(evs) == 1000 and evs[-1].actor_id == "sha256:last"


def _writer(root: str, who: int, n: int) -> None:
    with Database(root) as d:
        for i in range(n):
            with d.transaction() as tx:
                # read-modify-write: lost updates would show as a wrong total
                (count,) = tx.execute(
                    "SELECT refcount FROM layers WHERE chain_id = 'sha256:shared'").fetchone()
                tx.execute("UPDATE layers SET refcount = ? WHERE chain_id = 'sha256:shared'",
                           (count + 1,))
                tx.execute("INSERT INTO images (id) VALUES (?)", (f"sha256:{who}-{i}",))
                d.record_event("image", "load", f"sha256:{who}-{i}")


def test_concurrent_writers_from_two_processes(tmp_path: Path) -> None:
    with Database(tmp_path) as d, d.transaction() as tx:
        tx.execute("INSERT INTO layers (chain_id, diff_id) VALUES ('sha256:shared', 'sha256:d')")
    n = 150
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, n)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Database(tmp_path) as d:
        assert d.read("SELECT refcount FROM layers")[0][0] == 2 * n
        assert d.read("SELECT count(*) FROM images")[0][0] == 2 * n
        assert len(d.events()) == 2 * n
        assert d.read("PRAGMA integrity_check") == [("ok",)]
