"""Snapshots: plan a container's overlay mount as data; never mount (containerd's snapshotter).

A snapshot is a directory `<root>/snapshots/<key>/` holding `upper/` (the container's writes),
`work/` (overlayfs scratch, same filesystem as upper) and `merged/` (where the union appears).
Its parents are unpacked layer directories, given bottom first as images list them; the plan
lists them top first, as overlayfs wants them (`lowerdir=top:...:bottom`, and one
`fsconfig(..., "lowerdir+", dir)` per layer from the top down).

    prepare(key, parents) -> [Mount]   read-write: lowers + upper + work
    view(key, parents)    -> [Mount]   read-only: lowers only
    remove(key)           -> [Path]    the directories to delete, once unmounted

How a mount is performed is planned here too, so it can be unit-tested:

    choose_method(mount, ...) -> Method     new mount API, or mount(2) with full or short names
    ShortNames                              `l/<id>` symlinks, as docker's overlay2 has, so the
                                            mount(2) option string fits in one page

store/mount.py applies the plan. Raises InvalidArgument for a bad key or an impossible plan.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import InvalidArgument

__all__ = [
    "FSCONFIG_MAX_STRING",
    "MAX_LOWERS",
    "Method",
    "Mount",
    "ShortNames",
    "Snapshots",
    "TooManyLayers",
    "choose_method",
    "mount_data",
    "short_id",
]

# The kernel copies mount(2)'s data argument into one page, NUL included.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# fsconfig(FSCONFIG_SET_STRING) copies at most this many bytes of a value (strndup_user).
FSCONFIG_MAX_STRING = 256
# overlayfs refuses more lower layers than this (OVL_MAX_STACK).
MAX_LOWERS = 500
SHORT_ID_LEN = 10
SHORT_DIR = "l"

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class TooManyLayers(InvalidArgument):
    def __init__(self, target: str, count: int, why: str) -> None:
        super().__init__(f"overlay at {target}: {count} lower layers cannot be mounted: {why}")
        self.target = target
        self.count = count


class Method(enum.StrEnum):
    NEW_API = "new-api"  # fsopen/fsconfig("lowerdir+")/fsmount/move_mount
    MOUNT = "mount"  # mount(2), absolute paths in the option string
    MOUNT_SHORT = "mount-short"  # mount(2) from a chdir'd base, lowers as l/<id>


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount to perform. type "overlay": `lowers` top first, `upper`/`work` None when
    read-only. type "bind": `source` bound onto `target` (a snapshot with at most one layer)."""

    type: str
    target: str
    lowers: tuple[str, ...] = ()
    upper: str | None = None
    work: str | None = None
    source: str = ""
    readonly: bool = False
    short_base: str = ""  # where mount(2) with short names runs; its `l/` holds the links

    @property
    def writable(self) -> bool:
        return self.upper is not None

    def options(self, lowers: Sequence[str] | None = None) -> str:
        """The mount(2) option string; `lowers` replaces the lower paths (short names)."""
        parts = ["lowerdir=" + ":".join(_escape(p) for p in (lowers or self.lowers))]
        if self.upper is not None:
            parts.append(f"upperdir={_escape(self.upper)}")
            parts.append(f"workdir={_escape(self.work or '')}")
        return ",".join(parts)

    def dirs(self) -> tuple[str, ...]:
        """Directories that must exist before mounting (upper, work, target)."""
        return tuple(d for d in (self.upper, self.work, self.target) if d)


def _escape(path: str) -> str:
    # mount(2) options: ',' separates options and ':' separates lowers; overlayfs takes '\'
    # as an escape for both.
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def short_id(path: str, length: int = SHORT_ID_LEN) -> str:
    """A stable short name for a layer directory: base32 of sha256(path), lower case."""
    digest = hashlib.sha256(os.fsencode(path)).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:length]


@dataclass(frozen=True, slots=True)
class ShortNames:
    """Short symlink names for layer directories: `<base>/l/<id>` -> layer dir.

    `links` maps each link name (relative to base, e.g. "l/abcdefghij") to its target;
    `lowers` are the names in the mount's order. mount(2) is then called with the working
    directory at `base`, so `lowerdir=l/a:l/b:...` resolves through the links.
    """

    base: str
    links: dict[str, str] = field(default_factory=dict)
    lowers: tuple[str, ...] = ()

    @classmethod
    def plan(cls, base: str | Path, lowers: Iterable[str],
             existing: dict[str, str] | None = None) -> ShortNames:
        """Names for `lowers`; a clash with `existing` (name -> target) or between two lowers
        takes a longer id, so a name never points at two directories."""
        taken = dict(existing or {})
        links: dict[str, str] = {}
        names: list[str] = []
        for target in lowers:
            length = SHORT_ID_LEN
            while True:
                name = f"{SHORT_DIR}/{short_id(target, length)}"
                owner = taken.get(name, target)
                if owner == target:
                    break
                length += 2
                if length > 52:
                    raise InvalidArgument(f"short name for {target}: no free name")
            taken[name] = target
            links[name] = target
            names.append(name)
        return cls(base=str(base), links=links, lowers=tuple(names))

    def options(self, mount: Mount) -> str:
        return mount.options(self.lowers)


def mount_data(mount: Mount, short: ShortNames | None = None) -> str:
    """The option string mount(2) would get for `mount`, with or without short names."""
    return short.options(mount) if short else mount.options()


def fits_page(data: str, page_size: int = PAGE_SIZE) -> bool:
    return len(os.fsencode(data)) + 1 <= page_size


def choose_method(mount: Mount, *, new_api: bool = True, page_size: int = PAGE_SIZE,
                  short: ShortNames | None = None, force: Method | None = None) -> Method:
    """Which way `mount` can be performed, best first.

    The new API takes one lower per fsconfig call, so only each path's length matters (and
    overlayfs' own limit on the number of layers). mount(2) needs the whole option string in
    one page: full paths when they fit, else short names. `force` is checked, not trusted.
    """
    if mount.type != "overlay":
        return Method.MOUNT
    n = len(mount.lowers)
    if n == 0:
        raise InvalidArgument(f"overlay at {mount.target}: no lower layer")
    if n > MAX_LOWERS:
        raise TooManyLayers(mount.target, n, f"overlayfs stacks at most {MAX_LOWERS}")
    paths = [*mount.lowers, *(p for p in (mount.upper, mount.work) if p)]
    new_ok = new_api and all(len(os.fsencode(p)) < FSCONFIG_MAX_STRING for p in paths)
    full_ok = fits_page(mount.options(), page_size)
    if short is None:
        short = ShortNames.plan("", mount.lowers)
    short_ok = fits_page(short.options(mount), page_size)
    ok = {Method.NEW_API: new_ok, Method.MOUNT: full_ok, Method.MOUNT_SHORT: short_ok}
    if force is not None:
        if not ok[force]:
            raise TooManyLayers(mount.target, n, f"method {force} does not fit")
        return force
    for method in (Method.NEW_API, Method.MOUNT, Method.MOUNT_SHORT):
        if ok[method]:
            return method
    raise TooManyLayers(mount.target, n,
                        f"even with short names the options exceed one page ({page_size} bytes)"
                        " and the new mount API is unavailable")


class Snapshots:
    """Plans of snapshots under `<root>/snapshots/`. Pure: computes paths and Mount data."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "snapshots"

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise InvalidArgument(f"snapshot key {key!r}: use letters, digits, '_', '.', '-'")
        return self.dir / key

    def short_base(self) -> Path:
        """The directory mount(2) runs in for short names; links live in its `l/`."""
        return self.root / "overlay"

    def prepare(self, key: str, parents: Sequence[str | Path]) -> list[Mount]:
        """A read-write snapshot over `parents` (layer directories, bottom first)."""
        snap = self.path(key)
        upper, work, target = str(snap / "upper"), str(snap / "work"), str(snap / "merged")
        lowers = _top_first(parents)
        if not lowers:  # nothing below: the upper directory itself
            return [Mount(type="bind", target=target, source=upper, upper=upper)]
        return [Mount(type="overlay", target=target, lowers=lowers, upper=upper, work=work,
                      short_base=str(self.short_base()))]

    def view(self, key: str, parents: Sequence[str | Path]) -> list[Mount]:
        """A read-only snapshot over `parents`: no upper, nothing can be written."""
        target = str(self.path(key) / "merged")
        lowers = _top_first(parents)
        if not lowers:
            raise InvalidArgument(f"snapshot {key}: a view needs at least one layer")
        if len(lowers) == 1:  # overlayfs without upper wants two lowers; bind the one
            return [Mount(type="bind", target=target, source=lowers[0], readonly=True)]
        return [Mount(type="overlay", target=target, lowers=lowers, readonly=True,
                      short_base=str(self.short_base()))]

    def remove(self, key: str) -> list[Path]:
        """What to delete (after unmounting) to remove snapshot `key`."""
        return [self.path(key)]


def _top_first(parents: Sequence[str | Path]) -> tuple[str, ...]:
    out = tuple(os.path.abspath(p) for p in reversed(parents))
    if len(set(out)) != len(out):
        raise InvalidArgument("snapshot parents: a layer directory is listed twice")
    return out
