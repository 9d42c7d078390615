"""Rate multipliers over time: a manual setting, or a schedule of steps (optionally ramped)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_MULTIPLIER = 1000.0
MAX_STEPS = 1000


@dataclass(frozen=True)
class Step:
    """From `at_s` seconds after the schedule starts, run at `multiplier` x the base rate."""

    at_s: float
    multiplier: float


@dataclass(frozen=True)
class Schedule:
    """Steps relative to `started` (monotonic seconds); with `ramp`, multipliers interpolate between steps."""

    steps: tuple[Step, ...]
    ramp: bool
    started: float

    def multiplier(self, now: float) -> float | None:
        """The multiplier at monotonic time `now`, or None before the first step."""
        t = now - self.started
        if t < self.steps[0].at_s:
            return None
        for here, after in zip(self.steps, self.steps[1:], strict=False):
            if t < after.at_s:
                if not self.ramp:
                    return here.multiplier
                frac = (t - here.at_s) / (after.at_s - here.at_s)
                return here.multiplier + frac * (after.multiplier - here.multiplier)
        return self.steps[-1].multiplier

    def finished(self, now: float) -> bool:
        """True once the last step has been reached (its multiplier then holds for good)."""
        return now - self.started >= self.steps[-1].at_s

    def describe(self, now: float) -> dict[str, Any]:
        """JSON view: the steps, ramp flag and seconds elapsed."""
        return {"steps": [{"at_s": s.at_s, "multiplier": s.multiplier} for s in self.steps],
                "ramp": self.ramp, "elapsed_s": round(now - self.started, 3)}


def number(value: Any, name: str, low: float, high: float) -> float:
    """`value` as a finite float in [low, high], else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def parse_schedule(body: Any, now: float) -> Schedule:
    """Validate a `{"steps": [{"at_s", "multiplier"}...], "ramp": bool}` body; ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object with \"steps\"")
    unknown = set(body) - {"steps", "ramp"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    steps_in = body.get("steps")
    if not isinstance(steps_in, list) or not 1 <= len(steps_in) <= MAX_STEPS:
        raise ValueError(f"steps must be a list of 1 to {MAX_STEPS} objects")
    ramp = body.get("ramp", False)
    if not isinstance(ramp, bool):
        raise ValueError("ramp must be true or false")
    steps: list[Step] = []
    for i, raw in enumerate(steps_in):
        if not isinstance(raw, dict) or set(raw) != {"at_s", "multiplier"}:
            raise ValueError(f"steps[{i}] must be an object with exactly at_s and multiplier")
        step = Step(number(raw["at_s"], f"steps[{i}].at_s", 0, 7 * 86400),
                    number(raw["multiplier"], f"steps[{i}].multiplier", 0, MAX_MULTIPLIER))
        if steps and step.at_s <= steps[-1].at_s:
            raise ValueError(f"steps[{i}].at_s must be greater than steps[{i - 1}].at_s")
        steps.append(step)
    return Schedule(tuple(steps), ramp, now)
