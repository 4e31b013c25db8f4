"""The builder's file work: where a path is in an image's layers, copying a file, and the
archives ADD unpacks and a stdin context arrives as (plain, gzip, bzip2, xz), unpacked with the
layer store's extractor so that no entry lands outside its destination."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from berth.errors import InvalidArgument

__all__ = ["copy_file", "extract_archive", "is_archive", "is_tar", "lookup_in_layers",
           "merge_into", "safe_untar", "untar_context"]


def lookup_in_layers(layers_top_first: Sequence[str], rel: str) -> os.stat_result | None:
    """lstat of `rel` in the union of overlay-form layer directories: a 0/0 character device
    hides what is below, an opaque directory hides the lower layers' content."""
    parts = [p for p in rel.split("/") if p]
    if not parts:
        return os.stat(layers_top_first[0]) if layers_top_first else None
    for layer in layers_top_first:
        path = layer
        hidden = False
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                break
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None
            if i == len(parts) - 1:
                return st
            if not stat.S_ISDIR(st.st_mode):
                return None
            with contextlib.suppress(OSError):
                if os.getxattr(path, "trusted.overlay.opaque") == b"y":
                    hidden = True
        if hidden:
            return None
    return None


def copy_file(src: str, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        left = size
        while left > 0:
            try:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), left)
            except OSError:
                shutil.copyfileobj(fi, fo, 1 << 20)
                return
            if n == 0:
                break
            left -= n
        if left > 0:
            shutil.copyfileobj(fi, fo, 1 << 20)


def is_tar(data: bytes) -> bool:
    return len(data) >= 262 and data[257:262] == b"ustar"


def is_archive(path: str) -> bool:
    """ADD unpacks a local tar (plain, gzip, bzip2, xz; docker's set) into the destination."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    return is_tar(head)


def _decompressing(raw: IO[bytes], head: bytes) -> IO[bytes]:
    """bzip2 and xz as a plain stream (the layer unpacker reads plain, gzip and zstd)."""
    if head[:3] == b"BZh":
        import bz2
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        import lzma
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


def safe_untar(raw: IO[bytes], head: bytes, dest: Path, what: str) -> None:
    """Unpack a tar into the new directory `dest` with the layer store's extractor: no entry
    lands outside `dest`, whatever its name or links say."""
    from berth.store.layers import unpack
    try:
        unpack(_decompressing(raw, head), dest, name=what)
    except (OSError, EOFError, ValueError) as e:
        raise InvalidArgument(f"{what}: cannot unpack: {e}") from None


def merge_into(src: Path, dest: Path) -> None:
    """Move the tree `src` into the directory `dest` (created), entry by entry; what is
    already there is replaced, directories are merged."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(src):
        s, d = src / name, dest / name
        if s.is_dir() and not s.is_symlink() and d.is_dir() and not d.is_symlink():
            merge_into(s, d)
            continue
        if os.path.lexists(d):
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d)
            else:
                d.unlink()
        os.rename(s, d)


def extract_archive(path: str, dest: Path, scratch: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0)
        tmp = scratch / "unpacked"
        safe_untar(f, head, tmp, f"ADD {os.path.basename(path)}")
    merge_into(tmp, dest)


def untar_context(data: bytes, root: Path) -> None:
    import io
    safe_untar(io.BytesIO(data), data[:8], root, "the build context on stdin")
