"""cgroups for the runtime: OCI linux.resources -> cgroup v1 and v2 file writes, membership,
freezing, killing, removal and statistics, on v1, v2 and hybrid hosts.

    open_cgroups(cgroups_path, container_id) -> CgroupManager

Modules: layout (where controllers live, the cgroup path), resources (validation), v1 / v2
(pure plans), devices (v1 device rule emulator), plan (placement per controller), files
(cgroupfs I/O, Write), manager (the effects).
"""

from __future__ import annotations

from .manager import CgroupManager, Cgroups, open_cgroups

__all__ = ["CgroupManager", "Cgroups", "open_cgroups"]
