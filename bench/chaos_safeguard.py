"""The chaos SLO safeguard: how fast it stops a burning experiment, and what each sandbox experiment costs.

    .venv/bin/python bench/chaos_safeguard.py [--runs 5] [--warmup 30] [--traders 16] [--skip-budget]
                                              [--output text|json]

Target (the issue): from the moment a page-severity burn begins to the experiment aborted and its rollbacks
done, within 2 scrape intervals + the rollback's own time (1 s scrapes in the sandbox).

1. Reaction, `--runs` times: a fresh sandbox in its own home (down --purge, up: every run starts from the same
   Prometheus history), a fleet of reconnecting traders polling REST and short-lived traders coming and going
   for `--warmup` seconds, then `openbell chaos run gateway-all-replicas-loss` (kill -9 of every gateway, held
   40 s unless the safeguard stops it). The burn's onset is found afterwards by asking the same gate
   (`openbell.slo.evaluate.evaluate`, the experiment's SLOs, page severity) at past instants `at=t`, every
   0.1 s from the kill: the first instant at which it fails is when a page-severity burn began, as Prometheus'
   data shows it. From the journal and the safeguard's record: when it signalled chaos, when the method was
   abandoned, when the rollback (`heal`: `sandbox up` semantics) ended.
2. Budget, once: a fresh sandbox under the same traffic plus an order client, the four passing sandbox
   experiments then the harsh one, in the catalogue's order. After each, for every SLO of slo/ and the edge
   SLO: the share of its 30-day error budget the run consumed = error ratio over the run's window (start to
   end + 10 s, evaluated then) x window / period / budget, the worst group of a grouped SLO.
"""

from __future__ import annotations

import argparse
import asyncio
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
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from openbell.metrics.prometheus import PrometheusClient
from openbell.slo.evaluate import evaluate
from openbell.slo.loader import load_slos
from openbell.slo.model import SLO
from openbell.slo.promql import error_ratio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.scenario.fleet import Fleet  # noqa: E402 - the repo root is not on the path of a script
from tests.scenario.platform_client import trade  # noqa: E402

OPENBELL = [sys.executable, "-m", "openbell"]
HARSH = "gateway-all-replicas-loss"
PASSING = ["gateway-replica-loss", "postgres-primary-loss", "kafka-broker-loss", "enricher-stall"]
EDGE = ROOT / "experiments" / "sandbox" / "slo" / "gateway-edge-availability.yaml"


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def openbell(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPENBELL, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)


# -- traffic ------------------------------------------------------------------------------------------------


class Traffic:
    """The fleet (reconnecting traders polling REST), a short-lived trader every second (new handshakes),
    a trader on the 150 most active symbols, and optionally an order client: what the SLIs count."""

    def __init__(self, endpoints: dict[str, str], traders: int, orders: bool) -> None:
        universe = httpx.get(endpoints["feed_url"] + "/v1/symbols", timeout=5).json()["symbols"]
        ranked = [s["symbol"] for s in sorted(universe, key=lambda s: -float(s["weight"]))]
        self.endpoints, self.ranked, self.orders = endpoints, ranked, orders
        self.fleet = Fleet(endpoints["websocket_url"], endpoints["market_url"], ranked[:30], traders=traders,
                           rest_interval_s=0.25)
        self._halt = threading.Event()
        self._threads = [threading.Thread(target=lambda: asyncio.run(self._churn()), daemon=True)]
        if orders:
            self._threads.append(threading.Thread(target=self._orders, daemon=True))

    def start(self) -> Traffic:
        self.fleet.start()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(40)
        self.fleet.stop()

    async def _churn(self) -> None:
        url = self.endpoints["websocket_url"]
        watcher: asyncio.Task[Any] | None = None
        while not self._halt.is_set():
            if watcher is None or watcher.done():
                watcher = asyncio.create_task(_quietly(trade(url, self.ranked[:150], 3600)))
            with contextlib.suppress(Exception):
                await trade(url, self.ranked[:3], 0.5)
            await asyncio.sleep(1.0)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher

    def _orders(self) -> None:
        """An order every 0.2 s, each key retried until acknowledged (30 s at most)."""
        url = self.endpoints["market_url"] + "/v1/orders"
        with httpx.Client(timeout=5) as client:
            while not self._halt.is_set():
                key, give_up = str(uuid.uuid4()), time.monotonic() + 30
                body = {"account": "bench", "symbol": "OBL", "side": "buy", "qty": 1, "price": 10.5}
                while time.monotonic() < give_up and not self._halt.is_set():
                    with contextlib.suppress(httpx.TransportError):
                        if client.post(url, json=body, headers={"Idempotency-Key": key}).status_code < 500:
                            break
                    time.sleep(0.25)
                self._halt.wait(0.2)


async def _quietly(coro: Any) -> None:
    """A trader whose handshake fails while every gateway is down just ends; the loop starts another."""
    with contextlib.suppress(Exception):
        await coro


# -- sandboxes ----------------------------------------------------------------------------------------------


def fresh_sandbox(home: Path) -> dict[str, Any]:
    openbell("sandbox", "down", "--purge", "--home", str(home))
    up = openbell("sandbox", "up", "--home", str(home), "--output", "json")
    if up.returncode != 0:
        raise SystemExit(up.stderr[-3000:])
    return dict(json.loads(up.stdout))


def chaos_run(home: Path, name: str) -> dict[str, Any]:
    done = openbell("chaos", "run", name, "--home", str(home), "--output", "json", timeout_s=400)
    if not done.stdout.strip().startswith("{"):
        raise SystemExit(f"chaos run {name}: exit {done.returncode}: {done.stderr[-2000:]}")
    result = dict(json.loads(done.stdout))
    result["journal_doc"] = json.loads(Path(result["journal"]).read_text())
    return result


def experiment_slos(journal: dict[str, Any]) -> list[SLO]:
    """The SLOs the experiment's safeguard judged (its control's arguments)."""
    control = next(c for c in journal["experiment"]["controls"] if c["name"] == "openbell-slo-safeguard")
    return load_slos([ROOT / p for p in control["provider"]["arguments"]["slo_paths"]])


# -- 1. reaction --------------------------------------------------------------------------------------------


def burn_onset(prom: PrometheusClient, slos: list[SLO], start: float, end: float, step_s: float = 0.1) -> float | None:
    """The first instant in [start, end] at which the gate, asked at that past instant, fails."""
    t = start
    while t <= end + 1e-9:
        verdict, _ = evaluate(prom, slos, "page", at=t)
        if verdict.outcome == "fail":
            return t
        t += step_s
    return None


def reaction_run(home: Path, args: argparse.Namespace, index: int) -> dict[str, Any]:
    say(f"reaction run {index + 1}/{args.runs}: fresh sandbox")
    status = fresh_sandbox(home)
    traffic = Traffic(status["endpoints"], args.traders, orders=False).start()
    try:
        time.sleep(args.warmup)
        result = chaos_run(home, HARSH)
    finally:
        traffic.stop()
    doc = result["journal_doc"]
    guard = next(e for e in doc.get("extensions", []) if e.get("name") == "openbell-slo-safeguard")
    steps = {(s["phase"], s["name"]): s for s in result["timeline"]}
    kill = steps[("method", "kill-9-every-gateway")]
    heal = steps[("rollbacks", "heal-sandbox")]
    prom = PrometheusClient(status["endpoints"]["prometheus_url"])
    onset = burn_onset(prom, experiment_slos(doc), kill["start"], guard.get("signalled_at") or heal["end"])
    out = {"exit_code": result["exit_code"], "tripped": bool(guard.get("tripped")), "polls": guard.get("polls"),
           "kill_at": kill["start"], "onset_at": onset, "signalled_at": guard.get("signalled_at"),
           "rollback_start": heal["start"], "rollback_end": heal["end"], "rollback_s": heal["duration_s"]}
    if onset is not None and guard.get("signalled_at"):
        out.update(kill_to_onset_s=onset - kill["start"], detect_s=guard["signalled_at"] - onset,
                   abort_s=heal["start"] - onset, done_s=heal["end"] - onset,
                   done_minus_rollback_s=heal["end"] - onset - heal["duration_s"])
    say(f"  tripped={out['tripped']} " + " ".join(f"{k}={v:.2f}" for k, v in out.items()
                                                    if k.endswith("_s") and isinstance(v, float)))
    return out


# -- 2. budget ----------------------------------------------------------------------------------------------


def consumed(prom: PrometheusClient, slo: SLO, start: float, end: float) -> float | None:
    """Share of the SLO's period budget spent in [start, end] (worst group), from its error ratio there."""
    window = max(2.0, end - start)
    samples = prom.query(error_ratio(slo, math.ceil(window)), at=end)
    ratios = [s.value for s in samples if math.isfinite(s.value)]
    if not ratios:
        return None
    return max(ratios) * window / slo.period_s / slo.error_budget


def budget_runs(home: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    say("budget: fresh sandbox, the sandbox experiments in the catalogue's order")
    status = fresh_sandbox(home)
    prom = PrometheusClient(status["endpoints"]["prometheus_url"])
    slos = load_slos([ROOT / "slo", EDGE])
    traffic = Traffic(status["endpoints"], args.traders, orders=True).start()
    rows = []
    try:
        time.sleep(args.warmup)
        for name in [*PASSING, HARSH]:
            started = time.time()
            result = chaos_run(home, name)
            ended = time.time()
            time.sleep(10)  # what the fault's after-effects cost (a replayed backlog) belongs to it
            spent = {f"{s.service}/{s.name}": consumed(prom, s, started, ended + 10) for s in slos}
            rows.append({"experiment": name, "exit_code": result["exit_code"], "duration_s": round(ended - started, 1),
                         "outcome": result["verdict"]["outcome"], "budget_consumed": spent})
            say(f"  {name}: exit {result['exit_code']} in {ended - started:.1f}s")
    finally:
        traffic.stop()
    return rows


# -- report -------------------------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]], budget: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in runs if "done_s" in r]
    keys = ("kill_to_onset_s", "detect_s", "abort_s", "rollback_s", "done_s", "done_minus_rollback_s")
    return {"runs": runs, "tripped": sum(1 for r in runs if r["tripped"]),
            "median": {k: median([r[k] for r in done]) for k in keys}, "target_s": 2.0,
            "budget": budget}


def table(result: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [f"safeguard tripped in {result['tripped']}/{len(result['runs'])} runs of {HARSH}",
             "| figure | median s | runs |", "|---|---:|---|"]
    for key, value in result["median"].items():
        runs = ", ".join(fmt(r.get(key)) for r in result["runs"])
        lines.append(f"| {key} | {fmt(value)} | {runs} |")
    if result["budget"]:
        names = list(result["budget"][0]["budget_consumed"])
        lines += ["", "| experiment | exit | s | " + " | ".join(names) + " |",
                  "|---|---:|---:|" + "---:|" * len(names)]
        for row in result["budget"]:
            cells = ["-" if v is None else f"{v:.3%}" for v in row["budget_consumed"].values()]
            head = f"| {row['experiment']} | {row['exit_code']} | {row['duration_s']} | "
            lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of the harsh variant (each on a fresh sandbox)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of traffic before each experiment run")
    parser.add_argument("--traders", type=int, default=16)
    parser.add_argument("--skip-budget", action="store_true", help="only the reaction runs")
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    if args.runs < 0 or args.warmup < 0:
        raise SystemExit("--runs and --warmup must be >= 0")
    # Ctrl-C and SIGTERM both end in the `finally` below (SIGINT explicitly: a shell's background job
    # inherits it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    home = Path(tempfile.mkdtemp(prefix="openbell-chaos-bench-"))
    try:
        runs = [reaction_run(home, args, i) for i in range(args.runs)]
        budget = [] if args.skip_budget else budget_runs(home, args)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("sandbox down --purge")
        openbell("sandbox", "down", "--purge", "--home", str(home))
        shutil.rmtree(home, ignore_errors=True)
    result = summarize(runs, budget)
    print(json.dumps(result, indent=2) if args.output == "json" else table(result))


if __name__ == "__main__":
    main()
