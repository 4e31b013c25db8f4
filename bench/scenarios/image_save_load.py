"""image-save, image-load: `berth save` / `berth load` of a ~1 GiB image beside podman's.

The image is the data set of layers_tar.py (full mode ~1 GiB in ~20,000 files; quick ~20 MiB),
tarred by GNU tar and imported as a one-layer image `bench/saveload:1` by both tools, each into a
store of its own in the scenario's scratch dir (podman: `--root`/`--runroot` there, its default
overlay driver, `CONTAINERS_CONF` as REFERENCE-TOOLS.md says).

    image-save   berth  `berth save -o OUT bench/saveload:1`
                 podman `podman save -o OUT bench/saveload:1` (docker-archive; the reference)
    image-load   berth  `berth load -i ARCHIVE` into an empty BERTH_ROOT (the layer is kept
                        packed until first use; the row "berth + first use (create)" adds
                        `berth create IMAGE`, which unpacks it)
                 podman `podman load -i ARCHIVE` into a store without the image
                 (each tool loads the archive it saved itself)

Every run is the whole command (start-up included). After each run, untimed: the output archive
is removed (save), or the loaded image and its store are removed (load). Quick mode (CI) runs
berth alone: podman's set-up is a second image store, which CI should not pay for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import Context, Measurement, Tool, measure_interleaved, scenario
from .layers_tar import FULL, QUICK, MiB, make_data

IMAGE = "bench/saveload:1"
BERTH = "/opt/berth-venv/bin/berth"
CONTAINERS_CONF = """[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
"""


class _Podman:
    """podman on a store of its own; `reset()` removes the store and everything in it."""

    def __init__(self, exe: str, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.root = work / "storage"
        self.runroot = Path(tempfile.mkdtemp(prefix="bsl-", dir="/tmp"))  # ≤ 50 characters
        self.conf = work / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        self.base = [exe, "--root", str(self.root), "--runroot", str(self.runroot)]
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def argv(self, *args: str) -> list[str]:
        return [*self.base, *args]

    def run(self, *args: str) -> None:
        subprocess.run(self.argv(*args), env=self.env, check=True, capture_output=True,
                       timeout=600)

    def reset(self) -> None:
        subprocess.run(self.argv("system", "reset", "--force"), env=self.env,
                       capture_output=True, timeout=600)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


def _env_tool(name: str, argv: list[str], env: dict[str, str], after=None) -> Tool:
    """A Tool whose command runs under `env` (run_timed passes no env: go through env(1))."""
    prefix = ["env", "-i", *(f"{k}={v}" for k, v in env.items() if k in (
        "PATH", "BERTH_ROOT", "BERTH_RUN", "CONTAINERS_CONF", "HOME", "PYTHONPATH",
        "BERTH_NO_SERVICE"))]
    return Tool(name, lambda i: [*prefix, *argv], after or (lambda i, failed: None))


class _Setup:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        work = ctx.workdir
        data = make_data(work / "src", QUICK if ctx.quick else FULL)
        self.mib = data.content_bytes / MiB
        self.rootfs = work / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(data.root), "-cf",
                        str(self.rootfs), "."], check=True)
        shutil.rmtree(data.root)
        self.berth_root = work / "berth"
        self.env = {**os.environ, "BERTH_ROOT": str(self.berth_root)}
        subprocess.run([BERTH, "import", str(self.rootfs), IMAGE], env=self.env, check=True,
                       capture_output=True)
        self.berth_archive = work / "berth-saved.tar"
        subprocess.run([BERTH, "save", "-o", str(self.berth_archive), IMAGE], env=self.env,
                       check=True)
        self.podman: _Podman | None = None
        self.podman_archive = work / "podman-saved.tar"
        exe = shutil.which("podman")
        if exe and not ctx.quick:
            self.podman = _Podman(exe, work / "podman")
            self.podman.run("import", str(self.rootfs), IMAGE)
            self.podman.run("save", "-o", str(self.podman_archive), IMAGE)
        self.rootfs.unlink()

    def close(self) -> None:
        if self.podman is not None:
            self.podman.reset()


def _note(ms: list[Measurement], mib: float) -> None:
    import statistics
    for m in ms:
        if m.status == "ok" and m.samples_ms:
            rate = mib / (statistics.median(m.samples_ms) / 1000)
            m.note = "; ".join(x for x in (f"{rate:.0f} MiB/s of {mib:.0f} MiB", m.note) if x)


def _skip_podman(name: str, setup: _Setup) -> list[Measurement]:
    if setup.podman is not None:
        return []
    why = "quick mode: berth alone" if setup.ctx.quick else "podman is not installed"
    return [Measurement(name, "podman", "podman", status="skipped", note=why)]


@scenario("image-save", reference="podman",
          description="save a one-layer ~1 GiB / 20k-file image to a tar (quick: 20 MiB)")
def image_save(ctx: Context) -> list[Measurement]:
    name = "image-save"
    setup = _Setup(ctx)
    try:
        out = ctx.workdir / "out.tar"
        tools = [_env_tool("berth", [BERTH, "save", "-o", str(out), IMAGE], setup.env,
                           lambda i, failed: out.unlink(missing_ok=True))]
        if setup.podman is not None:
            p = setup.podman
            tools.append(_env_tool("podman", p.argv("save", "-o", str(out), IMAGE), p.env,
                                   lambda i, failed: out.unlink(missing_ok=True)))
        n = max(1, min(ctx.n, 2 if ctx.quick else 5))
        measured = measure_interleaved(name, "podman", tools, n)
        _note(measured, setup.mib)
        return measured + _skip_podman(name, setup)
    finally:
        setup.close()


@scenario("image-load", reference="podman",
          description="load a one-layer ~1 GiB / 20k-file image archive (quick: 20 MiB)")
def image_load(ctx: Context) -> list[Measurement]:
    name = "image-load"
    setup = _Setup(ctx)
    try:
        fresh = ctx.workdir / "berth-load"
        env = {**setup.env, "BERTH_ROOT": str(fresh)}
        tools = [_env_tool("berth", [BERTH, "load", "-q", "-i", str(setup.berth_archive)], env,
                           lambda i, failed: shutil.rmtree(fresh, ignore_errors=True)),
                 # load keeps the layer packed until first use: this row pays that use too
                 # (`create` unpacks the image's layers for the container's overlay)
                 _env_tool("berth + first use (create)", [
                     "sh", "-c", f"{BERTH} load -q -i {setup.berth_archive} >/dev/null && "
                     f"{BERTH} create --network none {IMAGE} true >/dev/null"], env,
                     lambda i, failed: shutil.rmtree(fresh, ignore_errors=True))]
        if setup.podman is not None:
            loader = _Podman(shutil.which("podman") or "podman", ctx.workdir / "podman-load")

            def podman_after(i: int, failed: bool) -> None:
                subprocess.run(loader.argv("rmi", "-a", "-f"), env=loader.env,
                               capture_output=True, timeout=600)

            tools.append(_env_tool("podman", loader.argv("load", "-q", "-i",
                                                         str(setup.podman_archive)),
                                   loader.env, podman_after))
        n = max(1, min(ctx.n, 2 if ctx.quick else 5))
        try:
            measured = measure_interleaved(name, "podman", tools, n)
        finally:
            if setup.podman is not None:
                loader.reset()
        _note(measured, setup.mib)
        return measured + _skip_podman(name, setup)
    finally:
        setup.close()
