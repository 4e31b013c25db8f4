"""Test helpers shared by the suites and the benchmarks (bench/ imports them too).

    helpers.rootfs   busybox root filesystems: make_rootfs, copy_rootfs, make_rootfs_tar
    helpers.bundle   OCI bundles: make_bundle, default_config, deep_merge, update_config, DELETE
    helpers.leaks    leak_snapshot, wait_for_no_leaks, cleanup: what a test left on the machine
    find_tool        where an installed console script (berth, berth-runtime) is
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

VENV_BIN = Path("/opt/berth-venv/bin")


def find_tool(name: str) -> Path | None:
    """An executable `name`: next to this interpreter first (the venv berth is installed in),
    then on PATH, then in /opt/berth-venv/bin (where README installs it). None if nowhere."""
    candidates = [Path(sys.executable).parent / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    candidates.append(VENV_BIN / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None
