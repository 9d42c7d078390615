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
