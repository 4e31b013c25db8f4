"""berth.store.blobs on a real filesystem: ingest verifies, a blob that exists is whole."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from berth.errors import ImageFormatError, NotFound
from berth.oci.digest import Digest, sha256_of
from berth.store.blobs import BlobNotFound, BlobStore, DigestMismatch, SizeMismatch

TYPE_CHECKING = False
if TYPE_CHECKING:  # `conftest` names two modules here (tests/ and tests/conformance/)
    from conftest import BerthEnv


@pytest.fixture
def store(berth_env: BerthEnv) -> BlobStore:
    return BlobStore(berth_env.root)


def _leftovers(store: BlobStore) -> list[str]:
    return sorted(os.listdir(store.ingest_dir)) if store.ingest_dir.exists() else []


def test_put_open_path_size_verify(store: BlobStore) -> None:
    data = b"layer bytes\n" * 100
    d = store.put(data)
    assert d == sha256_of(data)
    assert store.path(d) == store.root / "blobs" / "sha256" / d.hex
    assert store.exists(d) and store.exists(str(d))
    assert store.size(d) == len(data)
    with store.open(d) as f:
        assert f.read() == data
    assert store.read(d) == data
    store.verify(d)
    assert list(store.walk()) == [d]
    assert store.path(d).stat().st_mode & 0o777 == 0o444
    assert _leftovers(store) == []


def test_ingest_streams_and_checks_expected(store: BlobStore) -> None:
    data = os.urandom(3 << 20)
    want = sha256_of(data)
    with store.ingest(expected=want, size=len(data)) as w:
        w.copy_from(io.BytesIO(data))
    assert w.digest == want
    assert store.read(want) == data


def test_wrong_digest_leaves_nothing(store: BlobStore) -> None:
    data = b"actual content"
    wrong = sha256_of(b"something else")
    with pytest.raises(DigestMismatch) as exc:
        with store.ingest(expected=wrong) as w:
            w.write(data)
    assert isinstance(exc.value, ImageFormatError)
    assert exc.value.expected == wrong and exc.value.actual == sha256_of(data)
    assert not store.exists(wrong) and not store.exists(sha256_of(data))
    assert list(store.walk()) == []
    assert _leftovers(store) == []


def test_wrong_size_leaves_nothing(store: BlobStore) -> None:
    data = b"12345"
    with pytest.raises(SizeMismatch):
        with store.ingest(expected=sha256_of(data), size=4) as w:
            w.write(data)
    assert list(store.walk()) == [] and _leftovers(store) == []


def test_exception_inside_ingest_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(ConnectionError):
        with store.ingest() as w:
            w.write(b"partial download")
            raise ConnectionError("peer went away")
    assert list(store.walk()) == [] and _leftovers(store) == []


def test_missing_blob(store: BlobStore) -> None:
    d = sha256_of(b"never stored")
    for call in (store.open, store.size, store.delete, store.verify):
        with pytest.raises(BlobNotFound) as exc:
            call(d)
        assert isinstance(exc.value, NotFound) and str(d) in str(exc.value)
    assert not store.exists(d)


def test_delete(store: BlobStore) -> None:
    d = store.put(b"x")
    store.delete(d)
    assert not store.exists(d) and list(store.walk()) == []


def test_verify_finds_a_flipped_byte(store: BlobStore) -> None:
    d = store.put(b"A" * 1000)
    p = store.path(d)
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.seek(500)
        f.write(b"B")
    with pytest.raises(DigestMismatch):
        store.verify(d)


def test_walk_skips_stray_names(store: BlobStore) -> None:
    d = store.put(b"y")
    (store.dir / "not-a-digest").write_text("")
    assert list(store.walk()) == [d]


def test_concurrent_ingest_of_same_content(store: BlobStore) -> None:
    data = os.urandom(1 << 20)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            store.put(data, expected=sha256_of(data))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list(store.walk()) == [sha256_of(data)]
    store.verify(sha256_of(data))
    assert _leftovers(store) == []


def test_invalid_digest_argument(store: BlobStore) -> None:
    with pytest.raises(ImageFormatError):
        store.exists("sha256:../../etc/passwd")
    assert isinstance(Digest.parse(f"sha256:{'0' * 64}"), Digest)
    assert not Path("/etc/passwd.blob").exists()
