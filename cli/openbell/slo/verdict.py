"""The Verdict: the one answer every gate gives (slo gate, canary, chaos safeguard, load)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    """pass, fail or inconclusive, with the reasons (sentences) and the figures behind them."""

    outcome: Outcome
    reasons: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reasons": list(self.reasons), "figures": self.figures}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Verdict:
        """A verdict as another openbell process wrote it; anything missing or unknown reads as inconclusive."""
        raw = raw or {}
        outcome = raw.get("outcome")
        figures = raw.get("figures")
        return cls(outcome if outcome in ("pass", "fail", "inconclusive") else "inconclusive",
                   tuple(str(r) for r in raw.get("reasons") or ()), dict(figures) if isinstance(figures, dict) else {})


def combine(outcomes: list[Outcome]) -> Outcome:
    """Any fail fails; otherwise any inconclusive is inconclusive; nothing at all is inconclusive."""
    if "fail" in outcomes:
        return "fail"
    if not outcomes or "inconclusive" in outcomes:
        return "inconclusive"
    return "pass"
