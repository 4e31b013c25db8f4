"""Content-addressable blobs under `<root>/blobs/sha256/<hex>`.

A blob that exists is whole and matches its digest: content is written to a temp file in the
same directory tree (`<root>/blobs/ingest/`), hashed as it is written, fsynced, checked against
the expected digest and size, renamed into place and the directory fsynced. Two writers of the
same content race harmlessly: rename is atomic and both files are identical.

Raises: DigestMismatch and SizeMismatch (ImageFormatError), BlobNotFound (NotFound).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from berth.errors import ImageFormatError, NotFound
from berth.oci.digest import Digest, Hasher

__all__ = ["BlobNotFound", "BlobStore", "BlobWriter", "DigestMismatch", "SizeMismatch"]

_CHUNK = 1 << 20


class DigestMismatch(ImageFormatError):
    def __init__(self, expected: Digest, actual: Digest, what: str = "blob") -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class SizeMismatch(ImageFormatError):
    def __init__(self, digest: Digest | None, expected: int, actual: int) -> None:
        name = str(digest) if digest else "blob"
        super().__init__(f"{name}: size mismatch: expected {expected} bytes, got {actual}")
        self.expected = expected
        self.actual = actual


class BlobNotFound(NotFound):
    def __init__(self, digest: Digest) -> None:
        super().__init__(f"blob not found: {digest}")
        self.digest = digest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """The file-like object of an ingest: `write` hashes and writes. Committed by `ingest`."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._f = fileobj
        self._hasher = Hasher()
        self.digest: Digest | None = None  # set once committed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hasher.update(data)
        return self._f.write(data)

    def copy_from(self, src: BinaryIO, chunk: int = _CHUNK) -> int:
        """Copy `src` to its end; returns the bytes copied."""
        n = 0
        while buf := src.read(chunk):
            self.write(buf)
            n += len(buf)
        return n

    @property
    def size(self) -> int:
        return self._hasher.size

    def current_digest(self) -> Digest:
        return self._hasher.digest()


class BlobStore:
    """Blobs under `<root>/blobs/sha256/`. `root` is the store root (BERTH_ROOT)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "blobs" / "ingest"

    def _ensure_dirs(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: Digest | str) -> Path:
        return self.dir / Digest.parse(digest).encoded

    def exists(self, digest: Digest | str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: Digest | str) -> int:
        d = Digest.parse(digest)
        try:
            return self.path(d).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(d) from None

    def open(self, digest: Digest | str) -> BinaryIO:
        d = Digest.parse(digest)
        try:
            return open(self.path(d), "rb")
        except FileNotFoundError:
            raise BlobNotFound(d) from None

    def read(self, digest: Digest | str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    @contextlib.contextmanager
    def ingest(self, expected: Digest | str | None = None,
               size: int | None = None) -> Iterator[BlobWriter]:
        """Write a blob: `with store.ingest(d, n) as w: w.write(...)`; afterwards `w.digest`.

        On leaving the block the temp file is fsynced and its digest and size compared with
        `expected` and `size`; on a mismatch or an exception nothing is left behind.
        """
        want = Digest.parse(expected) if expected is not None else None
        self._ensure_dirs()
        fd, tmp_name = tempfile.mkstemp(dir=self.ingest_dir, prefix="tmp-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                writer = BlobWriter(f)
                yield writer
                f.flush()
                os.fsync(f.fileno())
            actual = writer.current_digest()
            if size is not None and writer.size != size:
                raise SizeMismatch(want, size, writer.size)
            if want is not None and actual != want:
                raise DigestMismatch(want, actual)
            os.chmod(tmp, 0o444)
            os.rename(tmp, self.dir / actual.encoded)
            _fsync_dir(self.dir)
            writer.digest = actual
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def put(self, data: bytes, expected: Digest | str | None = None) -> Digest:
        with self.ingest(expected, len(data) if expected is not None else None) as w:
            w.write(data)
        assert w.digest is not None
        return w.digest

    def put_file(self, src: BinaryIO, expected: Digest | str | None = None,
                 size: int | None = None) -> Digest:
        with self.ingest(expected, size) as w:
            w.copy_from(src)
        assert w.digest is not None
        return w.digest

    def adopt(self, path: str | os.PathLike[str], digest: Digest | str) -> Digest:
        """Move the file at `path` (on the store's filesystem) into the store as the blob
        `digest`, which the caller computed while writing it (the builder's packed layers):
        fsynced and renamed, never copied. An existing blob wins; the file is then removed."""
        d = Digest.parse(digest)
        self._ensure_dirs()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(path, 0o444)
        if self.exists(d):
            os.unlink(path)
        else:
            os.rename(path, self.path(d))
            _fsync_dir(self.dir)
        return d

    def delete(self, digest: Digest | str) -> None:
        d = Digest.parse(digest)
        try:
            self.path(d).unlink()
        except FileNotFoundError:
            raise BlobNotFound(d) from None
        _fsync_dir(self.dir)

    def verify(self, digest: Digest | str) -> None:
        """Re-hash the stored blob; raises DigestMismatch if its content changed."""
        d = Digest.parse(digest)
        h = Hasher()
        with self.open(d) as f:
            while buf := f.read(_CHUNK):
                h.update(buf)
        actual = h.digest()
        if actual != d:
            raise DigestMismatch(d, actual, what=f"stored blob {d}")

    def walk(self) -> Iterator[Digest]:
        """Every stored blob's digest (names that are not digests are skipped), sorted."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return
        for name in names:
            try:
                yield Digest("sha256", name)
            except ImageFormatError:
                continue
