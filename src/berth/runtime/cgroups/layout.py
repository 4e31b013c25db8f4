"""Where each cgroup controller lives on this host, and where a container's cgroup goes.

Discovered from /proc/self/mountinfo (v1 hierarchies and the cgroup2 mount), /proc/cgroups
(the controllers the kernel has) and the cgroup2 root's cgroup.controllers. A host is v1 (no
cgroup2 mount), v2 (cgroup2 only) or hybrid (both; on hybrid hosts the cgroup2 mount may hold
no controller, or a few such as hugetlb). A controller may also sit on no hierarchy at all.

The parsers are pure; `read_layout` reads the three files.
"""

from __future__ import annotations

import os
from collections import namedtuple

from berth.errors import InvalidArgument, InvalidConfig

from .files import read_file

CGROUP_PATH_FIELD = "linux.cgroupsPath"
DEFAULT_PARENT = "/berth"

# Controllers whose role is played by core cgroup2 files when they are not on a v1 hierarchy
# (freezer -> cgroup.freeze, cpuacct -> cpu.stat, devices -> eBPF).
_V2_CORE = ("freezer", "cpuacct", "devices")


class Layout(namedtuple("Layout", "v1 unified v2_controllers")):
    """v1: controller (or "name=systemd") -> mountpoint, co-mounted controllers sharing one.
    unified: the cgroup2 mountpoint or None. v2_controllers: what the cgroup2 root offers."""

    __slots__ = ()
    v1: dict[str, str]
    unified: str | None
    v2_controllers: frozenset[str]

    @property
    def mode(self) -> str:
        if self.unified is None:
            return "v1"
        return "hybrid" if self.v1 else "v2"

    def where(self, controller: str) -> int:
        """1 or 2: the hierarchy kind that holds `controller` (v1 name); 0: none."""
        if controller in self.v1:
            return 1
        if self.unified is not None:
            v2 = "io" if controller == "blkio" else controller
            if v2 in self.v2_controllers or controller in _V2_CORE:
                return 2
        return 0

    def hierarchies(self) -> list[str]:
        """Every mountpoint a container's cgroup is created in: each v1 hierarchy once (named
        ones like name=systemd included), then the cgroup2 mount."""
        seen: list[str] = []
        for mnt in self.v1.values():
            if mnt not in seen:
                seen.append(mnt)
        if self.unified is not None:
            seen.append(self.unified)
        return seen

    def only_unified(self) -> Layout:
        """This host seen as a pure cgroup2 host (used to exercise v2 on a hybrid host)."""
        if self.unified is None:
            raise InvalidArgument("this host has no cgroup2 mount")
        return Layout({}, self.unified, self.v2_controllers)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        octal = field[i + 1:i + 4]
        if field[i] == "\\" and len(octal) == 3 and octal.isdigit():
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_proc_cgroups(text: str) -> set[str]:
    """The enabled controllers named in /proc/cgroups."""
    out = set()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 4 and parts[3] == "1":
            out.add(parts[0])
    return out


def parse_mountinfo(text: str, enabled: set[str]) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> mountpoint, cgroup2 mountpoint). The first mount of a hierarchy wins
    (later ones are usually bind mounts of the same thing)."""
    v1: dict[str, str] = {}
    unified = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, mountpoint = rfields[0], _unescape(fields[4])
        if fstype == "cgroup2":
            if unified is None:
                unified = mountpoint
        elif fstype == "cgroup":
            for opt in rfields[2].split(","):
                if opt in enabled or opt.startswith("name="):
                    v1.setdefault(opt, mountpoint)
    return v1, unified


def parse_layout(mountinfo: str, proc_cgroups: str, v2_controllers: str) -> Layout:
    v1, unified = parse_mountinfo(mountinfo, parse_proc_cgroups(proc_cgroups))
    return Layout(v1, unified, frozenset(v2_controllers.split()) if unified else frozenset())


def _read(path: str) -> str:
    try:
        return read_file(path)
    except FileNotFoundError:
        return ""


def read_layout() -> Layout:
    v1, unified = parse_mountinfo(_read("/proc/self/mountinfo"),
                                  parse_proc_cgroups(_read("/proc/cgroups")))
    v2 = _read(os.path.join(unified, "cgroup.controllers")) if unified else ""
    return Layout(v1, unified, frozenset(v2.split()))


def cgroup_path(cgroups_path: str | None, container_id: str) -> str:
    """The container's cgroup, as an absolute path below each hierarchy's root.

    Absolute and relative cgroupsPath are both taken from the hierarchy root (a relative path
    is not nested under berth's own cgroup); None gives /berth/<id>. ".." is refused, "." and
    repeated slashes are dropped, and the root itself is refused.
    """
    if cgroups_path is None:
        if not container_id or "/" in container_id or container_id in (".", "..") \
                or "\0" in container_id:
            raise InvalidArgument(f"container id {container_id!r} cannot name a cgroup")
        return f"{DEFAULT_PARENT}/{container_id}"
    if not isinstance(cgroups_path, str) or "\0" in cgroups_path:
        raise InvalidConfig(CGROUP_PATH_FIELD, "must be a path without NUL bytes")
    parts = []
    for part in cgroups_path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise InvalidConfig(CGROUP_PATH_FIELD,
                                f"must not contain '..', got {cgroups_path!r}")
        if len(part.encode()) > 255:
            raise InvalidConfig(CGROUP_PATH_FIELD, f"component {part[:20]!r}... is too long")
        parts.append(part)
    if not parts:
        raise InvalidConfig(CGROUP_PATH_FIELD,
                            f"must name a cgroup below the root, got {cgroups_path!r}")
    return "/" + "/".join(parts)
