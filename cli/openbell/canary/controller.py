"""The canary controller: the I/O around the pure state machine.

Each poll it takes an operator's request (promote/abort), asks both gates, reads the canary's real share
of traffic, lets the machine decide, carries out the actions on the target and persists the rollout. The
state is saved after every transition, so a crash leaves a record that `status` shows and `resume` or
`abort` continue from. Ctrl-C (or SIGTERM) rolls back unless told otherwise; a second Ctrl-C during the
rollback is ignored, because leaving traffic half on a canary is the one thing worse than waiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from openbell.canary import machine
from openbell.canary.gates import Gates
from openbell.canary.machine import Action, Churn, Observation, Promote, RollBack, Rollout, SetWeight
from openbell.canary.telemetry import Spans, new_ids
from openbell.errors import OpenbellError, UnreachableError, UsageError
from openbell.slo.verdict import Verdict
from openbell.targets.base import CanaryTarget, RunConflict, RunStore, Traffic

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while the rollout was progressing."""


@dataclass
class Listener:
    """What the command shows while the rollout runs (progress bars, lines); all no-ops by default."""

    def event(self, rollout: Rollout, event: machine.Event) -> None:
        pass

    def poll(self, rollout: Rollout, slo: Verdict | None, judge: Verdict | None, traffic: Traffic | None) -> None:
        pass


@dataclass
class Controller:
    target: CanaryTarget
    store: RunStore
    gates: Gates | None
    poll_s: float = 2.0
    rollback_on_interrupt: bool = True
    listener: Listener = field(default_factory=Listener)
    spans: Spans | None = None
    clock: Clock = time.time
    sleep: Sleep = time.sleep
    last: dict[str, Any] = field(default_factory=dict)
    _doc: dict[str, Any] = field(default_factory=dict)
    _shown: int = 0

    # -- persistence ---------------------------------------------------------------------------------

    def load(self) -> Rollout | None:
        doc = self.store.load()
        if not doc or "rollout" not in doc:
            return None
        self._doc = doc
        try:
            return Rollout.from_dict(doc["rollout"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"canary state of {self.target.service}: malformed ({exc!r})") from exc

    def save(self, rollout: Rollout) -> None:
        if not self._doc.get("trace_id"):
            self._doc["trace_id"], self._doc["root_span_id"] = new_ids()
            self._doc["spans_emitted"] = 0
        if self.spans is not None:
            with contextlib.suppress(Exception):  # telemetry never stops a rollout
                self._doc["spans_emitted"] = self.spans.emit(
                    rollout, self._doc["trace_id"], self._doc["root_span_id"], int(self._doc["spans_emitted"]))
        for event in rollout.events[self._shown:]:
            self.listener.event(rollout, event)
        self._shown = len(rollout.events)
        self._doc.update({"rollout": rollout.to_dict(), "target": self.target.describe(), "updated_at": self.clock(),
                          "owner": _owner(), "last": self.last})
        self.store.save(self._doc)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        try:
            self.store.acquire(_owner())
        except RunConflict as exc:
            raise UsageError(f"canary: {exc}; wait for it, or `openbell canary abort {self.target.service}`") from None
        try:
            yield
        finally:
            self.store.release()

    # -- entry points --------------------------------------------------------------------------------

    def run(self, version: str, policy: machine.Policy, faults: dict[str, str]) -> Rollout:
        """A new rollout of `version`: refused while an unfinished one exists for the service."""
        with self.locked():
            previous = self.load()
            if previous is not None and not previous.done:
                raise UsageError(
                    f"canary: a rollout of {previous.service} {previous.version} stopped while {previous.phase} "
                    f"(step {previous.step_index + 1}): `openbell canary resume {previous.service}` "
                    "or `abort` it first")
            self._doc, self._shown = {}, 0
            rollout = machine.start(self.target.service, version, self.target.name, policy, self.clock(), faults,
                                    baseline_version=self.target.stable_version())
            self.save(rollout)
            return self._drive(rollout, [])

    def resume(self) -> Rollout:
        with self.locked():
            rollout = self._existing()
            if rollout.done:
                return rollout
            self._shown = len(rollout.events)
            rollout, actions = machine.resumed(rollout, self.clock())
            self.save(rollout)
            return self._drive(rollout, actions)

    def abort(self, reason: str = "aborted by an operator") -> Rollout:
        """Roll back now: through the running controller when one holds the lock, else directly."""
        rollout = self._existing()
        if rollout.done:
            return rollout
        try:
            self.store.acquire(_owner())
        except RunConflict:
            self.store.request("abort")
            return self._wait_for_live_run(rollout)
        try:
            self._shown = len(rollout.events)
            rollout, actions = machine.abort(rollout, self.clock(), reason)
            self.save(rollout)
            return self._carry_out(rollout, actions)
        finally:
            self.store.release()

    def promote(self) -> Rollout:
        """Skip the remaining holds: through the running controller when one holds the lock, else by
        resuming the stopped rollout straight into its promotion."""
        rollout = self._existing()
        if rollout.done:
            return rollout
        try:
            self.store.acquire(_owner())
        except RunConflict:
            self.store.request("promote")
            return self._wait_for_live_run(rollout)
        try:
            self._shown = len(rollout.events)
            if rollout.phase == "rolling_back":
                raise UsageError(f"canary: {rollout.service} is rolling back ({rollout.reason}); "
                                 "it cannot be promoted: `openbell canary abort` finishes the rollback")
            if rollout.phase == "starting" or not self.target.canary_running():
                raise UsageError(f"canary: no running canary of {rollout.service} to promote; `abort` cleans up")
            rollout = rollout.log(self.clock(), "request", "promotion requested by an operator")
            if rollout.phase == "progressing":
                rollout, actions = machine.advance(rollout, Observation(self.clock(), request="promote"))
            else:
                actions = [Promote()]
            self.save(rollout)
            return self._carry_out(rollout, actions)
        finally:
            self.store.release()

    def _existing(self) -> Rollout:
        rollout = self.load()
        if rollout is None:
            raise UsageError(f"canary: no rollout of {self.target.service} recorded on this target")
        return rollout

    def _wait_for_live_run(self, rollout: Rollout, timeout_s: float = 180.0) -> Rollout:
        """The live run takes the request at its next poll; wait (bounded) for it to finish."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = self.load() or rollout
            if current.done:
                return current
            self.sleep(0.5)
        raise UnreachableError(f"canary: the running controller of {rollout.service} did not finish in "
                               f"{timeout_s:.0f}s; see `openbell canary status {rollout.service}`")

    # -- the loop ------------------------------------------------------------------------------------

    def _drive(self, rollout: Rollout, actions: list[Action]) -> Rollout:
        with _interrupts_raise():
            try:
                if rollout.phase == "starting":
                    if self.gates is not None:
                        self.gates.baseline(self.clock())
                    self.target.start_canary(rollout.version, rollout.faults)
                    rollout, actions = machine.canary_ready(rollout, self.clock())
                    self.save(rollout)
                elif self.gates is not None and rollout.phase == "progressing":
                    self.gates.baseline(self.clock())
                rollout = self._execute(rollout, actions)
                while rollout.phase == "progressing":
                    self.sleep(max(0.0, self.poll_s - 0.0))
                    rollout = self._poll(rollout)
            except Interrupted:
                return self._interrupted(rollout)
        return self._finish(rollout)

    def _poll(self, rollout: Rollout) -> Rollout:
        self.store.renew()
        request = self.store.take_request()
        now = self.clock()
        since = _first_step_at(rollout)
        slo = judge = None
        if self.gates is not None:
            slo = _safe(lambda: self.gates.slo(now))  # type: ignore[union-attr]
            judge = _safe(lambda: self.gates.judge(now, since))  # type: ignore[union-attr]
            if rollout.weight >= 100 and judge.outcome == "inconclusive":
                # At 100% stable may have no traffic left to compare with: the canary stands on its SLOs.
                judge = Verdict("pass", ("judge not applicable at 100%: " + "; ".join(judge.reasons),),
                                judge.figures)
        traffic = _safe_traffic(self.target)
        self.last = {"at": now, "slo": slo.to_dict() if slo else None, "judge": judge.to_dict() if judge else None,
                     "traffic": traffic.to_dict() if traffic else None, "weight": rollout.weight}
        self.listener.poll(rollout, slo, judge, traffic)
        reasons = tuple(r for v in (slo, judge) if v is not None and v.outcome != "pass" for r in v.reasons)
        figures: dict[str, Any] = {}
        if traffic is not None and traffic.canary_share is not None:
            figures["canary_share"] = round(traffic.canary_share, 4)
        messages = (judge.figures.get("messages") or {}) if judge else {}
        if messages.get("canary_share") is not None:
            figures["canary_message_share"] = messages["canary_share"]
        obs = Observation(now, slo.outcome if slo else None, judge.outcome if judge else None, reasons,
                          request if request in ("promote", "abort") else None, figures)  # type: ignore[arg-type]
        if request is not None:
            rollout = rollout.log(now, "request", f"{request} requested by an operator")
        before = len(rollout.events)
        rollout, actions = machine.advance(rollout, obs)
        if actions or len(rollout.events) != before or request is not None:
            self.save(rollout)
        return self._execute(rollout, actions)

    def _execute(self, rollout: Rollout, actions: list[Action]) -> Rollout:
        for action in actions:
            if isinstance(action, SetWeight):
                self.target.set_weight(action.percent)
            elif isinstance(action, Churn):
                rollout = self._churn(rollout, action.percent)
                self.save(rollout)
            elif isinstance(action, RollBack | Promote):
                return self._carry_out(rollout, [action])
        return rollout

    def _churn(self, rollout: Rollout, percent: int) -> Rollout:
        traffic = self.target.traffic()
        share = traffic.canary_share
        want = percent / 100.0
        if share is None or share >= want:
            return rollout.log(self.clock(), "churn", f"no churn needed: canary share "
                               f"{'n/a' if share is None else f'{share:.0%}'} at weight {percent}%")
        fraction = 1.0 if share >= 1.0 else (want - share) / (1.0 - share)
        closed = self.target.churn(fraction)
        after = self.target.traffic()
        return rollout.log(self.clock(), "churn",
                           f"drained {closed} stable connections ({fraction:.0%}) to reach {percent}%: canary share "
                           f"{share:.0%} -> {after.canary_share or 0:.0%}",
                           closed=closed, fraction=round(fraction, 4), share_before=round(share, 4),
                           share_after=round(after.canary_share or 0.0, 4))

    def _carry_out(self, rollout: Rollout, actions: list[Action]) -> Rollout:
        """Promotion or rollback, shielded from Ctrl-C, then the end state verified."""
        with _interrupts_ignored():
            for action in actions:
                if isinstance(action, RollBack):
                    self.target.rollback()
                elif isinstance(action, Promote):
                    self.target.promote(rollout.version)
            problems = self.target.verify_stable()
            detail = "verified" if not problems else "NOT verified: " + "; ".join(problems)
            rollout = machine.completed(rollout, self.clock(), detail)
            if problems:
                rollout = rollout.log(self.clock(), "verify", "end state not verified: " + "; ".join(problems),
                                      problems=problems)
            self.save(rollout)
        return rollout

    def _interrupted(self, rollout: Rollout) -> Rollout:
        now = self.clock()
        if self.rollback_on_interrupt and not rollout.done:
            rollout, actions = machine.abort(rollout, now, "interrupted (Ctrl-C or SIGTERM)")
            self.save(rollout)
            if rollout.phase == "promoting":
                actions = [Promote()]
            return self._carry_out(rollout, actions)
        rollout = rollout.log(now, "interrupted", f"interrupted at {rollout.phase}, weight {rollout.weight}%: "
                                                  f"`openbell canary resume {rollout.service}` or `abort`")
        self.save(rollout)
        return rollout

    def _finish(self, rollout: Rollout) -> Rollout:
        if self.spans is not None:
            self.spans.flush()
        return rollout


def _first_step_at(rollout: Rollout) -> float:
    for event in rollout.events:
        if event.kind == "step":
            return event.at
    return rollout.step_started_at


def _safe(ask: Callable[[], Verdict]) -> Verdict:
    try:
        return ask()
    except OpenbellError as exc:
        return Verdict("inconclusive", (f"gate unavailable: {exc}",))


def _safe_traffic(target: CanaryTarget) -> Traffic | None:
    try:
        return target.traffic()
    except OpenbellError:
        return None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the main thread while the rollout progresses."""
    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
