#!/usr/bin/env python3
"""Run every registered benchmark scenario beside its reference tools, in one run.

    python3 bench/run.py [--quick] [--n N] [--only NAME ...] [--out FILE]

Writes bench/results/latest.json (with --only, the file's rows of other scenarios are kept),
a list of
    {scenario, tool, median_ms, min_ms, max_ms, n, ratio, reference, status, note}
where ratio = the tool's median / the median of the scenario's reference tool (runc for the
runtime scenarios), and prints the same as a Markdown table. Default N is 30 timed runs per tool
(after one untimed warm-up run), 5 with --quick. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scenarios  # noqa: E402
from helpers import leaks  # noqa: E402  (put on sys.path by scenarios)


def markdown(rows: list[dict[str, Any]]) -> str:
    def num(v: Any) -> str:
        return "" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| scenario | tool | median ms | min ms | max ms | n | ratio | note |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}× {r['reference']}"
        note = r["note"] if r["status"] == "ok" else f"{r['status']}: {r['note']}"
        note = note.replace("|", "/")
        lines.append(f"| {r['scenario']} | {r['tool']} | {num(r['median_ms'])} | "
                     f"{num(r['min_ms'])} | {num(r['max_ms'])} | {r['n']} | {ratio} | {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 runs per tool, no machine set-up")
    ap.add_argument("--n", type=int, help="timed runs per tool (default 30, --quick 5)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    args = ap.parse_args(argv)
    n = args.n or (5 if args.quick else 30)
    if os.geteuid() != 0:
        print("bench/run.py: needs root (containers)", file=sys.stderr)
        return 2

    registry = scenarios.load_all()
    names = args.only or sorted(registry)
    unknown = [x for x in names if x not in registry]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(sorted(registry))}",
              file=sys.stderr)
        return 2

    rows: list[dict[str, Any]] = []
    for name in names:
        sc = registry[name]
        print(f"# {name}: {sc.description} (n={n}, reference {sc.reference})", file=sys.stderr)
        work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        before = leaks.leak_snapshot()
        ctx = scenarios.Context(n=n, quick=args.quick, workdir=work,
                                log=lambda s: print(s, file=sys.stderr))
        t0 = time.monotonic()
        try:
            measured = sc.fn(ctx)
        except Exception as e:  # a broken scenario is reported, the others still run
            measured = [scenarios.Measurement(name, "(scenario)", sc.reference, status="error",
                                              note=f"{type(e).__name__}: {e}")]
        left = leaks.wait_for_no_leaks(before)
        if left:
            done = leaks.cleanup(left, [work])
            measured.append(scenarios.Measurement(
                name, "(leak check)", sc.reference, status="error",
                note="left behind: " + left.describe().replace("\n", "; ")
                     + (f"; removed: {'; '.join(done)}" if done else "")))
        if any(m.split(" ", 1)[0].startswith(f"{work}/") for m in leaks.read_mounts()):
            print(f"# {name}: {work} still has mounts under it; not removed", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        ref = next((m for m in measured if m.tool == sc.reference and m.status == "ok"
                    and m.samples_ms), None)
        ref_median = ref.row(None)["median_ms"] if ref else None
        rows.extend(m.row(ref_median) for m in measured)
        print(f"# {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = rows
    if args.only and args.out.exists():  # keep the other scenarios' rows of the file
        try:
            kept = [r for r in json.loads(args.out.read_text()) if r.get("scenario") not in names]
        except (ValueError, AttributeError):
            kept = []
        written = kept + rows
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(written, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"\nbench: {platform.node()}, {os.cpu_count()} cores, kernel {platform.release()}, "
          f"n={n}{' (quick)' if args.quick else ''}; written to {args.out}\n")
    print(markdown(rows))
    png = args.out.with_suffix(".png")
    if chart(written, png):
        print(f"chart: {png}")
    return 0


def chart(rows: list[dict[str, Any]], out: Path) -> bool:
    """A PNG of every scenario's tools: median time as a ratio of the reference (log scale,
    1.0 marked), one bar per tool, the median in ms written beside it. Needs matplotlib (the
    `bench` extra); without it, no chart and a note."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart: matplotlib is not installed (pip install '.[bench]'); no PNG written",
              file=sys.stderr)
        return False
    bars = [r for r in rows if r.get("status") == "ok" and r.get("ratio")]
    if not bars:
        return False
    labels = [f"{r['scenario']}  ·  {r['tool']}" for r in bars]
    ratios = [float(r["ratio"]) for r in bars]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(bars) + 1.4))
    colours = ["#2b8a3e" if str(r["tool"]).startswith("berth") else "#868e96" for r in bars]
    y = list(range(len(bars)))[::-1]
    ax.barh(y, ratios, color=colours)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    for yi, r in zip(y, bars):
        unit = "KiB" if "KiB" in str(r.get("note") or "") else "ms"  # the memory rows
        ax.text(float(r["ratio"]) * 1.05, yi, f"{r['median_ms']:.0f} {unit}", va="center",
                fontsize=7)
    ax.set_xlabel("median time / the reference tool's median (log scale; < 1 is faster)")
    ax.set_title("berth beside its reference tools (green: berth)", fontsize=10)
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, out)
    return True


if __name__ == "__main__":
    sys.exit(main())
