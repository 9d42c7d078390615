"""The sequential judge against the fixed-horizon judge, side by side on one sandbox under one fleet of traders,
interleaved: A/A canaries (false rollbacks, time to promotion) and bad canaries (onset to weight 0, failures
served meanwhile).

    .venv/bin/python bench/canary_judge.py [--aa 20] [--bad 3] [--faults error_rate=0.05 latency_ms=80
                                           latency_ms=10] [--judges sequential fixed] [--traders 40]
                                           [--output text|json]

Both judges run the default gameday's canary (gamedays/opening-bell.yaml): steps 10 -> 50 -> 100, at most 25 s a
step (the fixed judge holds exactly 25 s), 2 s polls, a 10 s extension, inconclusive accepted at its end, the
probe at 5 requests a second to each version; the sequential judge with its defaults (alpha 0.01, tolerance
50pp latency / 5pp errors, minimum hold 5 s). Each canary is `openbell canary run gateway --judge J ... -O json`
in a subprocess, with `--on-burning proceed` (a bad canary before it spends api-errors budget, which the fleet
gate, baseline-aware, does not count against the next run).

- **A/A**: a canary of the stable build itself (a new version label, no fault): a rollback is a false one.
  On the sandbox a good new version is the same build as stable, so these runs also give the time from start to
  promotion of a good canary.
- **Bad**: each fault in turn (5% errors, +80 ms, +10 ms on every frame and REST request): onset (the first
  step) to HAProxy's canary weight seen at 0, and what the canary failed meanwhile (bench/canary_rollback.py's
  monitor and blast radius).

Runs are interleaved judge by judge (A/A sequential, A/A fixed, ..., then each fault the same way), so both
judges see the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import canary_rollback as cr
from openbell.metrics.prometheus import PrometheusClient
from openbell.targets.sandbox import SandboxTarget

ROOT = cr.ROOT
Fleet = cr.Fleet
STEPS = "10,50,100"
COMMON = ["--steps", STEPS, "--hold", "25s", "--interval", "2s", "--max-extension", "10s", "--on-inconclusive",
          "pass", "--probe-rate", "5", "--on-burning", "proceed"]
TARGET_SEQUENTIAL_SHARE = 1 / 3
TARGET_DETECT_S = 5.0


def canary(ctx: cr.Context, version: str, judge: str, faults: list[str]) -> dict[str, Any]:
    """One rollout through the CLI; its timeline gives onset, the decision and the end."""
    cmd = [*cr.OPENBELL, "canary", "run", "gateway", "--home", str(ctx.home), "--version", version, "--judge", judge,
           *COMMON, *(a for f in faults for a in ("--sandbox-fault", f)), "-O", "json"]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the controller rolls back
        out, err = proc.communicate(timeout=60)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(60)
        raise
    try:
        result = json.loads(out)
    except ValueError:
        result = {}
    timeline = result.get("timeline") or []
    first = next((e for e in timeline if e["kind"] == "start"), None)
    onset = next((e["at"] for e in timeline if e["kind"] == "step"), None)
    rollback = next((e["at"] for e in timeline if e["kind"] == "rollback"), None)
    rolled_back = next((e["at"] for e in timeline if e["kind"] == "rolled_back"), None)
    promoted = next((e["at"] for e in timeline if e["kind"] == "promoted"), None)
    gates = [round(e["at"] - (onset or e["at"]), 1) for e in timeline if e["kind"] == "gate"]
    record: dict[str, Any] = {
        "judge": judge, "version": version, "faults": faults, "exit_code": proc.returncode,
        "outcome": result.get("outcome"), "reason": result.get("reason"),
        "fired": cr.failed_checks(result.get("last_gates") or {}) + _sequential_fired(result.get("last_gates") or {}),
        "start_to_promoted_s": None if promoted is None or first is None else round(promoted - first["at"], 1),
        "steps_passed_at_s": gates,
        "extended": [e["message"] for e in timeline if e["kind"] == "extend"],
        "stderr_tail": err.strip().splitlines()[-3:] if proc.returncode not in (0, 1) else [],
    }
    if onset is None:
        record["error"] = "no step event in the timeline"
        return record
    if rollback is None:
        record.update({"onset_at": onset, "detection_s": None, "detection_rollback_s": None})
        ctx.stable = ctx.target.stable_version()
        record["fleet_back_on_stable_s"] = cr.wait_on_stable(ctx.fleet, ctx.args.traders, ctx.stable)
        return record
    return cr.finish(ctx, record, version, started, onset, rollback, rolled_back)


def _sequential_fired(last: dict[str, Any]) -> list[str]:
    judge = last.get("judge") or {}
    if judge.get("outcome") != "fail":
        return []
    return [f"judge {c['name']}" for c in (judge.get("figures") or {}).get("comparisons") or []
            if c.get("decision") == "regressed"]


def med(values: list[float]) -> float | None:
    return None if not values else round(statistics.median(values), 2)


def summarise(runs: list[dict[str, Any]], judges: list[str], faults: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for judge in judges:
        aa = [r for r in runs if r["judge"] == judge and r["case"] == "aa"]
        promote = [r["start_to_promoted_s"] for r in aa if r.get("start_to_promoted_s") is not None]
        out[judge] = {"aa": {"runs": len(aa), "false_rollbacks": sum(1 for r in aa if r["outcome"] == "rolled_back"),
                             "other": sum(1 for r in aa if r["outcome"] not in ("promoted", "rolled_back")),
                             "start_to_promoted_median_s": med(promote),
                             "start_to_promoted_range_s": [min(promote), max(promote)] if promote else None}}
        for fault in faults:
            bad = [r for r in runs if r["judge"] == judge and r["case"] == fault]
            times = [r["detection_rollback_s"] for r in bad if r.get("detection_rollback_s") is not None]
            failed = [r["blast"]["gateway"]["canary_failed"] for r in bad if "blast" in r]
            out[judge][fault] = {"runs": len(bad), "rolled_back": sum(1 for r in bad if r["outcome"] == "rolled_back"),
                                 "onset_to_weight0_median_s": med(times),
                                 "onset_to_weight0_range_s": [min(times), max(times)] if times else None,
                                 "canary_failed_median": med([float(f) for f in failed])}
    return out


def table(result: dict[str, Any]) -> str:
    lines = []
    for judge, s in result["summary"].items():
        aa = s["aa"]
        lines.append(f"{judge}: A/A {aa['runs']} runs, false rollbacks {aa['false_rollbacks']}, other "
                     f"{aa['other']}; start to promoted median {aa['start_to_promoted_median_s']} s "
                     f"(range {aa['start_to_promoted_range_s']})")
        for fault in result["faults"]:
            b = s[fault]
            lines.append(f"  {fault}: {b['rolled_back']}/{b['runs']} rolled back; onset to weight 0 median "
                         f"{b['onset_to_weight0_median_s']} s (range {b['onset_to_weight0_range_s']}); canary "
                         f"failures served (gateway) median {b['canary_failed_median']}")
    lines.append("")
    for r in result["runs"]:
        lines.append(f"{r['case']:<18} {r['judge']:<10} {r['version']:<10} {r.get('outcome')}: promoted "
                     f"{r.get('start_to_promoted_s')} s, steps passed at {r.get('steps_passed_at_s')}, weight 0 at "
                     f"{r.get('detection_rollback_s')} s; fired {r.get('fired')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aa", type=int, default=20, help="A/A canaries per judge")
    parser.add_argument("--bad", type=int, default=3, help="bad canaries per fault per judge")
    parser.add_argument("--faults", nargs="*", default=["error_rate=0.05", "latency_ms=80", "latency_ms=10"])
    parser.add_argument("--judges", nargs="*", default=["sequential", "fixed"])
    parser.add_argument("--traders", type=int, default=40)
    parser.add_argument("--rest-interval", type=float, default=0.25)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--output", choices=["text", "json"], default="text")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, cr._terminate)
    home = Path(tempfile.mkdtemp(prefix="openbell-judge-"))
    try:
        cr.say(f"sandbox up in {home}")
        up = subprocess.run([*cr.OPENBELL, "sandbox", "up", "--home", str(home), "--output", "json"], cwd=ROOT,
                            capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        result = run(args, json.loads(up.stdout), home)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cr.say("sandbox down --purge")
        subprocess.run([*cr.OPENBELL, "sandbox", "down", "--purge", "--home", str(home)], cwd=ROOT,
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.output == "json" else table(result))


def run(args: argparse.Namespace, status: dict[str, Any], home: Path) -> dict[str, Any]:
    endpoints = status["endpoints"]
    universe = httpx.get(endpoints["feed_url"] + "/v1/symbols", timeout=5).json()["symbols"]
    symbols = [s["symbol"] for s in universe[:40]]
    target = SandboxTarget(service="gateway", home=home, progress=lambda m: cr.say(f"  {m}"))
    prom = PrometheusClient(target.prometheus_url())
    fleet = Fleet(endpoints["websocket_url"], endpoints["market_url"], symbols, traders=args.traders,
                  rest_interval_s=args.rest_interval).start()
    monitor = cr.Monitor(target.router(), fleet)
    monitor.start()
    args.hold = "25s"
    ctx = cr.Context(args, home, target, prom, fleet, monitor, target.stable_version(), target.scrape_interval_s())
    cr.say(f"fleet: {args.traders} traders, REST every {args.rest_interval:g}s; warm-up {args.warmup:g}s")
    time.sleep(args.warmup)
    plan = [("aa", judge) for _ in range(args.aa) for judge in args.judges]
    plan += [(fault, judge) for fault in args.faults for _ in range(args.bad) for judge in args.judges]
    runs: list[dict[str, Any]] = []
    started = time.time()
    try:
        for i, (case, judge) in enumerate(plan, 1):
            version = f"{'aa' if case == 'aa' else 'bad'}-{judge[:3]}{i}"
            record = canary(ctx, version, judge, [] if case == "aa" else [case])
            record["case"] = case
            runs.append(record)
            cr.say(f"run {i}/{len(plan)} {case} {judge}: {record.get('outcome')}, promoted "
                   f"{record.get('start_to_promoted_s')} s, weight 0 at {record.get('detection_rollback_s')} s, "
                   f"fired {record.get('fired')}")
    finally:
        monitor.stop()
        fleet.stop()
        prom.close()
    return {"traders": args.traders, "rest_interval_s": args.rest_interval, "canary_args": COMMON,
            "faults": args.faults, "judges": args.judges, "wall_s": round(time.time() - started),
            "summary": summarise(runs, args.judges, args.faults), "runs": runs}


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as exc:
        print(f"interrupted ({str(exc) or 'SIGINT'}): sandbox taken down", file=sys.stderr)
        sys.exit(130)
