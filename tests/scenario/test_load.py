"""`openbell load` with the real k6 against the shared sandbox: every profile at small scale, thresholds
from the SLOs, an impossible objective failing, a broken script, Ctrl-C with a partial summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scenario.platform_client import Sandbox, impossible_slo

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
PROFILES = ["nyse-open", "london-open", "fomc-spike", "soak"]
# Small enough for two cores shared with the whole platform: a few dozen traders, about half a minute.
SMALL = {"nyse-open": ("0.0004", "0.01"), "london-open": ("0.001", "0.012"), "fomc-spike": ("0.0004", "0.02"),
         "soak": ("0.0004", "0.002")}
# Each profile's own run checks that its shape runs through k6 and its summary becomes figures: half as long
# is enough for that (every stage still runs); the gate tests keep SMALL's length, the gate needs the events.
SHORT = {name: (scale, f"{float(time_scale) / 2:g}") for name, (scale, time_scale) in SMALL.items()}


def load(sandbox: Sandbox, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", "load", *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=ROOT, env={**os.environ, "OPENBELL_HOME": str(sandbox.home)})


def test_list_shows_every_profile(sandbox: Sandbox) -> None:
    done = load(sandbox, "list", "--output", "json")
    assert done.returncode == 0, done.stderr
    listed = {p["name"]: p["description"] for p in json.loads(done.stdout)}
    assert set(PROFILES) <= set(listed) and all(listed[p] for p in PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_runs_on_the_sandbox_with_real_k6_and_its_summary_becomes_figures(
        sandbox: Sandbox, profile: str, tmp_path: Path) -> None:
    scale, time_scale = SHORT[profile]
    # Judged on the k6 thresholds alone: the earlier tests' faults (Kafka and PostgreSQL restarts) still
    # burn the 5-minute windows, and the gate would (rightly) stop the run at its first check.
    done = load(sandbox, "run", profile, "--scale", scale, "--time-scale", time_scale, "--output", "json",
                "--no-gate", "--summary", str(tmp_path / "summary.json"), "--junit", str(tmp_path / "junit.xml"))
    assert done.returncode in (0, 1), done.stderr[-2000:]
    verdict = json.loads(done.stdout)["verdict"]
    figures = verdict["figures"]
    assert figures["ws_messages"] > 0 and figures["ws_sessions"] > 0 and figures["http_requests"] > 0
    assert figures["ws_seq_gaps"] == 0
    assert {t["metric"] for t in figures["thresholds"]} >= {"ws_push_latency_ms", "http_req_failed{kind:page}"}
    if done.returncode == 1:  # on a busy 2-core machine an SLO may be missed; then it must say which
        assert verdict["outcome"] == "fail" and verdict["reasons"], verdict
    assert (tmp_path / "summary.json").exists() and "<testsuite" in (tmp_path / "junit.xml").read_text()


def test_sampled_traders_count_every_record_and_say_how_much_they_checked(sandbox: Sandbox, tmp_path: Path) -> None:
    # One probe trader checks every record; the others count from each frame's header and parse 1 frame in 4.
    scale, time_scale = SHORT["nyse-open"]
    done = subprocess.run([sys.executable, "-m", "openbell", "load", "run", "nyse-open", "--scale", scale,
                           "--time-scale", time_scale, "--output", "json", "--no-gate"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT,
                          env={**os.environ, "OPENBELL_HOME": str(sandbox.home), "PROBE_TRADERS": "1",
                               "SAMPLE_FRAMES": "4"})
    assert done.returncode in (0, 1), done.stderr[-2000:]
    figures = json.loads(done.stdout)["verdict"]["figures"]
    assert figures["ws_seq_gaps"] == 0 and figures["ws_frame_gaps"] == 0
    # Every record counted, a fraction of them parsed: strictly between none and all, and stated.
    assert 0 < figures["seq_checked_share"] < 0.5, figures
    assert 0.1 < figures["push_latency_sampled_share"] < 0.7, figures
    assert figures["push_latency_samples"] >= 1000  # enough for the p99 the SLO threshold reads


def test_an_impossible_objective_fails_the_run_with_exit_1(sandbox: Sandbox, tmp_path: Path) -> None:
    spec = impossible_slo(tmp_path / "impossible.yaml", objective=99.9)
    scale, time_scale = SMALL["fomc-spike"]
    done = load(sandbox, "run", "fomc-spike", "--scale", scale, "--time-scale", time_scale, "--slo", str(spec),
                "--no-gate", "--output", "json")
    assert done.returncode == 1, done.stderr[-2000:]
    verdict = json.loads(done.stdout)["verdict"]
    assert verdict["outcome"] == "fail"
    assert any("ws_push_latency_ms p(99.9)<1 failed" in r for r in verdict["reasons"]), verdict["reasons"]


def test_a_burning_slo_gate_stops_the_run_early(sandbox: Sandbox, tmp_path: Path) -> None:
    spec = tmp_path / "always-burning.yaml"
    runbook = ROOT / "runbooks" / "gateway-availability.md"
    # Every delivered message counts as bad: the error ratio is 100%, every window burns.
    spec.write_text(f"""apiVersion: openbell/v1
kind: SLO
metadata: {{name: every-message-is-bad}}
spec:
  service: gateway
  objective: 99
  runbook: {runbook}
  sli:
    ratio:
      bad: sum(rate(gateway_messages_sent_total{{job="gateway"}}[{{{{.window}}}}]))
      total: sum(rate(gateway_messages_sent_total{{job="gateway"}}[{{{{.window}}}}]))
  alerting: {{minEvents: 0}}
""")
    done = load(sandbox, "run", "soak", "--scale", "0.0004", "--time-scale", "0.005", "--slo", str(spec),
                "--gate-interval", "4s", "--output", "json", timeout_s=150)
    assert done.returncode == 1, done.stderr[-2000:]
    verdict = json.loads(done.stdout)["verdict"]
    assert any(r.startswith("stopped early: the SLO gate failed") for r in verdict["reasons"]), verdict["reasons"]
    assert verdict["figures"]["elapsed_s"] < 40  # the profile itself runs 77 s


def test_a_broken_script_exits_2_with_k6s_own_error(sandbox: Sandbox, tmp_path: Path) -> None:
    script = tmp_path / "broken.js"
    script.write_text("import http from 'k6/http';\nexport default function () {\n  http.get(;\n}\n")
    done = load(sandbox, "run", str(script), "--no-gate", timeout_s=120)
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "broken.js" in line and "Unexpected token" in line, done.stderr


def test_an_unreachable_target_exits_3(sandbox: Sandbox) -> None:
    done = load(sandbox, "run", "soak", "--target", "http://127.0.0.1:9", "--no-gate", timeout_s=60)
    assert done.returncode == 3 and "does not answer" in done.stderr


def test_ctrl_c_stops_k6_and_still_writes_a_partial_summary(sandbox: Sandbox, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen([sys.executable, "-m", "openbell", "load", "run", "soak", "--scale", "0.0004",
                             "--time-scale", "0.02", "--no-gate", "--summary", str(summary), "--output", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OPENBELL_HOME": str(sandbox.home)})
    time.sleep(12)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err[-2000:]
    verdict = json.loads(out)["verdict"]
    assert verdict["outcome"] == "inconclusive" and verdict["reasons"][0].startswith("interrupted")
    assert json.loads(summary.read_text())["metrics"]["ws_messages"]["count"] > 0
    assert verdict["figures"]["elapsed_s"] < 60
