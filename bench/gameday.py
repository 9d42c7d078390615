"""The default gameday's wall time on this machine, and where it goes.

    .venv/bin/python bench/gameday.py [--runs 3] [--fresh] [--plan gamedays/opening-bell.yaml] [--output text|json]

Target (the issue): the default gameday (gamedays/opening-bell.yaml, small scale) under 10 minutes here.

Run 1 is cold, as `make run` is on a fresh machine: a sandbox in a fresh home (down --purge first), so the
wall time includes `sandbox up` and the warm-up the gameday waits for on a young platform. Runs 2..N are warm:
the same sandbox, already up. Each run is the real command (`openbell gameday --output json`) timed from
launch to exit; its JSON says where the time went:
- setup: launch -> the gameday's start (plan checks, sandbox up, warm-up, the gate's baseline);
- each phase's own duration, and the idle time between the last risky phase's end and the load's end
  (the close waits for the market to wind down);
- report: the gameday's end -> exit (Prometheus range queries for the plots, writing HTML, JSON, JUnit).
Medians over the warm runs; the cold run on its own line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPENBELL = [sys.executable, "-m", "openbell"]


def one_run(plan: Path, home: Path, report: Path) -> dict[str, Any]:
    launched = time.time()
    done = subprocess.run([*OPENBELL, "gameday", "--plan", str(plan), "--home", str(home), "--report", str(report),
                           "--output", "json"], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    exited = time.time()
    doc = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    if not doc:
        raise SystemExit(f"gameday exited {done.returncode} without a report:\n{done.stderr[-3000:]}")
    phases = {p["name"]: p for p in doc["phases"]}
    figures: dict[str, Any] = {
        "exit_code": done.returncode, "verdict": doc["verdict"]["outcome"], "reason": doc["verdict"]["reason"],
        "wall_s": exited - launched, "setup_s": doc["started_at"] - launched, "gameday_s": doc["duration_s"],
        "report_s": exited - doc["finished_at"],
    }
    for name, p in phases.items():
        figures[f"phase:{name}"] = p["duration_s"]
    load_end = max((p["finished_at"] or 0.0 for p in phases.values() if p["kind"] == "load"), default=0.0)
    risky_end = max((p["finished_at"] or 0.0 for p in phases.values() if p["kind"] in ("canary", "chaos")),
                    default=0.0)
    figures["idle_until_load_end_s"] = max(0.0, load_end - risky_end) if load_end and risky_end else None
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plan", type=Path, default=ROOT / "gamedays" / "opening-bell.yaml")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument("--fresh", action="store_true",
                        help="every run on a purged sandbox, as `make run` does (a warm run within ~30 minutes of the "
                             "last gameday is refused as unhealthy: its broker loss still pages in the lag SLO's "
                             "6h/30m pair on a young history, see the README)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="openbell-bench-gameday-"))
    runs: list[dict[str, Any]] = []
    try:
        for i in range(args.runs):
            report = home.parent / f"{home.name}-report-{i + 1}"
            if args.fresh and i > 0:
                subprocess.run([*OPENBELL, "sandbox", "down", "--purge", "--home", str(home / "sandbox")],
                               capture_output=True, timeout=300)
            figures = one_run(args.plan, home / "sandbox", report)
            figures["run"] = "cold" if i == 0 or args.fresh else "warm"
            runs.append(figures)
            print(f"run {i + 1} ({figures['run']}): {figures['verdict']} in {figures['wall_s']:.0f}s "
                  f"(setup {figures['setup_s']:.0f}s, gameday {figures['gameday_s']:.0f}s, "
                  f"report {figures['report_s']:.1f}s)", file=sys.stderr)
    finally:
        subprocess.run([*OPENBELL, "sandbox", "down", "--purge", "--home", str(home / "sandbox")],
                       capture_output=True, timeout=300)
        shutil.rmtree(home, ignore_errors=True)
    warm = [r for r in runs if r["run"] == "warm"] or runs  # --fresh: medians over every (cold) run
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float) and k != "exit_code"]
    medians = {k: statistics.median(r[k] for r in warm if r.get(k) is not None) for k in keys
               if any(r.get(k) is not None for r in warm)}
    result = {"plan": str(args.plan), "runs": runs, "warm_medians": medians, "cold": runs[0]}
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'figure':<36} {'cold':>9} {'warm median':>12}")
    for key in keys:
        cold = runs[0].get(key)
        print(f"{key:<36} {'-' if cold is None else f'{cold:9.1f}':>9} "
              f"{'-' if key not in medians else f'{medians[key]:12.1f}':>12}")
    print("verdicts: " + ", ".join(f"{r['run']} {r['verdict']}" for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
