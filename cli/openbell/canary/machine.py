"""The rollout state machine: pure, on plain values, no I/O and no clock of its own.

A rollout walks its steps (weights, e.g. 10 -> 25 -> 50 -> 100). Entering a step sets the weight (and
asks for connection churn so the canary's real share reaches it); then the step holds for `hold_s` while
the controller polls the gates. A gate that fails mid-hold rolls back at once. At the end of the hold a
pass moves on (with the sequential judge, as soon as both gates pass once the minimum hold is over); an
inconclusive answer extends the hold up to `max_extension_s`, then follows the `inconclusive` policy. After
the last step the canary is promoted.

`advance(rollout, observation)` returns the next rollout and the actions the controller must carry out;
the controller reports their completion back with `completed(...)`. Every change appends an Event to the
timeline, which reports and spans are drawn from.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from openbell.slo.verdict import Outcome

Phase = Literal["starting", "progressing", "promoting", "rolling_back", "promoted", "rolled_back"]
TERMINAL: tuple[Phase, ...] = ("promoted", "rolled_back")
Request = Literal["promote", "abort"]
InconclusivePolicy = Literal["fail", "pass"]
JudgeKind = Literal["fixed", "sequential"]
JUDGES: tuple[JudgeKind, ...] = ("fixed", "sequential")
# The sequential judge's default tolerances (shares of events; canary/sequential.py). Latency: two gateway
# processes on one machine differ by up to ~15 points in the share of pushes slower than a boundary with the
# same build (an A/A canary, measured: 73% vs 58% slower than 5 ms), so a canary is rolled back when surely 25
# points worse at some boundary (half the tolerance) and accepted when surely within 50; a +10 ms canary is 75
# points or more worse. Failures: rolled back when surely more frequent than stable's at all, accepted when
# surely within 5 points (the canary-scoped SLO burn test rolls back a canary surely burning at page rate).
LATENCY_TOLERANCE = 0.5
ERROR_TOLERANCE = 0.05


@dataclass(frozen=True)
class Policy:
    """How a rollout proceeds: the steps (percent), the hold per step, and what inconclusive means.

    With the `fixed` judge every step holds `hold_s`, then the judge's answer moves it on. With the
    `sequential` judge (canary/sequential.py) `hold_s` is the most a step holds: it ends as soon as the
    canary is shown non-inferior, but not before `min_hold_s`; `alpha` bounds the chance of a wrong
    rollback (and of a wrong acceptance) over the whole rollout, and the tolerances say how much worse is
    still acceptable: the share of events slower than any latency boundary, and the share failed."""

    steps: tuple[int, ...] = (10, 25, 50, 100)
    hold_s: float = 60.0
    max_extension_s: float = 60.0
    inconclusive: InconclusivePolicy = "fail"
    churn: bool = True
    probe_rate_per_s: float = 0.0  # synthetic requests a second to the canary and to stable (canary/probe.py)
    judge: JudgeKind = "fixed"
    min_hold_s: float = 0.0
    alpha: float = 0.01
    latency_tolerance: float = LATENCY_TOLERANCE
    error_tolerance: float = ERROR_TOLERANCE

    @property
    def earliest_s(self) -> float:
        """How long a step holds at least before a passing gate may end it."""
        return min(self.min_hold_s, self.hold_s) if self.judge == "sequential" else self.hold_s

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "hold_s": self.hold_s, "max_extension_s": self.max_extension_s,
                "inconclusive": self.inconclusive, "churn": self.churn, "probe_rate_per_s": self.probe_rate_per_s,
                "judge": self.judge, "min_hold_s": self.min_hold_s, "alpha": self.alpha,
                "latency_tolerance": self.latency_tolerance, "error_tolerance": self.error_tolerance}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Policy:
        return cls(steps=tuple(int(s) for s in raw["steps"]), hold_s=float(raw["hold_s"]),
                   max_extension_s=float(raw["max_extension_s"]), inconclusive=raw["inconclusive"],
                   churn=bool(raw["churn"]), probe_rate_per_s=float(raw.get("probe_rate_per_s", 0.0)),
                   judge=raw.get("judge", "fixed"), min_hold_s=float(raw.get("min_hold_s", 0.0)),
                   alpha=float(raw.get("alpha", 0.01)),
                   latency_tolerance=float(raw.get("latency_tolerance", LATENCY_TOLERANCE)),
                   error_tolerance=float(raw.get("error_tolerance", ERROR_TOLERANCE)))


def check_judge(alpha: float, latency_tolerance: float, error_tolerance: float) -> str | None:
    """Why these sequential judge settings cannot be used (None when they can)."""
    if not 0.0 < alpha < 0.5:
        return f"expected alpha within (0, 0.5), got {alpha:g}"
    for name, value in (("latency tolerance", latency_tolerance), ("error tolerance", error_tolerance)):
        if not 0.0 < value < 1.0:
            return f"expected the {name} within (0, 1) (a share of events), got {value:g}"
    return None


def check_steps(steps: tuple[int, ...]) -> str | None:
    """Why `steps` cannot be a rollout (None when they can): 1..100, strictly increasing, non-empty."""
    if not steps:
        return "expected at least one step"
    if any(not 1 <= s <= 100 for s in steps):
        return f"expected percentages within 1..100, got {','.join(map(str, steps))}"
    if any(b <= a for a, b in itertools.pairwise(steps)):
        return f"expected strictly increasing percentages, got {','.join(map(str, steps))}"
    return None


@dataclass(frozen=True)
class Event:
    """One line of the run's timeline: when (unix seconds), what kind, what happened, and the figures."""

    at: float
    kind: str  # start, step, churn, gate, extend, request, rollback, rolled_back, promote, promoted, resume, ...
    message: str
    weight: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "message": self.message, "weight": self.weight,
                "figures": self.figures}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(float(raw["at"]), str(raw["kind"]), str(raw["message"]),
                   None if raw.get("weight") is None else int(raw["weight"]), dict(raw.get("figures") or {}))


@dataclass(frozen=True)
class Rollout:
    """Everything needed to continue a rollout from another process: persisted after every transition."""

    service: str
    version: str
    target: str
    policy: Policy
    phase: Phase = "starting"
    step_index: int = -1
    weight: int = 0
    step_started_at: float = 0.0
    extended: bool = False
    started_at: float = 0.0
    finished_at: float | None = None
    reason: str = ""
    faults: dict[str, str] = field(default_factory=dict)
    baseline_version: str = ""
    events: tuple[Event, ...] = ()

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    @property
    def step(self) -> int | None:
        return self.policy.steps[self.step_index] if 0 <= self.step_index < len(self.policy.steps) else None

    def log(self, at: float, kind: str, message: str, **figures: Any) -> Rollout:
        return dataclasses.replace(self, events=(*self.events, Event(at, kind, message, self.weight, figures)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "version": self.version, "target": self.target,
            "policy": self.policy.to_dict(), "phase": self.phase, "step_index": self.step_index,
            "weight": self.weight, "step_started_at": self.step_started_at, "extended": self.extended,
            "started_at": self.started_at, "finished_at": self.finished_at, "reason": self.reason,
            "faults": self.faults, "baseline_version": self.baseline_version,
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Rollout:
        return cls(
            service=str(raw["service"]), version=str(raw["version"]), target=str(raw["target"]),
            policy=Policy.from_dict(raw["policy"]), phase=raw["phase"], step_index=int(raw["step_index"]),
            weight=int(raw["weight"]), step_started_at=float(raw["step_started_at"]),
            extended=bool(raw["extended"]), started_at=float(raw["started_at"]),
            finished_at=None if raw.get("finished_at") is None else float(raw["finished_at"]),
            reason=str(raw.get("reason", "")), faults={str(k): str(v) for k, v in (raw.get("faults") or {}).items()},
            baseline_version=str(raw.get("baseline_version", "")),
            events=tuple(Event.from_dict(e) for e in raw.get("events") or []),
        )


@dataclass(frozen=True)
class SetWeight:
    percent: int


@dataclass(frozen=True)
class Churn:
    """Move stable connections so the canary's real share approaches `percent`."""

    percent: int


@dataclass(frozen=True)
class RollBack:
    reason: str


@dataclass(frozen=True)
class Promote:
    pass


Action = SetWeight | Churn | RollBack | Promote


@dataclass(frozen=True)
class Observation:
    """What the controller saw at `now`: each gate's outcome (None when not asked), its reasons, and an
    operator's request (promote or abort) if one arrived."""

    now: float
    slo: Outcome | None = None
    judge: Outcome | None = None
    reasons: tuple[str, ...] = ()
    request: Request | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    evidence: str = ""  # what the judge's pass stands on, for the timeline


def start(service: str, version: str, target: str, policy: Policy, now: float,
          faults: dict[str, str] | None = None, baseline_version: str = "") -> Rollout:
    """A new rollout, before its canary exists."""
    rollout = Rollout(service, version, target, policy, started_at=now, faults=dict(faults or {}),
                      baseline_version=baseline_version)
    steps = " -> ".join(f"{s}%" for s in policy.steps)
    if policy.judge == "sequential":
        hold = (f"hold {policy.min_hold_s:g}-{policy.hold_s:g}s, sequential judge (alpha {policy.alpha:g}, "
                f"tolerance {policy.latency_tolerance:.0%} latency, {policy.error_tolerance:.0%} errors)")
    else:
        hold = f"hold {policy.hold_s:g}s"
    return rollout.log(now, "start", f"canary of {service} {version} (stable {baseline_version or '?'}): "
                                     f"steps {steps}, {hold}")


def enter_step(rollout: Rollout, index: int, now: float) -> tuple[Rollout, list[Action]]:
    weight = rollout.policy.steps[index]
    nxt = dataclasses.replace(rollout, phase="progressing", step_index=index, weight=weight,
                              step_started_at=now, extended=False)
    nxt = nxt.log(now, "step", f"step {index + 1}/{len(rollout.policy.steps)}: weight {weight}%")
    actions: list[Action] = [SetWeight(weight)]
    if rollout.policy.churn:
        actions.append(Churn(weight))
    return nxt, actions


def canary_ready(rollout: Rollout, now: float) -> tuple[Rollout, list[Action]]:
    """The canary is deployed and ready: enter the first step."""
    return enter_step(rollout.log(now, "canary", f"canary {rollout.version} ready at weight 0"), 0, now)


def _roll_back(rollout: Rollout, now: float, reason: str, **figures: Any) -> tuple[Rollout, list[Action]]:
    nxt = dataclasses.replace(rollout, phase="rolling_back", reason=reason)
    return nxt.log(now, "rollback", f"rolling back: {reason}", **figures), [RollBack(reason)]


def _promote(rollout: Rollout, now: float, why: str) -> tuple[Rollout, list[Action]]:
    nxt = dataclasses.replace(rollout, phase="promoting", reason=why)
    return nxt.log(now, "promote", f"promoting {rollout.version}: {why}"), [Promote()]


def advance(rollout: Rollout, obs: Observation) -> tuple[Rollout, list[Action]]:
    """One poll of a progressing rollout: roll back, extend, move on, promote, or keep holding."""
    if rollout.phase != "progressing":
        return rollout, []
    now = obs.now
    step_no = rollout.step_index + 1
    if obs.request == "abort":
        return _roll_back(rollout, now, "aborted by an operator")
    failed = [name for name, outcome in (("SLO burn", obs.slo), ("judge", obs.judge)) if outcome == "fail"]
    if failed:
        reason = f"{' and '.join(failed)} failed at step {step_no} ({rollout.weight}%): " + "; ".join(obs.reasons)
        return _roll_back(rollout, now, reason, **obs.figures)
    if obs.request == "promote":
        return _promote(rollout, now, f"an operator skipped the remaining holds at step {step_no}")
    held = now - rollout.step_started_at
    policy = rollout.policy
    if held < policy.earliest_s:
        return rollout, []
    outcomes = [o for o in (obs.slo, obs.judge) if o is not None]
    if outcomes and all(o == "pass" for o in outcomes):
        how = "shown non-inferior" if policy.judge == "sequential" else "passed"
        message = f"step {step_no} {how} after {held:.0f}s" + (f": {obs.evidence}" if obs.evidence else "")
        return _next(rollout.log(now, "gate", message, **obs.figures), now)
    if held < policy.hold_s:
        return rollout, []
    why = "; ".join(obs.reasons) or "no gate answered"
    if held < policy.hold_s + policy.max_extension_s:
        if rollout.extended:
            return rollout, []
        nxt = dataclasses.replace(rollout, extended=True)
        return nxt.log(now, "extend", f"step {step_no} inconclusive, hold extended up to "
                                      f"{policy.max_extension_s:g}s: {why}"), []
    if policy.inconclusive == "pass":
        nxt = rollout.log(now, "gate", f"step {step_no} still inconclusive after {held:.0f}s; the policy "
                                       f"accepts it: {why}", **obs.figures)
        return _next(nxt, now)
    return _roll_back(rollout, now, f"step {step_no} ({rollout.weight}%) still inconclusive after {held:.0f}s "
                                    f"and the policy is to fail: {why}", **obs.figures)


def _next(rollout: Rollout, now: float) -> tuple[Rollout, list[Action]]:
    if rollout.step_index + 1 < len(rollout.policy.steps):
        return enter_step(rollout, rollout.step_index + 1, now)
    return _promote(rollout, now, "every step passed")


def completed(rollout: Rollout, now: float, detail: str = "") -> Rollout:
    """The controller finished the promotion or the rollback: the rollout ends."""
    if rollout.phase == "promoting":
        nxt = dataclasses.replace(rollout, phase="promoted", weight=0, finished_at=now)
        return nxt.log(now, "promoted", f"{rollout.version} is the new stable" + (f": {detail}" if detail else ""))
    if rollout.phase == "rolling_back":
        nxt = dataclasses.replace(rollout, phase="rolled_back", weight=0, finished_at=now)
        return nxt.log(now, "rolled_back", "all traffic on stable" + (f": {detail}" if detail else ""))
    return rollout


def resumed(rollout: Rollout, now: float) -> tuple[Rollout, list[Action]]:
    """Continue after a crash or an interruption. Nobody watched the gap, so a progressing step starts
    its hold again at its weight; an unfinished promotion or rollback is carried out again (both are
    idempotent); a canary that never became ready is started again."""
    if rollout.phase == "progressing":
        nxt = rollout.log(now, "resume", f"resumed at step {rollout.step_index + 1}: hold starts again")
        return enter_step(nxt, rollout.step_index, now)
    if rollout.phase == "promoting":
        return rollout.log(now, "resume", "resumed the promotion"), [Promote()]
    if rollout.phase == "rolling_back":
        return rollout.log(now, "resume", "resumed the rollback"), [RollBack(rollout.reason)]
    if rollout.phase == "starting":
        return rollout.log(now, "resume", "resumed: starting the canary again"), []
    return rollout, []


def abort(rollout: Rollout, now: float, reason: str = "aborted by an operator") -> tuple[Rollout, list[Action]]:
    """Roll back from wherever the rollout stands (a finished one stays as it is)."""
    if rollout.done:
        return rollout, []
    if rollout.phase == "rolling_back":
        return rollout.log(now, "resume", "rollback carried out again"), [RollBack(rollout.reason)]
    if rollout.phase == "promoting":
        # Stable is already (partly) the new version: undoing half a replacement is the risky path.
        return rollout.log(now, "resume", f"{reason}: the promotion under way is finished, not undone"), [Promote()]
    return _roll_back(rollout, now, reason)


def verified(rollout: Rollout) -> bool:
    """Whether the end state was checked and found as intended (no trailing `verify` problem)."""
    return not (rollout.events and rollout.events[-1].kind == "verify")


def exit_code(rollout: Rollout) -> int:
    """0 promoted and verified, 1 rolled back, unverified or not finished."""
    return 0 if rollout.phase == "promoted" and verified(rollout) else 1
