"""One baseline-aware judgement of SLO results, for every gate that runs beside a risky action.

A risky action cannot be blamed for a burn that was there before it began, nor failed for a burn it
declared it would cause: both are reported, never counted. So each SLO series is counted, or excused:

- burning at the **baseline** (the rollout's start: the canary's fleet gate) -> reported, not counted;
- burning where an **expected burn** names its SLO (a gameday phase that loses a broker spends consumer-lag
  budget by design; the gameday holds it to its budget cap instead) -> reported, not counted;
- anything else counts with its own outcome and the reasons of its pairs.

Pure: GroupResults (from `evaluate`) in, a Judgement out. Used by the canary's fleet gate, the gameday
gate and (with nothing excused) the chaos safeguard and `openbell slo gate`, through `verdict_of`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openbell.slo.verdict import Outcome, combine

if TYPE_CHECKING:
    from openbell.slo.evaluate import GroupResult


@dataclass(frozen=True)
class Counted:
    """One SLO series as the judgement counts it: its outcome, or why it is excused, with the lines to report."""

    result: GroupResult
    outcome: Outcome  # an excused series counts as "pass"
    counted: bool
    lines: tuple[str, ...]  # a counted series: its failing or inconclusive pairs; an excused one: why


@dataclass(frozen=True)
class Judgement:
    items: tuple[Counted, ...]

    @property
    def outcomes(self) -> list[Outcome]:
        """The outcomes of the counted series (excused ones left out)."""
        return [c.outcome for c in self.items if c.counted]

    @property
    def outcome(self) -> Outcome:
        """The counted series' outcomes combined; "pass" when every series was excused, "inconclusive" when
        there was none at all."""
        if not self.items:
            return "inconclusive"
        return combine(self.outcomes) if self.outcomes else "pass"

    @property
    def failing(self) -> list[Counted]:
        return [c for c in self.items if c.counted and c.outcome == "fail"]

    @property
    def excused(self) -> list[Counted]:
        return [c for c in self.items if not c.counted]

    @property
    def lines(self) -> list[str]:
        """Every line to report, in the results' order: counted problems and excused burns alike."""
        return [line for c in self.items for line in c.lines]


def judge(results: list[GroupResult], baseline: Collection[str] = (), expected: Collection[str] = (),
          before: str = "it started") -> Judgement:
    """`baseline`: series labels (service/name{group}) already failing before the action; `expected`: SLO
    names the action declared it would burn; `before` names the action in the report line."""
    items = []
    for r in results:
        if r.outcome == "fail" and r.label in baseline:
            items.append(Counted(r, "pass", False, (f"{r.label}: already burning before {before} (not counted)",)))
        elif r.outcome == "fail" and r.slo.name in expected:
            items.append(Counted(r, "pass", False,
                                 (f"{r.label}: burning as its phase expected (held to the budget cap)",)))
        else:
            lines = () if r.outcome == "pass" else tuple(f"{r.label}: {p.reason}" for p in r.pairs
                                                         if p.outcome == r.outcome)
            items.append(Counted(r, r.outcome, True, lines))
    return Judgement(tuple(items))
