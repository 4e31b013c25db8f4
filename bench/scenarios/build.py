"""build-cold, build-cached, build-one-file-changed, build-copy-1gib: `berth build` beside
`podman build` (buildah) on the same Dockerfiles and contexts, each tool on a store of its own.

The base image is the busybox root filesystem of tests/helpers/rootfs.py, imported as
`bench/busybox:1` by both tools. The small context is the seed's package.json example:

    FROM bench/busybox:1
    WORKDIR /app
    COPY package.json ./
    RUN cp package.json installed.json
    COPY . .
    CMD ["cat", "/app/installed.json"]

with package.json and 20 small source files.

    build-cold              `build --no-cache --network none -t bench/app:1 CTX`; the image
                            and its step images are removed after each run (untimed)
    build-cached            `build --network none -t bench/app:1 CTX`, every step cached
    build-one-file-changed  the same after one source file changed (untimed, before each run):
                            the last COPY and what follows re-run
    build-copy-1gib         `FROM bench/busybox:1` + `COPY . /data/` of the ~1 GiB / 20,000
                            file data set of layers_tar.py (quick: ~20 MiB), --no-cache, the
                            image removed after each run (untimed)

podman builds with `--runtime runc` (crun 1.8 refuses this machine's hybrid cgroup layout
without the hugetlb set-up; see container_run.py). Quick mode (CI) runs berth alone and caps the
copy at the small data set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from helpers.rootfs import make_rootfs, make_rootfs_tar

from . import Context, Measurement, measure_interleaved, scenario
from .image_save_load import _env_tool, _Podman
from .layers_tar import FULL, QUICK, MiB, make_data

BASE = "bench/busybox:1"
APP = "bench/app:1"
BERTH = "/opt/berth-venv/bin/berth"
DOCKERFILE = """FROM bench/busybox:1
WORKDIR /app
COPY package.json ./
RUN cp package.json installed.json
COPY . .
CMD ["cat", "/app/installed.json"]
"""


class _Setup:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        work = ctx.workdir
        rootfs = make_rootfs(work / "rootfs")
        tar = make_rootfs_tar(work / "rootfs.tar", rootfs)
        shutil.rmtree(rootfs)
        self.env = {**os.environ, "BERTH_ROOT": str(work / "berth"),
                    "BERTH_RUN": str(work / "berth-run")}
        subprocess.run([BERTH, "import", str(tar), BASE], env=self.env, check=True,
                       capture_output=True)
        self.podman: _Podman | None = None
        exe = shutil.which("podman")
        if exe and not ctx.quick:
            self.podman = _Podman(exe, work / "podman")
            self.podman.run("import", str(tar), BASE)
        tar.unlink()
        self.app = work / "app"
        self.app.mkdir()
        (self.app / "Dockerfile").write_text(DOCKERFILE)
        (self.app / "package.json").write_text('{"name": "bench", "version": "1.0.0"}\n')
        for i in range(20):
            (self.app / f"src/m{i}.js").parent.mkdir(exist_ok=True)
            (self.app / f"src/m{i}.js").write_text(f"module.exports = {i};\n" * 50)

    def berth_rmi(self, ref: str) -> None:
        subprocess.run([BERTH, "rmi", "-f", ref], env=self.env, capture_output=True)

    def podman_rmi(self, ref: str) -> None:
        if self.podman is not None:
            subprocess.run(self.podman.argv("rmi", "-f", ref), env=self.podman.env,
                           capture_output=True, timeout=600)
            subprocess.run(self.podman.argv("image", "prune", "-f"), env=self.podman.env,
                           capture_output=True, timeout=600)

    def tools(self, flags: list[str], ctxdir: Path, dockerfile: Path, rmi: bool,
              before=None) -> list:
        def berth_cmd(i: int) -> list[str]:
            if before is not None:
                before(i, "berth")
            return [BERTH, "build", "-q", "--network", "none", *flags, "-f", str(dockerfile),
                    "-t", APP, str(ctxdir)]
        tools = [_env_tool("berth", [], self.env,
                           (lambda i, failed: self.berth_rmi(APP)) if rmi else None)]
        prefix = tools[0].command(0)
        tools[0].command = lambda i: [*prefix, *berth_cmd(i)]
        if self.podman is not None:
            p = self.podman

            def podman_cmd(i: int) -> list[str]:
                if before is not None:
                    before(i, "podman")
                return p.argv("build", "-q", "--network", "none", "--runtime", "runc",
                              *flags, "-f", str(dockerfile), "-t", APP, str(ctxdir))
            t = _env_tool("podman", [], p.env,
                          (lambda i, failed: self.podman_rmi(APP)) if rmi else None)
            pre = t.command(0)
            t.command = lambda i: [*pre, *podman_cmd(i)]
            tools.append(t)
        return tools

    def close(self) -> None:
        if self.podman is not None:
            self.podman.reset()


def _skip(name: str, setup: _Setup) -> list[Measurement]:
    if setup.podman is not None:
        return []
    why = "quick mode: berth alone" if setup.ctx.quick else "podman is not installed"
    return [Measurement(name, "podman", "podman", status="skipped", note=why)]


def _n(ctx: Context, cap: int) -> int:
    return max(1, min(ctx.n, 3 if ctx.quick else cap))


def _measure(ctx: Context, name: str, flags: list[str], rmi: bool, cap: int,
             before=None) -> list[Measurement]:
    """The package.json example built by each tool, `n` times (at most `cap`)."""
    setup = _Setup(ctx)
    try:
        tools = setup.tools(flags, setup.app, setup.app / "Dockerfile", rmi=rmi,
                            before=before(setup) if before else None)
        return measure_interleaved(name, "podman", tools, _n(ctx, cap)) + _skip(name, setup)
    finally:
        setup.close()


@scenario("build-cold", reference="podman",
          description="build the package.json example with --no-cache (image removed after)")
def build_cold(ctx: Context) -> list[Measurement]:
    return _measure(ctx, "build-cold", ["--no-cache"], rmi=True, cap=10)


@scenario("build-cached", reference="podman",
          description="rebuild the package.json example, every step cached")
def build_cached(ctx: Context) -> list[Measurement]:
    return _measure(ctx, "build-cached", [], rmi=False, cap=20)


@scenario("build-one-file-changed", reference="podman",
          description="rebuild after one source file changed: the last COPY and CMD re-run")
def build_one_file_changed(ctx: Context) -> list[Measurement]:
    def edit(setup: _Setup):
        def touch(i: int, tool: str) -> None:
            (setup.app / "src/m0.js").write_text(f"module.exports = '{tool}-{i}';\n")
        return touch
    return _measure(ctx, "build-one-file-changed", [], rmi=False, cap=10, before=edit)


@scenario("build-copy-1gib", reference="podman",
          description="COPY a ~1 GiB / 20k-file context in one step (quick: ~20 MiB)")
def build_copy_1gib(ctx: Context) -> list[Measurement]:
    setup = _Setup(ctx)
    try:
        data = make_data(ctx.workdir / "data", QUICK if ctx.quick else FULL)
        dockerfile = ctx.workdir / "Dockerfile.copy"
        dockerfile.write_text(f"FROM {BASE}\nCOPY . /data/\n")

        def settle(i: int, tool: str) -> None:
            subprocess.run(["sync"], check=False)
        tools = setup.tools(["--no-cache"], data.root, dockerfile, rmi=True, before=settle)
        measured = measure_interleaved("build-copy-1gib", "podman", tools, _n(ctx, 3))
        mib = data.content_bytes / MiB
        for m in measured:
            m.note = "; ".join(x for x in (f"{mib:.0f} MiB in {data.files} files", m.note)
                               if x)
        return measured + _skip("build-copy-1gib", setup)
    finally:
        setup.close()
