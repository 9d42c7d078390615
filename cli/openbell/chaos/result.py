"""What `openbell chaos run --output json` says, typed: read back by whoever ran it (the gameday)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openbell.chaos.journal import Step
from openbell.slo.verdict import Verdict


@dataclass(frozen=True)
class ChaosResult:
    experiment: str = ""
    title: str = ""
    path: str = ""
    target: str = ""
    outcome: str = ""  # the verdict's, or unhealthy (the safeguard refused a platform already burning)
    exit_code: int | None = None
    journal: str = ""
    log: str = ""
    elapsed_s: float | None = None
    verdict: Verdict = field(default_factory=lambda: Verdict("inconclusive"))
    timeline: tuple[Step, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "title": self.title, "path": self.path, "target": self.target,
                "outcome": self.outcome, "exit_code": self.exit_code, "journal": self.journal, "log": self.log,
                "elapsed_s": self.elapsed_s, "verdict": self.verdict.to_dict(),
                "timeline": [s.to_json() for s in self.timeline]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ChaosResult:
        code, elapsed = raw.get("exit_code"), raw.get("elapsed_s")
        return cls(str(raw.get("experiment") or ""), str(raw.get("title") or ""), str(raw.get("path") or ""),
                   str(raw.get("target") or ""), str(raw.get("outcome") or ""),
                   code if isinstance(code, int) and not isinstance(code, bool) else None,
                   str(raw.get("journal") or ""), str(raw.get("log") or ""),
                   float(elapsed) if isinstance(elapsed, int | float) and not isinstance(elapsed, bool) else None,
                   Verdict.from_dict(raw.get("verdict")),
                   tuple(Step.from_json(s) for s in raw.get("timeline") or () if isinstance(s, dict)))

    @property
    def safeguard(self) -> Mapping[str, Any]:
        """The SLO safeguard's record (empty when the run had none)."""
        guard = self.verdict.figures.get("safeguard")
        return guard if isinstance(guard, dict) else {}
