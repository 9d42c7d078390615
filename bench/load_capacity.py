"""The largest nyse-open scale this machine sustains with the gateway within its SLOs: the profile at
rising `--scale` (same `--time-scale`), judged by the same thresholds `openbell load run` derives from
slo/ (push latency p99, page latency p95, error rate), until one fails.

    .venv/bin/python bench/load_capacity.py [--scales 0.0005,0.001,0.002,0.004,0.008] [--time-scale 0.02]

Needs a running sandbox (`openbell sandbox up`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="nyse-open")
    parser.add_argument("--scales", default="0.0005,0.001,0.002,0.004,0.008")
    parser.add_argument("--time-scale", type=float, default=0.02)
    args = parser.parse_args()
    rows = []
    for scale in [float(s) for s in args.scales.split(",")]:
        done = subprocess.run([sys.executable, "-m", "openbell", "load", "run", args.profile, "--scale", f"{scale:g}",
                               "--time-scale", f"{args.time_scale:g}", "--no-gate", "--output", "json"],
                              capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
        if done.returncode not in (0, 1):
            raise SystemExit(done.stderr[-1000:])
        verdict = json.loads(done.stdout)["verdict"]
        f = verdict["figures"]
        rows.append({"scale": scale, "traders_peak": f.get("vus_max"), "outcome": verdict["outcome"],
                     "push_p99_ms": f.get("push_latency_p99_ms"), "page_p95_ms": f.get("page_latency_p95_ms"),
                     "ws_messages_per_s": f.get("ws_messages_per_s"), "http_failure_ratio": f.get("http_failure_ratio"),
                     "reasons": verdict["reasons"]})
        print(json.dumps(rows[-1]), flush=True)
        if verdict["outcome"] != "pass":
            break
    passing = [r for r in rows if r["outcome"] == "pass"]
    print(json.dumps({"largest_passing_scale": passing[-1]["scale"] if passing else None,
                      "largest_passing_traders": passing[-1]["traders_peak"] if passing else None}))


if __name__ == "__main__":
    main()
