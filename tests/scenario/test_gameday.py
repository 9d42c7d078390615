"""`openbell gameday` on the shared sandbox with the real tools: the default plan passes at small scale, a
faulty canary ends the gameday with exit 1 and a rollback, Ctrl-C leaves the platform healthy, and the
report reads right in a real (headless) Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import chromium
from tests.scenario.conftest import CALIBRATION
from tests.scenario.fleet import Fleet
from tests.scenario.platform_client import Sandbox, impossible_slo, openbell, wait_until_burning

# A gameday takes minutes (the default plan's load alone is 3), and the first one waits for the calibration.
pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "gamedays" / "opening-bell.yaml"


@pytest.fixture(scope="module", autouse=True)
def stable_restored(sandbox: Sandbox) -> Iterator[None]:
    """The default plan promotes its canary: the other modules get the sandbox's stable version back."""
    from openbell.sandbox.layout import Layout
    from openbell.sandbox.state import load

    lay = Layout(sandbox.home)
    state = load(lay.state_file)
    before = state.stable_version if state else "stable"
    yield
    from openbell.sandbox.supervisor import replace_stable

    after = load(lay.state_file)
    if after is not None and after.stable_version != before:
        replace_stable(lay, before)


def gameday(sandbox: Sandbox, plan: Path, report: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "openbell", "gameday", "--plan", str(plan), "--report", str(report),
            "--home", str(sandbox.home), "--output", "json", *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OPENBELL_HOME": str(sandbox.home)})


def finish(proc: subprocess.Popen[str], timeout_s: float) -> tuple[int, dict[str, Any], str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
        pytest.fail(f"gameday still running after {timeout_s:g}s:\n{err[-4000:]}")
    doc = json.loads(out) if out.strip().startswith("{") else {}
    return proc.returncode, doc, err


def phases(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["phases"]}


def canary_settled(sandbox: Sandbox) -> None:
    """No canary left behind: no unfinished rollout, no canary process, HAProxy's weight back at 0."""
    done = openbell("canary", "status", "gateway", "--output", "json", home=sandbox.home, timeout_s=60)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = sandbox.status()["components"]
    assert not [r for r in rows if "canary" in r["name"] and r.get("running")], rows
    assert all(r["running"] and r["healthy"] for r in rows if "canary" not in r["name"]), rows


def no_k6_left(report: Path) -> None:
    """No k6 of this gameday still running (its argv names the report folder's summary file)."""
    found = subprocess.run(["pgrep", "-f", f"k6 run.*{report}"], capture_output=True, text=True)
    assert found.stdout.strip() == "", f"k6 still running: {found.stdout}"


def looks_right(report: Path, outcome: str, tmp_path: Path, charts_with_data: tuple[str, ...]) -> str:
    """Render the report in headless Chromium; the verdict shown and the plots drawn match the run."""
    dom = chromium.render(report / "index.html", tmp_path / "report.png")
    verdict = re.search(r'id="verdict"[^>]*data-outcome="([a-z]+)"', dom) or re.search(
        r'data-outcome="([a-z]+)"[^>]*id="verdict"', dom)
    assert verdict is not None and verdict.group(1) == outcome
    points = dict(re.findall(r'data-chart="([^"]+)"[^>]*data-points="(\d+)"', dom))
    for chart in charts_with_data:
        assert int(points.get(chart, "0")) > 0, (chart, points)
    assert (tmp_path / "report.png").stat().st_size > 20_000
    return dom


def test_calibrate_keeps_the_largest_scale_every_slo_held_at_and_reuses_it(sandbox: Sandbox,
                                                                            calibrated: dict[str, Any]) -> None:
    levels = calibrated["levels"]
    assert [lv["scale"] for lv in levels][:2] == [0.00025, 0.0005]
    held = [lv["scale"] for lv in levels if lv["holds"]]
    assert held and calibrated["capacity_scale"] == max(held), levels
    for lv in levels:
        assert lv["figures"]["k6"]["vus_max"] >= 19 and lv["measured_to"] > lv["measured_from"] + 5
        judged = {k: v for k, v in lv["figures"]["slos"].items() if v}
        assert {"gateway-push-latency", "kafka-consumer-lag"} <= set(judged), judged
        within = all(v["error_ratio"] <= v["error_budget"] for v in judged.values())
        kept_up = lv["figures"]["client_delay_p99_ms"] is not None and lv["figures"]["client_delay_p99_ms"] <= 50
        assert lv["holds"] == (within and kept_up), lv
    assert calibrated["default_scale"] == float(f"{calibrated['capacity_scale'] / 2:.2g}")
    assert Path(calibrated["file"]).is_file() and not calibrated["cached"]
    started = time.monotonic()
    again = openbell("sandbox", "calibrate", *CALIBRATION, "--output", "json", home=sandbox.home, timeout_s=120)
    assert again.returncode == 0, again.stderr[-2000:]
    kept = json.loads(again.stdout)
    assert kept["cached"] and kept["capacity_scale"] == calibrated["capacity_scale"]
    assert time.monotonic() - started < 60  # kept: no level was run again


def _faulty_plan(tmp_path: Path) -> Path:
    plan = yaml.safe_load(DEFAULT.read_text())
    plan["metadata"]["name"] = "slow-release"
    load, canary, replica, _, closing = plan["spec"]["phases"]
    load["load"]["time_scale"] = 0.03  # 108 s: the gameday ends well before that
    canary["start"] = {"at": "20s"}
    canary["canary"].update({"version": "slow-{run}", "sandbox_faults": {"latency_ms": 80}, "hold": "25s"})
    plan["spec"]["phases"] = [load, canary, replica, closing]
    closing["start"] = {"after": ["market-open", "gateway-replica-loss"]}
    path = tmp_path / "gamedays" / "slow-release.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def test_a_faulty_canary_rolls_back_and_the_gameday_fails_saying_why(sandbox: Sandbox, calibrated: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    before = json.loads((sandbox.home / "sandbox.json").read_text()).get("stable_version")
    report = tmp_path / "report"
    started = time.monotonic()
    code, doc, err = finish(gameday(sandbox, _faulty_plan(tmp_path), report), timeout_s=300)
    took = time.monotonic() - started
    assert code == 1, err[-4000:]
    ran = phases(doc)
    assert ran["canary-at-the-bell"]["outcome"] == "fail"
    assert ran["canary-at-the-bell"]["reason"].startswith("rolled back")
    assert ran["market-open"]["outcome"] == "stopped"  # the load stopped with the gameday, well before its end
    assert ran["gateway-replica-loss"]["outcome"] == "not_run"
    assert ran["closing-budget"]["outcome"] == "not_run"
    assert doc["verdict"]["outcome"] == "fail"
    assert "canary-at-the-bell failed: rolled back" in doc["verdict"]["reason"]
    assert "rolled back at step 1 (10%)" in doc["verdict"]["reason"]
    assert re.search("push.latency", doc["verdict"]["reason"])  # the gates' own words on why
    assert any(e["kind"] == "rolled_back" for e in doc["events"])
    assert doc["duration_s"] < 90, doc["duration_s"]  # stopped at the rollback, not at the load's end (108 s)
    assert took < doc["duration_s"] + 90, took
    assert json.loads((sandbox.home / "sandbox.json").read_text()).get("stable_version") == before
    suite = ET.parse(report / "junit.xml").getroot()
    failed = [c.get("name") for c in suite.findall(".//testcase") if c.find("failure") is not None]
    assert sorted(failed) == ["canary-at-the-bell (canary)", "market-open (load)"], failed
    dom = looks_right(report, "fail", tmp_path, ("traders", "canary-share", "push-latency"))
    assert "canary-at-the-bell failed: rolled back" in dom
    canary_settled(sandbox)
    no_k6_left(report)


def test_a_platform_burning_before_the_gameday_ends_it_at_once_saying_what_burns_since_when(
        sandbox: Sandbox, tmp_path: Path) -> None:
    slo = impossible_slo(tmp_path / "slo" / "push-in-a-millisecond.yaml")
    plan = yaml.safe_load(DEFAULT.read_text())
    plan["spec"]["slo"] = [str(slo.parent)]
    plan["spec"]["phases"] = [p for p in plan["spec"]["phases"] if "load" in p or "slo" in p]
    plan["spec"]["phases"][-1]["start"] = {"after": "market-open"}
    path = tmp_path / "gamedays" / "unhealthy.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    report = tmp_path / "report"
    # Traders, so that the gateways push (the objective burns on pushes).
    traders = Fleet(sandbox.endpoints["websocket_url"], sandbox.endpoints["market_url"], sandbox.symbols(30),
                    traders=4).start()
    try:
        wait_until_burning(sandbox, slo)
        started = time.monotonic()
        code, doc, err = finish(gameday(sandbox, path, report), timeout_s=120)
    finally:
        traders.stop()
    assert code == 1, err[-4000:]
    assert time.monotonic() - started < 60  # at once: no phase ran (the load would take minutes)
    assert doc["verdict"]["outcome"] == "unhealthy"
    reason = doc["verdict"]["reason"]
    assert reason.startswith("unhealthy before the gameday: gateway/push-in-a-millisecond: page"), reason
    assert "burning since" in reason or "burning for over" in reason
    assert reason.endswith("runbooks/gateway-push-latency.md"), reason
    assert {p["outcome"] for p in doc["phases"]} == {"not_run"}
    assert doc["gate"]["unhealthy_at_start"][0]["slo"] == "gateway/push-in-a-millisecond"
    suite = ET.parse(report / "junit.xml").getroot()
    failed = [c.get("name") for c in suite.findall(".//testcase") if c.find("failure") is not None]
    assert failed == ["platform healthy before the gameday"], failed
    looks_right(report, "unhealthy", tmp_path, ())
    no_k6_left(report)


def test_ctrl_c_in_the_middle_stops_everything_and_leaves_the_sandbox_healthy(
        sandbox: Sandbox, calibrated: dict[str, Any], tmp_path: Path) -> None:
    plan = yaml.safe_load(DEFAULT.read_text())
    load, canary, *_ = plan["spec"]["phases"]
    canary["start"] = {"at": "5s"}
    canary["canary"].update({"hold": "120s", "min_hold": "120s", "version": "interrupted-{run}"})
    plan["spec"]["phases"] = [load, canary]
    path = tmp_path / "gamedays" / "interrupted.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    report = tmp_path / "report"
    proc = gameday(sandbox, path, report)
    # Wait until the canary holds its first step with traffic on it, then Ctrl-C the gameday.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = openbell("canary", "status", "gateway", "--output", "json", home=sandbox.home, timeout_s=60)
        data = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if (data.get("rollout") or data).get("weight", 0) and proc.poll() is None:
            break
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail("the canary never reached its first step")
    proc.send_signal(signal.SIGINT)
    code, doc, err = finish(proc, timeout_s=120)
    assert code == 130, err[-3000:]
    assert doc["verdict"]["outcome"] == "interrupted"
    ran = phases(doc)
    assert ran["canary-at-the-bell"]["outcome"] == "interrupted"
    assert ran["market-open"]["outcome"] == "interrupted"
    canary_settled(sandbox)
    no_k6_left(report)
    assert (report / "index.html").exists()


# Last of the gamedays: its broker loss spends consumer-lag budget by design, and for minutes after it the
# platform rightly reads as burning, so a gameday started then would end at once as unhealthy.
def test_the_default_plan_passes_at_small_scale(sandbox: Sandbox, calibrated: dict[str, Any], tmp_path: Path) -> None:
    report = tmp_path / "report"
    code, doc, err = finish(gameday(sandbox, DEFAULT, report), timeout_s=600)
    assert code == 0, f"{doc.get('verdict')}\n{err[-4000:]}"
    assert doc["verdict"]["outcome"] == "pass"
    # The load ran at the plan's quarter of the machine's calibrated capacity, and the report says so.
    (load,) = doc["load"]
    assert load["cached"] and load["capacity_fraction"] == 0.25
    assert load["scale"] == float(f"{calibrated['capacity_scale'] * 0.25:.2g}") and load["headroom"] >= 0.74
    ran = phases(doc)
    assert [p["outcome"] for p in ran.values()] == ["pass"] * 5, ran
    canary = ran["canary-at-the-bell"]
    assert canary["figures"]["outcome"] == "promoted"
    kinds = {e["kind"] for e in doc["events"]}
    assert {"phase-start", "phase-end", "step", "promoted", "fault", "rollback"} <= kinds, kinds
    # The canary really served: its version took a share of the messages during the rollout.
    share = next(c for c in doc["charts"] if c["id"] == "canary-share")
    versions = {s["label"] for s in share["series"]}
    assert canary["figures"]["version"] in versions, versions
    # Every gated SLO has a row with what the gameday spent, and the JSON, JUnit and HTML agree.
    assert {s["name"] for s in doc["slos"]} >= {"gateway-push-latency", "kafka-consumer-lag", "api-errors"}
    assert json.loads((report / "gameday.json").read_text())["verdict"] == doc["verdict"]
    suite = ET.parse(report / "junit.xml").getroot()
    # A case per phase, the SLO gate, and the platform's health before the gameday.
    assert suite.get("failures") == "0" and len(suite.findall(".//testcase")) == 7
    dom = looks_right(report, "pass", tmp_path, ("traders", "throughput", "push-latency", "canary-share",
                                                 "consumer-lag", "burn-gateway-push-latency"))
    assert 'data-load="market-open"' in dom and "headroom left" in dom
    canary_settled(sandbox)
    no_k6_left(report)
