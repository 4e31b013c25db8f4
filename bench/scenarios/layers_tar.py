"""layer-pack, layer-unpack, layer-unpack-gzip: berth's layer tar code beside GNU tar.

One data set, generated deterministically (random.Random(SEED)) in the scenario's scratch dir
(tempfile's default dir): full mode ~1 GiB in ~20,000 files, quick mode ~20 MiB in ~2,000 — many
small files (1-16 KiB), some of 16 KiB-1 MiB, a few MB-sized, a few directories deep, relative
symlinks (one dangling, one to a directory), a few hardlinks, mixed modes, a few files owned by
1000:1000, every mtime fixed. Content is sliced from two pools made once per data set: random
bytes (incompressible) and text-like words (gzip -6 to ~50%), so that making the data is a few
seconds, not the run.

    layer-pack         berth  `berth.store.layers.pack(SRC, OUT)`
                       GNU tar `tar --numeric-owner -C SRC -cf OUT .` (the reference)
                       GNU tar + `sync OUT` (baseline: pack fsyncs the tar it wrote; tar does not)
    layer-unpack       berth  `berth.store.layers.unpack(TAR, DEST)`
                       GNU tar `tar --numeric-owner -xpf TAR -C DEST` (the reference)
    layer-unpack-gzip  the same with TAR.gz (`gzip -6 -n`) and `tar -xzpf` (full mode only;
                       GNU tar runs gzip as a second process, so it decompresses on another core)

The tar both unpack is the one berth's pack writes of the data set (docker-style headers).
Every tool runs out of process, berth as `PYTHON -c "from berth.store.layers import ...; ..."`,
so both sides pay their start-up; the `python -c import` baseline row shows berth's share of it.
Runs are interleaved after one untimed warm-up per tool (which also fills the page cache; the
cache is not dropped); the output is removed after each run and `sync` run, untimed, so that
no run pays for the writeback of an earlier one. N is capped: at most 3 timed runs per tool in
full mode, 2 in quick mode (the run.py default of 30 would take long).
The warm-up output of each tool is checked (entry count, and a sample of file contents).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import CommandFailed, Context, Measurement, Tool, scenario
from . import run_timed as _run_timed

REFERENCE = "GNU tar"
SEED = 20261128
MTIME = 1_700_000_000
BERTH_PYTHON = "/opt/berth-venv/bin/python"
TIMEOUT_S = 600.0  # per run; run_timed's default of 60 s is short for 1 GiB in Python


# --- the data set ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    small: int  # files of 1-16 KiB
    medium: int
    medium_range: tuple[int, int]
    big: int
    big_range: tuple[int, int]
    top_dirs: int
    sub_dirs: int
    symlinks: int
    hardlinks: int
    rand_pool: int
    text_pool: int


KiB, MiB = 1 << 10, 1 << 20
FULL = Shape(small=19_000, medium=900, medium_range=(16 * KiB, 1 * MiB), big=100,
             big_range=(1 * MiB, 7 * MiB), top_dirs=16, sub_dirs=10, symlinks=60, hardlinks=4,
             rand_pool=32 * MiB, text_pool=8 * MiB)
QUICK = Shape(small=1_950, medium=45, medium_range=(16 * KiB, 64 * KiB), big=5,
              big_range=(256 * KiB, 1 * MiB), top_dirs=8, sub_dirs=5, symlinks=20, hardlinks=2,
              rand_pool=4 * MiB, text_pool=2 * MiB)


@dataclass(frozen=True)
class DataSet:
    root: Path
    entries: int  # everything under root (files, dirs, symlinks, hardlink names), not root
    files: int  # regular file names (hardlinks included)
    content_bytes: int  # bytes of regular files, each inode once
    samples: tuple[tuple[str, int, int], ...]  # (rel, size, hash) of some files, to check


def _text_pool(rng: random.Random, size: int) -> bytes:
    letters = "abcdefghijklmnopqrstuvwxyz_"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(4000)]
    seps = [" ", " ", " ", " ", "\n", "(", ")", ", ", " = ", ";\n", ".", "\n    "]
    k = size // 5 + 1
    words, spaces = rng.choices(vocab, k=k), rng.choices(seps, k=k)
    return "".join(w + s for w, s in zip(words, spaces)).encode()[:size]


def make_data(root: Path, shape: Shape, seed: int = SEED) -> DataSet:
    """Write the data set under the new directory `root`; the same seed gives the same tree."""
    rng = random.Random(seed)
    pools = (memoryview(rng.randbytes(shape.rand_pool)), memoryview(_text_pool(rng,
                                                                            shape.text_pool)))
    root.mkdir()
    dirs = [""]
    for t in range(shape.top_dirs):
        dirs.append(f"d{t:02}")
        dirs.extend(f"d{t:02}/s{s}" for s in range(shape.sub_dirs))
    deep = "d00/s0/a/b/c/d/e/f"  # a few levels deeper
    dirs.extend("/".join(deep.split("/")[:i]) for i in range(3, deep.count("/") + 2))
    for d in dirs[1:]:
        (root / d).mkdir()
    leaf_dirs = [d for d in dirs if d.count("/") >= 1]

    sizes = ([rng.randint(1 * KiB, 16 * KiB) for _ in range(shape.small)]
             + [rng.randint(*shape.medium_range) for _ in range(shape.medium)]
             + [rng.randint(*shape.big_range) for _ in range(shape.big)])
    rng.shuffle(sizes)
    files: list[str] = []
    samples: list[tuple[str, int, int]] = []
    content = 0
    for i, size in enumerate(sizes):
        rel = f"{rng.choice(leaf_dirs)}/f{i:05}{rng.choice(('', '.txt', '.so', '.py', '.gz'))}"
        pool = pools[1] if size < 16 * KiB and rng.random() < 0.7 else pools[rng.random() < 0.5]
        off = rng.randrange(len(pool) - size)
        path = root / rel
        with open(path, "wb") as f:
            f.write(pool[off:off + size])
        if rng.random() < 0.2:
            os.chmod(path, 0o755)
        elif rng.random() < 0.02:
            os.chown(path, 1000, 1000)
        files.append(rel)
        content += size
        if i % 997 == 0:
            samples.append((rel, size, zlib.crc32(pool[off:off + size])))
    links = 0
    for i in range(shape.hardlinks):
        target = files[rng.randrange(len(files))]
        os.link(root / target, root / f"{target}.hardlink{i}")
        links += 1
    for i in range(shape.symlinks):
        d = rng.choice(leaf_dirs)
        target = rng.choice(files)
        os.symlink(os.path.relpath(root / target, root / d), root / d / f"link{i:03}")
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("d00/s0", root / "dirlink")
    every = [root / d for d in dirs]
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            os.utime(os.path.join(dirpath, n), (MTIME, MTIME), follow_symlinks=False)
    for d in sorted(every, key=lambda p: len(p.parts), reverse=True):
        os.utime(d, (MTIME, MTIME))
    entries = (len(dirs) - 1) + len(files) + links + shape.symlinks + 2
    return DataSet(root, entries, len(files) + links, content, tuple(samples))


def count_entries(root: Path) -> int:
    n = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        n += len(dirnames) + len(filenames)
    return n


def check_tree(data: DataSet, out: Path) -> str | None:
    """None if `out` looks like the data set (entry count, sample contents), else why not."""
    n = count_entries(out)
    if n != data.entries:
        return f"{n} entries, want {data.entries}"
    for rel, size, h in data.samples:
        p = out / rel
        try:
            body = p.read_bytes()
        except OSError as e:
            return f"{rel}: {e.strerror}"
        if len(body) != size or zlib.crc32(body) != h:
            return f"{rel}: content differs"
    st = os.lstat(out / "dirlink")
    if not os.path.islink(out / "dirlink") or int(st.st_mtime) != MTIME:
        return "dirlink: not a symlink with the set mtime"
    return None


def check_tar(data: DataSet, tar: Path) -> str | None:
    r = subprocess.run(["tar", "-tf", str(tar)], capture_output=True, text=True)
    if r.returncode != 0:
        return f"tar -tf: exit {r.returncode}"
    names = [x for x in r.stdout.splitlines() if x.strip("/") not in ("", ".")]
    if len(names) != data.entries:
        return f"{len(names)} members, want {data.entries}"
    return None


# --- running ---------------------------------------------------------------------------------

def berth_python() -> str | None:
    """An interpreter that imports berth: this one, else the project's venv."""
    for exe in dict.fromkeys([sys.executable, BERTH_PYTHON]):
        if exe and os.path.exists(exe) and subprocess.run(
                [exe, "-c", "import berth.store.layers"], capture_output=True).returncode == 0:
            return exe
    return None


def berth_call(py: str, call: str, *args: str) -> list[str]:
    return [py, "-c", f"import sys; from berth.store.layers import {call}; "
                      f"{call}(*sys.argv[1:])", *args]


def run_timed(argv: Sequence[str], timeout: float = TIMEOUT_S) -> float:
    """scenarios.run_timed with this scenario's longer timeout."""
    return _run_timed(argv, timeout)


@dataclass
class Contender:
    tool: Tool
    check: Callable[[], str | None] | None = None  # run on the warm-up's output


def measure(name: str, contenders: list[Contender], n: int) -> list[Measurement]:
    """measure_interleaved (one warm-up, then n rounds), with a longer timeout per run and a
    check of each tool's warm-up output before it is removed."""
    for c in contenders:
        c.tool.measurement = Measurement(name, c.tool.name, REFERENCE)
    for i in range(-1, n):
        for c in contenders:
            m = c.tool.measurement
            assert m is not None
            if m.status != "ok":
                continue
            failed = False
            try:
                ms = run_timed(c.tool.command(i + 1))
                if i >= 0:
                    m.samples_ms.append(ms)
                elif c.check is not None:
                    try:
                        problem = c.check()
                    except OSError as e:
                        problem = f"{type(e).__name__}: {e}"
                    if problem:
                        failed = True
                        m.status, m.note = "error", f"wrong output: {problem}"
            except CommandFailed as e:
                failed = True
                m.status, m.note = "error", str(e)
            finally:
                c.tool.after(i + 1, failed)
    return [c.tool.measurement for c in contenders if c.tool.measurement is not None]


def runs(ctx: Context) -> int:
    return max(1, min(ctx.n, 2 if ctx.quick else 3))


def remove(path: Path) -> None:
    """Remove a run's output, then sync: the next run must not pay for this one's writeback
    (or for the discards of its removal; / is mounted with `discard` here)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    os.sync()


def throughput_notes(measured: list[Measurement], mib: float) -> None:
    """MiB/s of file content (the same figure for pack and unpack) at the median."""
    for m in measured:
        if m.status == "ok" and m.samples_ms and "baseline" not in m.tool:
            rate = mib / (statistics.median(m.samples_ms) / 1000)
            m.note = "; ".join(x for x in (f"{rate:.0f} MiB/s of {mib:.0f} MiB content", m.note)
                               if x)


def _setup(ctx: Context) -> tuple[str | None, DataSet, list[Measurement]]:
    py = berth_python()
    t0 = time.monotonic()
    data = make_data(ctx.workdir / "src", QUICK if ctx.quick else FULL)
    os.sync()  # written back now, not during the timed runs
    ctx.log(f"#   data: {data.entries} entries, {data.content_bytes / MiB:.0f} MiB in "
            f"{time.monotonic() - t0:.1f} s")
    return py, data, []


def _startup_baseline(py: str) -> Tool:
    return Tool("python -c import berth.store.layers (baseline)",
                lambda i: [py, "-c", "import berth.store.layers"])


def _skipped(name: str, tool: str, note: str) -> Measurement:
    return Measurement(name, tool, REFERENCE, status="skipped", note=note)


# --- scenarios -------------------------------------------------------------------------------

@scenario("layer-pack", reference=REFERENCE,
          description="pack a ~1 GiB / 20k-file directory into a layer tar (quick: 20 MiB)")
def layer_pack(ctx: Context) -> list[Measurement]:
    name = "layer-pack"
    tar = shutil.which("tar")
    py, data, results = _setup(ctx)
    src = str(data.root)
    outs = ctx.workdir / "out"
    outs.mkdir()
    contenders: list[Contender] = []

    def out(tool: str, i: int) -> Path:
        return outs / f"{tool}-{i}.tar"

    def cleanup(tool: str) -> Callable[[int, bool], None]:
        return lambda i, failed: remove(out(tool, i))

    if py is None:
        results.append(_skipped(name, "berth", "no interpreter here imports berth"))
    else:
        contenders.append(Contender(
            Tool("berth", lambda i: berth_call(py, "pack", src, str(out("berth", i))),
                 cleanup("berth")),
            lambda: check_tar(data, out("berth", 0))))
    if tar is None:
        results.append(_skipped(name, REFERENCE, "tar not installed"))
    else:
        contenders.append(Contender(
            Tool(REFERENCE, lambda i: [tar, "--numeric-owner", "-C", src, "-cf",
                                       str(out("tar", i)), "."], cleanup("tar")),
            lambda: check_tar(data, out("tar", 0))))
        sh = shutil.which("sh") or "/bin/sh"
        contenders.append(Contender(Tool(
            "GNU tar + sync OUT (baseline)",
            lambda i: [sh, "-c", 'tar --numeric-owner -C "$1" -cf "$2" . && sync "$2"', "sh",
                       src, str(out("tarsync", i))], cleanup("tarsync"))))
    if py is not None:
        contenders.append(Contender(_startup_baseline(py)))
    measured = measure(name, contenders, runs(ctx))
    throughput_notes(measured, data.content_bytes / MiB)
    for m in measured:
        if m.tool == "berth" and m.status == "ok":
            m.note += "; out of process (python start-up included); writes sha256 diff_id, fsyncs"
    return results + measured


def _unpack_scenario(ctx: Context, name: str, gz: bool) -> list[Measurement]:
    if gz and ctx.quick:
        return [_skipped(name, "berth", "full mode only"),
                _skipped(name, REFERENCE, "full mode only")]
    tar = shutil.which("tar")
    py, data, results = _setup(ctx)
    if py is None or tar is None:
        return results + [_skipped(name, "berth" if py is None else REFERENCE,
                                   "no interpreter imports berth" if py is None
                                   else "tar not installed")]
    layer = ctx.workdir / "layer.tar"
    t0 = time.monotonic()
    subprocess.run(berth_call(py, "pack", str(data.root), str(layer)), check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S)
    if gz:
        gzip = shutil.which("gzip")
        if gzip is None:
            return [_skipped(name, "berth", "gzip not installed")]
        with open(str(layer) + ".gz", "wb") as f:
            subprocess.run([gzip, "-6", "-n", "-c", str(layer)], stdout=f, check=True,
                           timeout=TIMEOUT_S)
        tar_mib = layer.stat().st_size / MiB
        gz_mib = os.path.getsize(str(layer) + ".gz") / MiB
        layer.unlink()
        layer = Path(str(layer) + ".gz")
    else:
        tar_mib = layer.stat().st_size / MiB
    shutil.rmtree(data.root)  # the tar is all the runs need; keep the page cache for them
    os.sync()
    ctx.log(f"#   layer: {layer.name} {layer.stat().st_size / MiB:.0f} MiB "
            f"in {time.monotonic() - t0:.1f} s")
    outs = ctx.workdir / "out"
    outs.mkdir()

    def dest(tool: str, i: int) -> Path:
        return outs / f"{tool}-{i}"

    def cleanup(tool: str) -> Callable[[int, bool], None]:
        return lambda i, failed: remove(dest(tool, i))

    def tar_cmd(i: int) -> list[str]:
        d = dest("tar", i)
        d.mkdir()  # tar -C needs it; berth's unpack makes its own (and refuses an existing one)
        return [tar, "--numeric-owner", "-xzpf" if gz else "-xpf", str(layer), "-C", str(d)]

    contenders = [
        Contender(Tool("berth", lambda i: berth_call(py, "unpack", str(layer),
                                                     str(dest("berth", i))), cleanup("berth")),
                  lambda: check_tree(data, dest("berth", 0))),
        Contender(Tool(REFERENCE, tar_cmd, cleanup("tar")),
                  lambda: check_tree(data, dest("tar", 0))),
    ]
    if not gz:
        contenders.append(Contender(_startup_baseline(py)))
    measured = measure(name, contenders, runs(ctx))
    throughput_notes(measured, data.content_bytes / MiB)
    for m in measured:
        if m.tool == "berth" and m.status == "ok":
            m.note += "; out of process (python start-up included); hashes the diff_id"
        if gz and m.tool == REFERENCE and m.status == "ok":
            m.note += "; gzip runs as a second process"
    if gz:
        for m in measured:
            if m.status == "ok" and m.tool == REFERENCE:
                m.note += f"; {gz_mib:.0f} MiB gzip -6 of {tar_mib:.0f} MiB"
    return results + measured


@scenario("layer-unpack", reference=REFERENCE,
          description="unpack a ~1 GiB / 20k-file layer tar (quick: 20 MiB)")
def layer_unpack(ctx: Context) -> list[Measurement]:
    return _unpack_scenario(ctx, "layer-unpack", gz=False)


@scenario("layer-unpack-gzip", reference=REFERENCE,
          description="unpack the same layer as .tar.gz (full mode only)")
def layer_unpack_gzip(ctx: Context) -> list[Measurement]:
    return _unpack_scenario(ctx, "layer-unpack-gzip", gz=True)
