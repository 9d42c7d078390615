"""A gameday's events and what listens to them (stdlib only: the command's screen subclasses Listener
without loading the orchestrator, so `openbell --help` stays fast)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openbell.gameday.core import PhaseState
    from openbell.slo.verdict import Verdict


@dataclass(frozen=True)
class Event:
    at: float
    phase: str | None
    kind: str
    message: str
    severity: str = "info"

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "phase": self.phase, "kind": self.kind, "message": self.message,
                "severity": self.severity}


class Listener:
    """What the command shows while the gameday runs; no-ops by default."""

    def event(self, event: Event) -> None:
        pass

    def tick(self, phases: Sequence[PhaseState], gate: Verdict | None, now: float) -> None:
        """The phases as they stand (a frozen snapshot) and the gate's last answer, every poll."""

    def line(self, phase: str, text: str) -> None:
        """A progress line one of the phases' tools wrote (a canary step, a chaos activity)."""


