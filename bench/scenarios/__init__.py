"""The benchmark registry, and how a scenario measures commands.

A scenario is a function `fn(ctx) -> list[Measurement]` in a module of this package, registered
with @scenario(name, reference=...). bench/run.py imports every module here and runs them all.
Each tool of a scenario is timed in the same run as the reference, runs interleaved (tool A run 1,
tool B run 1, A run 2 ...), so that a slow phase of the machine hits every tool alike.

A tool that is not installed is a `skipped` Measurement; a tool that fails is an `error` one with
the tail of its stderr. Neither stops the run.
"""

from __future__ import annotations

import importlib
import pkgutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests") not in sys.path:  # the rootfs/bundle/leak helpers the tests use
    sys.path.insert(0, str(REPO / "tests"))


@dataclass(frozen=True)
class Context:
    n: int  # timed runs per tool
    quick: bool
    workdir: Path  # private scratch dir of this scenario, removed afterwards
    log: Callable[[str], None]


@dataclass
class Measurement:
    scenario: str
    tool: str
    reference: str
    samples_ms: list[float] = field(default_factory=list)
    status: str = "ok"  # ok | skipped | error
    note: str = ""

    def row(self, reference_median: float | None) -> dict[str, Any]:
        ok = self.status == "ok" and bool(self.samples_ms)
        median = statistics.median(self.samples_ms) if ok else None
        return {
            "scenario": self.scenario,
            "tool": self.tool,
            "median_ms": round(median, 2) if median is not None else None,
            "min_ms": round(min(self.samples_ms), 2) if ok else None,
            "max_ms": round(max(self.samples_ms), 2) if ok else None,
            "n": len(self.samples_ms),
            "ratio": (round(median / reference_median, 2)
                      if median is not None and reference_median else None),
            "reference": self.reference,
            "status": self.status,
            "note": self.note,
        }


@dataclass(frozen=True)
class Scenario:
    name: str
    reference: str  # the tool whose median every ratio of this scenario divides by
    description: str
    fn: Callable[[Context], list[Measurement]]


REGISTRY: dict[str, Scenario] = {}


def scenario(name: str, *, reference: str, description: str = ""
             ) -> Callable[[Callable[[Context], list[Measurement]]],
                           Callable[[Context], list[Measurement]]]:
    def register(fn: Callable[[Context], list[Measurement]]
                 ) -> Callable[[Context], list[Measurement]]:
        if name in REGISTRY:
            raise ValueError(f"benchmark scenario {name!r} registered twice")
        REGISTRY[name] = Scenario(name, reference, description or (fn.__doc__ or "").strip(), fn)
        return fn
    return register


def load_all() -> dict[str, Scenario]:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{mod.name}")
    return REGISTRY


class CommandFailed(Exception):
    pass


def run_timed(argv: Sequence[str], timeout: float = 60) -> float:
    """Wall-clock milliseconds of one run of `argv`; CommandFailed when it exits non-zero."""
    t0 = time.perf_counter_ns()
    try:
        r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise CommandFailed(f"timed out after {timeout} s: {' '.join(argv)}") from e
    ms = (time.perf_counter_ns() - t0) / 1e6
    if r.returncode != 0:
        tail = r.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise CommandFailed(f"exit {r.returncode}: {' | '.join(tail) or '(no stderr)'}")
    return ms


@dataclass
class Tool:
    """One contender: `command(i)` is the argv of its i-th run; `after(i, failed)` cleans up."""
    name: str
    command: Callable[[int], Sequence[str]]
    after: Callable[[int, bool], None] = lambda i, failed: None
    measurement: Measurement | None = None


def enter_hugetlb(hugetlb: Any, scenario_name: str, reference: str, tool: str,
                  tools: list[Tool]) -> tuple[Any, list[Tool], list[Measurement]]:
    """Enter the hugetlb set-up (tests/helpers/hugetlb.HugetlbOnV1) that crun needs here; when
    the kernel refuses it, put back what was done, drop `tool` from `tools` and say why in a
    row. Returns the set-up still to leave (or None), the tools, the rows."""
    if hugetlb is None:
        return None, tools, []
    try:
        hugetlb.__enter__()
    except OSError as e:
        hugetlb.__exit__(None, None, None)
        return None, [t for t in tools if t.name != tool], [
            Measurement(scenario_name, tool, reference, status="error",
                        note=f"hugetlb set-up failed: {e}")]
    return hugetlb, tools, []


def measure_interleaved(scenario_name: str, reference: str, tools: list[Tool], n: int,
                        warmup: int = 1) -> list[Measurement]:
    """Time each tool n times, round-robin, after `warmup` untimed runs each."""
    for t in tools:
        t.measurement = Measurement(scenario_name, t.name, reference)
    for i in range(-warmup, n):
        for t in tools:
            m = t.measurement
            assert m is not None
            if m.status != "ok":
                continue
            failed = False
            try:
                ms = run_timed(t.command(i + warmup))
                if i >= 0:
                    m.samples_ms.append(ms)
            except CommandFailed as e:
                failed = True
                m.status, m.note = "error", str(e)
            finally:
                t.after(i + warmup, failed)
    return [t.measurement for t in tools if t.measurement is not None]
