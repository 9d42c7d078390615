"""Reading a Chaos Toolkit journal (chaostoolkit 1.19 / chaostoolkit-lib 1.44) into openbell's answer.

The exit code of `chaos run` is not enough: it is 0 when the steady state already failed *before* the method
(chaoslib marks that run "completed", not deviated) and 1 for a deviation, an interruption or a failed probe
alike. The journal says which: its `status` (completed, failed, aborted, interrupted), `deviated`,
`steady_states.before/after` (`steady_state_met`, each probe's `tolerance_met`), `run` (the method's
activities) and `rollbacks`, each activity with `status`, `start`, `end`, `output` and `exception`; and the
SLO safeguard's record in `extensions` when it refused to start or stopped the method.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openbell.slo.verdict import Outcome, Verdict

EXIT_PASS, EXIT_FAIL, EXIT_INTERRUPTED = 0, 1, 130
SAFEGUARD = "openbell-slo-safeguard"


@dataclass(frozen=True)
class Step:
    """One activity on the run's timeline."""

    phase: str  # steady-state-before, method, steady-state-after, rollbacks
    kind: str  # probe or action
    name: str
    status: str  # succeeded, failed, or "not run" for a hypothesis probe skipped after an earlier one failed
    start: float | None  # unix seconds
    end: float | None
    tolerance_met: bool | None = None
    background: bool = False
    detail: str = ""

    @property
    def duration_s(self) -> float | None:
        return None if self.start is None or self.end is None else round(self.end - self.start, 3)

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "type": self.kind, "name": self.name, "status": self.status,
                "start": self.start, "end": self.end, "duration_s": self.duration_s,
                "tolerance_met": self.tolerance_met, "background": self.background, "detail": self.detail}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Step:
        """A step as `to_json` wrote it (another process's result); missing fields read as unknown."""
        def when(value: Any) -> float | None:
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        met = raw.get("tolerance_met")
        return cls(str(raw.get("phase") or ""), str(raw.get("type") or ""), str(raw.get("name") or ""),
                   str(raw.get("status") or ""), when(raw.get("start")), when(raw.get("end")),
                   met if isinstance(met, bool) else None, bool(raw.get("background")), str(raw.get("detail") or ""))


@dataclass(frozen=True)
class Reading:
    """What a journal says, in the terms openbell judges it by."""

    status: str
    deviated: bool
    before_met: bool | None  # None: no hypothesis ran before the method
    after_met: bool | None
    timeline: list[Step] = field(default_factory=list)
    safeguard: dict[str, Any] | None = None
    start: float | None = None
    end: float | None = None
    dry: str | None = None  # chaos --dry: which activities were only walked through

    @property
    def duration_s(self) -> float | None:
        return None if self.start is None or self.end is None else round(self.end - self.start, 3)


def read(journal: dict[str, Any]) -> Reading:
    """Pure: the journal dict as Chaos Toolkit writes it -> a Reading."""
    steps: list[Step] = []
    states = journal.get("steady_states") or {}
    before, after = states.get("before"), states.get("after")
    steps += _hypothesis_steps("steady-state-before", before)
    steps += [_step("method", run) for run in journal.get("run") or []]
    steps += _hypothesis_steps("steady-state-after", after)
    steps += [_step("rollbacks", run) for run in journal.get("rollbacks") or []]
    guard = next((e for e in journal.get("extensions") or [] if isinstance(e, dict) and e.get("name") == SAFEGUARD),
                 None)
    return Reading(
        status=str(journal.get("status") or "unknown"), deviated=bool(journal.get("deviated")),
        before_met=_met(before), after_met=_met(after), timeline=steps, safeguard=guard,
        start=_time(journal.get("start")), end=_time(journal.get("end")),
        dry=(journal.get("experiment") or {}).get("dry") or None,
    )


def judge(reading: Reading, interrupted_by_user: bool = False) -> tuple[Verdict, int]:
    """Pure: the run's Verdict and exit code. Pass only when the steady state held before and after, the
    method ran to its end, no safeguard stopped it and no rollback failed."""
    reasons: list[str] = []
    code = EXIT_FAIL
    guard = reading.safeguard or {}
    failed_rollbacks = [s for s in reading.timeline if s.phase == "rollbacks" and s.status != "succeeded"]
    failed_actions = [s for s in reading.timeline if s.phase == "method" and s.status != "succeeded"]
    if guard.get("refused"):
        reasons.append(f"the SLO safeguard refused to start: {guard.get('reason')}")
    elif guard.get("tripped"):
        reasons.append(f"stopped by the SLO safeguard: {guard.get('reason')}")
    elif reading.status == "interrupted":
        reasons.append("interrupted (Ctrl-C or a signal) before the experiment ended")
        code = EXIT_INTERRUPTED if interrupted_by_user else EXIT_FAIL
    elif reading.before_met is False:
        reasons.append("steady state not met before the method (nothing was injected): "
                       + _unmet(reading, "steady-state-before"))
    elif reading.deviated or reading.after_met is False:
        reasons.append("steady state deviated after the method: " + _unmet(reading, "steady-state-after"))
    elif reading.status in ("failed", "aborted"):
        reasons.append(f"Chaos Toolkit ended the run as {reading.status}")
    elif failed_actions:
        reasons.extend(f"{s.kind} {s.name} failed in the method: {s.detail}" for s in failed_actions)
    elif reading.status != "completed":
        reasons.append(f"unexpected journal status {reading.status!r}")
    elif reading.dry:
        code = EXIT_PASS
        steps = sum(1 for s in reading.timeline if s.phase == "method")
        reasons.append(f"dry run ({reading.dry}): the safeguard let it start; {steps} method activities walked "
                       "through, none executed")
    else:
        code = EXIT_PASS
        steps = sum(1 for s in reading.timeline if s.phase == "method")
        reasons.append(f"steady state held before and after {steps} method activities"
                       + (f" in {reading.duration_s:.1f}s" if reading.duration_s is not None else ""))
    reasons.extend(f"rollback {s.name} failed: {s.detail} (the platform may not be restored)"
                   for s in failed_rollbacks)
    if failed_rollbacks:
        code = EXIT_FAIL if code == EXIT_PASS else code
    outcome: Outcome = "pass" if code == EXIT_PASS else "fail"
    return Verdict(outcome, tuple(reasons), figures(reading)), code


def figures(reading: Reading) -> dict[str, Any]:
    """The numbers behind the verdict: journal status, steady states, and the safeguard's figures."""
    guard = reading.safeguard or {}
    trip = guard.get("trip") or {}
    out: dict[str, Any] = {
        "status": reading.status, "deviated": reading.deviated, "duration_s": reading.duration_s, "dry": reading.dry,
        "steady_state_before": reading.before_met, "steady_state_after": reading.after_met,
        "activities": sum(1 for s in reading.timeline if s.phase == "method"),
        "rollbacks": sum(1 for s in reading.timeline if s.phase == "rollbacks"),
    }
    if guard:
        out["safeguard"] = {
            "refused": bool(guard.get("refused")), "tripped": bool(guard.get("tripped")),
            "phase": guard.get("phase"), "reason": guard.get("reason"), "polls": guard.get("polls", 0),
            "unhealthy": guard.get("unhealthy", []),
            "signalled_at": guard.get("signalled_at"), "burning": trip.get("burning", []),
            "budget_remaining": trip.get("budget_remaining", {}),
        }
    return out


def timeline_json(reading: Reading) -> list[dict[str, Any]]:
    return [s.to_json() for s in reading.timeline]


def junit_cases(reading: Reading, verdict: Verdict, suite: str) -> list[Any]:
    """A case for the steady state before and after, one per method activity and rollback, the safeguard,
    and the run's verdict."""
    from openbell.report.junit import Case

    cases: list[Case] = []

    def hypothesis(phase: str, met: bool | None, label: str) -> None:
        steps = [s for s in reading.timeline if s.phase == phase]
        took = sum(s.duration_s or 0.0 for s in steps)
        if met is None:
            cases.append(Case(label, suite, "skipped", "not run"))
        else:
            cases.append(Case(label, suite, "pass" if met else "fail", "" if met else _unmet(reading, phase),
                              time_s=took))

    hypothesis("steady-state-before", reading.before_met, "steady state before the method")
    for step in reading.timeline:
        if step.phase in ("method", "rollbacks"):
            label = f"{'rollback' if step.phase == 'rollbacks' else step.kind}: {step.name}"
            cases.append(Case(label, suite, "pass" if step.status == "succeeded" else "fail", step.detail,
                              time_s=step.duration_s or 0.0))
    hypothesis("steady-state-after", reading.after_met, "steady state after the method")
    guard = reading.safeguard
    if guard is not None:
        stopped = bool(guard.get("refused") or guard.get("tripped"))
        cases.append(Case("SLO safeguard", suite, "fail" if stopped else "pass", str(guard.get("reason") or "")))
    cases.append(Case("experiment", suite, verdict.outcome, "; ".join(verdict.reasons)))
    return cases


# --- internals ---------------------------------------------------------------------------------------------


def _hypothesis_steps(phase: str, state: dict[str, Any] | None) -> list[Step]:
    if not state:
        return []
    return [_step(phase, run) for run in state.get("probes") or []]


def _step(phase: str, run: dict[str, Any]) -> Step:
    activity = run.get("activity") or {}
    return Step(phase=phase, kind=str(activity.get("type", "activity")), name=str(activity.get("name", "?")),
                status=str(run.get("status", "unknown")), start=_time(run.get("start")), end=_time(run.get("end")),
                tolerance_met=run.get("tolerance_met"), background=bool(activity.get("background")),
                detail=_explain(run))


def _met(state: dict[str, Any] | None) -> bool | None:
    if not state or state.get("steady_state_met") is None:
        return None
    return bool(state["steady_state_met"])


def _unmet(reading: Reading, phase: str) -> str:
    bad = [s for s in reading.timeline if s.phase == phase and (s.tolerance_met is False or s.status != "succeeded")]
    if not bad:
        return "no probe reported"
    return "; ".join(f"probe {s.name}: {s.detail or s.status}" for s in bad)


def _explain(run: dict[str, Any]) -> str:
    """One line on an activity's outcome: its exception's last line, else its output's reasons/figures."""
    exception = run.get("exception")
    if exception:
        lines = [line.strip() for chunk in exception for line in str(chunk).splitlines() if line.strip()]
        return lines[-1][:400] if lines else "failed"
    output = run.get("output")
    if isinstance(output, dict):
        if output.get("reasons"):
            return "; ".join(str(r) for r in output["reasons"][:3])[:400]
        brief = {k: v for k, v in output.items() if k not in ("slos", "budget_remaining", "burning")}
        return json.dumps(brief, default=str, sort_keys=True)[:400]
    return "" if output is None else str(output)[:400]


def _time(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None
