"""The gameday's decisions, pure: on plain values, no I/O and no clock of its own.

What is due (`at`, or `after` + `delay`), a phase's timeout, what a child's exit means, the stop policy
(one failure stops everything still running: one SIGINT each, killed after the grace period), the canary's
grace on a burn of its own SLOs, and the gameday's outcome. Shaped like canary/machine.py:

    step(state, now, seen) -> (state, actions)

`seen` is what the runner observed since the last step (children that exited, a Ctrl-C, the gate's answer
to the question the last step asked); the actions are what it must carry out (start a phase's process,
send it its SIGINT, kill its tree, ask the gate, record an event). gameday/runner.py does only that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from openbell.canary.result import CanaryResult
from openbell.chaos.result import ChaosResult
from openbell.gameday.events import Event
from openbell.gameday.plan import CanaryPhase, ChaosPhase, LoadPhase, Phase, Plan, SloPhase
from openbell.load.result import LoadResult
from openbell.slo.verdict import Verdict

GRACE_S = 180.0  # a canary's rollback, chaos rollbacks and a k6 stop all fit well within this
CANARY_GRACE_INTERVALS = 3  # polls of its own gates a running canary gets to act on a burn of its SLOs
CANARY_GRACE_MIN_S = 8.0


# -- state -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhaseState:
    """One phase as the gameday knows it (the listener's and the report's snapshot)."""

    phase: Phase
    state: str = "waiting"  # waiting | running | done
    outcome: str | None = None  # pass | fail | stopped | interrupted | error | skipped | not_run
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    signalled_at: float | None = None
    result: Result | None = None  # the child's, read from its JSON
    figures: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """The stop policy's times and which SLOs each canary phase is gated on (by SLO name)."""

    grace_s: float = GRACE_S
    canary_grace_min_s: float = CANARY_GRACE_MIN_S
    canary_grace_intervals: int = CANARY_GRACE_INTERVALS
    canary_slos: Mapping[str, frozenset[str]] = field(default_factory=dict)  # phase name -> SLO names


@dataclass(frozen=True)
class State:
    plan: Plan
    policy: Policy
    started_at: float
    next_gate_at: float
    phases: tuple[PhaseState, ...]
    stopping: str | None = None  # why the gameday stops (the first failure)
    interrupted: bool = False
    failures: tuple[str, ...] = ()
    canary_grace_until: float | None = None
    last_gate: Verdict | None = None
    gate_checks: tuple[Mapping[str, Any], ...] = ()
    unhealthy: tuple[str, ...] = ()  # what burned before the gameday (it never began)

    def phase(self, name: str) -> PhaseState:
        return next(p for p in self.phases if p.phase.name == name)

    @property
    def done(self) -> bool:
        return all(p.state == "done" for p in self.phases)

    @property
    def expected_burn(self) -> set[str]:
        """SLOs the started phases declared they burn by design (held to the budget cap instead)."""
        return {name for p in self.phases if p.started_at is not None for name in p.phase.expected_burn}


def begin(plan: Plan, policy: Policy, started_at: float, now: float, burning: Iterable[str] = ()) -> State:
    """A gameday about to run, with the preflight's answer recorded as its first gate check (`burning`: what
    the preflight found burning; the gameday then never begins, see `refuse`)."""
    lines = list(burning)
    preflight = {"at": now, "outcome": "fail" if lines else "pass", "preflight": True, "reasons": lines}
    return State(plan, policy, started_at, now, tuple(PhaseState(p) for p in plan.phases), gate_checks=(preflight,))


# -- what the runner saw, and what it must do ----------------------------------------------------------------

@dataclass(frozen=True)
class Exited:
    """A phase's child process ended: its exit code, its result (None when its JSON is unreadable) and its
    log's last line."""

    code: int
    result: Result | None
    last_line: str = ""


@dataclass(frozen=True)
class Seen:
    interrupted: bool = False  # Ctrl-C or SIGTERM since the last step
    exited: Mapping[str, Exited] = field(default_factory=dict)
    not_started: Mapping[str, str] = field(default_factory=dict)  # phase -> why its process did not start
    alive: Collection[str] = ()  # phases whose process still runs
    gate: Verdict | None = None  # the answer to the last AskGate (for an SLO phase: `gate_for`)
    gate_for: str | None = None


@dataclass(frozen=True)
class Start:
    name: str


@dataclass(frozen=True)
class Interrupt:
    """One SIGINT: the tool's own graceful stop (rollback, chaos rollbacks, k6's summary)."""

    name: str


@dataclass(frozen=True)
class Kill:
    """The phase's whole process tree, after its grace; a canary's is then rolled back from outside."""

    name: str
    abort_canary: bool


@dataclass(frozen=True)
class AskGate:
    """Ask the gameday gate now, and step again with its answer (`severity` None: the plan's own)."""

    severity: str | None = None
    phase: str | None = None  # the SLO phase asking


@dataclass(frozen=True)
class Record:
    event: Event
    show: bool = True  # False: for the report only (a child's own timeline, already shown as it happened)


Action = Start | Interrupt | Kill | AskGate | Record


# -- the step ----------------------------------------------------------------------------------------------

class _Step:
    """One step's working copy: the phases by name, the changes and the actions, folded back into a State."""

    def __init__(self, state: State, now: float) -> None:
        self.state, self.now = state, now
        self.phases = {p.phase.name: p for p in state.phases}
        self.actions: list[Action] = []

    def set(self, name: str, **changes: Any) -> None:
        self.phases[name] = dataclasses.replace(self.phases[name], **changes)

    def update(self, **changes: Any) -> None:
        self.state = dataclasses.replace(self.state, **changes)

    def event(self, phase: str | None, kind: str, message: str, severity: str = "info", show: bool = True) -> None:
        self.actions.append(Record(Event(self.now, phase, kind, message, severity), show))

    def fail(self, reason: str) -> None:
        self.update(failures=(*self.state.failures, reason))
        if not self.state.stopping:
            self.update(stopping=reason)
            self.event(None, "stop", f"stopping: {reason}", "critical")

    def result(self) -> tuple[State, list[Action]]:
        ordered = tuple(self.phases[p.phase.name] for p in self.state.phases)
        return dataclasses.replace(self.state, phases=ordered), self.actions


def step(state: State, now: float, seen: Seen) -> tuple[State, list[Action]]:
    """The gameday's next state and the actions that carry it out. The runner calls it every poll, and again at
    once with the gate's answer when the actions ask the gate (a step that asks stops there)."""
    s = _Step(state, now)
    if seen.interrupted and not s.state.interrupted:
        s.update(interrupted=True, stopping="interrupted (Ctrl-C or SIGTERM)")
        s.event(None, "interrupt", "interrupted: stopping every running phase (rollbacks run first); further "
                "Ctrl-C is ignored until they are done", "critical")
    for name, why in seen.not_started.items():
        s.set(name, state="done", finished_at=now, outcome="error", reason=why)
        s.event(name, "phase-end", f"{name}: error — {why}", "critical")
        s.fail(f"{name} could not run: {why}")
    for name, exited in seen.exited.items():
        _finish(s, name, exited)
    if seen.gate is not None:
        if seen.gate_for is not None:
            _slo_answer(s, seen.gate_for, seen.gate)
        else:
            _gate_answer(s, seen.gate)
    elif now >= s.state.next_gate_at and not s.state.stopping:
        s.update(next_gate_at=now + s.state.plan.gate.interval_s)
        s.actions.append(AskGate())
        return s.result()
    if s.state.stopping:
        _stop_all(s, set(seen.alive))
    else:
        _start_due(s, set(seen.alive))
    return s.result()


class _Timed(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def finished_at(self) -> float | None: ...


def due(phase: Phase, phases: Mapping[str, _Timed], started_at: float, now: float) -> bool:
    """Whether `phase` may start at `now`: its `at` has come, or every phase it comes `after` has ended and
    its `delay` has passed since the last of them."""
    start = phase.start
    if start.at_s is not None:
        return now >= started_at + start.at_s
    ends = []
    for name in start.after:
        other = phases[name]
        if other.state != "done" or other.finished_at is None:
            return False
        ends.append(other.finished_at)
    return now >= max(ends, default=started_at) + start.delay_s


def _start_due(s: _Step, alive: set[str]) -> None:
    for name in list(s.phases):
        p = s.phases[name]
        if p.state == "waiting" and due(p.phase, s.phases, s.state.started_at, s.now):
            s.set(name, state="running", started_at=s.now)
            s.event(name, "phase-start", f"{name}: {p.phase.summary()}")
            if isinstance(p.phase.action, SloPhase):
                s.actions.append(AskGate(p.phase.action.severity, name))
                return  # the answer comes with the next step, which carries on from here
            s.actions.append(Start(name))
        elif p.state == "running" and p.phase.timeout_s is not None and p.started_at is not None \
                and s.now - p.started_at > p.phase.timeout_s and p.signalled_at is None:
            s.fail(f"{name}: still running after its timeout of {p.phase.timeout_s:g}s")
            _signal(s, name, alive=name in alive)


def _signal(s: _Step, name: str, alive: bool) -> None:
    s.set(name, signalled_at=s.now)
    if alive:
        s.event(name, "stop", f"{name}: SIGINT (roll back / stop)", "warning")
        s.actions.append(Interrupt(name))


def _stop_all(s: _Step, alive: set[str]) -> None:
    for name in list(s.phases):
        p = s.phases[name]
        if p.state == "waiting":
            s.set(name, state="done", outcome="not_run", reason="not started: the gameday had stopped")
        elif p.state == "running":
            if p.signalled_at is None:
                _signal(s, name, alive=name in alive)
            elif s.now - p.signalled_at > s.state.policy.grace_s and name in alive:
                s.event(name, "kill", f"{name}: did not stop within {s.state.policy.grace_s:g}s; killed with what "
                        "it started", "critical")
                s.actions.append(Kill(name, abort_canary=isinstance(p.phase.action, CanaryPhase)))


def _finish(s: _Step, name: str, exited: Exited) -> None:
    p = s.phases[name]
    outcome, reason = judge_exit(p.phase, exited.code, exited.result, exited.last_line)
    if p.signalled_at is not None and outcome != "error":
        # Why the gameday stopped is said once, in the verdict; the row says what this phase did.
        outcome = "interrupted" if s.state.interrupted else "stopped"
        reason = "stopped with the gameday; " + (reason or "")
    reason = reason.strip("; ")
    s.set(name, state="done", finished_at=s.now, exit_code=exited.code, result=exited.result, outcome=outcome,
          reason=reason, figures=phase_figures(p.phase, exited.result))
    for event in child_events(p.phase, exited.result):
        s.actions.append(Record(event, show=False))
    sev = {"pass": "info", "stopped": "warning", "interrupted": "warning"}.get(outcome, "critical")
    s.event(name, "phase-end", f"{name}: {outcome}" + (f" — {reason}" if reason else ""), sev)
    if outcome != "pass" and p.signalled_at is None:
        what = {"fail": "failed", "error": "could not run"}.get(outcome, f"ended {outcome}")
        s.fail(f"{name} {what}: {reason}")


def _slo_answer(s: _Step, name: str, verdict: Verdict) -> None:
    """An SLO phase is the gate's answer at its severity, given when it starts."""
    s.update(last_gate=verdict, gate_checks=(*s.state.gate_checks, {"at": s.now, "outcome": verdict.outcome,
                                                                     "reasons": list(verdict.reasons)}))
    reason = "; ".join(verdict.reasons)
    outcome = "pass" if verdict.passed else "fail"
    s.set(name, state="done", finished_at=s.now, exit_code=0 if verdict.passed else 1, outcome=outcome,
          reason=reason, figures={"spend": verdict.figures.get("spend", []), "notes": verdict.figures.get("notes", [])})
    s.event(name, "phase-end", f"{name}: {outcome} — {reason}", "info" if verdict.passed else "critical")
    if not verdict.passed:
        s.fail(f"{name}: {reason}")


def _gate_answer(s: _Step, verdict: Verdict) -> None:
    s.update(last_gate=verdict, gate_checks=(*s.state.gate_checks, {
        "at": s.now, "outcome": verdict.outcome, "reasons": list(verdict.reasons),
        "spend": verdict.figures.get("spend", [])}))
    if verdict.outcome != "fail":
        s.update(canary_grace_until=None)
        return
    if _canary_owns(s, verdict):
        return
    s.event(None, "gate", "SLO gate failed: " + "; ".join(verdict.reasons), "critical")
    s.fail("SLO gate: " + "; ".join(verdict.reasons))


def _canary_owns(s: _Step, verdict: Verdict) -> bool:
    """While a canary rolls out, a burn of an SLO it is gated on is first the canary's to act on: its own
    gates (polled every `interval`) roll it back and say why, and the gameday fails for that canary. The
    gameday waits `canary_grace_intervals` of its polls for that; a canary that has not reacted by then is
    stopped with everything else."""
    failing = set(verdict.figures.get("failing", []))
    policy = s.state.policy
    for name, p in s.phases.items():
        a = p.phase.action
        if p.state != "running" or p.signalled_at is not None or not isinstance(a, CanaryPhase):
            continue
        if not failing or not failing <= policy.canary_slos.get(name, frozenset()):
            continue
        if s.state.canary_grace_until is None:
            until = s.now + max(policy.canary_grace_min_s, policy.canary_grace_intervals * a.interval_s)
            s.update(canary_grace_until=until)
            s.event(name, "gate", "SLO gate failed while the canary rolls out, on SLOs it is gated on: its own "
                    f"gates have {until - s.now:.0f}s to roll it back: " + "; ".join(verdict.reasons), "warning")
        grace = s.state.canary_grace_until
        return grace is not None and s.now < grace
    return False


def fail(state: State, reason: str, now: float) -> tuple[State, list[Action]]:
    """The gameday itself failed (a crash in the runner): stop like any failure."""
    s = _Step(state, now)
    s.fail(reason)
    return s.result()


def refuse(state: State, burning: Iterable[str], now: float) -> tuple[State, list[Action]]:
    """The platform burns its budget before anything started: no phase runs, and the reason says what burns,
    since when and which runbook to open (a gameday cannot tell its damage from what was there)."""
    s = _Step(state, now)
    lines = tuple(burning)
    for name in s.phases:
        s.set(name, state="done", outcome="not_run",
              reason="not started: the platform was unhealthy before the gameday")
    s.update(unhealthy=lines)
    s.event(None, "unhealthy", "unhealthy before the gameday, nothing started: " + "; ".join(lines), "critical")
    return s.result()


@dataclass(frozen=True)
class Outcome:
    verdict: str  # pass | fail | unhealthy | interrupted | error
    exit_code: int
    reason: str
    reasons: list[str]


def outcome(state: State) -> Outcome:
    """The gameday's verdict once every phase is done."""
    if state.unhealthy:
        more = f" (and {len(state.unhealthy) - 1} more)" if len(state.unhealthy) > 1 else ""
        return Outcome("unhealthy", 1, f"unhealthy before the gameday: {state.unhealthy[0]}{more}",
                       list(state.unhealthy))
    failures = list(state.failures)
    if state.interrupted:
        return Outcome("interrupted", 130, "interrupted: every running phase was stopped and rolled back",
                       failures or ["interrupted"])
    errors = [p for p in state.phases if p.outcome == "error"]
    if errors:
        code = 3 if any(p.exit_code == 3 for p in errors) else 1
        return Outcome("error", code, failures[0] if failures else errors[0].reason, failures or [errors[0].reason])
    failed = [f"{p.phase.name}: {p.outcome}" for p in state.phases if p.outcome != "pass"]
    if failures or failed:
        reasons = list(dict.fromkeys(failures or failed))  # the same failure once
        return Outcome("fail", 1, reasons[0], reasons)
    return Outcome("pass", 0, f"every phase passed and the SLO gate held ({len(state.phases)} phases)",
                   [f"{p.phase.name}: pass" for p in state.phases])


# -- a child's exit and result, read -----------------------------------------------------------------------

Result = LoadResult | CanaryResult | ChaosResult


def read_result(phase: Phase, raw: Mapping[str, Any] | None) -> Result | None:
    """The child's JSON as its tool's typed result (None: no JSON, or not an object)."""
    if not isinstance(raw, Mapping):
        return None
    a = phase.action
    if isinstance(a, LoadPhase):
        return LoadResult.from_json(raw)
    if isinstance(a, CanaryPhase):
        return CanaryResult.from_json(raw)
    if isinstance(a, ChaosPhase):
        return ChaosResult.from_json(raw)
    return None


def judge_exit(phase: Phase, code: int, result: Result | None, last_line: str = "") -> tuple[str, str]:
    """A child's exit code and result (and its log's last line, for an error) -> the phase's outcome and reason."""
    a = phase.action
    if code in (2, 3) or code < 0 or (result is None and code != 130):
        return "error", last_line or f"exit {code}"
    if code == 130:
        return "interrupted", "interrupted"
    if isinstance(a, LoadPhase):
        load = result if isinstance(result, LoadResult) else LoadResult()
        reasons = "; ".join(load.verdict.reasons)
        if code == 0:
            return "pass", reasons
        if a.thresholds == "report" and load.thresholds_only:
            return "pass", f"k6 thresholds crossed (reported, not gating: the SLO gate judges): {reasons}"
        return "fail", reasons or f"k6 exited {code}"
    if isinstance(a, CanaryPhase):
        canary = result if isinstance(result, CanaryResult) else CanaryResult()
        if code == 0:
            return "pass", f"{canary.version or a.version} promoted: {canary.reason or 'every step passed'}"
        return "fail", f"rolled back at {canary.where_rolled_back()}: {canary.reason}"
    chaos = result if isinstance(result, ChaosResult) else ChaosResult()
    reasons = "; ".join(chaos.verdict.reasons)
    return ("pass" if code == 0 else "fail"), reasons or f"chaos exited {code}"


def phase_figures(phase: Phase, result: Result | None) -> dict[str, Any]:
    """The few numbers a reader wants per phase, from the child's result."""
    a = phase.action
    if isinstance(a, LoadPhase):
        return (result if isinstance(result, LoadResult) else LoadResult()).figures()
    if isinstance(a, CanaryPhase):
        r = result if isinstance(result, CanaryResult) else CanaryResult()
        judge = r.last_gates.get("judge")
        return {"version": r.version or None, "outcome": r.outcome or None, "step": r.step, "weight": r.weight,
                "duration_s": r.duration_s, "stable_version_before": r.stable_version_before,
                "judge": judge.get("outcome") if isinstance(judge, dict) else None}
    if isinstance(a, ChaosPhase):
        c = result if isinstance(result, ChaosResult) else ChaosResult()
        return {"experiment": c.experiment or None, "title": c.title or None,
                "outcome": c.verdict.outcome if result is not None else None,
                "elapsed_s": c.elapsed_s, "journal": c.journal or None}
    return {}


_CRITICAL = {"rollback", "rolled_back", "verify", "interrupted"}
_WARNING = {"extend"}


def child_events(phase: Phase, result: Result | None) -> list[Event]:
    """The child's own timeline (canary steps and rollbacks, faults injected and rolled back, the safeguard)."""
    out: list[Event] = []
    if isinstance(phase.action, CanaryPhase) and isinstance(result, CanaryResult):
        for e in result.timeline:
            if e.kind == "poll":
                continue
            sev = "critical" if e.kind in _CRITICAL else "warning" if e.kind in _WARNING else "info"
            out.append(Event(e.at, phase.name, e.kind, e.message, sev))
    elif isinstance(phase.action, ChaosPhase) and isinstance(result, ChaosResult):
        for st in result.timeline:
            if st.start is None:
                continue
            ok = st.status in ("succeeded", "")
            if st.phase == "method":
                kind, sev = ("fault" if st.kind == "action" else "probe"), "warning"
            elif st.phase == "rollbacks":
                kind, sev = "rollback", "warning"
            elif not ok or st.tolerance_met is False:
                kind, sev = "steady-state", "critical"
            else:
                continue
            if not ok:
                sev = "critical"
            out.append(Event(st.start, phase.name, kind, f"{st.phase}: {st.name} ({st.status or None})", sev))
        guard = result.safeguard
        if guard.get("tripped") or guard.get("refused"):
            at = _epoch(guard.get("signalled_at")) or max((e.at for e in out), default=0.0)
            what = "stopped the experiment" if guard.get("tripped") else "refused to start the experiment"
            out.append(Event(at, phase.name, "safeguard", f"SLO safeguard {what}: {guard.get('reason', '')}",
                             "critical"))
    return [e for e in out if e.at > 0]


def _epoch(value: Any) -> float | None:
    """A time from the child's JSON: the chaos journal reader already gives unix seconds."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
