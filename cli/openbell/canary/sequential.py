"""The sequential judge's statistics: anytime-valid comparisons of canary and stable, pure, on counts.

Every question the judge asks is a share of bad events: of the canary's pushes, how many were slower than
10 ms (one question per histogram boundary, so together they compare the whole distribution: a stochastic
order); of its REST requests, how many failed; of its handshakes, how many were refused. Prometheus has
exactly these counts: histogram buckets and counters, per version, since the canary's first step.

Each share gets a **confidence sequence**: an interval that holds the true share at every poll at once,
with probability at least 1 - alpha, however often it is looked at and whenever the looking stops
(Robbins' method of mixtures; Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 2021; the approach of Lindon, Sanden, Shirikian,
"Rapid Regression Detection in Software Deployments through Sequential Testing", KDD 2022). For k bad
events in n, the mixture of Bernoulli likelihood ratios against a Beta(1/2, 1/2) prior,

    M_n(p) = B(1/2 + k, 1/2 + n - k) / B(1/2, 1/2) / (p^k (1 - p)^(n - k)),

is a nonnegative martingale under the true p; by Ville's inequality it ever reaches 1/alpha with
probability at most alpha, so {p : M_n(p) < 1/alpha} is a confidence sequence. The set is an interval
around k/n (log M_n is convex in p), found by bisection.

A comparison holds two such sequences, canary and stable, and while both hold, the difference of the
shares lies between `low = canary.low - stable.high` and `high = canary.high - stable.low`:

- **regressed** when `low > margin`: the canary is surely worse than stable by more than the margin (0
  for failures: the same code fails no more often; a resolution floor for latency, since two processes on
  one machine are never exactly alike);
- **non-inferior** when `high <= tolerance`: the canary is surely no worse than stable by more than
  the tolerance, how much worse is still acceptable;
- **not yet** otherwise.

Between margin and tolerance lies an indifference zone (as in Wald's SPRT): a canary in it may be rolled
back or promoted, one outside it is judged right with probability at least 1 - alpha. The judge's alpha
is split evenly over every sequence it keeps (Bonferroni), so the whole judgement, every question at
every poll, is wrong with probability at most alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Decision = Literal["regressed", "non-inferior", "not yet"]

PRIOR = 0.5  # Beta(1/2, 1/2): the Krichevsky-Trofimov mixture


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_mixture(k: int, n: int, p: float) -> float:
    """log M_n(p): the mixture likelihood of k bad events in n against the share p (inf when p is
    impossible given the data)."""
    if not 0 <= k <= n:
        raise ValueError(f"expected 0 <= k <= n, got k={k}, n={n}")
    if (p <= 0.0 and k > 0) or (p >= 1.0 and k < n):
        return math.inf
    marginal = _log_beta(PRIOR + k, PRIOR + n - k) - _log_beta(PRIOR, PRIOR)
    likelihood = (k * math.log(p) if k else 0.0) + ((n - k) * math.log1p(-p) if n - k else 0.0)
    return marginal - likelihood


def confidence_sequence(k: int, n: int, alpha: float) -> tuple[float, float]:
    """The interval {p : M_n(p) < 1/alpha} of shares still plausible after k bad events in n, valid
    simultaneously at every n with probability at least 1 - alpha. (0, 1) with no events."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"expected 0 < alpha < 1, got {alpha}")
    if n <= 0:
        return 0.0, 1.0
    level = math.log(1.0 / alpha)
    centre = k / n

    def outside(p: float) -> bool:
        return log_mixture(k, n, p) >= level

    low = 0.0
    if k > 0:
        a, b = 0.0, centre  # outside at a, inside at b
        for _ in range(60):
            mid = (a + b) / 2.0
            a, b = (mid, b) if outside(mid) else (a, mid)
        low = a
    high = 1.0
    if k < n:
        a, b = centre, 1.0  # inside at a, outside at b
        for _ in range(60):
            mid = (a + b) / 2.0
            a, b = (a, mid) if outside(mid) else (mid, b)
        high = b
    return low, high


@dataclass(frozen=True)
class Counts:
    """Bad events among all events of one version, since the canary's first step."""

    bad: int
    total: int

    @property
    def share(self) -> float | None:
        return self.bad / self.total if self.total > 0 else None


@dataclass(frozen=True)
class Comparison:
    """One question to canary and stable: the two shares' confidence sequences and the decision."""

    name: str
    canary: Counts
    stable: Counts
    alpha: float  # for each of the two sequences
    margin: float
    tolerance: float
    canary_cs: tuple[float, float]
    stable_cs: tuple[float, float]
    decision: Decision

    @property
    def low(self) -> float:
        """The least the canary's share can exceed stable's (while both sequences hold)."""
        return self.canary_cs[0] - self.stable_cs[1]

    @property
    def high(self) -> float:
        """The most the canary's share can exceed stable's."""
        return self.canary_cs[1] - self.stable_cs[0]

    def line(self) -> str:
        c, s = self.canary, self.stable
        return (f"{self.name}: canary {c.bad}/{c.total} ({_pct(c.share)}) vs stable {s.bad}/{s.total} "
                f"({_pct(s.share)}): canary worse by {_pp(self.low)} to {_pp(self.high)} "
                f"(rolled back above {_pp(self.margin)}, accepted within {_pp(self.tolerance)})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "decision": self.decision,
                "canary": {"bad": self.canary.bad, "total": self.canary.total},
                "stable": {"bad": self.stable.bad, "total": self.stable.total},
                "worse_by": [round(self.low, 6), round(self.high, 6)],
                "margin": self.margin, "tolerance": self.tolerance, "alpha": self.alpha}


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.2%}"


def _pp(value: float) -> str:
    """A difference of shares in percentage points."""
    return f"{100.0 * value:+.2f}pp"


def compare(name: str, canary: Counts, stable: Counts, alpha: float, margin: float,
            tolerance: float) -> Comparison:
    """Canary against stable on one share of bad events; `alpha` for each side's sequence."""
    if margin > tolerance:
        raise ValueError(f"{name}: the margin ({margin}) must not exceed the tolerance ({tolerance})")
    c = confidence_sequence(canary.bad, canary.total, alpha)
    s = confidence_sequence(stable.bad, stable.total, alpha)
    low, high = c[0] - s[1], c[1] - s[0]
    decision: Decision = "regressed" if low > margin else "non-inferior" if high <= tolerance else "not yet"
    return Comparison(name, canary, stable, alpha, margin, tolerance, c, s, decision)


def exceedances(buckets: Sequence[tuple[float, float]]) -> list[tuple[float, int, int]]:
    """From a cumulative histogram's (le, count) pairs (+Inf included), each finite boundary with the
    events above it and the total: (le, above, total), boundaries in increasing order."""
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return []
    total = max(0, round(ordered[-1][1]))
    out: list[tuple[float, int, int]] = []
    for le, count in ordered[:-1]:
        below = min(total, max(0, round(count)))
        out.append((le, total - below, total))
    return out


def overall(comparisons: Sequence[Comparison]) -> Decision:
    """Regressed when any question says so; non-inferior only when every one does; else not yet."""
    if any(c.decision == "regressed" for c in comparisons):
        return "regressed"
    if comparisons and all(c.decision == "non-inferior" for c in comparisons):
        return "non-inferior"
    return "not yet"
