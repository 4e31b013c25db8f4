"""crun 1.8 on this machine's hybrid cgroup layout (REFERENCE-TOOLS.md): it refuses to run while
cgroup2 holds a controller, here hugetlb. `HugetlbOnV1` binds hugetlb to a v1 hierarchy and undoes
exactly what it did; the crun tests (tests/integration/test_runtimes.py) and the crun rows of the
benchmarks (bench/scenarios/) both use it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

HUGETLB = Path("/sys/fs/cgroup/hugetlb")


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return Path(left.split()[4])
    return None


def setup_needed() -> bool:
    """True on a hybrid layout (cgroup2 not at /sys/fs/cgroup) whose cgroup2 holds controllers."""
    mnt = _cgroup2_mount()
    if mnt is None or mnt == Path("/sys/fs/cgroup"):
        return False
    try:
        return bool((mnt / "cgroup.controllers").read_text().split())
    except OSError:
        return False


class HugetlbOnV1:
    """Bind hugetlb to a v1 hierarchy (REFERENCE-TOOLS.md) and undo exactly what was done."""

    def __init__(self) -> None:
        self.created_dir = False
        self.root_disabled = False
        self.mounted = False
        self.restored = True
        self.left: list[str] = []

    def __enter__(self) -> HugetlbOnV1:
        if not HUGETLB.exists():
            HUGETLB.mkdir()
            self.created_dir = True
        if subprocess.run(["mountpoint", "-q", str(HUGETLB)]).returncode != 0:
            # A cgroup made on cgroup2 (berth's, runc's, podman's) leaves hugetlb enabled in
            # the root's subtree_control, as runc leaves it, and the v1 mount is then refused
            # (EBUSY): take it off while no cgroup below uses it, and put it back in __exit__.
            self.root_disabled = _root_hugetlb(False)
            r = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup",
                                str(HUGETLB)], capture_output=True, text=True)
            if r.returncode != 0:
                if self.root_disabled:
                    _root_hugetlb(True)
                    self.root_disabled = False
                if self.created_dir:
                    HUGETLB.rmdir()
                    self.created_dir = False
                raise OSError(f"mount -t cgroup -o hugetlb: {r.stderr.strip()}; "
                              + ("cgroup2's root keeps hugetlb in cgroup.subtree_control "
                                 "(a cgroup below uses it)" if _root_holds_hugetlb()
                                 else "refused"))
            self.mounted = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            # A cgroup left in this temporary hierarchy would keep hugetlb off cgroup2 for good:
            # note it (a tool did not clean up) and remove it, deepest first.
            for d in sorted(HUGETLB.rglob("*/"), key=lambda p: len(p.parts), reverse=True):
                if d.is_dir():
                    self.left.append(str(d.relative_to(HUGETLB)))
                    try:
                        d.rmdir()
                    except OSError:
                        pass
            subprocess.run(["umount", str(HUGETLB)], check=False)
            # The v1 hierarchy gives hugetlb back to cgroup2 only if it has no child cgroup when
            # unmounted; one still being freed (crun's last container) keeps it bound. Mount it
            # once more, now empty, and unmount, until the controller is back.
            # The hierarchy is freed asynchronously after the unmount: wait a little after each
            # try, and never mount again once hugetlb is back (that would take it once more).
            deadline = time.monotonic() + 60
            while not _wait_hugetlb_on_cgroup2(1.0) and time.monotonic() < deadline:
                subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(HUGETLB)],
                               check=False, capture_output=True)
                subprocess.run(["umount", str(HUGETLB)], check=False, capture_output=True)
        if self.root_disabled:
            _root_hugetlb(True)
        if self.created_dir:
            try:
                HUGETLB.rmdir()
            except OSError:
                pass
        self.restored = _hugetlb_hierarchy() in (0, None)


def _root_hugetlb(enable: bool) -> bool:
    """Put hugetlb into (or, when no cgroup below has it enabled, take it out of) cgroup2's
    root subtree_control; True when something was changed."""
    mnt = _cgroup2_mount()
    if mnt is None:
        return False
    ctl = mnt / "cgroup.subtree_control"
    try:
        on = "hugetlb" in ctl.read_text().split()
        if on == enable:
            return False
        if not enable and any("hugetlb" in (d / "cgroup.subtree_control").read_text().split()
                              for d in mnt.iterdir() if (d / "cgroup.subtree_control").exists()):
            return False
        ctl.write_text("+hugetlb" if enable else "-hugetlb")
    except OSError:
        return False
    return True


def _wait_hugetlb_on_cgroup2(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _hugetlb_hierarchy() not in (0, None):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _hugetlb_hierarchy() -> int | None:
    """The v1 hierarchy id hugetlb is bound to (0: cgroup2), from /proc/cgroups."""
    with open("/proc/cgroups") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == "hugetlb":
                return int(fields[1])
    return None


def _root_holds_hugetlb() -> bool:
    mnt = _cgroup2_mount()
    try:
        return mnt is not None and "hugetlb" in (mnt / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
