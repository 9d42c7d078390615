"""A bad canary, from fault onset to canary weight 0: openbell's controller against a fixed-interval policy
equivalent to Flagger's defaults, side by side on one sandbox under one traffic fleet, with the blast radius
of each (failed requests as a share of all served while the bad canary had traffic).

    .venv/bin/python bench/canary_rollback.py [--runs 5] [--flagger-runs 1] [--flagger-interval 60]
                                              [--fault error_rate=0.05] [--traders 40] [--rest-interval 0.25]
                                              [--hold 60s] [--warmup 30] [--output text|json]

Targets (the issue): detection plus rollback within 15 s at 1 s scrapes, blast radius under 0.05%.

Each run rolls out a fresh version label with the fault. openbell: `openbell canary run gateway --steps
10,25,50,100 --hold 60s --sandbox-fault F -O json` in a subprocess. Flagger-like (analysis interval 1m,
threshold 5, request-success-rate >= 99% over 1m, first step 10%): implemented here on the sandbox target,
with Flagger's tick order (pkg/controller/scheduler.go: the threshold is checked at the start of a tick,
before that tick's analysis, and the tick that sets the first weight runs no analysis), so a canary that
fails every check is rolled back at onset + 6 intervals. `--flagger-interval` scales its interval and its
metric window together (the scale is reported). openbell's runs go first, each once no fleet SLO burns at
page severity (the canary refuses a burning fleet), then the flagger-like ones (six intervals of a bad canary
burn api-errors past its page thresholds for most of an hour on a young sandbox).

Onset is the moment the canary first gets weight > 0 (openbell: the first `step` event of the rollout's
timeline; Flagger-like: just before its set_weight(10)). The end is the moment HAProxy's canary weight was
seen at 0, polled every 0.1 s through the admin socket (the `rollback` and `rolled_back` events are reported
too: detection, and all clients back on stable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from openbell.errors import OpenbellError
from openbell.metrics.prometheus import PrometheusClient, QueryError, QueryTimeout
from openbell.sandbox.haproxy_router import HAProxyRouter
from openbell.targets.sandbox import SandboxTarget, parse_faults

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.scenario.fleet import Fleet  # noqa: E402 - the repo root is not on the path of a script

OPENBELL = [sys.executable, "-m", "openbell"]
STEPS = "10,25,50,100"
FLAGGER_THRESHOLD = 5
FLAGGER_MIN_SUCCESS_PCT = 99.0
FLAGGER_WEIGHT = 10
TARGET_S = 15.0
# A rollback is put down to the injected errors when one of these checks failed (not, say, a push-latency
# SLO that burns because the machine is busy).
FAULT_CHECKS = ("api-errors", "gateway-availability", "error_ratio")
TARGET_BLAST_PCT = 0.05
HEALTHY_WAIT_S = 600.0  # before each run: the fleet is not burning (a bad canary before it burned api-errors)

# What the canary's failures and everything the gateways served are counted from (counters; `{sel}` is
# replaced by the series selector). REST is the gateway's one REST route; handshakes refused while draining
# are not counted (HAProxy retries them elsewhere by design).
FAILED = ('http_requests_total{{{sel}, route="/v1/quotes", code=~"5.."}}',
          'gateway_ws_handshakes_total{{{sel}, result="error"}}')
SERVED = ('http_requests_total{{{sel}, route="/v1/quotes"}}',
          'gateway_ws_handshakes_total{{{sel}, result=~"ok|error"}}',
          'gateway_messages_sent_total{{{sel}}}')


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


# -- watching the router and the fleet -----------------------------------------------------------------


class Monitor(threading.Thread):
    """Polls HAProxy's canary weight every `period_s` (transitions kept) and the fleet's counters every
    other poll, so a run's window can be cut out of both afterwards."""

    def __init__(self, router: HAProxyRouter, fleet: Fleet, period_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.router, self.fleet, self.period_s = router, fleet, period_s
        self.weights: list[tuple[float, int]] = []
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self._halt.is_set():
            try:
                weight: int | None = self.router.canary_weight()
            except OpenbellError:
                weight = None
            # Stamped when the answer is in: a change is never dated before it happened (HAProxy on a
            # busy machine can take a while to answer).
            now = time.time()
            with self._lock:
                if weight is not None and (not self.weights or self.weights[-1][1] != weight):
                    self.weights.append((now, weight))
                if tick % 2 == 0:
                    self.samples.append((now, fleet_totals(self.fleet.snapshot())))
            tick += 1
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def weight_zero_at(self, after: float) -> float | None:
        """When the weight was first seen at 0 at or after `after` (at most one poll late)."""
        with self._lock:
            return next((t for t, w in self.weights if w == 0 and t >= after), None)

    def weights_between(self, start: float, end: float) -> list[tuple[float, int]]:
        with self._lock:
            return [(t, w) for t, w in self.weights if start <= t <= end]

    def weight_up_at(self, after: float) -> float | None:
        with self._lock:
            return next((t for t, w in self.weights if w > 0 and t >= after), None)

    def fleet_delta(self, start: float, end: float) -> dict[str, int]:
        """Fleet counters between the last sample at or before `start` and the first at or after `end`."""
        with self._lock:
            samples = list(self.samples)
        before = next((c for t, c in reversed(samples) if t <= start), samples[0][1])
        after = next((c for t, c in samples if t >= end), samples[-1][1])
        return {k: after[k] - before.get(k, 0) for k in after}


def fleet_totals(snapshot: dict[str, Any]) -> dict[str, int]:
    rest = snapshot["rest"]
    return {"rest": sum(rest.values()), "rest_5xx": rest.get("5xx", 0), "rest_error": rest.get("error", 0),
            "connects": sum(snapshot["connects"].values()), "handshake_failures": snapshot["handshake_failures"],
            "unexpected_drops": snapshot["unexpected_drops"], "messages": sum(snapshot["messages"].values())}


def wait_on_stable(fleet: Fleet, traders: int, stable: str, timeout_s: float = 60.0) -> float | None:
    """Seconds until every trader is connected to the stable version (None: not within the timeout)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        current = fleet.current()
        if sum(1 for v in current.values() if v == stable) >= traders:
            return round(time.monotonic() - start, 1)
        time.sleep(0.25)
    return None


# -- Prometheus: what the bad canary cost ----------------------------------------------------------------


def _values(prom: PrometheusClient, expr: str, at: float, lookback_s: float) -> dict[frozenset[tuple[str, str]], float]:
    samples = prom.query(f"last_over_time({expr}[{max(1, math.ceil(lookback_s))}s])", at=at)
    return {frozenset(s.labels.items()): s.value for s in samples if math.isfinite(s.value)}


def counted(prom: PrometheusClient, expr: str, start: float, end: float, canary_end: float, version: str,
            lookback_s: float) -> float:
    """How much the counters of `expr` grew between `start` and `end`, per series: a series absent at
    `start` counts from 0 (the canary's process is fresh and gets no traffic before its weight is set, and
    its first scrape can come seconds after that: increase() would not count what happened before it);
    the canary's own series are read at `canary_end`, after its last scrape."""
    before = _values(prom, expr, start, lookback_s)
    after = _values(prom, expr, end, lookback_s)
    for key, value in _values(prom, expr, canary_end, lookback_s).items():
        if dict(key).get("version") == version:
            after[key] = value
    total = 0.0
    for key, value in after.items():
        if dict(key).get("role") == "canary" and dict(key).get("version") != version:
            continue  # an earlier run's canary: not serving any more
        base = before.get(key, 0.0)
        total += value - base if value >= base else value  # a reset counts from 0
    return total


def increase(prom: PrometheusClient, expr: str, start: float, end: float) -> float:
    """Prometheus' own increase() over the window, for comparison (it misses what came before a series'
    first scrape)."""
    window = max(1, round(end - start))
    samples = prom.query(f"sum(increase({expr}[{window}s]))", at=end)
    return sum(s.value for s in samples if math.isfinite(s.value))


def blast_radius(prom: PrometheusClient, monitor: Monitor, version: str, start: float, end: float,
                 scrape_s: float) -> dict[str, Any]:
    """Failed requests caused by the canary, as a share of everything served in [start, end], from the
    gateways' counters in Prometheus and from the fleet's client-side counters."""
    canary_end = end + 2 * scrape_s + 0.5
    time.sleep(max(0.0, canary_end + scrape_s + 1.0 - time.time()))  # the last samples are in
    lookback = 5 * scrape_s + 2
    canary_sel = f'job="gateway", version="{version}"'
    all_sel = 'job="gateway"'
    failed = sum(counted(prom, e.format(sel=canary_sel), start, end, canary_end, version, lookback) for e in FAILED)
    served = sum(counted(prom, e.format(sel=all_sel), start, end, canary_end, version, lookback) for e in SERVED)
    canary_rest = counted(prom, SERVED[0].format(sel=canary_sel), start, end, canary_end, version, lookback)
    all_rest = counted(prom, SERVED[0].format(sel=all_sel), start, end, canary_end, version, lookback)
    via_increase = sum(increase(prom, e.format(sel=canary_sel), start, canary_end) for e in FAILED)
    proxy: dict[str, float] = {}
    # HAProxy's retry warnings count two per 503 it retried on this build (checked against the gateway's
    # own counter), so they are reported as they are, not used.
    for name, expr in (("retry_warnings", 'haproxy_backend_retry_warnings_total{proxy="gateway-canary"}'),
                       ("5xx_to_clients", 'haproxy_backend_http_responses_total{proxy="gateway-canary", '
                                          'code="5xx"}')):
        proxy[name] = counted(prom, expr, start, canary_end, canary_end, version, lookback)
    # Clients: what they were served in the window, and the failures they saw up to the canary's last
    # answers (a request routed to it just before weight 0 ends just after).
    fleet = monitor.fleet_delta(start, end)
    late = monitor.fleet_delta(start, canary_end)
    fleet.update({k: late[k] for k in ("rest_5xx", "rest_error", "handshake_failures", "unexpected_drops")})
    client_failed = fleet["rest_5xx"] + fleet["rest_error"] + fleet["handshake_failures"]
    client_total = fleet["rest"] + fleet["connects"] + fleet["handshake_failures"] + fleet["messages"]
    return {
        "window_s": round(end - start, 2),
        "gateway": {"canary_failed": round(failed), "served": round(served),
                    "blast_radius_pct": _pct(failed, served),
                    "canary_rest_share_pct": _pct(canary_rest, all_rest),
                    "canary_failed_by_increase": round(via_increase, 1)},
        "haproxy_canary_backend": {k: round(v) for k, v in proxy.items()},
        "clients": {"failed": client_failed, "served": client_total, "blast_radius_pct": _pct(client_failed,
                                                                                               client_total),
                    **fleet},
    }


def _pct(part: float, whole: float) -> float | None:
    return None if whole <= 0 else round(100.0 * part / whole, 4)


# -- the two policies ------------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    home: Path
    target: SandboxTarget
    prom: PrometheusClient
    fleet: Fleet
    monitor: Monitor
    stable: str
    scrape_s: float
    faults: dict[str, str] = field(default_factory=dict)


def wait_healthy(ctx: Context, limit_s: float = HEALTHY_WAIT_S) -> float:
    """Wait until no fleet SLO burns at page severity (a canary refuses a burning fleet, and the previous run's bad
    canary leaves api-errors burning for the 5 minutes of its short window); the seconds waited."""
    from openbell.slo.burning import burning
    from openbell.slo.loader import load_slos

    slos = load_slos([ROOT / "slo"])
    started = time.time()
    while True:
        burns = burning(ctx.prom, slos, "page")
        if not burns:
            return round(time.time() - started, 1)
        if time.time() - started > limit_s:
            raise SystemExit(f"the fleet still burns after {limit_s:g} s: {burns[0].line(time.time())}")
        say(f"  waiting for a healthy fleet: {burns[0].line(time.time())}")
        time.sleep(10)


def controller_run(ctx: Context, version: str) -> dict[str, Any]:
    """`openbell canary run` in a subprocess; its timeline gives onset and detection."""
    args = ctx.args
    cmd = [*OPENBELL, "canary", "run", "gateway", "--home", str(ctx.home), "--version", version, "--steps", STEPS,
           "--hold", args.hold, *(a for f in args.fault for a in ("--sandbox-fault", f)), "-O", "json"]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Bounded: every step held and extended, plus start-up and rollback.
    steps = len(STEPS.split(","))
    limit = steps * (_seconds(args.hold) + 60.0) + 120.0
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the controller rolls back
        out, err = proc.communicate(timeout=60)
    except KeyboardInterrupt as exc:
        # Ctrl-C reached the controller too (one process group) and it is rolling back; a SIGTERM reached
        # only this script: pass it on once. Either way let the rollback finish before the sandbox goes.
        if exc.args == ("SIGTERM",) and proc.poll() is None:
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        if proc.poll() is None:
            proc.kill()
        raise
    try:
        result = json.loads(out)
    except ValueError:
        status = subprocess.run([*OPENBELL, "canary", "status", "gateway", "--home", str(ctx.home), "-O", "json"],
                                cwd=ROOT, capture_output=True, text=True)
        result = json.loads(status.stdout) if status.stdout.strip().startswith("{") else {}
    timeline = result.get("timeline") or []
    onset = next((e["at"] for e in timeline if e["kind"] == "step"), None)
    rollback = next((e["at"] for e in timeline if e["kind"] == "rollback"), None)
    rolled_back = next((e["at"] for e in timeline if e["kind"] == "rolled_back"), None)
    fired = failed_checks(result.get("last_gates") or {})
    record: dict[str, Any] = {"policy": "openbell", "version": version, "exit_code": proc.returncode,
                              "outcome": result.get("outcome"), "reason": result.get("reason"), "fired": fired,
                              "fault_detected": any(k in c for c in fired for k in FAULT_CHECKS),
                              "stderr_tail": err.strip().splitlines()[-3:] if proc.returncode not in (0, 1) else []}
    if onset is None:
        record["error"] = "no step event in the timeline"
        return record
    return finish(ctx, record, version, started, onset, rollback, rolled_back)


def failed_checks(last: dict[str, Any]) -> list[str]:
    """The checks that failed at the controller's deciding poll (`last_gates` of its JSON): fleet SLOs not
    already burning when the rollout began, the canary-scoped SLO burns, and the judge's metrics."""
    out: list[str] = []
    slo = last.get("slo") or {}
    if slo.get("outcome") == "fail":
        figures = slo.get("figures") or {}
        burning = set(figures.get("burning_at_start") or [])
        for row in figures.get("fleet") or []:
            group = ",".join(f"{k}={v}" for k, v in (row.get("group") or {}).items())
            label = f"{row.get('service')}/{row.get('slo')}" + (f"{{{group}}}" if group else "")
            if row.get("outcome") == "fail" and label not in burning:
                out.append(f"fleet SLO {label}")
    judge = last.get("judge") or {}
    if judge.get("outcome") == "fail":
        figures = judge.get("figures") or {}
        out += [f"canary SLO {b['slo']}" for b in figures.get("canary_slo_burn") or [] if b.get("outcome") == "fail"]
        out += [f"judge {m['metric']}" for m in figures.get("metrics") or [] if m.get("outcome") == "fail"]
    return out


def flagger_run(ctx: Context, version: str) -> dict[str, Any]:
    """Flagger's defaults on the sandbox target: weight 10%, then every interval a success-rate check over
    the last interval; the threshold is checked at the start of each tick; 5 failed checks roll back."""
    interval = ctx.args.flagger_interval
    target = ctx.target
    started = time.time()
    target.start_canary(version, ctx.faults)
    onset = time.time()
    target.set_weight(FLAGGER_WEIGHT)
    failed = 0
    checks: list[dict[str, Any]] = []
    tick = onset
    rollback: float | None = None
    # Bounded: Flagger would promote a canary that keeps passing (after 100/10 steps); here the loop stops
    # after 3 x threshold ticks either way, and such a canary is reported as not rolled back.
    for _ in range(3 * FLAGGER_THRESHOLD):
        tick += interval
        time.sleep(max(0.0, tick - time.time()))
        if failed >= FLAGGER_THRESHOLD:
            rollback = time.time()
            target.rollback()
            break
        rate = success_rate(ctx.prom, version, interval)
        ok = rate is not None and rate >= FLAGGER_MIN_SUCCESS_PCT
        failed += 0 if ok else 1
        checks.append({"at_s": round(time.time() - onset, 1), "success_rate_pct": rate, "failed_checks": failed})
        say(f"  flagger check {len(checks)}: success rate "
            f"{'no data' if rate is None else f'{rate:.2f}%'} -> failed checks {failed}/{FLAGGER_THRESHOLD}")
    if rollback is None:
        target.rollback()
    rolled_back = time.time()
    record: dict[str, Any] = {"policy": "flagger", "version": version, "interval_s": interval,
                              "outcome": "rolled_back" if rollback is not None else "not rolled back",
                              "fired": [f"request-success-rate < {FLAGGER_MIN_SUCCESS_PCT:g}%"] if rollback else [],
                              "fault_detected": rollback is not None, "checks": checks}
    return finish(ctx, record, version, started, onset, rollback, rolled_back)


def success_rate(prom: PrometheusClient, version: str, interval_s: float) -> float | None:
    """Flagger's request-success-rate for the canary: non-5xx REST requests and handshakes over all of them,
    percent, over the last interval (None: no traffic, which Flagger counts as a failed check)."""
    window = f"{max(1, round(interval_s))}s"
    sel = f'job="gateway", role="canary", version="{version}"'
    bad = (f'sum(rate(http_requests_total{{{sel}, route="/v1/quotes", code=~"5.."}}[{window}])) or vector(0)',
           f'sum(rate(gateway_ws_handshakes_total{{{sel}, result="error"}}[{window}])) or vector(0)')
    total = (f'sum(rate(http_requests_total{{{sel}, route="/v1/quotes"}}[{window}])) or vector(0)',
             f'sum(rate(gateway_ws_handshakes_total{{{sel}, result=~"ok|error"}}[{window}])) or vector(0)')
    try:
        failed = sum(s.value for q in bad for s in prom.query(q))
        served = sum(s.value for q in total for s in prom.query(q))
    except (QueryError, QueryTimeout):
        return None
    if not served > 0:
        return None
    return round(100.0 * (1.0 - failed / served), 3)


def finish(ctx: Context, record: dict[str, Any], version: str, started: float, onset: float,
           rollback: float | None, rolled_back: float | None) -> dict[str, Any]:
    """Times from onset, the blast radius over onset -> weight 0, and the fleet back on stable."""
    weight_up = ctx.monitor.weight_up_at(started)
    deadline = time.monotonic() + 5.0  # the monitor's next poll may still be due (a rollback takes ~0.1 s)
    while rollback is not None and ctx.monitor.weight_zero_at(rollback) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    weight_zero = ctx.monitor.weight_zero_at(rollback) if rollback is not None else None
    end = weight_zero or rolled_back or time.time()
    record.update({
        "onset_at": onset,
        "weight_seen_up_s": None if weight_up is None else round(weight_up - onset, 2),
        "detection_s": None if rollback is None else round(rollback - onset, 2),
        "detection_rollback_s": None if weight_zero is None or rollback is None else round(weight_zero - onset, 2),
        "rolled_back_s": None if rolled_back is None or rollback is None else round(rolled_back - onset, 2),
    })
    record["weights_seen"] = [(round(t - onset, 2), w) for t, w in ctx.monitor.weights_between(started, end + 1)]
    record["blast"] = blast_radius(ctx.prom, ctx.monitor, version, onset, end, ctx.scrape_s)
    ctx.stable = ctx.target.stable_version()  # a canary the policy missed was promoted: its label is stable now
    record["fleet_back_on_stable_s"] = wait_on_stable(ctx.fleet, ctx.args.traders, ctx.stable)
    return record


def _seconds(text: str) -> float:
    from openbell.durations import parse_duration_s

    return parse_duration_s(text)


# -- the run -----------------------------------------------------------------------------------------------


def summary(all_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over the runs rolled back for the injected errors; the others are counted apart."""
    runs = [r for r in all_runs if r.get("fault_detected")]
    times = [r["detection_rollback_s"] for r in runs if r.get("detection_rollback_s") is not None]
    detect = [r["detection_s"] for r in runs if r.get("detection_s") is not None]
    gw = [r["blast"]["gateway"] for r in runs if "blast" in r]
    cl = [r["blast"]["clients"] for r in runs if "blast" in r]

    def med(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return None if not vals else round(statistics.median(vals), 4)

    return {
        "runs": len(all_runs), "rolled_back": sum(1 for r in all_runs if r.get("outcome") == "rolled_back"),
        "rolled_back_for_the_fault": len(runs),
        "detection_rollback_median_s": med(list(times)), "detection_rollback_min_s": min(times, default=None),
        "detection_rollback_max_s": max(times, default=None), "detection_median_s": med(list(detect)),
        "blast_radius_gateway_median_pct": med([g["blast_radius_pct"] for g in gw]),
        "blast_radius_clients_median_pct": med([c["blast_radius_pct"] for c in cl]),
        "canary_failed_gateway_median": med([g["canary_failed"] for g in gw]),
        "canary_failed_clients_median": med([c["failed"] for c in cl]),
        "blast_radius_gateway_pooled_pct": _pct(sum(g["canary_failed"] for g in gw), sum(g["served"] for g in gw)),
    }


def table(result: dict[str, Any]) -> str:
    def f(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    rows = [("policy", "runs (for the fault)", "detect+rollback s, median (min-max)", "detect s",
             "canary failed (gw / clients)", "blast radius % (gw / clients)")]
    labels = {"openbell": f"openbell canary (scrape {result['scrape_interval_s']:g}s)",
              "flagger": f"flagger-like (interval {result['flagger_interval_s']:g}s)"}
    for name, s in result["summary"].items():
        rows.append((labels[name], f"{s['runs']} ({s['rolled_back_for_the_fault']})",
                     f"{f(s['detection_rollback_median_s'])} ({f(s['detection_rollback_min_s'])}-"
                     f"{f(s['detection_rollback_max_s'])})", f(s["detection_median_s"]),
                     f"{f(s['canary_failed_gateway_median'], 0)} / {f(s['canary_failed_clients_median'], 0)}",
                     f"{f(s['blast_radius_gateway_median_pct'], 4)} / {f(s['blast_radius_clients_median_pct'], 4)}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for run in result["runs"]:
        b = run.get("blast") or {}
        gw, cl = b.get("gateway") or {}, b.get("clients") or {}
        why = "for the fault" if run.get("fault_detected") else "OTHER: " + "; ".join(run.get("fired") or ["?"])
        lines.append(f"{run['policy']} {run['version']}: {run.get('outcome')} ({why}); detect "
                     f"{f(run.get('detection_s'))} s, weight 0 at {f(run.get('detection_rollback_s'))} s, "
                     f"rolled_back at {f(run.get('rolled_back_s'))} s; canary failed {gw.get('canary_failed')} "
                     f"(gateway) / {cl.get('failed')} (clients) of {gw.get('served')} / {cl.get('served')}, "
                     f"5xx HAProxy sent clients from the canary "
                     f"{(b.get('haproxy_canary_backend') or {}).get('5xx_to_clients')}")
    o = result["summary"]["openbell"]
    met_time = o["detection_rollback_max_s"] is not None and o["detection_rollback_max_s"] <= TARGET_S
    blast = o["blast_radius_gateway_median_pct"]
    met_blast = blast is not None and blast < TARGET_BLAST_PCT
    lines += ["", f"target detection+rollback <= {TARGET_S:g} s (slowest openbell run): "
              f"{'met' if met_time else 'NOT met'}",
              f"target blast radius < {TARGET_BLAST_PCT:g}% (openbell median, gateway-side): "
              f"{'met' if met_blast else 'NOT met'}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="openbell controller runs")
    parser.add_argument("--flagger-runs", type=int, default=1, help="Flagger-like runs (each > 5 min at 60 s)")
    parser.add_argument("--flagger-interval", type=float, default=60.0,
                        help="Flagger-like analysis interval and metric window, seconds (Flagger's default 60)")
    parser.add_argument("--fault", action="append", default=None,
                        help="canary fault NAME=VALUE, repeatable [error_rate=0.05]")
    parser.add_argument("--traders", type=int, default=40)
    parser.add_argument("--rest-interval", type=float, default=0.25, help="seconds between a trader's REST polls")
    parser.add_argument("--hold", default="60s", help="openbell's hold per step")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="seconds of fleet traffic before the first run (the fresh sandbox settles)")
    parser.add_argument("--output", choices=["text", "json"], default="text")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    args = parser.parse_args()
    args.fault = args.fault or ["error_rate=0.05"]
    faults = parse_faults(args.fault)
    if args.runs < 0 or args.flagger_runs < 0 or args.flagger_interval <= 0:
        raise SystemExit("--runs and --flagger-runs must be >= 0, --flagger-interval > 0")

    # Ctrl-C and SIGTERM both end in the `finally` below (SIGINT explicitly: a shell's background job
    # inherits it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    home = Path(tempfile.mkdtemp(prefix="openbell-canary-"))
    try:
        say(f"sandbox up in {home}")
        up = subprocess.run([*OPENBELL, "sandbox", "up", "--home", str(home), "--output", "json"], cwd=ROOT,
                            capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        result = run(args, json.loads(up.stdout), home, faults)
    finally:
        # Ctrl-C / SIGTERM land here too: no second interrupt may leave the sandbox behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not args.keep:
            say("sandbox down --purge")
            subprocess.run([*OPENBELL, "sandbox", "down", "--purge", "--home", str(home)], cwd=ROOT,
                           capture_output=True)
            shutil.rmtree(home, ignore_errors=True)  # the purge leaves the rollout state (canary/)
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(table(result))


def run(args: argparse.Namespace, status: dict[str, Any], home: Path, faults: dict[str, str]) -> dict[str, Any]:
    endpoints = status["endpoints"]
    universe = httpx.get(endpoints["feed_url"] + "/v1/symbols", timeout=5).json()["symbols"]
    symbols = [s["symbol"] for s in universe[:40]]
    target = SandboxTarget(service="gateway", home=home, progress=lambda m: say(f"  {m}"))
    prom = PrometheusClient(target.prometheus_url())
    fleet = Fleet(endpoints["websocket_url"], endpoints["market_url"], symbols, traders=args.traders,
                  rest_interval_s=args.rest_interval).start()
    monitor = Monitor(target.router(), fleet)
    monitor.start()
    ctx = Context(args, home, target, prom, fleet, monitor, target.stable_version(), target.scrape_interval_s(),
                  faults)
    say(f"fleet: {args.traders} traders, REST every {args.rest_interval:g}s; fault {faults}; "
        f"warm-up {args.warmup:g}s")
    time.sleep(args.warmup)
    # openbell's runs first, then the flagger-like ones: a flagger-like run serves its bad canary for six
    # intervals, and on a young sandbox that burns api-errors past its page thresholds for most of an hour
    # (the 6h/30m pair's windows are the whole history), which the canary's fleet preflight rightly refuses.
    plan = ["openbell"] * args.runs + ["flagger"] * args.flagger_runs
    runs: list[dict[str, Any]] = []
    try:
        for i, policy in enumerate(plan, 1):
            version = f"bad-{policy[:3]}{i}"
            waited = wait_healthy(ctx) if policy == "openbell" else 0.0
            say(f"run {i}/{len(plan)}: {policy}, version {version}")
            record = controller_run(ctx, version) if policy == "openbell" else flagger_run(ctx, version)
            record["waited_for_healthy_s"] = waited
            runs.append(record)
            say(f"  {record.get('outcome')}: detection {record.get('detection_s')}s, weight 0 at "
                f"{record.get('detection_rollback_s')}s, blast radius "
                f"{record.get('blast', {}).get('gateway', {}).get('blast_radius_pct')}% (gateway)")
    finally:
        monitor.stop()
        fleet.stop()
        prom.close()
    return {
        "fault": faults, "traders": args.traders, "rest_interval_s": args.rest_interval, "hold": args.hold,
        "steps": STEPS, "scrape_interval_s": ctx.scrape_s, "flagger_interval_s": args.flagger_interval,
        "flagger_scale": round(args.flagger_interval / 60.0, 4), "warmup_s": args.warmup,
        "flagger_policy": {"interval_s": args.flagger_interval, "threshold": FLAGGER_THRESHOLD,
                           "min_success_rate_pct": FLAGGER_MIN_SUCCESS_PCT, "weight_pct": FLAGGER_WEIGHT,
                           "metric_window_s": args.flagger_interval},
        "targets": {"detection_rollback_s": TARGET_S, "blast_radius_pct": TARGET_BLAST_PCT},
        "summary": {name: summary([r for r in runs if r["policy"] == name]) for name in ("openbell", "flagger")},
        "runs": runs,
    }


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as exc:
        print(f"interrupted ({str(exc) or 'SIGINT'}): sandbox taken down", file=sys.stderr)
        sys.exit(130)
