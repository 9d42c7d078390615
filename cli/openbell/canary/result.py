"""What `openbell canary run --output json` says, typed: made from the rollout, read back by whoever ran it
(the gameday)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openbell.canary.machine import Event, Rollout, exit_code


@dataclass(frozen=True)
class CanaryResult:
    service: str = ""
    version: str = ""
    target: str = ""
    outcome: str = ""  # promoted | rolled_back | unhealthy | a phase still in progress
    exit_code: int | None = None
    reason: str = ""
    stable_version_before: str | None = None
    step: int | None = None  # 1-based
    weight: int | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    last_gates: Mapping[str, Any] = field(default_factory=dict)
    timeline: tuple[Event, ...] = ()
    burning: tuple[Mapping[str, Any], ...] = ()  # unhealthy: what burned before the rollout

    @classmethod
    def of(cls, rollout: Rollout, last: Mapping[str, Any] | None = None) -> CanaryResult:
        return cls(rollout.service, rollout.version, rollout.target, rollout.phase,
                   exit_code(rollout) if rollout.done else 1, rollout.reason, rollout.baseline_version,
                   rollout.step_index + 1, rollout.weight, rollout.policy.to_dict(), rollout.started_at,
                   rollout.finished_at,
                   None if rollout.finished_at is None else round(rollout.finished_at - rollout.started_at, 3),
                   dict(last or {}), tuple(rollout.events))

    def to_json(self) -> dict[str, Any]:
        if self.outcome == "unhealthy":
            return {"service": self.service, "version": self.version, "outcome": self.outcome,
                    "exit_code": self.exit_code, "reason": self.reason, "burning": [dict(b) for b in self.burning]}
        return {
            "service": self.service, "version": self.version, "target": self.target, "outcome": self.outcome,
            "exit_code": self.exit_code, "reason": self.reason, "stable_version_before": self.stable_version_before,
            "step": self.step, "weight": self.weight, "policy": dict(self.policy), "started_at": self.started_at,
            "finished_at": self.finished_at, "duration_s": self.duration_s, "last_gates": dict(self.last_gates),
            "timeline": [e.to_dict() for e in self.timeline],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CanaryResult:
        def num(key: str) -> float | None:
            v = raw.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        def whole(key: str) -> int | None:
            v = raw.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        def mapping(key: str) -> dict[str, Any]:
            v = raw.get(key)
            return dict(v) if isinstance(v, dict) else {}

        timeline = tuple(Event.from_dict({"message": "", "kind": "", "at": 0.0, **e})
                         for e in raw.get("timeline") or () if isinstance(e, dict))
        stable = raw.get("stable_version_before")
        return cls(str(raw.get("service") or ""), str(raw.get("version") or ""), str(raw.get("target") or ""),
                   str(raw.get("outcome") or ""), whole("exit_code"), str(raw.get("reason") or ""),
                   None if stable is None else str(stable), whole("step"), whole("weight"), mapping("policy"),
                   num("started_at"), num("finished_at"), num("duration_s"), mapping("last_gates"), timeline,
                   tuple(b for b in raw.get("burning") or () if isinstance(b, dict)))

    @property
    def steps(self) -> list[int]:
        return [int(s) for s in self.policy.get("steps") or ()]

    def where_rolled_back(self) -> str:
        """"step N (W%)" as the rollout ended: the step's weight from the policy, else the weight reached."""
        steps = self.steps
        at = self.step
        weight = steps[at - 1] if at is not None and 0 < at <= len(steps) else \
            (self.weight if self.weight is not None else "?")
        return f"step {at or '?'} ({weight}%)"
