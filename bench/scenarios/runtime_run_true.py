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
from pathlib import Path

from helpers import find_tool
from helpers.hugetlb import HugetlbOnV1, setup_needed as hugetlb_setup_needed
from helpers.bundle import make_bundle
from helpers.rootfs import make_rootfs

from . import Context, Measurement, Tool, enter_hugetlb, measure_interleaved, scenario

NAME = "runtime-run-true"
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
        hugetlb, tools, refused = enter_hugetlb(hugetlb, NAME, "runc", "crun", tools)
        results += refused
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
