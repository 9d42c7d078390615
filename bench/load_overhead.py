"""The runner's overhead: `openbell load run` against bare `k6 run` on the same profile, same env, same
sandbox, interleaved so machine noise hits both alike; median wall times and their ratio (target <= 1.05).

    .venv/bin/python bench/load_overhead.py [--profile fomc-spike] [--scale 0.0004] [--time-scale 0.02] [--runs 3]

Needs a running sandbox (`openbell sandbox up`). openbell runs with its SLO gate (the default) and with
`--no-gate`, to show what the gate's Prometheus queries cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openbell.load.catalogue import find, profiles_dir
from openbell.load.runner import RunOptions, k6_binary, k6_env
from openbell.load.thresholds import thresholds_for
from openbell.slo.loader import load_slos
from openbell.targets.platform import entry

ROOT = Path(__file__).resolve().parents[1]


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env})
    if done.returncode not in (0, 1, 99):
        raise SystemExit(f"{argv[:4]} exited {done.returncode}: {done.stderr[-500:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="fomc-spike")
    parser.add_argument("--scale", type=float, default=0.0004)
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    profile = find(args.profile, profiles_dir())
    target = entry("sandbox")
    thresholds = thresholds_for(load_slos([ROOT / "slo"]))
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(args.scale, args.time_scale, thresholds, Path(tmp) / "s.json", Path(tmp) / "k6.log")
        env_args = [x for k, v in k6_env(target, options).items() for x in ("-e", f"{k}={v}")]
        bare = [str(k6_binary()), "run", "--quiet", "--summary-export", str(Path(tmp) / "bare.json"),
                *env_args, str(profile.path)]
        ours = [sys.executable, "-m", "openbell", "load", "run", args.profile, "--scale", f"{args.scale:g}",
                "--time-scale", f"{args.time_scale:g}", "--output", "json"]
        k6env = {"K6_NO_USAGE_REPORT": "true"}
        times: dict[str, list[float]] = {"k6 run": [], "openbell load run --no-gate": [], "openbell load run": []}
        for _ in range(args.runs):
            times["k6 run"].append(timed(bare, k6env))
            times["openbell load run --no-gate"].append(timed([*ours, "--no-gate"], k6env))
            times["openbell load run"].append(timed(ours, k6env))
    base = statistics.median(times["k6 run"])
    print(json.dumps({name: {"median_s": round(statistics.median(v), 2), "runs_s": [round(x, 2) for x in v],
                             "ratio_to_k6": round(statistics.median(v) / base, 3)} for name, v in times.items()},
                     indent=2))


if __name__ == "__main__":
    main()
