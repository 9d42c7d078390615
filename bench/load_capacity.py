"""The largest nyse-open scale this machine sustains with the gateway within its SLOs: the profile at
rising `--scale` (same `--time-scale`), judged by the same thresholds `openbell load run` derives from
slo/ (push latency p99, page latency p95, error rate), until one fails.

    .venv/bin/python bench/load_capacity.py [--scales 0.0005,0.001,0.002,0.004,0.008] [--time-scale 0.02]

Per level: peak traders, records/s into k6, k6's push p99 and the gateways' own (their histogram, the SLO's
figure, over the run), page p95, seq and frame gaps, the share of records whose seq was checked and whose
latency was sampled, and CPU seconds per component (bench/cpu_sampler.py) with k6's share of the machine.
Needs a running sandbox (`openbell sandbox up`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from cpu_sampler import CpuSampler  # bench/ is on the path when a bench script runs

ROOT = Path(__file__).resolve().parents[1]
CORES = os.cpu_count() or 1


def _sandbox() -> dict:
    done = subprocess.run([sys.executable, "-m", "openbell", "sandbox", "status", "--output", "json"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout)


def _gateway_p99_ms(prometheus: str, seconds: float) -> float | None:
    """The gateways' own push latency p99 over the last `seconds` (their histogram: what the SLO reads)."""
    window = f"{max(30, int(seconds))}s"
    query = f"histogram_quantile(0.99, sum by (le) (increase(gateway_push_latency_seconds_bucket[{window}])))"
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    if not result or result[0]["value"][1] in ("NaN", "+Inf"):
        return None
    return round(float(result[0]["value"][1]) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="nyse-open")
    parser.add_argument("--scales", default="0.0005,0.001,0.002,0.004,0.008")
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--keep-going", action="store_true", help="run every scale, even after one fails")
    args = parser.parse_args()
    status = _sandbox()
    components = {row["name"]: row["pid"] for row in status["components"] if row.get("pid")}
    prometheus = status["endpoints"]["prometheus_url"]
    rows = []
    for scale in [float(s) for s in args.scales.split(",")]:
        sampler = CpuSampler(components).start()
        t0 = time.time()
        done = subprocess.run([sys.executable, "-m", "openbell", "load", "run", args.profile, "--scale", f"{scale:g}",
                               "--time-scale", f"{args.time_scale:g}", "--no-gate", "--output", "json"],
                              capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
        t1 = time.time()
        time.sleep(2)  # the last scrape of the run
        sampler.stop()
        if done.returncode not in (0, 1):
            raise SystemExit(done.stderr[-1000:])
        verdict = json.loads(done.stdout)["verdict"]
        f = verdict["figures"]
        cpu = sampler.between(t0, t1)
        rows.append({"scale": scale, "traders_peak": f.get("vus_max"), "outcome": verdict["outcome"],
                     "ws_messages_per_s": f.get("ws_messages_per_s"), "push_p99_ms": f.get("push_latency_p99_ms"),
                     "gateway_push_p99_ms": _gateway_p99_ms(prometheus, t1 - t0),
                     "client_delay_p99_ms": f.get("client_delay_p99_ms"), "page_p95_ms": f.get("page_latency_p95_ms"),
                     "http_failure_ratio": f.get("http_failure_ratio"), "ws_seq_gaps": f.get("ws_seq_gaps"),
                     "ws_frame_gaps": f.get("ws_frame_gaps"),
                     "seq_checked_share": f.get("seq_checked_share"),
                     "latency_sampled_share": f.get("push_latency_sampled_share"),
                     "latency_samples": f.get("push_latency_samples"),
                     "k6_cpu_share": round(cpu.get("k6", 0.0) / ((t1 - t0) * CORES), 3),
                     "cpu_s": cpu, "elapsed_s": round(t1 - t0, 1), "reasons": verdict["reasons"]})
        print(json.dumps(rows[-1]), flush=True)
        if verdict["outcome"] != "pass" and not args.keep_going:
            break
    passing = [r for r in rows if r["outcome"] == "pass"]
    print(json.dumps({"largest_passing_scale": passing[-1]["scale"] if passing else None,
                      "largest_passing_traders": passing[-1]["traders_peak"] if passing else None}))


if __name__ == "__main__":
    main()
