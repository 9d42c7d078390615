"""k6 as a subprocess: its durations, its error lines, the gate it polls (load/runner.py)."""

from __future__ import annotations

from pathlib import Path

from openbell.load.runner import _go_duration_s, k6_error_line
from openbell.slo.verdict import Verdict


def test_k6_durations_and_error_lines_are_read() -> None:
    assert _go_duration_s("1h2m3.5s") == 3723.5
    assert _go_duration_s("") is None


def test_k6_error_line_is_its_own_message_on_one_line(tmp_path: Path) -> None:
    log = tmp_path / "k6.log"
    log.write_text('time="2026-11-22T07:00:00Z" level=info msg="starting"\n'
                   'time="2026-11-22T07:00:00Z" level=error msg="SyntaxError: file:///x.js: Unexpected token (3:5)'
                   '\\n  at file:///x.js:3:5(0)" hint="script exception"\n')
    assert k6_error_line(log) == "SyntaxError: file:///x.js: Unexpected token (3:5) at file:///x.js:3:5(0)"


def test_a_gate_whose_prometheus_is_gone_answers_inconclusive_instead_of_raising() -> None:
    from openbell.errors import UnreachableError
    from openbell.load.runner import safe_gate

    def gone() -> Verdict:
        raise UnreachableError("prometheus: connection refused")

    verdict = safe_gate(gone)()
    assert verdict.outcome == "inconclusive" and "connection refused" in verdict.reasons[0]


def test_a_k6_that_runs_past_its_deadline_is_stopped_and_the_run_fails(tmp_path: Path) -> None:
    # Real k6 (the pinned binary), a script that would run 30 s, a 2 s deadline: the runner stops it.
    from openbell.load.catalogue import Profile
    from openbell.load.runner import RunOptions, deadline_s, run
    from openbell.load.verdict import load_verdict
    from openbell.targets.platform import Entry

    script = tmp_path / "slow.js"
    script.write_text("import { sleep } from 'k6';\n"
                      "export const options = { vus: 1, duration: '30s' };\n"
                      "export default function () { sleep(1); }\n")
    options = RunOptions(None, None, {}, tmp_path / "summary.json", tmp_path / "k6.log", deadline_s=2.0)
    target = Entry("url", "http://127.0.0.1:9", "ws://127.0.0.1:9/ws")
    result = run(Profile("slow", "", script), target, options)
    assert result.overran_s == 2.0 and result.elapsed_s < 20 and not result.error
    verdict = load_verdict(result, None)
    assert verdict.outcome == "fail" and "still running 2 s after its start" in verdict.reasons[-1]
    assert deadline_s(75.0) == 75.0 + 180.0 + 30.0 and deadline_s(None) is None
