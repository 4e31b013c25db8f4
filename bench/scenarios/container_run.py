"""container-run-true, container-idle-memory: `berth run` beside `podman run` and `runc run`.

One busybox root filesystem (tests/helpers/rootfs.py), imported as `bench/busybox:1` into
berth and (full mode) into a podman store of the scenario's own, and copied into a runc bundle.

    container-run-true     berth  `berth run --rm --network none IMG true` (the installed script)
                           podman `podman run --rm --network none --runtime runc IMG true`
                           (the reference; runc, not crun: crun 1.8 refuses this machine's
                           hybrid cgroup layout without the hugetlb set-up of runtime-run-true)
                           runc   `runc run` of the equivalent bundle
                           berth --runtime runc / crun: `berth run --rm --network none
                           --runtime runc|crun IMG true` (the OCI binary instead of berth's
                           in-process runtime; crun needs the hugetlb set-up of
                           runtime-run-true: full mode only, else skipped)
                           berth (system service): `berth run --rm --network none IMG true`
                           with `berth system service` running on the scenario's BERTH_RUN
                           (the other berth rows set BERTH_NO_SERVICE=1: in process). The
                           installed script when it has the fast path, else this checkout's
                           bin/berth on the venv's interpreter (the same script, as install.sh
                           would install it)
    container-idle-memory  PSS (/proc/PID/smaps_rollup) of what each engine keeps running for
                           one idle `sleep` container: berth's monitor, podman's conmon;
                           5 containers each, the median reported (as "ms": the unit column
                           holds KiB here, see the note). Full mode adds the floors of the
                           designs docs/containers.md "Idle memory" weighs, measured while
                           both engines' containers run: a bare python3.11 per container,
                           one for all of them, a zygote with a forked child per container
                           (gc.freeze() first), and a perl per container (per container:
                           the group's PSS divided by the containers)

Quick mode (CI) runs berth alone (and berth --runtime runc, berth (system service)).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from helpers import find_tool
from helpers.bundle import make_bundle
from helpers.rootfs import make_rootfs, make_rootfs_tar

from . import Context, Measurement, Tool, enter_hugetlb, measure_interleaved, scenario
from .image_save_load import _env_tool, _Podman, _skip_podman

IMAGE = "bench/busybox:1"
BERTH = "/opt/berth-venv/bin/berth"
VENV_PYTHON = "/opt/berth-venv/bin/python"
CHECKOUT_SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "berth"


def _client_script() -> list[str]:
    """The `berth` script with the service's fast path: the installed one if it has it."""
    try:
        if "berth.cli.client" in Path(BERTH).read_text():
            return [BERTH]
    except OSError:
        pass
    return [VENV_PYTHON, str(CHECKOUT_SCRIPT)]


class _Service:
    """`berth system service` on the scenario's BERTH_RUN, for the duration of a measurement."""

    def __init__(self, env: dict[str, str]) -> None:
        self.sock = Path(env["BERTH_RUN"]) / "berth.sock"
        self.proc = subprocess.Popen([VENV_PYTHON, "-m", "berth.cli.main", "system", "service"],
                                     env=env, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.close()
                raise RuntimeError("berth system service did not start")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


class _Setup:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        work = ctx.workdir
        self.rootfs = make_rootfs(work / "rootfs")
        tar = make_rootfs_tar(work / "rootfs.tar", self.rootfs)
        self.env = {**os.environ, "BERTH_ROOT": str(work / "berth"),
                    "BERTH_RUN": str(work / "berth-run")}
        subprocess.run([BERTH, "import", str(tar), IMAGE], env=self.env, check=True,
                       capture_output=True)
        self.podman: _Podman | None = None
        exe = shutil.which("podman")
        if exe and not ctx.quick:
            self.podman = _Podman(exe, work / "podman")
            self.podman.run("import", str(tar), IMAGE)

    def close(self) -> None:
        ids = subprocess.run([BERTH, "ps", "-aq"], env=self.env, capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run([BERTH, "rm", "-f", *ids], env=self.env, capture_output=True)
        if self.podman is not None:
            subprocess.run(self.podman.argv("rm", "-a", "-f"), env=self.podman.env,
                           capture_output=True, timeout=120)
            self.podman.reset()


@scenario("container-run-true", reference="podman",
          description="run --rm --network none IMAGE true: berth, podman, runc")
def container_run_true(ctx: Context) -> list[Measurement]:
    name = "container-run-true"
    setup = _Setup(ctx)
    try:
        inproc = {**setup.env, "BERTH_NO_SERVICE": "1"}
        tools = [_env_tool("berth", [BERTH, "run", "--rm", "--network", "none", IMAGE, "true"],
                           inproc),
                 _env_tool("berth (system service)", [*_client_script(), "run", "--rm",
                                                      "--network", "none", IMAGE, "true"],
                           setup.env)]
        if setup.podman is not None:
            p = setup.podman
            tools.append(_env_tool("podman", p.argv("run", "--rm", "--network", "none",
                                                    "--runtime", "runc", IMAGE, "true"),
                                   p.env))
        extra, hugetlb = _runtime_rows(ctx, setup, tools, inproc)
        runc = find_tool("runc")
        if runc is not None and not ctx.quick:
            bundle = make_bundle(ctx.workdir / "bundle", ("true",), rootfs=setup.rootfs)
            root = ctx.workdir / "runc-root"
            tools.append(Tool("runc", lambda i: [str(runc), "--root", str(root), "run",
                                                  "--bundle", str(bundle), f"bench-run-{i}"]))
        hugetlb, tools, refused = enter_hugetlb(hugetlb, name, "podman", "berth --runtime crun",
                                                tools)
        extra += refused
        service = _Service(setup.env)
        try:
            measured = measure_interleaved(name, "podman", tools, ctx.n)
        finally:
            service.close()
            if hugetlb is not None:
                hugetlb.__exit__(None, None, None)
        return measured + extra + _skip_podman(name, setup)
    finally:
        setup.close()


def _runtime_rows(ctx: Context, setup: _Setup, tools: list[Tool],
                  env: dict[str, str]) -> tuple[list[Measurement], Any]:
    """Tools for `berth run --runtime runc|crun`; rows saying why one is skipped; the hugetlb
    set-up crun needs here (full mode), to enter around the measurement, or None."""
    from helpers.hugetlb import HugetlbOnV1, setup_needed as hugetlb_setup_needed
    name = "container-run-true"
    out: list[Measurement] = []
    hugetlb = None
    for rt in ("runc", "crun"):
        tool = f"berth --runtime {rt}"
        if shutil.which(rt) is None:
            out.append(Measurement(name, tool, "podman", status="skipped",
                                   note=f"{rt} not installed"))
            continue
        if rt == "crun" and hugetlb_setup_needed():
            if ctx.quick:
                out.append(Measurement(name, tool, "podman", status="skipped",
                                       note="crun needs hugetlb moved off cgroup2 here: done "
                                            "in full mode only"))
                continue
            hugetlb = HugetlbOnV1()
        tools.append(_env_tool(tool, [BERTH, "run", "--rm", "--network", "none", "--runtime",
                                      rt, IMAGE, "true"], env))
    return out, hugetlb


def _pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids_named(name: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(int(p)) == name]


def _idle_pss(name: str, tool: str, comm: str, run_d: list[str], env: dict[str, str],
              n: int) -> Measurement:
    """Start n idle containers with `run_d`; the PSS (KiB) of each new process named `comm`
    (what the engine keeps running per container)."""
    before = set(_pids_named(comm))
    for _ in range(n):
        subprocess.run([*run_d, "--network", "none", IMAGE, "sleep", "600"], env=env,
                       check=True, capture_output=True, timeout=120)
    time.sleep(1)
    new = [p for p in _pids_named(comm) if p not in before]
    return Measurement(name, tool, "podman", samples_ms=[float(_pss_kib(p)) for p in new],
                       note=f"KiB of PSS of {comm} per container (the columns say ms), "
                            f"{len(new)} processes")


_IDLE = "import select; select.poll().poll(600000)"
# A zygote: the interpreter and the pump's modules once, frozen out of the collector's reach,
# then one child per container forked from it; every process only waits.
_ZYGOTE = ("import gc, os, select, sys, time; gc.freeze(); "
           "[os.fork() or (select.poll().poll(600000), os._exit(0)) "
           "for _ in range(int(sys.argv[1]))]; select.poll().poll(600000)")


def _floors(name: str, n: int) -> list[Measurement]:
    """PSS per container (KiB) of the idle-monitor designs without berth's code: what each
    costs at its floor, in the same run as conmon."""
    python = os.path.realpath("/usr/bin/python3")
    groups = {
        f"floor: {os.path.basename(python)} per container":
            [[python, "-S", "-I", "-c", _IDLE] for _ in range(n)],
        f"floor: one {os.path.basename(python)} for all": [[python, "-S", "-I", "-c", _IDLE]],
        "floor: zygote + forked child each": [[python, "-S", "-I", "-c", _ZYGOTE, str(n)]],
    }
    if shutil.which("perl"):
        groups["floor: perl per container"] = [["perl", "-e", "sleep 600"] for _ in range(n)]
    out = []
    for tool, argvs in groups.items():
        procs = [subprocess.Popen(a) for a in argvs]
        try:
            time.sleep(1)
            pids = [p.pid for p in procs]
            pids += [c for p in procs for c in _children(p.pid)]
            pss = [_pss_kib(p) for p in pids]
            samples = pss if len(argvs) == n else [sum(pss) / n]
            out.append(Measurement(name, tool, "podman", samples_ms=[float(x) for x in samples],
                                   note=f"KiB of PSS per container, {len(pids)} processes "
                                        f"for {n} containers"))
        finally:
            for p in procs:
                for c in _children(p.pid):
                    os.kill(c, 9)
                p.kill()
                p.wait()
    return out


@scenario("container-idle-memory", reference="podman",
          description="PSS of what the engine keeps running per idle container (KiB)")
def container_idle_memory(ctx: Context) -> list[Measurement]:
    name = "container-idle-memory"
    setup = _Setup(ctx)
    out: list[Measurement] = []
    n = 3 if ctx.quick else 5
    try:
        out.append(_idle_pss(name, "berth (monitor)", "berth-monitor", [BERTH, "run", "-d"],
                             setup.env, n))
        if setup.podman is not None:
            p = setup.podman
            out.append(_idle_pss(name, "podman", "conmon",
                                 p.argv("run", "-d", "--runtime", "runc"), p.env, n))
        out += _skip_podman(name, setup)
        if not ctx.quick:
            out += _floors(name, n)
        for m in out:
            if m.samples_ms:
                m.note += f"; median {statistics.median(m.samples_ms):.0f} KiB"
        return out
    finally:
        setup.close()


@scenario("containers-50-run-rm", reference="podman",
          description="50 × run -d … sleep in a row, then rm -f of them all (quick: 10)")
def containers_50_run_rm(ctx: Context) -> list[Measurement]:
    name = "containers-50-run-rm"
    setup = _Setup(ctx)
    count = 10 if ctx.quick else 50
    rounds = 1 if ctx.quick else 2
    engines: list[tuple[str, list[str], dict[str, str]]] = [("berth", [BERTH], setup.env)]
    if setup.podman is not None:
        p = setup.podman
        engines.append(("podman", p.argv(), p.env))
    out: list[Measurement] = []
    try:
        for tool, base, env in engines:
            extra = ["--runtime", "runc"] if tool == "podman" else []
            run_m = Measurement(name, f"{tool} run -d ×{count}", f"podman run -d ×{count}")
            rm_m = Measurement(name, f"{tool} rm -f ×{count}", f"podman rm -f ×{count}")
            for _ in range(rounds):
                ids = []
                t0 = time.perf_counter()
                for _i in range(count):
                    r = subprocess.run([*base, "run", "-d", "--network", "none", *extra, IMAGE,
                                        "sleep", "600"], env=env, capture_output=True,
                                       text=True, timeout=120)
                    if r.returncode != 0:
                        run_m.status, run_m.note = "error", r.stderr.strip()[-200:]
                        break
                    ids.append(r.stdout.strip())
                run_m.samples_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                r = subprocess.run([*base, "rm", "-f", *ids], env=env, capture_output=True,
                                   text=True, timeout=600)
                rm_m.samples_ms.append((time.perf_counter() - t0) * 1000)
                if r.returncode != 0:
                    rm_m.status, rm_m.note = "error", r.stderr.strip()[-200:]
            out += [run_m, rm_m]
        return out + _skip_podman(name, setup)
    finally:
        setup.close()
