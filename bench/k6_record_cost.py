"""Where k6's time goes per quotes frame and per record: bench/k6_record_cost.js, one variant at a time
(each adds one step of the trader's per-frame work), k6's own CPU seconds read from /proc, rounds
interleaved so the machine's drift spreads over every variant alike.

    openbell sandbox up && .venv/bin/python bench/k6_record_cost.py [--vus 20] [--hold 20] [--rounds 3]

The feed is held at x6 (the bell) while it runs and put back after. Per variant: k6 CPU seconds, frames and
records handled, and the medians of CPU microseconds per frame and per record; the step's cost is its
median per frame minus the previous variant's. `idle` (connected, not subscribed) is the fixed cost that
the per-frame figures exclude.
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "k6_record_cost.js"
VARIANTS = ["idle", "dispatch", "header", "parse", "check", "trend", "tagged"]
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def run_variant(k6: str, endpoints: dict, variant: str, vus: int, hold: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "summary.json"
        proc = subprocess.Popen([k6, "run", "-q", "--no-color", "--summary-export", str(export),
                                 "-e", f"VARIANT={variant}", "-e", f"VUS={vus}", "-e", f"HOLD_S={hold}",
                                 "-e", f"WS_URL={endpoints['websocket_url']}",
                                 "-e", f"FEED_URL={endpoints['feed_url']}",
                                 str(SCRIPT)], env={**os.environ, "K6_NO_USAGE_REPORT": "true"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cpu = 0.0
        while proc.poll() is None:
            cpu = _cpu_s(proc.pid) or cpu  # the last reading before exit: /proc goes with the process
            time.sleep(0.1)
        if proc.returncode not in (0, 99):
            raise SystemExit(f"k6 {variant} exited {proc.returncode}: {proc.stderr.read()[-800:]}")
        metrics = json.loads(export.read_text())["metrics"]
    return {"variant": variant, "cpu_s": round(cpu, 2), "frames": int(metrics["bench_frames"]["count"]),
            "records": int(metrics["bench_records"]["count"]), "gaps": int(metrics["bench_gaps"]["count"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vus", type=int, default=20)
    parser.add_argument("--hold", type=int, default=20, help="seconds each variant runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--multiplier", type=float, default=6.0, help="feed rate multiplier while measuring")
    args = parser.parse_args()
    status = json.loads(subprocess.run([sys.executable, "-m", "openbell", "sandbox", "status", "--output", "json"],
                                       capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    endpoints = status["endpoints"]
    k6 = str(Path(sys.executable).with_name("k6"))
    feed = endpoints["feed_url"]
    with urllib.request.urlopen(f"{feed}/v1/rate", timeout=10) as response:
        before = json.load(response)["multiplier"]
    _post(f"{feed}/v1/rate", {"multiplier": args.multiplier})
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    try:
        for _ in range(args.rounds):
            for variant in VARIANTS:
                row = run_variant(k6, endpoints, variant, args.vus, args.hold)
                runs[variant].append(row)
                print(json.dumps(row), flush=True)
    finally:
        _post(f"{feed}/v1/rate", {"multiplier": before})
    idle = statistics.median(r["cpu_s"] for r in runs["idle"])
    table, previous = [], None
    for variant in VARIANTS[1:]:
        per_frame = statistics.median((r["cpu_s"] - idle) / r["frames"] * 1e6 for r in runs[variant] if r["frames"])
        with_records = [r for r in runs[variant] if r["records"]]
        per_record = (statistics.median((r["cpu_s"] - idle) / r["records"] * 1e6 for r in with_records)
                      if with_records else None)
        frames_per_s = statistics.median(r["frames"] for r in runs[variant]) / args.hold
        per_frame_records = (round(statistics.median(r["records"] / r["frames"] for r in with_records), 2)
                             if with_records else None)
        table.append({"variant": variant, "us_per_frame": round(per_frame, 1),
                      "us_per_record": round(per_record, 1) if per_record is not None else None,
                      "step_us_per_frame": round(per_frame - previous, 1) if previous is not None else None,
                      "frames_per_s": round(frames_per_s), "records_per_frame": per_frame_records})
        previous = per_frame
    print(json.dumps({"idle_cpu_s": idle, "vus": args.vus, "hold_s": args.hold, "rounds": args.rounds,
                      "per_variant": table}, indent=1))


if __name__ == "__main__":
    main()
