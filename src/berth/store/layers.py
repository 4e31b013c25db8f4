"""Layers: a layer tar <-> a directory, OCI whiteouts <-> overlayfs form, diff ids.

Owns
    unpack(source, dest)        layer tar (plain, gzip or zstd) -> directory, safely, atomically
    diff(lowers, upper, out)    a container's overlay upper dir -> layer tar, as docker computes it
    pack(src, out)              a directory -> deterministic tar (import/export style)
and the pure decisions behind them (entry-name cleaning, whiteout names), unit-tested.

Whiteouts (OCI image-spec layer.md) in overlayfs form:
    .wh.NAME       <-> NAME as a character device 0/0
    .wh..wh..opq   <-> the directory carries xattr trusted.overlay.opaque="y"

Every entry of a layer is hostile until resolved: names are relative without `..`, parents are
resolved inside the destination (a symlink is followed only if it is relative and stays inside),
hardlinks point to entries already inside it, and trusted.overlay.* xattrs from a tar are dropped
(only the whiteout conversion sets them). Extraction goes to `<dest>.tmp-<pid>` and is renamed
into place, so a failed unpack leaves nothing.

Raises: UnsafePath, ImageFormatError (bad or truncated tar, bad compression), DigestMismatch,
LayerExists (Conflict) if dest already exists.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from berth.errors import Conflict, ImageFormatError, InvalidArgument
from berth.oci.digest import Digest, Hasher
from berth.store.blobs import DigestMismatch

__all__ = [
    "LayerExists", "LayerInfo", "PackedLayer", "UnsafePath", "clean_entry_name",
    "detect_compression", "diff", "pack", "resolve_in_root", "scan", "unpack", "whiteout_of",
    "whiteout_name", "OPAQUE_MARKER", "OPAQUE_XATTR", "WHITEOUT_PREFIX",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIX = "trusted.overlay."
_PAX_XATTR = "SCHILY.xattr."
_CHUNK = 1 << 20
_MAX_SYMLINK_DEPTH = 40

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class UnsafePath(ImageFormatError):
    """A layer entry that would land, or write through, outside the destination."""

    def __init__(self, layer: str, entry: str, problem: str) -> None:
        super().__init__(f"layer {layer}: entry {entry!r} {problem}")
        self.layer = layer
        self.entry = entry
        self.problem = problem


class LayerExists(Conflict):
    def __init__(self, dest: Path) -> None:
        super().__init__(f"layer directory already exists: {dest}")
        self.dest = dest


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """diff_id: sha256 of the uncompressed tar; size: apparent size as docker reports it (bytes
    of regular files and symlink targets, each inode once)."""

    diff_id: Digest
    size: int


@dataclass(frozen=True, slots=True)
class PackedLayer:
    path: Path
    diff_id: Digest
    size: int  # apparent size of the content, as LayerInfo.size
    tar_size: int  # bytes of the tar file


# --- pure decisions ----------------------------------------------------------------------------

def clean_entry_name(name: str, layer: str = "<layer>") -> tuple[str, ...]:
    """'./usr//bin/' -> ('usr', 'bin'); absolute names and any '..' are refused."""
    if name.startswith("/"):
        raise UnsafePath(layer, name, "is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafePath(layer, name, "contains '..'")
    if "\0" in name:
        raise UnsafePath(layer, name, "contains a NUL byte")
    return parts


def resolve_in_root(parts: Sequence[str], lookup: Callable[[str], tuple[str, str]], *,
                    entry: str, layer: str = "<layer>", known: set[str] | None = None) -> str:
    """The directory, relative to the root ('' for the root itself), that the path `parts`
    reaches when each symlink on the way is followed the way the kernel would, component by
    component. `lookup(rel)` says what is at `rel`: ('dir', ''), ('link', target),
    ('missing', '') or ('other', ''). Real directories found are added to `known`.

    Refused (UnsafePath): an absolute symlink, a '..' that climbs above the root, too many
    links. A missing or non-directory component is an ImageFormatError."""
    pending = list(reversed(parts))
    stack: list[str] = []
    links = 0
    via = ""  # the last symlink followed, for messages
    while pending:
        comp = pending.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if not stack:
                raise UnsafePath(layer, entry, f"goes through symlink {via}, which points "
                                               "outside the layer")
            stack.pop()
            continue
        stack.append(comp)
        rel = "/".join(stack)
        if known is not None and rel in known:
            continue
        kind, target = lookup(rel)
        if kind == "dir":
            if known is not None:
                known.add(rel)
        elif kind == "link":
            links += 1
            via = f"{rel!r} -> {target!r}"
            if links > _MAX_SYMLINK_DEPTH:
                raise UnsafePath(layer, entry, "goes through too many symlinks")
            if not target:
                raise ImageFormatError(f"layer {layer}: entry {entry!r}: symlink {rel!r} is "
                                       "empty")
            if target.startswith("/"):
                raise UnsafePath(layer, entry, f"goes through symlink {via}, which points "
                                               "outside the layer (absolute)")
            stack.pop()
            pending.extend(reversed(target.split("/")))
        elif kind == "missing":
            raise ImageFormatError(f"layer {layer}: entry {entry!r}: {rel!r} does not exist")
        else:
            raise ImageFormatError(f"layer {layer}: entry {entry!r}: {rel!r} is not a "
                                   "directory")
    return "/".join(stack)


def whiteout_of(basename: str) -> tuple[str, str | None] | None:
    """Classify a tar entry's basename: ('opaque', None), ('file', NAME), ('meta', None) for
    other aufs `.wh..wh.*` entries (skipped), or None for an ordinary name."""
    if basename == OPAQUE_MARKER:
        return ("opaque", None)
    if basename.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return ("meta", None)
    if basename.startswith(WHITEOUT_PREFIX):
        name = basename[len(WHITEOUT_PREFIX):]
        if not name or name in (".", ".."):
            return ("meta", None)
        return ("file", name)
    return None


def whiteout_name(basename: str) -> str:
    return WHITEOUT_PREFIX + basename


def detect_compression(head: bytes) -> str:
    """'gzip', 'zstd' or 'none' from the first bytes of a layer."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


# --- reading -----------------------------------------------------------------------------------

class _Prefixed:
    """A read-only stream that first returns `head`, then the rest of `raw`."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out, self._head = self._head + self._raw.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._raw.read(n)


class _GzipReader:
    """Streaming gzip decompressor: several members, zero padding after the last, output
    bounded per call (no memory blow-up from a small bomb). zlib releases the GIL."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._d = zlib.decompressobj(wbits=31)
        self._started = False  # the current member has had input
        self._in = b""  # compressed bytes not yet given to zlib

    def read(self, n: int = -1) -> bytes:
        limit = n if n > 0 else _CHUNK * 4
        while True:
            if not self._in:
                self._in = self._raw.read(_CHUNK)
                if not self._in:
                    if self._started and not self._d.eof:
                        raise ImageFormatError("gzip stream is truncated")
                    return b""
            if self._d.eof:  # a member ended: padding, or another member
                if not self._in.strip(b"\0"):
                    self._in = b""
                    continue
                self._d = zlib.decompressobj(wbits=31)
                self._started = False
            self._started = True
            out = self._d.decompress(self._in, limit)
            self._in = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
            if out:
                return out


class _LayerReader:
    """The uncompressed layer as tarfile reads it: hashed as it passes (the diff_id), buffered,
    and seekable forward only, so tarfile reads the stream directly instead of through its own
    `_Stream` (which re-slices its whole buffer on every 512-byte read)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.hasher = Hasher()
        self._buf = b""
        self._off = 0  # read position inside _buf
        self._base = 0  # stream offset of _buf[0]

    def _fill(self) -> bool:
        data: bytes = self._raw.read(_CHUNK)
        if not data:
            return False
        self.hasher.update(data)
        self._base += self._off
        self._buf = self._buf[self._off:] + data if self._off < len(self._buf) else data
        self._off = 0
        return True

    def tell(self) -> int:
        return self._base + self._off

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.tell()
        elif whence != 0:
            raise OSError("a layer stream cannot seek from its end")
        if pos < self._base:
            raise OSError(f"a layer stream cannot seek back to {pos}")
        while pos > self._base + len(self._buf):
            self._base += len(self._buf)
            self._buf, self._off = b"", 0
            if not self._fill():
                self._off = len(self._buf)
                return self.tell()
        self._off = pos - self._base
        return pos

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            while self._fill():
                pass
            out = self._buf[self._off:]
            self._off = len(self._buf)
            return out
        while len(self._buf) - self._off < n and self._fill():
            pass
        out = self._buf[self._off:self._off + n]
        self._off += len(out)
        return out

    def check_end(self, offset: int, label: str) -> None:
        """Python's tarfile ends quietly at a bad or partial header after the first; refuse
        that, as Go's archive/tar does: what follows the last member is a zero block or EOF."""
        if offset < self._base:
            return
        self._off = offset - self._base
        block = self.read(512)
        if block.strip(b"\0"):
            raise ImageFormatError(f"layer {label}: invalid or truncated tar header at offset "
                                   f"{offset}")

    def drain(self) -> None:
        """Read (and hash) to the end: the diff_id covers the whole stream, padding included."""
        self._buf, self._off = b"", 0
        while self._fill():
            self._base += len(self._buf)
            self._buf = b""


def _decompressed(raw: IO[bytes]) -> Any:
    head = raw.read(4)
    src = _Prefixed(head, raw)
    kind = detect_compression(head)
    if kind == "gzip":
        return _GzipReader(src)
    if kind == "zstd":
        import zstandard  # lazily: only zstd layers pay for it

        return zstandard.ZstdDecompressor().stream_reader(
            src, read_across_frames=True)  # type: ignore[arg-type]  # it only calls read()
    return src


def _read_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [tarfile.TarError, EOFError, zlib.error]
    import sys

    zstd = sys.modules.get("zstandard")
    if zstd is not None:
        errs.append(zstd.ZstdError)
    return tuple(errs)


# --- unpack ------------------------------------------------------------------------------------

MAX_SPECIAL_HEADER = 1 << 20  # pax and GNU long-name headers, as Go's archive/tar caps them
_SPECIAL_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                            tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a pax or long-name header's body into memory whole: cap it before it does,
    so a 10 GB header in a small gzip cannot exhaust memory."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _SPECIAL_TYPES and self.size > MAX_SPECIAL_HEADER:
            raise tarfile.ReadError(f"{self.type.decode(errors='replace')!r} header of "
                                    f"{self.size} bytes is over the {MAX_SPECIAL_HEADER}-byte "
                                    "limit")
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]


class _Extractor:
    """Writes tar members under `root`, resolving every path inside it."""

    def __init__(self, root: Path, layer: str) -> None:
        self.root = str(root)
        self.layer = layer
        self.known_dirs: set[str] = {""}
        self.dir_times: dict[str, tuple[int, int]] = {}
        self.sizes: dict[str, tuple[tuple[int, int], int]] = {}  # rel -> (inode key, size)

    def abs(self, rel: str) -> str:
        return self.root + "/" + rel if rel else self.root

    def unsafe(self, entry: str, problem: str) -> UnsafePath:
        return UnsafePath(self.layer, entry, problem)

    def _lookup(self, rel: str, entry: str, create: bool) -> tuple[str, str]:
        path = self.abs(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                return ("missing", "")
            os.mkdir(path, 0o755)
            return ("dir", "")
        if stat.S_ISDIR(st.st_mode):
            return ("dir", "")
        if stat.S_ISLNK(st.st_mode):
            return ("link", os.readlink(path))
        return ("other", "")

    def resolve_dir(self, parts: Sequence[str], entry: str, *, create: bool) -> str:
        """The real directory (relative to root) that `parts` names, following symlinks only
        inside the root; missing directories are made when `create`."""
        rel = "/".join(parts)
        if rel in self.known_dirs:
            return rel
        out = resolve_in_root(parts, lambda r: self._lookup(r, entry, create),
                              entry=entry, layer=self.layer, known=self.known_dirs)
        return out

    def _forget(self, rel: str) -> None:
        prefix = rel + "/"
        self.known_dirs = {d for d in self.known_dirs if d != rel and not d.startswith(prefix)}
        self.sizes = {k: v for k, v in self.sizes.items() if k != rel and
                      not k.startswith(prefix)}
        self.dir_times = {k: v for k, v in self.dir_times.items() if k != rel and
                          not k.startswith(prefix)}

    def clear(self, rel: str, keep_dir: bool) -> bool:
        """Remove what is at `rel` unless it is a directory and `keep_dir`; True if a directory
        was kept."""
        path = self.abs(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(path)
            self._forget(rel)
        else:
            os.unlink(path)
            self.sizes.pop(rel, None)
        return False

    def extract(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        entry = m.name
        parts = clean_entry_name(entry, self.layer)
        if not parts:
            if not m.isdir():
                raise self.unsafe(entry, "names the root but is not a directory")
            self.set_meta(m, "", self.root)
            return
        parent = self.resolve_dir(parts[:-1], entry, create=True)
        base = parts[-1]
        wh = whiteout_of(base)
        if wh is not None:
            kind, name = wh
            if kind == "opaque":
                os.setxattr(self.abs(parent), OPAQUE_XATTR, b"y")
            elif kind == "file":
                assert name is not None
                rel = f"{parent}/{name}" if parent else name
                self.clear(rel, keep_dir=False)
                path = self.abs(rel)
                os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))  # mode 0, as the kernel's
                os.lchown(path, m.uid, m.gid)
                mtime_ns = int(m.mtime * 1_000_000_000)
                os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
            return
        rel = f"{parent}/{base}" if parent else base
        path = self.abs(rel)
        if m.isdir():
            if not self.clear(rel, keep_dir=True):
                os.mkdir(path, 0o700)
            self.known_dirs.add(rel)
            self.set_meta(m, rel, path)
            return
        self.clear(rel, keep_dir=False)
        if m.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                if m.sparse is not None:
                    src = tar.extractfile(m)
                    assert src is not None
                    shutil.copyfileobj(src, out, _CHUNK)
                else:
                    self.copy_data(tar, m, out)
            st = os.lstat(path)
            self.sizes[rel] = ((st.st_dev, st.st_ino), m.size)
        elif m.issym():
            os.symlink(m.linkname, path)
            st = os.lstat(path)
            self.sizes[rel] = ((st.st_dev, st.st_ino), st.st_size)
        elif m.islnk():
            try:
                tparts = clean_entry_name(m.linkname, self.layer)
            except UnsafePath as e:
                raise self.unsafe(entry, f"is a hardlink to {m.linkname!r}, which "
                                         f"{e.problem}") from None
            if not tparts:
                raise self.unsafe(entry, "is a hardlink to the root")
            tparent = self.resolve_dir(tparts[:-1], entry, create=False)
            trel = f"{tparent}/{tparts[-1]}" if tparent else tparts[-1]
            try:
                tst = os.lstat(self.abs(trel))
            except FileNotFoundError:
                raise ImageFormatError(f"layer {self.layer}: entry {entry!r}: hardlink target "
                                       f"{m.linkname!r} is not in the layer") from None
            if stat.S_ISDIR(tst.st_mode):
                raise self.unsafe(entry, f"is a hardlink to directory {m.linkname!r}")
            os.link(self.abs(trel), path, follow_symlinks=False)
            return  # the inode's metadata and size belong to its first name
        elif m.ischr() or m.isblk():
            fmt = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, 0o600 | fmt, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise ImageFormatError(f"layer {self.layer}: entry {entry!r} has unsupported "
                                   f"type {m.type!r}")
        self.set_meta(m, rel, path)

    def copy_data(self, tar: tarfile.TarFile, m: tarfile.TarInfo, out: BinaryIO) -> None:
        src = tar.fileobj
        assert src is not None
        src.seek(m.offset_data)
        left = m.size
        while left:
            buf = src.read(min(left, _CHUNK))
            if not buf:
                raise tarfile.ReadError(f"unexpected end of data in {m.name!r}")
            out.write(buf)
            left -= len(buf)

    def set_meta(self, m: tarfile.TarInfo, rel: str, path: str) -> None:
        os.lchown(path, m.uid, m.gid)
        for key, value in m.pax_headers.items():
            if not key.startswith(_PAX_XATTR):
                continue
            name = key[len(_PAX_XATTR):]
            if name.startswith(_OVERLAY_XATTR_PREFIX):
                continue  # only whiteout conversion may set overlay's own attributes
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(path, name, raw, follow_symlinks=False)
            except OSError as e:
                if not m.issym():
                    raise ImageFormatError(f"layer {self.layer}: entry {m.name!r}: cannot set "
                                           f"xattr {name}: {e.strerror}") from e
        if not m.issym():
            os.chmod(path, m.mode & 0o7777)  # after chown, which clears setuid/setgid
        mtime_ns = int(m.mtime * 1_000_000_000)
        atime_raw = m.pax_headers.get("atime")
        try:
            atime_ns = int(float(atime_raw) * 1_000_000_000) if atime_raw else mtime_ns
        except ValueError:
            atime_ns = mtime_ns
        if m.isdir():
            self.dir_times[rel] = (atime_ns, mtime_ns)  # children would change it: set last
        else:
            os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)

    def finish(self) -> int:
        for rel in sorted(self.dir_times, key=lambda r: r.count("/"), reverse=True):
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.abs(rel), ns=self.dir_times[rel], follow_symlinks=False)
        seen: dict[tuple[int, int], int] = {}
        for key, size in self.sizes.values():
            seen[key] = size
        return sum(seen.values())


def unpack(source: str | os.PathLike[str] | BinaryIO, dest: str | os.PathLike[str], *,
           expected_diff_id: Digest | str | None = None, name: str | None = None) -> LayerInfo:
    """Extract a layer tar (plain, gzip or zstd) into the new directory `dest`.

    The diff_id is computed over the uncompressed stream while extracting. `name` labels the
    layer in errors (default: the source path or the expected diff_id)."""
    dest = Path(dest)
    if os.path.lexists(dest):
        raise LayerExists(dest)
    want = Digest.parse(expected_diff_id) if expected_diff_id is not None else None
    if isinstance(source, (str, os.PathLike)):
        label = name or str(source)
        with open(source, "rb") as f:
            return _unpack(f, dest, want, label)
    return _unpack(source, dest, want, name or (str(want) if want else "<stream>"))


def _unpack(raw: IO[bytes], dest: Path, want: Digest | None, label: str) -> LayerInfo:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # <dest>.tmp-<pid>-<random>: unique per call, and a crashed unpack is recognisable by name
    tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o755)
        try:
            reader = _LayerReader(_decompressed(raw))
            ex = _Extractor(tmp, label)
            with tarfile.TarFile(fileobj=reader, mode="r",  # type: ignore[arg-type]
                                 errors="surrogateescape", tarinfo=_BoundedTarInfo) as tar:
                for m in tar:
                    ex.extract(tar, m)
                reader.check_end(tar.offset, label)
            reader.drain()
            size = ex.finish()
        except _read_errors() as e:
            raise ImageFormatError(f"layer {label}: not a valid tar stream: {e}") from e
        diff_id = reader.hasher.digest()
        if want is not None and diff_id != want:
            raise DigestMismatch(want, diff_id, what=f"layer {label}")
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if os.path.isdir(dest):
                raise LayerExists(dest) from e
            raise
        fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as err:
        try:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp)
        except OSError as cleanup:
            err.add_note(f"cleanup of {tmp} also failed: {cleanup}")
        raise
    return LayerInfo(diff_id=diff_id, size=size)


def scan(source: BinaryIO, *, expected_diff_id: Digest | str | None = None,
         name: str = "<stream>") -> LayerInfo:
    """Read a layer tar (plain, gzip or zstd) to its end without writing anything: its
    diff_id (checked against `expected_diff_id`) and the apparent size its unpacked
    directory will have (regular files and symlink targets, a hardlinked file once, the last
    entry of a repeated name). Every entry is checked as `unpack` checks it, on an in-memory
    model of the tree (names, symlinks on the way, hardlink targets), so a layer that scans
    is one that unpacks (a layer kept packed until first use)."""
    want = Digest.parse(expected_diff_id) if expected_diff_id is not None else None
    tree: dict[str, tuple[str, str]] = {}  # rel -> ("dir"|"link"|"other", link target)
    sizes: dict[str, int] = {}

    def lookup(rel: str, create: bool) -> tuple[str, str]:
        got = tree.get(rel)
        if got is None:
            if not create:
                return ("missing", "")
            tree[rel] = got = ("dir", "")  # unpack makes missing parents
        return got

    def forget(rel: str, keep_dir: bool) -> None:
        kind = tree.get(rel, ("missing",))[0]
        if kind == "missing" or (keep_dir and kind == "dir"):
            return
        del tree[rel]
        sizes.pop(rel, None)
        if kind == "dir":  # a directory replaced or whited out: its contents go too (rare)
            prefix = rel + "/"
            for k in [k for k in tree if k.startswith(prefix)]:
                del tree[k]
                sizes.pop(k, None)

    try:
        reader = _LayerReader(_decompressed(source))
        with tarfile.TarFile(fileobj=reader, mode="r",  # type: ignore[arg-type]
                             errors="surrogateescape", tarinfo=_BoundedTarInfo) as tar:
            for m in tar:
                entry = m.name
                parts = clean_entry_name(entry, name)
                if not parts:
                    if not m.isdir():
                        raise UnsafePath(name, entry, "names the root but is not a directory")
                    continue
                parent = resolve_in_root(parts[:-1], lambda r: lookup(r, True), entry=entry,
                                         layer=name)
                base = parts[-1]
                wh = whiteout_of(base)
                if wh is not None:
                    if wh[0] == "file" and wh[1] is not None:
                        rel = f"{parent}/{wh[1]}" if parent else wh[1]
                        forget(rel, keep_dir=False)
                        tree[rel] = ("other", "")
                    continue
                rel = f"{parent}/{base}" if parent else base
                forget(rel, keep_dir=m.isdir())
                if m.isdir():
                    tree[rel] = ("dir", "")
                elif m.issym():
                    tree[rel] = ("link", m.linkname)
                    sizes[rel] = len(m.linkname.encode(errors="surrogateescape"))
                elif m.islnk():
                    try:
                        tparts = clean_entry_name(m.linkname, name)
                    except UnsafePath as e:
                        raise UnsafePath(name, entry, f"is a hardlink to {m.linkname!r}, "
                                                      f"which {e.problem}") from None
                    if not tparts:
                        raise UnsafePath(name, entry, "is a hardlink to the root")
                    tparent = resolve_in_root(tparts[:-1], lambda r: lookup(r, False),
                                              entry=entry, layer=name)
                    trel = f"{tparent}/{tparts[-1]}" if tparent else tparts[-1]
                    kind = tree.get(trel, ("missing", ""))[0]
                    if kind == "missing":
                        raise ImageFormatError(f"layer {name}: entry {entry!r}: hardlink "
                                               f"target {m.linkname!r} is not in the layer")
                    if kind == "dir":
                        raise UnsafePath(name, entry, f"is a hardlink to directory "
                                                      f"{m.linkname!r}")
                    tree[rel] = ("other", "")
                elif m.isreg():
                    tree[rel] = ("other", "")
                    sizes[rel] = m.size
                elif m.ischr() or m.isblk() or m.isfifo():
                    tree[rel] = ("other", "")
                else:
                    raise ImageFormatError(f"layer {name}: entry {entry!r} has unsupported "
                                           f"type {m.type!r}")
            reader.check_end(tar.offset, name)
        reader.drain()
    except _read_errors() as e:
        raise ImageFormatError(f"layer {name}: not a valid tar stream: {e}") from e
    diff_id = reader.hasher.digest()
    if want is not None and diff_id != want:
        raise DigestMismatch(want, diff_id, what=f"layer {name}")
    return LayerInfo(diff_id=diff_id, size=sum(sizes.values()))


# --- writing: diff and pack --------------------------------------------------------------------

class _HashingWriter:
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hasher = Hasher()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self._raw.write(data)

    def tell(self) -> int:
        return self.hasher.size


def _xattrs(path: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in sorted(names):
        if n.startswith(_OVERLAY_XATTR_PREFIX):
            continue
        with contextlib.suppress(OSError):
            out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(top: str, rel: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    """(rel, abs, lstat) for everything under `top`, each directory before its children, names
    sorted bytewise as docker's walk does."""
    base = f"{top}/{rel}" if rel else top
    with os.scandir(base) as it:
        names = sorted((e.name for e in it), key=os.fsencode)
    for name in names:
        r = f"{rel}/{name}" if rel else name
        p = f"{top}/{r}"
        st = os.lstat(p)
        yield r, p, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(top, r)


def _header(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)  # whole seconds, as docker writes them
    return ti


def _write_tree(src: Path, out: Path, *, whiteouts: bool,
                exclude: frozenset[str] = frozenset()) -> PackedLayer:
    top = str(src)
    if not os.path.isdir(top):
        raise InvalidArgument(f"not a directory: {src}")
    first_name: dict[tuple[int, int], str] = {}
    sizes: dict[tuple[int, int], int] = {}
    fd, tmp_name = tempfile.mkstemp(prefix=f"{out.name}.tmp-{os.getpid()}-", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            hw = _HashingWriter(f)
            # 1 MiB copies: tarfile's default of 16 KiB made pack's writes and hashing the cost
            with tarfile.TarFile(fileobj=hw, mode="w",  # type: ignore[arg-type]
                                 format=tarfile.PAX_FORMAT, errors="surrogateescape",
                                 copybufsize=1 << 20) as tar:
                for rel, path, st in _walk(top):
                    if rel in exclude:
                        continue
                    mode = st.st_mode
                    parent, _, base = rel.rpartition("/")
                    if whiteouts and stat.S_ISCHR(mode) and st.st_rdev == 0:
                        wname = f"{parent}/{whiteout_name(base)}" if parent else \
                            whiteout_name(base)
                        ti = _header(wname, st, tarfile.REGTYPE)
                        ti.mode &= 0o777
                        tar.addfile(ti)
                        continue
                    if stat.S_ISSOCK(mode):
                        continue  # docker skips sockets
                    key = (st.st_dev, st.st_ino)
                    if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in first_name:
                        ti = _header(rel, st, tarfile.LNKTYPE)
                        ti.linkname = first_name[key]
                        tar.addfile(ti)
                        continue
                    if stat.S_ISREG(mode):
                        ti = _header(rel, st, tarfile.REGTYPE)
                        ti.size = st.st_size
                        sizes[key] = st.st_size
                    elif stat.S_ISDIR(mode):
                        ti = _header(rel, st, tarfile.DIRTYPE)
                    elif stat.S_ISLNK(mode):
                        ti = _header(rel, st, tarfile.SYMTYPE)
                        ti.linkname = os.readlink(path)
                        sizes[key] = st.st_size
                    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                        ti = _header(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(mode)
                                     else tarfile.BLKTYPE)
                        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                    elif stat.S_ISFIFO(mode):
                        ti = _header(rel, st, tarfile.FIFOTYPE)
                    else:
                        continue
                    if st.st_nlink > 1 and not stat.S_ISDIR(mode):
                        first_name[key] = rel
                    xattrs = _xattrs(path)
                    if xattrs:
                        ti.pax_headers = {
                            _PAX_XATTR + k: v.decode("utf-8", "surrogateescape")
                            for k, v in xattrs.items()}
                    if stat.S_ISREG(mode):
                        with open(path, "rb") as data:
                            tar.addfile(ti, data)
                    else:
                        tar.addfile(ti)
                    if whiteouts and stat.S_ISDIR(mode) and _is_opaque(path):
                        ti = _header(f"{rel}/{OPAQUE_MARKER}", st, tarfile.REGTYPE)
                        ti.mode &= 0o777
                        tar.addfile(ti)
            f.flush()
            os.fsync(f.fileno())
            tar_size = f.tell()
        os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return PackedLayer(path=out, diff_id=hw.hasher.digest(), size=sum(sizes.values()),
                       tar_size=tar_size)


def diff(lowers: Sequence[str | os.PathLike[str]], upper: str | os.PathLike[str],
         out: str | os.PathLike[str], *, exclude: Sequence[str] = ()) -> PackedLayer:
    """The layer tar of a container's changes, from its overlay upper directory, as docker's
    overlay2 driver computes it: every file and directory in `upper` (but the relative paths
    in `exclude`: mount points the runtime made) becomes an entry, a 0/0
    character device becomes `.wh.NAME`, an opaque directory gets `.wh..wh..opq`. Sorted and
    deterministic (whole-second mtimes, numeric owners, no user names).

    `lowers` (top first) are checked to exist; the upper directory alone determines the diff
    (overlayfs without redirect_dir/metacopy, berth's default)."""
    for lower in lowers:
        if not os.path.isdir(lower):
            raise InvalidArgument(f"lower layer is not a directory: {lower}")
    return _write_tree(Path(upper), Path(out), whiteouts=True, exclude=frozenset(exclude))


def pack(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> PackedLayer:
    """A deterministic tar of the directory `src` (export/import style): devices stay devices,
    overlay xattrs are left out."""
    return _write_tree(Path(src), Path(out), whiteouts=False)
