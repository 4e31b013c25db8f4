"""docker cp's path rules, pure (docker's cli/command/container/cp.go and pkg/archive/copy.go):
which side is a container, what name the copied entry takes, and where it is extracted.

    split_cp_arg("c:/etc")        -> ("c", "/etc");  "/abs:x" and "./a:b" are local paths
    split_dir_entry("/a/b/.")     -> ("/a/b", ".")   the archive's top entry is "."
    plan_copy(src, dst)           -> CopyPlan(extract_dir, rename=(old, new) | None)
    clean_member(name, dest)      -> the member's path below the extraction directory, or
                                     CopyError when it climbs out of it

Errors are CopyError (InvalidArgument) with docker's texts ("no such directory", "cannot copy
directory", ...) followed by the path concerned.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from berth.errors import InvalidArgument

__all__ = ["CopyError", "CopyInfo", "CopyPlan", "asserts_directory", "clean_member",
           "has_trailing_sep", "plan_copy", "preserve_trailing", "rebase",
           "specifies_current_dir", "split_cp_arg", "split_dir_entry"]


class CopyError(InvalidArgument):
    pass


def split_cp_arg(arg: str) -> tuple[str, str]:
    """(container, path); container "" for a local path. An absolute path is local, and so is
    a relative one starting with '.' (`./file:name.txt`)."""
    if arg.startswith("/"):
        return "", arg
    container, colon, path = arg.partition(":")
    if not colon or container.startswith("."):
        return "", arg
    return container, path


def has_trailing_sep(path: str) -> bool:
    return path.endswith("/")


def specifies_current_dir(path: str) -> bool:
    """'/a/b/.' or '.': the contents of the directory, not the directory."""
    return posixpath.basename(path) == "."


def asserts_directory(path: str) -> bool:
    return has_trailing_sep(path) or specifies_current_dir(path)


def preserve_trailing(cleaned: str, original: str) -> str:
    """docker's PreserveTrailingDotOrSeparator: keep the '/.' or '/' that cleaning removed."""
    if specifies_current_dir(original) and not specifies_current_dir(cleaned):
        cleaned = cleaned.rstrip("/") + "/."
    if has_trailing_sep(original) and not has_trailing_sep(cleaned):
        cleaned += "/"
    return cleaned


def split_dir_entry(path: str) -> tuple[str, str]:
    """(directory, entry): the archive of `path` is made in `directory` and its top entry is
    named `entry` ('.' for '/a/b/.': the contents)."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if specifies_current_dir(path):
        cleaned = cleaned.rstrip("/") + "/."
    return posixpath.dirname(cleaned) or ".", posixpath.basename(cleaned) or "/"


@dataclass(frozen=True, slots=True)
class CopyInfo:
    """One side of a copy: `path` as the user (or a followed link) gave it."""

    path: str
    exists: bool = False
    is_dir: bool = False
    rebase_name: str = ""  # the name the top entry takes instead of its own (-L, trailing /)


@dataclass(frozen=True, slots=True)
class CopyPlan:
    extract_dir: str
    rename: tuple[str, str] | None = None  # top entry old name -> new name


def plan_copy(src: CopyInfo, dst: CopyInfo) -> CopyPlan:
    """docker's PrepareArchiveCopy: the directory to extract the source's archive into, and
    how its top entry is renamed."""
    dst_dir, dst_base = split_dir_entry(dst.path)
    _, src_base = split_dir_entry(src.path)
    if dst.exists and dst.is_dir:  # into the directory, under the source's own name
        return CopyPlan(dst.path)
    if dst.exists and src.is_dir:
        raise CopyError(f"cannot copy directory: {src.path} onto the file {dst.path}")
    if not dst.exists and not src.is_dir and asserts_directory(dst.path):
        raise CopyError(f"no such directory: {dst.path}")
    # an existing file is replaced; a missing destination is created under its own name
    # (a directory source becomes that directory)
    return CopyPlan(dst_dir, (src.rebase_name or src_base, dst_base))


def rebase(name: str, rename: tuple[str, str] | None) -> str:
    """docker's RebaseArchiveEntries: `old` and `old/...` become `new` and `new/...`."""
    if rename is None:
        return name
    old, new = rename
    stripped = name.removeprefix("./") if old != "." else name
    if stripped == old or stripped == old + "/":
        return new
    if stripped.startswith(old + "/"):
        return new + stripped[len(old):]
    return name


def clean_member(name: str, dest: str = "the destination") -> tuple[str, ...]:
    """A member's path below the extraction directory, as components (() for the directory
    itself). A leading '/' is dropped (as tar and docker do); a '..' that climbs above the
    directory, or a NUL byte, is refused."""
    if "\0" in name:
        raise CopyError(f"archive entry {name!r} contains a NUL byte")
    out: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise CopyError(f"archive entry {name!r} is outside of {dest}")
            out.pop()
            continue
        out.append(part)
    return tuple(out)
