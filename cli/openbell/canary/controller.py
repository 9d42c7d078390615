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

from openbell import child
from openbell.canary import machine
from openbell.canary.gates import Gates
from openbell.canary.machine import Action, Churn, Observation, Promote, RollBack, Rollout, SetWeight
from openbell.canary.probe import Prober
from openbell.canary.telemetry import Spans, new_ids
from openbell.errors import OpenbellError, UnreachableError, UsageError
from openbell.slo.burning import Burning
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


class Unhealthy(Exception):
    """The fleet burns its error budget before the rollout: nothing was started."""

    def __init__(self, burning: list[Burning], now: float) -> None:
        self.burning, self.now = burning, now
        super().__init__("unhealthy before the rollout: " + "; ".join(b.line(now) for b in burning))


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
    current: Rollout | None = None  # the latest rollout saved: what an interrupt or an error acts on
    _doc: dict[str, Any] = field(default_factory=dict)
    _shown: int = 0

    # -- persistence ---------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        self.target.heartbeat = self.store.renew

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
            try:
                self._doc["spans_emitted"] = self.spans.emit(
                    rollout, self._doc["trace_id"], self._doc["root_span_id"], int(self._doc["spans_emitted"]))
            except Interrupted:
                raise
            except Exception:  # telemetry never stops a rollout
                pass
        for event in rollout.events[self._shown:]:
            self.listener.event(rollout, event)
        self._shown = len(rollout.events)
        self._doc.update({"rollout": rollout.to_dict(), "target": self.target.describe(), "updated_at": self.clock(),
                          "owner": _owner(), "last": self.last})
        self.store.save(self._doc)
        self.current = rollout

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

    def run(self, version: str, policy: machine.Policy, faults: dict[str, str],
            on_burning: str = "refuse") -> Rollout:
        """A new rollout of `version`: refused while an unfinished one exists for the service, and (unless
        `on_burning` is "proceed") while the fleet already burns its budget: a canary started then could not
        tell its own damage from what was there. Raises Unhealthy, with nothing changed."""
        with self.locked():
            previous = self.load()
            if previous is not None and not previous.done:
                raise UsageError(
                    f"canary: a rollout of {previous.service} {previous.version} stopped while {previous.phase} "
                    f"(step {previous.step_index + 1}): `openbell canary resume {previous.service}` "
                    "or `abort` it first")
            if self.gates is not None and on_burning == "refuse":
                now = self.clock()
                burning = self.gates.preflight(now)
                if burning:
                    raise Unhealthy(burning, now)
            self._doc, self._shown = {}, 0
            self.store.take_request()  # left by an operator for an earlier run: not this one's
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
            self.store.take_request()
            rollout, actions = machine.resumed(rollout, self.clock())
            self.save(rollout)
            return self._drive(rollout, actions)

    def abort(self, reason: str = "aborted by an operator") -> Rollout:
        """Roll back now: through the running controller when one holds the lock, else directly."""

        def act(rollout: Rollout) -> Rollout:
            rollout, actions = machine.abort(rollout, self.clock(), reason)
            self.save(rollout)
            return self._carry_out(rollout, actions)

        return self._operator("abort", act)

    def promote(self) -> Rollout:
        """Skip the remaining holds: through the running controller when one holds the lock, else by
        resuming the stopped rollout straight into its promotion."""

        def act(rollout: Rollout) -> Rollout:
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

        return self._operator("promote", act)

    def _operator(self, command: str, act: Callable[[Rollout], Rollout], timeout_s: float = 180.0) -> Rollout:
        """Carry out `command` ourselves when no run holds the lock; otherwise leave it for the live run
        and wait for that run to finish - taking over if it dies meanwhile (its lock goes with it)."""
        deadline = time.monotonic() + timeout_s
        requested = False
        while True:
            rollout = self._existing()
            if rollout.done:
                return rollout
            try:
                self.store.acquire(_owner())
            except RunConflict:
                if not requested:
                    self.store.request(command)
                    requested = True
                if time.monotonic() > deadline:
                    raise UnreachableError(
                        f"canary: the running controller of {rollout.service} did not finish in {timeout_s:.0f}s; "
                        f"see `openbell canary status {rollout.service}`") from None
                self.sleep(0.5)
                continue
            try:
                rollout = self._existing()  # again, under the lock: the live run may have moved on
                if rollout.done:
                    return rollout
                self.store.take_request()
                self._shown = len(rollout.events)
                return act(rollout)
            finally:
                self.store.release()

    def _existing(self) -> Rollout:
        rollout = self.load()
        if rollout is None:
            raise UsageError(f"canary: no rollout of {self.target.service} recorded on this target")
        return rollout

    # -- the loop ------------------------------------------------------------------------------------

    def _drive(self, rollout: Rollout, actions: list[Action]) -> Rollout:
        self.current = rollout
        with child.interrupts_raise(lambda signum: Interrupted(signal.Signals(signum).name)):
            try:
                if rollout.phase == "starting":
                    self._baseline(fresh=True)
                    self.target.start_canary(rollout.version, rollout.faults)
                    rollout, actions = machine.canary_ready(rollout, self.clock())
                    self.save(rollout)
                elif rollout.phase == "progressing":
                    self._baseline(fresh=False)
                with self._probing(rollout) as probing:
                    rollout = self._execute(rollout, actions)
                    while rollout.phase == "progressing":
                        self.sleep(self.poll_s)
                        rollout = self._poll(rollout)
                if probing is not None:
                    rollout = self._log_probe(rollout, probing)
            except Interrupted:
                return self._finish(self._interrupted())
            except Exception as exc:
                self._fail_safe(exc)
                raise
        return self._finish(rollout)

    @contextlib.contextmanager
    def _probing(self, rollout: Rollout) -> Iterator[Prober | None]:
        """Synthetic requests to the canary and to stable while the rollout progresses (policy.probe_rate_per_s;
        none at 0): the judge's evidence at any weight, however quiet the service."""
        if rollout.policy.probe_rate_per_s <= 0 or rollout.phase != "progressing":
            yield None
            return
        prober = Prober(self.target.probe_endpoints, rollout.policy.probe_rate_per_s).start()
        try:
            yield prober
        finally:
            prober.stop()

    def _log_probe(self, rollout: Rollout, prober: Prober) -> Rollout:
        c, s = prober.counts["canary"], prober.counts["stable"]
        rollout = rollout.log(self.clock(), "probe", f"synthetic probe at {prober.rate_per_s:g}/s each: canary "
                              f"{c.requests} requests ({c.errors} failed), stable {s.requests} ({s.errors} failed)")
        self.save(rollout)
        return rollout

    def _baseline(self, fresh: bool) -> None:
        """What burned before the canary got traffic: measured once, at the start, and kept with the run
        (a resumed run must not take the canary's own burn for the platform's)."""
        if self.gates is None:
            return
        saved = self._doc.get("burning_at_start")
        if not fresh and isinstance(saved, list):
            self.gates.burning_at_start = {str(s) for s in saved}
            return
        self.gates.baseline(self.clock())
        self._doc["burning_at_start"] = sorted(self.gates.burning_at_start)

    def _fail_safe(self, exc: BaseException) -> None:
        """The controller itself failed mid-rollout (a target or Prometheus error): roll back before the
        error is reported. If even that fails, the state says where it stopped, for resume or abort."""
        rollout = self.current
        if rollout is None or rollout.done:
            return
        with child.interrupts_ignored():
            try:
                rollout, actions = machine.abort(rollout, self.clock(), f"controller error: {exc}")
                self.save(rollout)
                self._carry_out(rollout, actions)
            except Exception as second:
                with contextlib.suppress(Exception):
                    self.save(rollout.log(self.clock(), "error", f"rollback after an error failed: {second}; "
                                          f"`openbell canary abort {rollout.service}` retries it"))

    def _poll(self, rollout: Rollout) -> Rollout:
        self.store.renew()
        request = self.store.take_request()
        now = self.clock()
        since = _first_step_at(rollout)
        slo = judge = None
        if self.gates is not None:
            slo = _safe(lambda: self.gates.slo(now))  # type: ignore[union-attr]
            judge = _safe(lambda: self.gates.judge(now, since, rollout.policy))  # type: ignore[union-attr]
            if rollout.policy.inconclusive == "pass":
                # The lenient policy is for too little data, never for a gate that could not look at all.
                slo, judge = _blind_fails(slo), _blind_fails(judge)
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
        evidence = ""
        if judge is not None and judge.figures.get("judge") == "sequential":
            figures["evidence"] = _evidence(judge.figures)
            evidence = "; ".join(judge.reasons) if judge.outcome == "pass" else ""
        obs = Observation(now, slo.outcome if slo else None, judge.outcome if judge else None, reasons,
                          request if request in ("promote", "abort") else None, figures,  # type: ignore[arg-type]
                          evidence)
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
        if share >= 1.0:
            fraction = 1.0
        elif self.target.steers_reconnects:
            # Drained clients all reconnect to the canary: move exactly the missing share.
            fraction = (want - share) / (1.0 - share)
        else:
            # They reconnect at the weight: only `want` of them land on the canary.
            fraction = min(1.0, (want - share) / (want * (1.0 - share)))
        closed = self.target.churn(fraction)
        after = self.target.traffic()
        return rollout.log(self.clock(), "churn",
                           f"drained {closed} stable connections ({fraction:.0%}) to reach {percent}%: canary share "
                           f"{share:.0%} -> {after.canary_share or 0:.0%}",
                           closed=closed, fraction=round(fraction, 4), share_before=round(share, 4),
                           share_after=round(after.canary_share or 0.0, 4))

    def _carry_out(self, rollout: Rollout, actions: list[Action]) -> Rollout:
        """Promotion or rollback, shielded from Ctrl-C, then the end state verified."""
        with child.interrupts_ignored():
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

    def _interrupted(self) -> Rollout:
        # A second Ctrl-C from here on must not cut the rollback short (restored when _drive returns).
        child.ignore_interrupts()
        rollout = self.current
        assert rollout is not None
        now = self.clock()
        if rollout.done:
            return rollout
        if self.rollback_on_interrupt:
            rollout, actions = machine.abort(rollout, now, "interrupted (Ctrl-C or SIGTERM)")
            self.save(rollout)
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


def _evidence(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The sequential judge's questions in short, for the timeline: each decision with the counts behind it
    and how much worse the canary can be (percentage points, low to high)."""
    out = []
    for c in figures.get("comparisons") or []:
        out.append({"question": c["name"], "decision": c["decision"],
                    "canary": f"{c['canary']['bad']}/{c['canary']['total']}",
                    "stable": f"{c['stable']['bad']}/{c['stable']['total']}",
                    "worse_by_pp": [round(100 * v, 2) for v in c["worse_by"]],
                    "tolerance_pp": round(100 * c["tolerance"], 2)})
    return out


def _safe(ask: Callable[[], Verdict]) -> Verdict:
    try:
        return ask()
    except OpenbellError as exc:
        return Verdict("inconclusive", (f"gate unavailable: {exc}",), {"unavailable": True})


def _blind_fails(verdict: Verdict) -> Verdict:
    return Verdict("fail", verdict.reasons, verdict.figures) if verdict.figures.get("unavailable") else verdict


def _safe_traffic(target: CanaryTarget) -> Traffic | None:
    try:
        return target.traffic()
    except OpenbellError:
        return None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
