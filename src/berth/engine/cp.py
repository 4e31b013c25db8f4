"""`cp`: files between a container and the host, both ways, with docker's path rules
(engine/cp_rules.py) and every path and archive treated as hostile.

    copy_from_container(engine, ref, path, dest, follow_link=, archive=) -> bytes copied
        dest: a host path, or a binary stream (`-`: a tar on stdout)
    copy_to_container(engine, ref, src, path, follow_link=, archive=) -> bytes copied
        src: a host path, or a binary stream (`-`: a tar, plain or compressed, from stdin)

How the container's files are reached: a running container's root filesystem is mounted on
`snapshots/<id>/merged` (the monitor mounts it in the host's namespace); a stopped or created
one has its overlay mounted read-write at `snapshots/<id>/cp-<pid>` for the copy (under a
lock) and unmounted afterwards, so what is copied in lands in its writable layer. Every path
in the container is opened with openat2(RESOLVE_IN_ROOT) on that root (store/inroot.py): a
symlink to /etc is the container's /etc, `../../..` stops at its root. A path at or below the
destination of a bind mount (`-v`) is reached through the bind's source instead (as docker
reaches volumes), resolved inside that source. Other mounts of a running container (tmpfs,
/proc, /dev) are not reached: what is copied is what lies below the mount point in the root
filesystem, as with docker.

Archives are streams of (TarInfo, opener) entries: the walk of a directory produces them, a
tar from stdin produces them, and one extractor writes them, each name cleaned (no `..` above
the destination; a leading `/` dropped), each parent resolved inside the root, nothing
followed at the last component. Ownership, docker's documented rule: what is copied into a
container belongs to root (0:0), what is copied out to the user running `cp`; `-a` keeps the
source's uid/gid. Only `security.capability` travels as an xattr (docker's archive too).

Events: `archive-path` for a copy out, `extract-to-dir` for a copy in (docker's names).
Raises: NoSuchContainer, NotFound ("No such container:path: c:/x"), CopyError
(InvalidArgument) with docker's texts, Conflict for a read-only root filesystem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from berth.errors import Conflict, NotFound
from berth.store.inroot import open_in_root, scoped_resolve

from .cp_rules import (CopyError, CopyInfo, asserts_directory, clean_member, plan_copy,
                       preserve_trailing, rebase, split_dir_entry)

__all__ = ["copy_from_container", "copy_to_container", "container_fs"]

_CHUNK = 1 << 20
_XATTRS = ("security.capability",)
Entry = tuple[tarfile.TarInfo, Callable[[], BinaryIO] | None]


class _PathNotFound(NotFound):
    def __init__(self, ref: str, path: str) -> None:
        super().__init__(f"No such container:path: {ref}:{path}")


# --- the container's filesystem -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ContainerFS:
    root: str  # host path of the container's root filesystem
    binds: tuple[tuple[str, str], ...]  # (destination without leading /, source), longest first
    readonly: bool
    running: bool

    def locate(self, path: str, *, follow_last: bool) -> tuple[str, str]:
        """(host directory to open as the root, path inside it) for the container path."""
        rel = _resolve(self.root, path, follow_last)
        for dest, source in self.binds:
            if rel == dest or rel.startswith(dest + "/"):
                rest = rel[len(dest):].lstrip("/")
                if os.path.isdir(source):
                    return source, rest
                if not rest:  # a file bound onto the path
                    return os.path.dirname(source), os.path.basename(source)
        return self.root, rel


def _file_bind(fs: ContainerFS, path: str) -> str | None:
    """The host file bound onto the container path `path`, if one is."""
    rel = _resolve(fs.root, path, False)
    for dest, source in fs.binds:
        if rel == dest and not os.path.isdir(source):
            return source
    return None


def _resolve(root: str, path: str, follow_last: bool) -> str:
    """`path` resolved inside `root` (store.inroot.scoped_resolve), relative to it."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        def lookup(rel: str) -> tuple[str, str]:
            try:
                st = os.stat(rel, dir_fd=root_fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return ("missing", "")
            if stat.S_ISLNK(st.st_mode):
                return ("link", os.readlink(rel, dir_fd=root_fd))
            return ("dir" if stat.S_ISDIR(st.st_mode) else "other", "")
        return scoped_resolve(path, lookup, follow_last=follow_last)
    finally:
        os.close(root_fd)


def _binds(spec: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    out = [(m["destination"].strip("/"), m["source"]) for m in spec.get("mounts") or []
           if m.get("type") == "bind" or "bind" in (m.get("options") or ()) or
           "rbind" in (m.get("options") or ())]
    return tuple(sorted(((d, s) for d, s in out if d), key=lambda x: -len(x[0])))


@contextlib.contextmanager
def container_fs(engine: Any, c: Any) -> Iterator[ContainerFS]:
    """The container's root filesystem, mounted for as long as the block runs."""
    import fcntl

    from berth.image.unpack import prepare_rootfs
    from berth.store import mount as mnt
    from berth.store.snapshots import Snapshots
    spec = json.loads((engine.container_dir(c.id) / "config.json").read_text())
    binds = _binds(spec)
    readonly = bool((spec.get("root") or {}).get("readonly"))
    snap = Snapshots(engine.root).path(c.id)
    merged = snap / "merged"
    if mnt.is_mounted(merged):
        yield ContainerFS(str(merged), binds, readonly, True)
        return
    locks = Path(engine.run) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = os.open(locks / f"cp-{c.id}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one overlay on the writable layer at a time
        [plan] = prepare_rootfs(engine.images, c.image_id, c.id)
        target = snap / f"cp-{os.getpid()}"
        plan = dataclasses.replace(plan, target=str(target))
        mnt.mount_all([plan])
        try:
            yield ContainerFS(str(target), binds, readonly, False)
        finally:
            mnt.unmount(target)
            with contextlib.suppress(OSError):
                os.rmdir(target)
    finally:
        os.close(lock)


# --- sources: a walk produces entries ------------------------------------------------------

def _reopen(opath_fd: int, flags: int) -> int:
    return os.open(f"/proc/self/fd/{opath_fd}", flags | os.O_CLOEXEC)


def walk_entries(opath_fd: int, arcname: str,
                 links: dict[tuple[int, int], str] | None = None) -> Iterator[Entry]:
    """Entries for what the O_PATH descriptor `opath_fd` (opened with O_NOFOLLOW, or at a
    followed path) has open, named `arcname`, and everything below it. Children are opened
    relative to their directory with O_NOFOLLOW: the walk never leaves the tree. The caller
    keeps ownership of `opath_fd`."""
    links = {} if links is None else links
    st = os.fstat(opath_fd)
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = st.st_mtime
    key = (st.st_dev, st.st_ino)
    opener: Callable[[], BinaryIO] | None = None
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in links:
        info.type, info.linkname = tarfile.LNKTYPE, links[key]
        yield info, None
        return
    if stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
        links.setdefault(key, arcname)

        def opener() -> BinaryIO:
            return os.fdopen(_reopen(opath_fd, os.O_RDONLY), "rb")
        _add_xattrs(info, opath_fd)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        _add_xattrs(info, opath_fd)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=opath_fd)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        links.setdefault(key, arcname)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        links.setdefault(key, arcname)
    else:
        return  # a socket: tar has no such entry (docker skips them too)
    yield info, opener
    if info.type != tarfile.DIRTYPE:
        return
    dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=opath_fd)
    try:
        names = sorted(os.listdir(dfd))
        for name in names:
            try:
                child = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                continue  # removed meanwhile (a running container)
            try:
                yield from walk_entries(child, f"{arcname}/{name}", links)
            finally:
                os.close(child)
    finally:
        os.close(dfd)


def _add_xattrs(info: tarfile.TarInfo, opath_fd: int) -> None:
    for name in _XATTRS:
        try:
            value = os.getxattr(f"/proc/self/fd/{opath_fd}", name)
        except OSError:
            continue
        info.pax_headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")


def tar_entries(stream: BinaryIO) -> Iterator[Entry]:
    """The members of a tar read from `stream` (plain, gzip, bzip2 or xz), in order."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as e:
        raise CopyError(f"the archive on standard input is not a tar: {e}") from None
    with tar:
        try:
            for m in tar:
                yield m, ((lambda m=m: tar.extractfile(m)) if m.isreg() else None)
        except tarfile.TarError as e:
            raise CopyError(f"the archive on standard input is damaged: {e}") from None


def write_tar(entries: Iterator[Entry], out: BinaryIO) -> int:
    """Entries as a tar on `out`; the bytes of file data written."""
    total = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info, opener in entries:
            if opener is None:
                tar.addfile(info)
                continue
            with opener() as f:
                tar.addfile(info, f)
            total += info.size
    return total


# --- the sink: one extractor for both directions --------------------------------------------

class Extractor:
    """Writes entries below `dest` (a path inside `root`), resolving every parent inside
    `root` and following nothing at the last component. `owner` (uid, gid) replaces the
    entries' own; None keeps them. `label` names the destination in errors."""

    def __init__(self, root: str, dest: str, *, owner: tuple[int, int] | None,
                 label: str, in_place: bool = False) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dest = dest.strip("/")
        self.owner = owner
        self.label = label
        self.in_place = in_place  # overwrite an existing file's inode (a bind-mounted file)
        self.copied = 0
        self._dirs: list[tuple[tuple[str, ...], int, int]] = []  # deferred times
        self._cached: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root_fd)

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rel(self, parts: tuple[str, ...]) -> str:
        return "/".join(p for p in (self.dest, *parts) if p) or "."

    def _where(self, parts: tuple[str, ...]) -> str:
        return posixpath.join(self.label, *parts)

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _ids(self, info: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner if self.owner is not None else (info.uid, info.gid)

    def _dir(self, parts: tuple[str, ...], info: tarfile.TarInfo | None) -> int:
        """A descriptor of the directory `parts` below dest, made (0755) when missing and
        `info` is given. Cached for the next entry in the same directory."""
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        self._drop_cache()
        fd = self._open_dir(())
        try:
            for i in range(len(parts)):
                sub = parts[:i + 1]
                try:
                    nfd = self._open_dir(sub)
                except FileNotFoundError:
                    if info is None:
                        raise
                    os.mkdir(parts[i], 0o755, dir_fd=fd)
                    os.chown(parts[i], *self._ids(info), dir_fd=fd, follow_symlinks=False)
                    nfd = self._open_dir(sub)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        self._cached = (parts, fd)
        return fd

    def _open_dir(self, parts: tuple[str, ...]) -> int:
        try:
            return open_in_root(self.root_fd, self._rel(parts), os.O_RDONLY | os.O_DIRECTORY)
        except NotADirectoryError:
            raise CopyError(f"not a directory: {self._where(parts)}") from None

    def add(self, info: tarfile.TarInfo, opener: Callable[[], BinaryIO] | None) -> None:
        parts = clean_member(info.name, self.label)
        if not parts:
            if info.isdir():
                return  # the destination directory itself is left as it is
            raise CopyError(f"cannot overwrite directory {self.label} with non-directory "
                            f"{info.name}")
        if self._cached is not None and self._cached[0][:len(parts)] == parts:
            self._drop_cache()  # the entry replaces a directory we hold open
        pfd = self._dir(parts[:-1], info)
        base = parts[-1]
        where = self._where(parts)
        try:
            old = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            if stat.S_ISDIR(old.st_mode) and not info.isdir():
                raise CopyError(f"cannot overwrite directory {where} with non-directory "
                                f"{info.name}")
            if not stat.S_ISDIR(old.st_mode) and info.isdir():
                raise CopyError(f"cannot overwrite non-directory {where} with directory "
                                f"{info.name}")
            keep = self.in_place and info.isreg() and stat.S_ISREG(old.st_mode)
            if not info.isdir() and not keep:
                os.unlink(base, dir_fd=pfd)
                old = None
        uid, gid = self._ids(info)
        mtime_ns = int(info.mtime * 1_000_000_000)
        mode = info.mode & 0o7777
        if info.isdir():
            if old is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=pfd)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                self._xattrs(fd, info)
            finally:
                os.close(fd)
            self._dirs.append((parts, mtime_ns, mtime_ns))
        elif info.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                         (os.O_TRUNC if old is not None else os.O_CREAT | os.O_EXCL), 0o600,
                         dir_fd=pfd)
            with os.fdopen(fd, "wb") as out:
                if opener is not None:
                    src = opener()
                    try:
                        shutil.copyfileobj(src, out, _CHUNK)
                    finally:
                        src.close()
                out.flush()
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
                self._xattrs(fd, info)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            self.copied += info.size
        elif info.issym():
            os.symlink(info.linkname, base, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
        elif info.islnk():
            self._hardlink(info, base, pfd, where)
        elif info.ischr() or info.isblk() or info.isfifo():
            kind = (stat.S_IFCHR if info.ischr() else stat.S_IFBLK if info.isblk()
                    else stat.S_IFIFO)
            dev = os.makedev(info.devmajor, info.devminor) if not info.isfifo() else 0
            old_mask = os.umask(0)
            try:
                os.mknod(base, kind | mode, dev, dir_fd=pfd)
            finally:
                os.umask(old_mask)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
        else:
            raise CopyError(f"archive entry {info.name!r} has unsupported type {info.type!r}")

    def _hardlink(self, info: tarfile.TarInfo, base: str, pfd: int, where: str) -> None:
        try:
            tparts = clean_member(info.linkname, self.label)
        except CopyError:
            raise CopyError(f"invalid hardlink {info.name!r} -> {info.linkname!r}: outside of "
                            f"{self.label}") from None
        if not tparts:
            raise CopyError(f"invalid hardlink {info.name!r} -> {info.linkname!r}")
        tfd = self._open_dir(tparts[:-1])
        try:
            os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise CopyError(f"hardlink {where} -> {info.linkname}: target not found") from None
        finally:
            os.close(tfd)

    def _xattrs(self, fd: int, info: tarfile.TarInfo) -> None:
        for key, value in info.pax_headers.items():
            name = key.removeprefix("SCHILY.xattr.")
            if name == key or name not in _XATTRS:
                continue
            with contextlib.suppress(OSError):
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))

    def finish(self) -> None:
        """Directory times last (writing into a directory changes its mtime)."""
        self._drop_cache()
        for parts, atime, mtime in reversed(self._dirs):
            try:
                fd = open_in_root(self.root_fd, self._rel(parts),
                                  os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)


def extract(entries: Iterator[Entry], root: str, dest: str, *, rename: tuple[str, str] | None,
            owner: tuple[int, int] | None, label: str, in_place: bool = False) -> int:
    """Write `entries` (their top name renamed) below `dest` inside `root`; bytes copied."""
    with Extractor(root, dest, owner=owner, label=label, in_place=in_place) as ex:
        for info, opener in entries:
            info.name = rebase(info.name, rename)
            if info.islnk():
                info.linkname = rebase(info.linkname, rename)
            ex.add(info, opener)
        ex.finish()
        return ex.copied


# --- host paths (docker's CopyInfoSourcePath / CopyInfoDestinationPath) --------------------

def _host_source(path: str, follow: bool) -> tuple[CopyInfo, int]:
    """The host source as CopyInfo and an O_PATH descriptor of it (the caller closes it)."""
    path = preserve_trailing(os.path.abspath(path), path)
    ends_dir = asserts_directory(path)
    try:
        if follow or ends_dir:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        else:
            parent = os.path.dirname(path) or "/"
            fd = os.open(os.path.join(os.path.realpath(parent), os.path.basename(path)),
                         os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise CopyError(f"lstat {path}: {os.strerror(e.errno or errno.EIO).lower()}") from None
    is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    if ends_dir and not is_dir:
        os.close(fd)
        raise CopyError(f"lstat {path}: not a directory")
    rebase_name = ""
    if follow:
        real = os.path.realpath(path)
        if os.path.basename(path.rstrip("/")) not in (os.path.basename(real), "."):
            rebase_name = os.path.basename(path.rstrip("/"))
        path = preserve_trailing(real, path)
    return CopyInfo(path, True, is_dir, rebase_name), fd


def _host_destination(path: str) -> CopyInfo:
    """docker's CopyInfoDestinationPath: a symlink at the destination is followed (at most
    10 times); a missing destination needs an existing parent directory."""
    path = preserve_trailing(os.path.abspath(path), path)
    original = path
    for _ in range(11):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            parent = os.path.dirname(path.rstrip("/")) or "/"
            try:
                pst = os.stat(parent)
            except OSError as e:
                raise CopyError(f"stat {parent}: {os.strerror(e.errno or 0).lower()}") \
                    from None
            if not stat.S_ISDIR(pst.st_mode):
                raise CopyError(f"not a directory: {parent}")
            return CopyInfo(path)
        except NotADirectoryError:
            raise CopyError(f"not a directory: {path}") from None
        if not stat.S_ISLNK(st.st_mode):
            return CopyInfo(path, True, stat.S_ISDIR(st.st_mode))
        target = os.readlink(path)
        path = target if target.startswith("/") else os.path.join(
            os.path.dirname(path.rstrip("/")), target)
    raise CopyError(f"too many symlinks in {original}")


# --- the two directions ----------------------------------------------------------------------

def _container_path(path: str) -> str:
    if not path:
        raise CopyError("source and destination paths inside a container cannot be empty")
    abs_path = preserve_trailing(posixpath.normpath("/" + path), path)
    if abs_path.startswith("//"):
        abs_path = "/" + abs_path.lstrip("/")
    return "/." if abs_path in ("/", "//") else abs_path


def copy_from_container(engine: Any, ref: str, path: str, dest: str | BinaryIO, *,
                        follow_link: bool = False, archive: bool = False) -> int:
    """Copy the container's `path` to the host path `dest`, or as a tar to the stream."""
    c = engine.get(ref)
    abs_path = _container_path(path)
    top = split_dir_entry(abs_path)[1]
    follow = follow_link or asserts_directory(abs_path)
    dst = _host_destination(dest) if isinstance(dest, str) else None
    with container_fs(engine, c) as fs:
        root, rel = fs.locate(abs_path, follow_last=follow)
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fd = open_in_root(root_fd, rel, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
            except FileNotFoundError:
                raise _PathNotFound(ref, path) from None
            except NotADirectoryError:
                raise CopyError(f"not a directory: {ref}:{path}") from None
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                if asserts_directory(abs_path) and not is_dir:
                    raise CopyError(f"not a directory: {ref}:{path}")
                if dst is None:
                    assert not isinstance(dest, str)
                    copied = write_tar(walk_entries(fd, top), dest)
                else:
                    plan = plan_copy(CopyInfo(abs_path, True, is_dir), dst)
                    owner = None if archive else (os.getuid(), os.getgid())
                    copied = extract(walk_entries(fd, top), plan.extract_dir, "",
                                     rename=plan.rename, owner=owner, label=plan.extract_dir)
            finally:
                os.close(fd)
        finally:
            os.close(root_fd)
    engine.db.record_event("container", "archive-path", c.id, {"name": c.name})
    return copied


def copy_to_container(engine: Any, ref: str, src: str | BinaryIO, path: str, *,
                      follow_link: bool = False, archive: bool = False) -> int:
    """Copy the host path `src` (or a tar read from the stream) to the container's `path`."""
    c = engine.get(ref)
    abs_path = _container_path(path)
    src_fd = None
    src_info = None
    if isinstance(src, str):
        src_info, src_fd = _host_source(src, follow_link)
    try:
        with container_fs(engine, c) as fs:
            dst, plain = _stat_in_container(fs, abs_path)
            if not plain:
                raise CopyError(f'destination "{ref}:{path}" must be a directory or a regular '
                                "file")
            if src_info is None:
                if not (dst.exists and dst.is_dir):
                    raise CopyError(f'destination "{ref}:{path}" must be a directory')
                extract_dir, rename = dst.path, None
            else:
                plan = plan_copy(src_info, dst)
                extract_dir, rename = plan.extract_dir, plan.rename
            root, rel = fs.locate(extract_dir, follow_last=True)
            bound = None
            if rename is not None and src_info is not None and not src_info.is_dir:
                bound = _file_bind(fs, posixpath.join(extract_dir, rename[1]))
                if bound is not None:  # a file bind-mounted there: write its source
                    root, rel = os.path.dirname(bound), ""
                    rename = (rename[0], os.path.basename(bound))
            if root == fs.root and fs.readonly:
                raise Conflict(f"container rootfs is marked read-only: {ref}")
            _check_extraction_point(root, rel, ref, extract_dir)
            owner = None if archive else (0, 0)
            label = f"{ref}:{extract_dir}"
            if src_info is None:
                assert not isinstance(src, str)
                entries = tar_entries(src)
            else:
                assert src_fd is not None
                top = src_info.rebase_name or split_dir_entry(src_info.path)[1]
                entries = walk_entries(src_fd, top)
            copied = extract(entries, root, rel, rename=rename, owner=owner, label=label,
                             in_place=bound is not None)
            running = fs.running
    finally:
        if src_fd is not None:
            os.close(src_fd)
    engine.db.record_event("container", "extract-to-dir", c.id, {"name": c.name})
    if not running:
        with contextlib.suppress(Exception):
            engine.record_size(c.id)
    return copied


def _stat_in_container(fs: ContainerFS, abs_path: str) -> tuple[CopyInfo, bool]:
    """docker's ContainerStatPath for a destination, and whether it is a directory or a
    regular file: a symlink at the last component is followed (inside the container) and
    the copy goes to its target."""
    dest = abs_path
    for follow in (False, True):
        root, rel = fs.locate(abs_path, follow_last=follow)
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fd = open_in_root(root_fd, rel, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
            except (FileNotFoundError, NotADirectoryError):
                return CopyInfo(dest), True
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
        finally:
            os.close(root_fd)
        if stat.S_ISLNK(st.st_mode) and not follow:
            if root == fs.root:  # the link's target, as a path in the container
                dest = "/" + _resolve(fs.root, abs_path, True)
            continue
        return (CopyInfo(dest, True, stat.S_ISDIR(st.st_mode)),
                stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode))
    return CopyInfo(dest), True


def _check_extraction_point(root: str, rel: str, ref: str, shown: str) -> None:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(root_fd, rel, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        raise _PathNotFound(ref, shown) from None
    finally:
        os.close(root_fd)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise CopyError(f"extraction point is not a directory: {ref}:{shown}")
    finally:
        os.close(fd)
