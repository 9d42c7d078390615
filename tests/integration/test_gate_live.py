"""`openbell slo gate` and `slo status` against a real Prometheus (Debian's package) on 127.0.0.1.

History (7 hours) is backfilled with promtool; a prometheus_client exporter serves live series that
Prometheus scrapes every second. Every check runs the real CLI as a user would and reads its exit
code and JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from openbell.metrics.prometheus import PrometheusClient
from openbell.slo.evaluate import evaluate
from openbell.slo.loader import load_slos
from tests.prometheus_server import History, PrometheusServer, free_port

pytestmark = pytest.mark.prometheus

END = (int(time.time()) // 60) * 60 - 120  # the backfilled history ends two minutes ago
SPAN = 7 * 3600


def _ratio(bad: str, total: str) -> str:
    return f"sli:\n  ratio:\n    bad: {bad}\n    total: {total}\n"


SPECS = {
    **{job: _ratio(f'req_total{{job="{job}", code="500"}}', f'req_total{{job="{job}"}}')
       for job in ("healthy", "burning", "idle", "trickle", "reset")},
    "missing": _ratio('nothing_here_total{code="500"}', "nothing_here_total"),
    "push": """
groupBy: [exchange]
sli:
  latency:
    histogram: push_seconds
    buckets: [0.01, 0.05, 0.1]
    threshold: 50ms
    selector: job="push"
""",
    "lag": """
sli:
  threshold:
    gauge: lag_seconds{job="pipe"}
    bound: 0.05
""",
    "younglag": """
sli:
  threshold:
    gauge: lag_seconds{job="young"}
    bound: 0.05
""",
    "live": _ratio('live_requests_total{job="live", code="500"}', 'live_requests_total{job="live"}'),
}


def _history() -> History:
    h = History(end_s=END, span_s=SPAN)
    outage = END - 20 * 60
    h.counter("req", 'job="healthy",code="200"', lambda t: 10.0)
    h.counter("req", 'job="healthy",code="500"', lambda t: 0.0)
    h.counter("req", 'job="burning",code="200"', lambda t: 10.0 if t < outage else 0.0)
    h.counter("req", 'job="burning",code="500"', lambda t: 0.0 if t < outage else 10.0)
    h.counter("req", 'job="idle",code="200"', lambda t: 0.0)
    h.counter("req", 'job="idle",code="500"', lambda t: 0.0)
    h.counter("req", 'job="trickle",code="200"', lambda t: 0.0)
    # One failing request every five minutes during the last hour: 100% errors, 12 events.
    h.counter("req", 'job="trickle",code="500"', lambda t: (1 / 15) if t > END - 3600 and t % 300 == 0 else 0.0)
    reset_at = END - 30 * 60
    base = {"v": 0.0}

    def reset_counter(t: int) -> float:
        base["v"] = 0.0 if t == reset_at else base["v"] + 150.0
        return base["v"]

    h.series("req", "counter", "req_total", 'job="reset",code="200"', reset_counter)
    h.counter("req", 'job="reset",code="500"', lambda t: 0.0)
    slow_from = END - 20 * 60
    for exchange, slow in (("NYSE", False), ("LSE", True)):
        def fast(t, s=slow):
            return (0.0 if (s and t >= slow_from) else 20.0)
        labels = f'job="push",exchange="{exchange}"'
        h.counter("push_seconds", labels + ',le="0.05"', fast, sample="push_seconds_bucket")
        h.counter("push_seconds", labels + ',le="+Inf"', lambda t: 20.0, sample="push_seconds_bucket")
        h.counter("push_seconds", labels, lambda t: 20.0, sample="push_seconds_count")
        h.counter("push_seconds", labels, lambda t: 1.0, sample="push_seconds_sum")
    h.series("lag", "gauge", "lag_seconds", 'job="pipe",partition="0"',
             lambda t: 0.5 if t >= END - 30 * 60 else 0.01)
    # A pipeline two minutes old whose lag was over the bound for one sample.
    h.series("lag", "gauge", "lag_seconds", 'job="young",partition="0"',
             lambda t: None if t < END - 120 else (0.5 if t == END - 60 else 0.01))
    return h


@dataclass
class Live:
    ok: Counter
    errors_on: threading.Event
    stop: threading.Event


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Live]]:
    work = tmp_path_factory.mktemp("prom")
    registry = CollectorRegistry()
    requests = Counter("live_requests", "requests", ["code"], registry=registry)
    requests.labels("200")
    requests.labels("500")
    exporter_port = free_port()
    server, _thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    live = Live(requests, threading.Event(), threading.Event())

    def traffic() -> None:
        deadline = time.monotonic() + 600  # bounded: never outlives the module
        while not live.stop.is_set() and time.monotonic() < deadline:
            requests.labels("500" if live.errors_on.is_set() else "200").inc(20)
            time.sleep(0.1)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    prom = PrometheusServer(work, [f"127.0.0.1:{exporter_port}"], _history())
    specs = work / "specs"
    specs.mkdir()
    for name, sli in SPECS.items():
        body = "\n".join("  " + line for line in sli.strip().splitlines())
        (specs / f"{name}.yaml").write_text(
            f"apiVersion: openbell/v1\nkind: SLO\nmetadata:\n  name: {name}\nspec:\n  service: {name}\n"
            f"  objective: 99.9\n{body}\n")
    prom.start()
    try:
        yield prom.url, specs, live
    finally:
        live.stop.set()
        worker.join(timeout=5)
        server.shutdown()
        prom.stop()


def openbell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=60)


def gate(url: str, specs: Path, name: str, *extra: str, at: int | None = END) -> tuple[int, dict]:
    args = ["slo", "gate", str(specs / f"{name}.yaml"), "--prometheus", url, "--output", "json", *extra]
    if at is not None:
        args += ["--at", str(at)]
    proc = openbell(*args)
    assert proc.stderr == "" or proc.returncode == 3, proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}


def test_healthy_service_passes_the_gate(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "healthy")
    assert (code, out["outcome"]) == (0, "pass")
    page_1h = out["figures"]["slos"][0]["windows"][0]
    assert page_1h["long_burn_rate"] == 0.0
    assert page_1h["events"] == pytest.approx(36000, rel=0.02)


def test_outage_fails_the_page_gate_with_its_figures(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "burning")
    assert (code, out["outcome"]) == (1, "fail")
    windows = out["figures"]["slos"][0]["windows"]
    page_1h = windows[0]
    # 20 of the last 60 minutes were a total outage: error ratio 1/3, burn 333x against 0.1%.
    assert page_1h["long_error_ratio"] == pytest.approx(1 / 3, rel=0.03)
    assert page_1h["long_burn_rate"] == pytest.approx(333.3, rel=0.03)
    assert page_1h["short_error_ratio"] == pytest.approx(1.0, rel=0.01)
    assert "burning" in out["reasons"][0] and "exceed 14.4x" in out["reasons"][0]


def test_no_traffic_is_inconclusive_and_fails_closed(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "idle")
    assert (code, out["outcome"]) == (1, "inconclusive")
    assert "no events (0/0)" in " ".join(out["reasons"])
    code, _ = gate(url, specs, "idle", "--on-inconclusive", "pass")
    assert code == 0


def test_absent_metrics_are_inconclusive(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "missing")
    assert (code, out["outcome"]) == (1, "inconclusive")
    assert "no data" in " ".join(out["reasons"])


def test_low_traffic_guard_passes_a_trickle_of_errors_and_says_why(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "trickle")
    assert (code, out["outcome"]) == (0, "pass")
    assert "too little traffic" in out["figures"]["slos"][0]["windows"][0]["reason"]


def test_counter_reset_does_not_look_like_an_outage(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "reset")
    assert (code, out["outcome"]) == (0, "pass")
    assert out["figures"]["slos"][0]["windows"][0]["long_burn_rate"] == 0.0


def test_grouped_latency_slo_names_the_slow_exchange(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "push")
    assert (code, out["outcome"]) == (1, "fail")
    by_group = {s["group"]["exchange"]: s["outcome"] for s in out["figures"]["slos"]}
    assert by_group == {"NYSE": "pass", "LSE": "fail"}
    assert any("exchange=LSE" in r for r in out["reasons"])


def test_threshold_slo_fails_while_lag_stays_over_its_bound(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "lag")
    assert (code, out["outcome"]) == (1, "fail")
    page_1h = out["figures"]["slos"][0]["windows"][0]
    assert page_1h["long_error_ratio"] == pytest.approx(0.5, abs=0.02)  # 30 of 60 minutes over the bound


def test_one_bad_sample_on_a_young_history_does_not_fail_the_gate(platform):
    url, specs, _ = platform
    code, out = gate(url, specs, "younglag")
    assert (code, out["outcome"]) == (0, "pass"), out
    page_1h = out["figures"]["slos"][0]["windows"][0]
    assert page_1h["long_burn_rate"] > page_1h["burn_rate_threshold"]  # burning, on too little evidence
    assert page_1h["samples"] < page_1h["min_samples"] == 70
    assert "too young a history" in page_1h["reason"]


def test_status_reports_sli_budget_and_which_alerts_would_fire(platform):
    url, specs, _ = platform
    proc = openbell("slo", "status", str(specs / "burning.yaml"), str(specs / "healthy.yaml"), "--prometheus", url,
                    "--at", str(END), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    out = {s["slo"]: s for s in json.loads(proc.stdout)["slos"]}
    burning, healthy = out["burning"], out["healthy"]
    assert burning["sli_now"] == pytest.approx(0.0, abs=0.01)
    # 20 minutes of total outage over 7 hours of history: error ratio 20/420 against a 0.1% budget.
    assert burning["budget_remaining"] == pytest.approx(1 - (20 / 420) / 0.001, rel=0.05)
    assert [w["severity"] for w in burning["windows"]] == ["page", "page", "ticket", "ticket"]
    assert healthy["budget_remaining"] == pytest.approx(1.0)
    text = openbell("slo", "status", str(specs / "burning.yaml"), "--prometheus", url, "--at", str(END))
    assert "BurningErrorBudgetBurn (page)" in text.stdout


def test_gate_writes_junit_for_ci(platform, tmp_path):
    url, specs, _ = platform
    junit = tmp_path / "gate.xml"
    code, _ = gate(url, specs, "burning", "--junit", str(junit))
    assert code == 1
    xml = junit.read_text()
    assert 'failures="1"' in xml and "burning/burning" in xml and "exceed 14.4x" in xml


def test_live_scrapes_pass_then_fail_when_errors_start(platform):
    url, specs, live = platform
    deadline = time.monotonic() + 30
    code, out = 1, {}
    while time.monotonic() < deadline:  # wait until a few scrapes of healthy traffic are in
        code, out = gate(url, specs, "live", at=None)
        if code == 0:
            break
        time.sleep(1)
    assert (code, out.get("outcome")) == (0, "pass"), out
    live.errors_on.set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, out = gate(url, specs, "live", at=None)
            if code == 1:
                break
            time.sleep(1)
        assert (code, out["outcome"]) == (1, "fail"), out
    finally:
        live.errors_on.clear()


def test_unreachable_prometheus_exits_3_with_one_line():
    port = free_port()
    proc = openbell("slo", "gate", "slo/", "--prometheus", f"http://127.0.0.1:{port}")
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "cannot be reached" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_query_that_times_out_is_inconclusive(platform):
    url, specs, _ = platform
    slos = load_slos([specs / "burning.yaml"])
    with PrometheusClient(url, query_timeout_s=1e-9) as client:
        verdict, _ = evaluate(client, slos, at=END)
    assert verdict.outcome == "inconclusive"
    assert "timed out" in " ".join(verdict.reasons) or "timeout" in " ".join(verdict.reasons).lower()
