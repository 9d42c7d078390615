"""Headroom: where the CPU goes, and how far each SLO stays from paging, at rest and under the default gameday.

    .venv/bin/python bench/headroom.py [--runs 1] [--rest 60] [--plan gamedays/opening-bell.yaml]
                                       [--noise 0] [--output text|json] [--keep]

Each run starts from a purged sandbox in a fresh home (`sandbox down --purge`, `sandbox up`), lets it settle,
then measures it at rest for `--rest` seconds, then runs the gameday (`openbell gameday --output json`) on it.
For both spans, from /proc and from the sandbox's Prometheus:

- CPU seconds per component (bench/cpu_sampler.py: the sandbox's components by process group, k6, Chaos
  Toolkit, the openbell commands, everything else as `other`) and as a share of one core;
- push latency per exchange, from the gateways' histogram over the span: the share of pushes over 50 ms (exact:
  the SLO's own bucket) and p50/p95/p99 (interpolated within buckets); per path where the services export it
  (`gateway_ingest_latency_seconds`: exchange timestamp -> record received by the gateway; the rest is the
  gateway's fan-out and write);
- the enricher's consumer lag: the share of 1 s samples of the SLO's own gauge above 50 ms, and its maximum;
`--noise N` runs N busy loops (at the default priority, one core each) through both spans: the machine busy
with something else, as a compile would make it.

- for the gameday: its verdict, k6's own push-latency figures (client side), and the **headroom**: during the
  healthy phases (from the gameday's start until the first chaos phase starts), each SLO's worst burn rate
  per alert window, asked of the same gate every 5 s, as a fraction of that window's page threshold (the
  target is at most 0.5).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cpu_sampler import CpuSampler  # bench/ is on the path when a bench script runs
from openbell.metrics.prometheus import PrometheusClient
from openbell.slo.evaluate import evaluate
from openbell.slo.loader import load_slos

ROOT = Path(__file__).resolve().parents[1]
OPENBELL = [sys.executable, "-m", "openbell"]
BOUND_S = 0.05
QUANTILES = (0.5, 0.95, 0.99)


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def openbell(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPENBELL, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout_s)


def _scalar(prom: PrometheusClient, expr: str, at: float) -> dict[str, float]:
    return {",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) or "all": s.value
            for s in prom.query(expr, at=at)}


def _num(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, 4)


def histogram_figures(prom: PrometheusClient, metric: str, by: str, t0: float, t1: float) -> dict[str, Any]:
    """Per `by` label: events, share over 50 ms, interpolated quantiles (ms), from the buckets' growth."""
    window = f"{max(1, round(t1 - t0))}s"
    buckets = f"sum by (le, {by}) (increase({metric}_bucket[{window}]))"
    out: dict[str, Any] = {}
    count = _scalar(prom, f"sum by ({by}) (increase({metric}_count[{window}]))", t1)
    under = _scalar(prom, f'sum by ({by}) (increase({metric}_bucket{{le=~"0.05(0+)?"}}[{window}]))', t1)
    for key, n in count.items():
        if not n or n != n:
            continue
        out[key] = {"events": round(n), "over_50ms": _num(1 - under.get(key, float("nan")) / n)}
    for q in QUANTILES:
        for key, value in _scalar(prom, f"histogram_quantile({q}, {buckets})", t1).items():
            if key in out:
                v = _num(value)
                out[key][f"p{round(q * 100)}_ms"] = None if v is None else round(v * 1000, 1)
    return out


def lag_figures(prom: PrometheusClient, t0: float, t1: float) -> dict[str, Any]:
    """The consumer-lag SLO's own counters (the share of time over 50 ms, exact) and the lag gauge sampled every
    second over the span (its samples over 50 ms and its peak)."""
    window = f"{max(1, round(t1 - t0))}s"
    sel = 'job="enricher", topic="ticks"'
    gauge = f"max(enricher_consumer_lag_seconds{{{sel}}})"
    time_over = _scalar(prom, f'sum(increase(enricher_consumer_lag_over_bound_seconds_total{{{sel}, bound="0.05"}}'
                              f"[{window}])) / sum(increase(enricher_consumer_lag_observed_seconds_total{{{sel}}}"
                              f"[{window}]))", t1).get("all")
    over = _scalar(prom, f"avg_over_time(({gauge} > bool {BOUND_S})[{window}:1s])", t1).get("all")
    peak = _scalar(prom, f"max_over_time(({gauge})[{window}:1s])", t1).get("all")
    samples = _scalar(prom, f"count_over_time(({gauge})[{window}:1s])", t1).get("all")
    return {"time_over_50ms": None if time_over is None else _num(time_over),
            "samples": samples, "over_50ms": None if over is None else _num(over),
            "max_ms": None if peak is None or peak != peak else round(peak * 1000, 1)}


def span_figures(prom: PrometheusClient, sampler: CpuSampler, t0: float, t1: float) -> dict[str, Any]:
    return {
        "cpu": sampler.figures(t0, t1),
        "push_latency": histogram_figures(prom, "gateway_push_latency_seconds", "exchange", t0, t1),
        "ingest_latency": histogram_figures(prom, "gateway_ingest_latency_seconds", "exchange", t0, t1),
        "consumer_lag": lag_figures(prom, t0, t1),
        "feed_ticks_per_s": _num(sum(_scalar(
            prom, f"sum(increase(feed_ticks_produced_total[{max(1, round(t1 - t0))}s]))", t1).values()) / (t1 - t0)),
    }


def headroom(prom: PrometheusClient, slo_dir: Path, t0: float, t1: float, step_s: float = 5.0) -> dict[str, Any]:
    """Per SLO and window: the worst burn rate the page gate saw between t0 and t1, over its threshold."""
    slos = load_slos([slo_dir])
    worst: dict[str, dict[str, dict[str, float]]] = {}
    t = t0 + step_s
    while t <= t1:
        _, results = evaluate(prom, slos, "page", at=t)
        for r in results:
            per = worst.setdefault(r.slo.name, {})
            for p in r.pairs:
                for window_s, burn in ((p.long_window_s, p.long_burn_rate), (p.short_window_s, p.short_burn_rate)):
                    if burn is None:
                        continue
                    key = f"{round(window_s)}s"
                    row = per.setdefault(key, {"threshold": p.burn_rate_threshold, "worst_burn": 0.0,
                                               "group": ""})
                    if burn > row["worst_burn"]:
                        row.update(worst_burn=round(burn, 3), group=",".join(f"{k}={v}" for k, v in r.group),
                                   at=round(t - t0, 1))
        t += step_s
    for per in worst.values():
        for row in per.values():
            row["fraction_of_page"] = round(row["worst_burn"] / row["threshold"], 3)
    return worst


def k6_figures(report: Path) -> dict[str, Any]:
    """k6's own push latency and its event loop's delay (what of it the client added), in ms."""
    for summary in sorted((report / "phases").glob("*.k6-summary.json")):
        metrics = json.loads(summary.read_text())["metrics"]
        return {name: {k: round(v, 1) for k, v in metrics.get(name, {}).items()
                       if k in ("p(50)", "p(95)", "p(99)", "max")}
                for name in ("ws_push_latency_ms", "client_delay_ms")}
    return {}


def start_noise(cores: int) -> list[subprocess.Popen[bytes]]:
    """`cores` busy loops at the default priority: someone else's work on the same machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]


def one_run(args: argparse.Namespace, index: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="openbell-headroom-"))
    sandbox, report = home / "sandbox", home / "report"
    noise: list[subprocess.Popen[bytes]] = []
    try:
        say(f"run {index}: sandbox up (fresh) in {sandbox}")
        up = openbell("sandbox", "up", "--home", str(sandbox), "--output", "json", timeout_s=300)
        if up.returncode != 0:
            raise SystemExit(f"sandbox up exited {up.returncode}: {up.stderr[-2000:]}")
        status = json.loads(up.stdout)
        components = {row["name"]: row["pid"] for row in status["components"] if row.get("pid")}
        prom = PrometheusClient(status["endpoints"]["prometheus_url"], timeout_s=30)
        sampler = CpuSampler(components).start()
        say(f"run {index}: settling {args.settle:g} s, then at rest for {args.rest:g} s"
            + (f", with {args.noise} busy core(s) of noise" if args.noise else ""))
        time.sleep(args.settle)
        noise = start_noise(args.noise)
        rest0 = time.time()
        time.sleep(args.rest)
        rest1 = time.time()
        say(f"run {index}: gameday {args.plan.name}")
        launched = time.time()
        done = openbell("gameday", "--plan", str(args.plan), "--home", str(sandbox), "--report", str(report),
                        "--output", "json", timeout_s=1800)
        sampler.stop()
        for proc in noise:
            proc.kill()
        doc = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if not doc:
            raise SystemExit(f"gameday exited {done.returncode} without a report:\n{done.stderr[-3000:]}")
        g0, g1 = doc["started_at"], doc["finished_at"]
        chaos_starts = [p["started_at"] for p in doc["phases"] if p["kind"] == "chaos" and p["started_at"]]
        healthy_end = min(chaos_starts) if chaos_starts else g1
        result = {
            "run": index, "noise_cores": args.noise,
            "verdict": doc["verdict"]["outcome"], "exit_code": done.returncode, "reason": doc["verdict"]["reason"],
            "wall_s": round(time.time() - launched, 1),
            "rest": span_figures(prom, sampler, rest0, rest1),
            "gameday": span_figures(prom, sampler, g0, g1),
            "healthy": span_figures(prom, sampler, g0, healthy_end),
            "healthy_span_s": round(healthy_end - g0, 1),
            "k6_push_latency_ms": k6_figures(report),
            "headroom": headroom(prom, ROOT / "slo", g0, healthy_end),
            "phases": {p["name"]: {"outcome": p["outcome"], "reason": p["reason"]} for p in doc["phases"]},
        }
        prom.close()
        return result
    finally:
        for proc in noise:
            proc.kill()
        if not args.keep:
            openbell("sandbox", "down", "--purge", "--home", str(sandbox), timeout_s=300)
            shutil.rmtree(home, ignore_errors=True)


def table(runs: list[dict[str, Any]]) -> str:
    lines = []
    for r in runs:
        lines.append(f"run {r['run']}: {r['verdict']} (exit {r['exit_code']}): {r['reason']}")
        for span in ("rest", "healthy", "gameday"):
            f = r[span]
            lines.append(f"  {span} ({f['cpu']['span_s']} s, feed {f['feed_ticks_per_s']} ticks/s, machine "
                         f"{f['cpu']['total_core_share']:.2f} of {f['cpu']['cores']} cores)")
            lines.append("    cpu: " + ", ".join(f"{g} {v['core_share']:.2f}" for g, v in f["cpu"]["by_group"].items()
                                                 if v["core_share"] >= 0.005))
            for key, v in f["push_latency"].items():
                lines.append(f"    push {key}: >50ms {v['over_50ms']}, p50 {v.get('p50_ms')} p95 {v.get('p95_ms')} "
                             f"p99 {v.get('p99_ms')} ms ({v['events']} pushes)")
            for key, v in f["ingest_latency"].items():
                lines.append(f"    ingest {key}: >50ms {v['over_50ms']}, p50 {v.get('p50_ms')} p95 {v.get('p95_ms')} "
                             f"p99 {v.get('p99_ms')} ms")
            lag = f["consumer_lag"]
            lines.append(f"    lag: {lag['time_over_50ms']} of the time over 50 ms (the SLO's counters), "
                         f"{lag['over_50ms']} of gauge samples, max {lag['max_ms']} ms")
        lines.append(f"  k6 push latency (client side): {r['k6_push_latency_ms']}")
        lines.append("  headroom (worst burn during the healthy phases / page threshold):")
        for slo, per in r["headroom"].items():
            lines.append(f"    {slo}: " + ", ".join(f"{w} {v['fraction_of_page']}" for w, v in per.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rest", type=float, default=60.0, help="seconds measured at rest before the gameday")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after `up` before measuring")
    parser.add_argument("--noise", type=int, default=0, help="busy loops (one core each) running meanwhile")
    parser.add_argument("--plan", type=Path, default=ROOT / "gamedays" / "opening-bell.yaml")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument("--keep", action="store_true", help="leave each run's sandbox up")
    args = parser.parse_args()
    runs = [one_run(args, i + 1) for i in range(args.runs)]
    print(json.dumps(runs, indent=2) if args.output == "json" else table(runs))


if __name__ == "__main__":
    main()
