"""Canary rollouts on the shared sandbox, with real traffic: a fleet of WebSocket traders that follow drain
hints and poll REST quotes while the real CLI rolls the gateway out, rolls it back, is interrupted or killed."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.scenario.fleet import Fleet
from tests.scenario.platform_client import OPENBELL, Sandbox, impossible_slo, openbell, wait_until_burning

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
SLO = str(ROOT / "slo")


@pytest.fixture(scope="module", autouse=True)
def stable_restored(sandbox: Sandbox) -> Iterator[None]:
    """Promotions change the shared sandbox's stable version: the other modules get it back as it was."""
    before = stable_version(sandbox)
    yield
    from openbell.sandbox.layout import Layout
    from openbell.sandbox.supervisor import replace_stable

    if stable_version(sandbox) != before:
        replace_stable(Layout(sandbox.home), before)


@pytest.fixture
def fleet(sandbox: Sandbox) -> Iterator[Fleet]:
    traders = Fleet(sandbox.endpoints["websocket_url"], sandbox.endpoints["market_url"], sandbox.symbols(30),
                    traders=16, rest_interval_s=0.25).start()
    try:
        yield traders
    finally:
        traders.stop()


def canary(sandbox: Sandbox, *args: str, env: dict[str, str] | None = None,
           timeout_s: float = 240) -> tuple[int, dict[str, Any], str]:
    done = openbell("canary", *args, "--output", "json", home=sandbox.home, env=env, timeout_s=timeout_s)
    data = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, data, done.stderr


def status(sandbox: Sandbox) -> tuple[int, dict[str, Any]]:
    code, data, _ = canary(sandbox, "status", "gateway", timeout_s=60)
    return code, data


def stable_version(sandbox: Sandbox) -> str:
    rows = sandbox.status()["components"]
    versions = {r["version"] for r in rows if r["name"].startswith("gateway-") and "canary" not in r["name"]}
    assert len(versions) == 1, rows
    return versions.pop()


def assert_all_on(fleet: Fleet, version: str, within_s: float = 10.0) -> None:
    """Every trader is connected, to `version` (drained clients reconnect after their hint)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        current = fleet.current()
        if len(current) == fleet.traders and all(v == version for v in current.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"not every trader on {version}: {fleet.current()}")


def assert_safe(sandbox: Sandbox, fleet: Fleet, version: str) -> None:
    code, data = status(sandbox)
    assert code == 0, data
    assert data["live"]["weight"] == 0 and not data["live"]["canary_running"], data["live"]
    assert not [r for r in sandbox.status()["components"] if "canary" in r["name"]]
    assert_all_on(fleet, version)


class _Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        _Collector.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def otlp_collector() -> Iterator[tuple[str, list[bytes]]]:
    """A real OTLP/HTTP endpoint on 127.0.0.1 that keeps every ExportTraceServiceRequest it receives."""
    _Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.bodies
    finally:
        server.shutdown()


def span_names(bodies: list[bytes]) -> list[str]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    names = []
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        names += [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    return names


def test_a_fleet_already_burning_refuses_the_rollout_as_unhealthy_and_changes_nothing(
        sandbox: Sandbox, fleet: Fleet, tmp_path: Path) -> None:
    slo = impossible_slo(tmp_path / "slo" / "push-in-a-millisecond.yaml")
    wait_until_burning(sandbox, slo)  # the traders' pushes, enough of them to page on
    junit = tmp_path / "canary.xml"
    code, data, stderr = canary(sandbox, "run", "gateway", "--version", "never-started", "--slo", str(slo.parent),
                                "--junit", str(junit), timeout_s=120)
    assert code == 1, stderr[-2000:]
    assert data["outcome"] == "unhealthy" and data["burning"][0]["slo"] == "gateway/push-in-a-millisecond"
    assert data["reason"].startswith("unhealthy before the rollout, nothing started: gateway/push-in-a-millisecond:")
    assert "gateway-push-latency.md" in data["reason"]
    failed = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert failed == ["fleet healthy before the rollout"]
    code, state = status(sandbox)
    assert code == 0 and state.get("version") != "never-started", state  # no rollout was recorded for it
    assert_safe(sandbox, fleet, stable_version(sandbox))


def test_a_healthy_version_is_promoted_and_every_client_ends_on_it(
        sandbox: Sandbox, fleet: Fleet, tmp_path: Path, otlp_collector: tuple[str, list[bytes]]) -> None:
    before = stable_version(sandbox)
    assert_all_on(fleet, before)
    endpoint, bodies = otlp_collector
    junit = tmp_path / "canary.xml"
    code, result, err = canary(sandbox, "run", "gateway", "--version", "v2", "--steps", "10,50,100", "--hold", "10s",
                               "--slo", SLO, "--junit", str(junit), env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert code == 0, err[-3000:]
    assert result["outcome"] == "promoted" and result["stable_version_before"] == before
    kinds = [e["kind"] for e in result["timeline"]]
    assert kinds.count("step") == 3 and kinds.count("gate") == 3 and kinds[-1] == "promoted"
    churns = [e for e in result["timeline"] if e["kind"] == "churn" and e["figures"]]
    assert churns and all(e["figures"]["share_after"] >= e["figures"]["share_before"] for e in churns)
    assert "verified" in result["timeline"][-1]["message"]
    # The canary's real share of the work, from the gateways' own message counters, follows the weight.
    gates = [e["figures"] for e in result["timeline"] if e["kind"] == "gate"]
    assert 0 < gates[0]["canary_message_share"] < 0.5 and gates[-1]["canary_message_share"] > 0.5, gates
    assert_all_on(fleet, "v2")
    assert stable_version(sandbox) == "v2"
    stats = fleet.snapshot()
    assert stats["unexpected_drops"] == 0 and stats["handshake_failures"] == 0, stats
    assert set(stats["closes"]) <= {"1012"}, stats  # every move was a graceful drain with a reconnect hint
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    names = span_names(bodies)
    assert "canary gateway v2" in names and names.count("canary.step") == 3 and "canary.promoted" in names
    assert status(sandbox)[0] == 0


def test_a_version_80ms_slower_is_rolled_back_by_the_judge_before_the_slo_burns(sandbox: Sandbox,
                                                                                 fleet: Fleet) -> None:
    stable = stable_version(sandbox)
    code, result, err = canary(sandbox, "run", "gateway", "--version", "v3-slow", "--hold", "60s", "--slo", SLO,
                               "--sandbox-fault", "latency_ms=80", "--judge", "fixed")
    assert code == 1, err[-3000:]
    assert result["reason"].startswith("judge failed at step 1 (10%)"), result["reason"]
    assert "gateway-push-latency" in result["reason"]
    # The fleet's SLO gate had not fired: the judge caught the canary before the budget burned.
    assert result["last_gates"]["slo"]["outcome"] == "pass", result["last_gates"]["slo"]
    assert_safe(sandbox, fleet, stable)


def test_the_sequential_judge_rolls_back_a_version_10ms_slower_within_seconds_on_its_evidence(
        sandbox: Sandbox, fleet: Fleet) -> None:
    stable = stable_version(sandbox)
    code, result, err = canary(sandbox, "run", "gateway", "--version", "v3-10ms", "--hold", "60s", "--slo", SLO,
                               "--sandbox-fault", "latency_ms=10", "--judge", "sequential")
    assert code == 1, err[-3000:]
    assert result["reason"].startswith("judge failed at step 1 (10%)"), result["reason"]
    step = next(e for e in result["timeline"] if e["kind"] == "step")
    rollback = next(e for e in result["timeline"] if e["kind"] == "rollback")
    assert rollback["at"] - step["at"] < 20, result["timeline"]  # the evidence, not the 60 s hold, decided
    judge = result["last_gates"]["judge"]["figures"]
    assert judge["judge"] == "sequential" and judge["alpha"] == 0.01
    regressed = [c for c in judge["comparisons"] if c["decision"] == "regressed"]
    assert regressed and all(c["worse_by"][0] > c["margin"] for c in regressed), judge["comparisons"]
    assert any(c["name"].startswith(("push_latency >", "rest_latency >")) for c in regressed)
    # The evidence is in the timeline: each question's counts and how much worse the canary can be.
    assert any(q["decision"] == "regressed" for q in rollback["figures"]["evidence"]), rollback["figures"]
    assert_safe(sandbox, fleet, stable)


def test_the_sequential_judge_promotes_a_healthy_version_before_the_holds_end(sandbox: Sandbox,
                                                                               fleet: Fleet) -> None:
    code, result, err = canary(sandbox, "run", "gateway", "--version", "v2-seq", "--steps", "10,50,100", "--hold",
                               "60s", "--min-hold", "3s", "--probe-rate", "10", "--slo", SLO)
    assert code == 0, err[-3000:]
    assert result["outcome"] == "promoted"
    steps = [e for e in result["timeline"] if e["kind"] == "step"]
    gates = [e for e in result["timeline"] if e["kind"] == "gate"]
    assert len(gates) == 3 and all("shown non-inferior" in g["message"] for g in gates[:2]), gates
    held = [g["at"] - s["at"] for s, g in zip(steps, gates, strict=True)]
    assert all(3 <= h < 60 for h in held) and sum(held) < 90, held  # each step ended on evidence, not the hold
    assert_all_on(fleet, "v2-seq")


def start_run(sandbox: Sandbox, version: str, *extra: str) -> subprocess.Popen[str]:
    argv = [*OPENBELL, "canary", "run", "gateway", "--version", version, "--slo", SLO, "--home", str(sandbox.home),
            *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(sandbox: Sandbox, process: subprocess.Popen[str], timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        _, data = status(sandbox)
        if data.get("outcome") == "progressing" and any(e["kind"] == "churn" for e in data["timeline"]):
            return data
        time.sleep(0.5)
    process.kill()
    raise AssertionError("the rollout never reached its first step")


def test_ctrl_c_mid_hold_rolls_back_and_a_second_run_is_refused(sandbox: Sandbox, fleet: Fleet) -> None:
    stable = stable_version(sandbox)
    run = start_run(sandbox, "v4-interrupted", "--hold", "120s")
    try:
        wait_for_step(sandbox, run)
        second, _, err = canary(sandbox, "run", "gateway", "--version", "v5", "--slo", SLO)
        assert second == 2 and "already running" in err, err
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 1, err[-3000:]
    _, data = status(sandbox)
    assert data["outcome"] == "rolled_back" and "interrupted" in data["reason"]
    assert_safe(sandbox, fleet, stable)


def test_kill_9_mid_step_then_resume_or_abort_both_end_safe(sandbox: Sandbox, fleet: Fleet) -> None:
    stable = stable_version(sandbox)
    # 1. Killed, then resumed: the hold starts again at the step it stopped at, and the rollout completes.
    run = start_run(sandbox, "v6", "--steps", "25,100", "--hold", "8s")
    wait_for_step(sandbox, run)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(10)
    code, data = status(sandbox)
    assert code == 1 and data["stopped_midway"] and data["running"] is None, data
    assert data["live"]["weight"] == 25 and data["live"]["canary_running"]
    code, result, err = canary(sandbox, "resume", "gateway", "--slo", SLO)
    assert code == 0, err[-3000:]
    assert result["outcome"] == "promoted" and any(e["kind"] == "resume" for e in result["timeline"])
    assert_safe(sandbox, fleet, "v6")
    assert stable_version(sandbox) == "v6" != stable
    # 2. Killed, then aborted: the canary left behind is drained and stopped, all traffic on stable.
    run = start_run(sandbox, "v7", "--hold", "120s")
    wait_for_step(sandbox, run)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(10)
    code, result, err = canary(sandbox, "abort", "gateway")
    assert code == 1 and result["outcome"] == "rolled_back", err[-3000:]
    assert "verified" in result["timeline"][-1]["message"]
    assert_safe(sandbox, fleet, "v6")
    code, result, err = canary(sandbox, "resume", "gateway", "--slo", SLO)
    assert code == 1 and result["outcome"] == "rolled_back"  # nothing left to resume


@pytest.mark.parametrize("args,expected", [
    (["run", "ledger", "--version", "v9"], "unknown service 'ledger'"),
    (["run", "gateway", "--version", "v9", "--steps", "50,25"], "strictly increasing"),
    (["run", "gateway", "--version", "v9", "--steps", "0,50"], "within 1..100"),
    (["run", "gateway", "--version", "v9", "--steps", "10,101"], "within 1..100"),
    (["run", "gateway", "--version", "v9", "--slo", "/nonexistent/slo.yaml"], "/nonexistent/slo.yaml"),
    (["run", "gateway", "--version", "v9", "--hold", "soon"], "--hold"),
    (["run", "gateway", "--version", "v9", "--sandbox-fault", "error_rate=7"], "error_rate must be within 0..1"),
    (["run", "gateway", "--version", "v9", "--judge", "bayes"], "expected one of fixed, sequential"),
    (["run", "gateway", "--version", "v9", "--alpha", "0.9"], "--alpha"),
    (["run", "gateway", "--version", "v9", "--tolerance", "cpu=0.1"], "--tolerance"),
    (["run", "gateway", "--version", "v9", "--hold", "10s", "--min-hold", "20s"], "--min-hold"),
])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(sandbox: Sandbox, args: list[str],
                                                            expected: str) -> None:
    before = status(sandbox)[1]
    done = openbell("canary", *args, home=sandbox.home, timeout_s=60)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert status(sandbox)[1].get("timeline") == before.get("timeline")


# Last in the module: its errors burn api-errors (99.99%, a budget of one error in ten thousand requests), which
# the 30-minute window remembers: a later canary would rightly find the fleet burning and refuse to start.
def test_a_version_with_5_percent_errors_is_rolled_back_at_the_first_step_with_the_probe_as_evidence(
        sandbox: Sandbox, fleet: Fleet) -> None:
    stable = stable_version(sandbox)
    code, result, err = canary(sandbox, "run", "gateway", "--version", "v3-errors", "--hold", "60s", "--slo", SLO,
                               "--sandbox-fault", "error_rate=0.05", "--probe-rate", "10", "--judge", "fixed")
    assert code == 1, err[-3000:]
    assert result["outcome"] == "rolled_back" and result["weight"] == 0
    rollback = next(e for e in result["timeline"] if e["kind"] == "rollback")
    assert rollback["weight"] == 10 and "step 1 (10%)" in result["reason"]
    step = next(e for e in result["timeline"] if e["kind"] == "step")
    assert rollback["at"] - step["at"] < 45, result["timeline"]  # caught within the first hold, not at its end
    assert "api/api-errors: canary burns its budget" in result["reason"], result["reason"]
    # The synthetic probe sent its requests to both sides and met the canary's errors.
    probe = next(e for e in result["timeline"] if e["kind"] == "probe")
    (canary_requests, canary_failed, stable_requests), = (
        tuple(int(x) for x in m) for m in re.findall(r"canary (\d+) requests \((\d+) failed\), stable (\d+)",
                                                     probe["message"]))
    assert canary_requests >= 5 and stable_requests >= canary_requests - 1, probe["message"]
    assert canary_failed <= canary_requests, probe["message"]
    assert_safe(sandbox, fleet, stable)
