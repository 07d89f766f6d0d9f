#!/usr/bin/env python3
"""Draws latency (p50 and p99) against offered rate from one benchmark run (scripts/bench/bench.sh).

    scripts/bench/bench-plot.py [--venv] RESULTS_DIR OUT.png

RESULTS_DIR is what bench.sh keeps of a run (target/bench/last-run). The points are its
open-loop sweep (sweep-NAME-FRACTION.json: NAME at FRACTION of its own peak) and each one's
closed-loop peak (NAME.json), for (b) plain axum 202, (n) the naive handler and (c) vx-bridge.
It measures nothing. With --venv it runs itself inside a venv with the pinned matplotlib,
created on first use under ${VX_PLOT_VENV:-$HOME/.cache/vx-bridge/plot-venv} (from PyPI).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

MATPLOTLIB = "matplotlib==3.11.2"
SERIES = [
    ("b", "(b) plain axum 202", "tab:gray"),
    ("n", "(n) naive handler", "tab:orange"),
    ("c", "(c) vx-bridge, every feature on", "tab:blue"),
]


def venv_python() -> Path:
    venv = Path(os.environ.get("VX_PLOT_VENV", Path.home() / ".cache/vx-bridge/plot-venv"))
    python = venv / "bin/python"
    stamp = venv / "pinned"
    if not (python.exists() and stamp.exists() and stamp.read_text() == MATPLOTLIB):
        print(f"bench-plot.py: installing {MATPLOTLIB} into {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", MATPLOTLIB], check=True)
        stamp.write_text(MATPLOTLIB)
    return python


def points(results: Path, name: str):
    """(answered req/s, p50 ms, p99 ms) of the sweep, lowest rate first, then of the peak."""
    files = sorted(results.glob(f"sweep-{name}-*.json"), key=lambda p: float(p.stem.split("-")[-1]))
    peak = results / f"{name}.json"
    if peak.is_file():
        files.append(peak)
    return [(r["rps"], r["p50_ms"], r["p99_ms"]) for r in (json.loads(f.read_text()) for f in files)]


def draw(results: Path, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for name, label, color in SERIES:
        pts = points(results, name)
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], "o-", color=color, label=f"{label}: p50")
        ax.plot(xs, [p[2] for p in pts], "s--", color=color, label=f"{label}: p99")
        ax.annotate("peak", (xs[-1], pts[-1][2]), textcoords="offset points", xytext=(4, 4), color=color)
    ax.axhline(10, color="tab:red", linewidth=0.8, linestyle=":", label="p99 target at half of peak (10 ms)")
    ax.set_yscale("log")
    ax.set_xlabel("answered webhooks/s (open loop at fractions of each one's peak; last point: closed-loop peak)")
    ax.set_ylabel("latency, ms (log scale)")
    run = json.loads((results / "run.json").read_text())
    ax.set_title(f"Latency against rate, one run of scripts/bench/bench.sh ({run.get('MEASURED_AT', '?')}, {run.get('MEASURED_REV', '?')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    print(f"bench-plot.py: wrote {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", action="store_true", help="run inside the pinned matplotlib venv")
    ap.add_argument("results", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.venv:
        python = venv_python()
        return subprocess.run([str(python), __file__, str(args.results), str(args.out)]).returncode
    draw(args.results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
