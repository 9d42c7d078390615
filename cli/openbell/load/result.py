"""What `openbell load run --output json` says, typed: read back by whoever ran it (the gameday)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openbell.slo.verdict import Verdict


@dataclass(frozen=True)
class LoadResult:
    profile: str = ""
    target: str = ""
    summary: str = ""  # k6's end-of-test summary (JSON)
    k6_log: str = ""
    verdict: Verdict = field(default_factory=lambda: Verdict("inconclusive"))

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "target": self.target, "summary": self.summary, "k6_log": self.k6_log,
                "verdict": self.verdict.to_dict()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LoadResult:
        return cls(str(raw.get("profile") or ""), str(raw.get("target") or ""), str(raw.get("summary") or ""),
                   str(raw.get("k6_log") or ""), Verdict.from_dict(raw.get("verdict")))

    @property
    def thresholds_only(self) -> bool:
        """It failed on k6 thresholds alone (k6 itself ran to the end; the SLO gate did not stop it)."""
        f = self.verdict.figures
        return bool(f.get("thresholds")) and not f.get("slo_gate") and not f.get("error")

    def figures(self) -> dict[str, Any]:
        """The verdict's scalar figures, and how many k6 thresholds were crossed."""
        f = self.verdict.figures
        keep = {k: v for k, v in f.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
        keep["thresholds_crossed"] = sum(1 for t in f.get("thresholds", []) if not t.get("passed"))
        return keep
