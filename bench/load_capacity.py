"""The largest nyse-open scale this machine sustains with the gateway within its SLOs: the profile at
rising `--scale` (same `--time-scale`), judged by the same thresholds `openbell load run` derives from
slo/ (push latency p99, page latency p95, error rate), until one fails.

    .venv/bin/python bench/load_capacity.py [--scales 0.0005,0.001,0.002,0.004,0.008] [--time-scale 0.02]
    .venv/bin/python bench/load_capacity.py --scales 0.0013333,0.0033333,0.013333 --time-scale 0.1 \
        --feed-multiplier 0.75 --keep-going        # each trader at the profile's production message rate

`--feed-multiplier` holds the feed at that multiple of its base rate for the whole run (no bell burst): at
0.75 a trader with 40-80 Zipf-drawn symbols gets ~49 records/s, the profile's "~40 messages/s each".

Per level: peak traders, records/s into k6, k6's push p99 and the gateways' own (their histogram, the SLO's
figure, over the run), page p95, seq and frame gaps, the share of records whose seq was checked and whose
latency was sampled, CPU seconds per component (bench/cpu_sampler.py) with k6's share of the machine, and
what the gateways wrote at the peak (records/s and frames/s, in all and per connection).
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


def _feed_rate(feed: str, multiplier: float) -> None:
    """Hold the sandbox feed at `multiplier` of its base rate (any schedule it ran is dropped)."""
    urllib.request.urlopen(urllib.request.Request(f"{feed}/v1/schedule", method="DELETE"), timeout=10).close()
    body = json.dumps({"multiplier": multiplier}).encode()
    request = urllib.request.Request(f"{feed}/v1/rate", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


def _peak(prometheus: str, expr: str, seconds: float) -> float | None:
    """The largest value of `expr` over the last `seconds` (a 5 s subquery), from Prometheus."""
    query = f"max_over_time(({expr})[{max(30, int(seconds))}s:5s])"
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    return round(float(result[0]["value"][1]), 1) if result else None


def _per_trader(prometheus: str, seconds: float) -> dict[str, float | None]:
    """What the gateways wrote at the run's peak (their own counters): records/s and frames/s in all, and per
    connection (the peak rate over the peak connections: both come at the bell)."""
    records = _peak(prometheus, "sum(rate(gateway_messages_sent_total[30s]))", seconds)
    frames = _peak(prometheus, "sum(rate(gateway_frames_sent_total[30s]))", seconds)
    connections = _peak(prometheus, "sum(gateway_connections)", seconds)
    each = {name: round(total / connections, 1) if total and connections else None
            for name, total in (("records_per_trader_s", records), ("frames_per_trader_s", frames))}
    return {"records_per_s_peak": records, "frames_per_s_peak": frames, "connections_peak": connections, **each}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="nyse-open")
    parser.add_argument("--scales", default="0.0005,0.001,0.002,0.004,0.008")
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--keep-going", action="store_true", help="run every scale, even after one fails")
    parser.add_argument("--feed-multiplier", type=float, default=None,
                        help="hold the feed at this multiplier of its base rate for the whole run instead of the "
                             "profile's schedule (FEED_SCHEDULE=off): sets each trader's message rate")
    args = parser.parse_args()
    status = _sandbox()
    extra: list[str] = []
    if args.feed_multiplier is not None:
        _feed_rate(status["endpoints"]["feed_url"], args.feed_multiplier)
        extra = ["--env", "FEED_SCHEDULE=off"]
    components = {row["name"]: row["pid"] for row in status["components"] if row.get("pid")}
    prometheus = status["endpoints"]["prometheus_url"]
    rows = []
    for scale in [float(s) for s in args.scales.split(",")]:
        sampler = CpuSampler(components).start()
        t0 = time.time()
        done = subprocess.run([sys.executable, "-m", "openbell", "load", "run", args.profile, "--scale", f"{scale:g}",
                               "--time-scale", f"{args.time_scale:g}", "--no-gate", "--output", "json", *extra],
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
        rows[-1].update(_per_trader(prometheus, t1 - t0))
        print(json.dumps(rows[-1]), flush=True)
        if verdict["outcome"] != "pass" and not args.keep_going:
            break
    if args.feed_multiplier is not None:
        _feed_rate(status["endpoints"]["feed_url"], 1.0)
    passing = [r for r in rows if r["outcome"] == "pass"]
    print(json.dumps({"largest_passing_scale": passing[-1]["scale"] if passing else None,
                      "largest_passing_traders": passing[-1]["traders_peak"] if passing else None}))


if __name__ == "__main__":
    main()
