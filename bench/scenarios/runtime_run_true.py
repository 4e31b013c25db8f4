"""runtime-run-true: `run` of one bundle whose process is `true`, per OCI runtime.

The same bundle (busybox rootfs, args ["true"], terminal false, the namespaces of `runc spec`
including a new network namespace) is run by `runc run`, `crun run` and `berth-runtime run`, each
with a state root of its own and a new container id per run; the time is the wall clock of the
whole command. Baselines: `unshare -fpmiun --mount-proc chroot ROOTFS true` (the namespaces
without a runtime) and `python3 -c pass` (the interpreter berth-runtime starts on).

crun 1.8 refuses a hybrid cgroup layout whose cgroup2 holds a controller (here: hugetlb). In full
mode hugetlb is bound to a v1 hierarchy for the crun runs and put back afterwards; in quick mode
crun is skipped instead when that would be needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import find_tool
from helpers.bundle import make_bundle
from helpers.rootfs import make_rootfs

from . import Context, Measurement, Tool, measure_interleaved, scenario

NAME = "runtime-run-true"
HUGETLB = Path("/sys/fs/cgroup/hugetlb")


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return Path(left.split()[4])
    return None


def hugetlb_setup_needed() -> bool:
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
            try:
                subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup",
                                str(HUGETLB)], check=True)
            except subprocess.CalledProcessError:
                if self.root_disabled:
                    _root_hugetlb(True)
                    self.root_disabled = False
                raise
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


def _oci_tool(name: str, exe: Path, root: Path, bundle: Path) -> Tool:
    root.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-{name}-{os.getpid()}"

    def command(i: int) -> list[str]:
        return [str(exe), "--root", str(root), "run", "--bundle", str(bundle), f"{prefix}-{i}"]

    def after(i: int, failed: bool) -> None:
        if failed:  # `run` deletes its container on success; after a failure, make sure
            subprocess.run([str(exe), "--root", str(root), "delete", "--force", f"{prefix}-{i}"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    return Tool(name, command, after)


def _remove_all(exe: Path, root: Path) -> None:
    """Delete whatever containers remain in a runtime's state root (after a crash mid-run)."""
    if not root.exists():
        return
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            subprocess.run([str(exe), "--root", str(root), "delete", "--force", entry.name],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


@scenario(NAME, reference="runc", description="OCI runtime `run` of a bundle running `true`")
def run(ctx: Context) -> list[Measurement]:
    bundle = make_bundle(ctx.workdir / "bundle", ["true"],
                         rootfs=make_rootfs(ctx.workdir / "bundle" / "rootfs"))
    rootfs = bundle / "rootfs"
    results: list[Measurement] = []
    tools: list[Tool] = []
    roots: list[tuple[Path, Path]] = []
    hugetlb = None

    for name in ("runc", "crun", "berth-runtime"):
        exe = find_tool(name)
        if exe is None:
            results.append(Measurement(NAME, name, "runc", status="skipped",
                                       note=f"{name} not installed"))
            continue
        if name == "crun" and hugetlb_setup_needed():
            if ctx.quick:
                results.append(Measurement(
                    NAME, name, "runc", status="skipped",
                    note="cgroup2 holds controllers on a hybrid layout; the hugetlb set-up crun "
                         "needs is done in full mode only"))
                continue
            hugetlb = HugetlbOnV1()
        root = ctx.workdir / f"state-{name}"
        roots.append((exe, root))
        tools.append(_oci_tool(name, exe, root, bundle))

    unshare = shutil.which("unshare")
    if unshare:
        tools.append(Tool("unshare+chroot true (baseline)", lambda i: [
            unshare, "-fpmiun", "--mount-proc", "chroot", str(rootfs), "true"]))
    else:
        results.append(Measurement(NAME, "unshare+chroot true (baseline)", "runc",
                                   status="skipped", note="unshare not installed"))
    tools.append(Tool("python3 -c pass (baseline)", lambda i: [sys.executable, "-c", "pass"]))

    try:
        if hugetlb is not None:
            try:
                hugetlb.__enter__()
            except (OSError, subprocess.CalledProcessError) as e:
                hugetlb.__exit__(None, None, None)
                hugetlb = None
                tools = [t for t in tools if t.name != "crun"]
                results.append(Measurement(NAME, "crun", "runc", status="error",
                                           note=f"hugetlb set-up failed: {e}"))
        measured = measure_interleaved(NAME, "runc", tools, ctx.n)
    finally:
        try:
            for exe, root in roots:
                _remove_all(exe, root)
        finally:
            if hugetlb is not None:
                hugetlb.__exit__(None, None, None)
                if hugetlb.left:
                    results.append(Measurement(
                        NAME, "(hugetlb set-up)", "runc", status="error",
                        note="cgroups left in the hugetlb hierarchy (removed): "
                             + ", ".join(sorted(hugetlb.left))))
                if not hugetlb.restored:
                    results.append(Measurement(
                        NAME, "(hugetlb set-up)", "runc", status="error",
                        note="hugetlb is still bound to a v1 hierarchy; `mount -t cgroup -o "
                             "hugetlb cgroup DIR; umount DIR` once its cgroups are freed"))
    for m in measured:
        if m.tool.startswith("python3"):
            m.note = m.note or f"interpreter {sys.executable}"
    order = ["runc", "crun", "berth-runtime"]
    results.extend(measured)
    results.sort(key=lambda m: order.index(m.tool) if m.tool in order else len(order))
    return results
