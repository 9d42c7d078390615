"""The gameday orchestrator: phases as child `openbell` commands, started on time, watched by one gate.

Each phase runs the tool SREs already use on its own (`openbell load run`, `canary run`, `chaos run`) as a
child process in its own session, with `--output json` (its result) and a log of its stderr. That keeps
each tool's own guarantees intact (the canary rolls back on SIGINT, Chaos Toolkit runs its rollbacks, k6
writes its summary), lets phases overlap without threads, and gives the report the same data each tool
gives CI. The orchestrator adds what no single tool has: the schedule (`at`, `after` + `delay`), the gameday
gate over every SLO, and the rule that one failure stops every risky thing still running.

Every decision is gameday/core.py's (pure: `step(state, now, seen) -> (state, actions)`); this module only
observes (children that exited, Ctrl-C, the gate's answers) and carries the actions out: it starts the
phases' processes, sends each its one SIGINT, kills a tree that will not stop and rolls its canary back from
outside (`canary abort`), asks the gate, and records the events. Ctrl-C or SIGTERM stops the same way and ends
with exit 130; a second Ctrl-C during the stop is ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openbell import child
from openbell.gameday import core
from openbell.gameday.core import CANARY_GRACE_INTERVALS, CANARY_GRACE_MIN_S, GRACE_S, Outcome
from openbell.gameday.events import Event, Listener
from openbell.gameday.plan import CanaryPhase, ChaosPhase, LoadPhase, Phase, Plan
from openbell.slo.verdict import Verdict

if TYPE_CHECKING:
    from openbell.gameday.gate import GamedayGate
    from openbell.slo.burning import Burning

__all__ = ["CANARY_GRACE_INTERVALS", "CANARY_GRACE_MIN_S", "GRACE_S", "Gameday", "Outcome", "PhaseRun", "Where",
           "child_events", "judge_phase"]


@dataclass(frozen=True)
class Where:
    """Where the phases act: the target and how to reach it."""

    target: str  # sandbox | kubernetes
    prometheus_url: str
    home: Path | None = None  # sandbox
    base_url: str | None = None  # kubernetes: the platform's entry point for k6
    kube_context: str | None = None
    namespace: str | None = None


@dataclass
class PhaseRun:
    """A phase as the runner keeps it: its process, result file and log, and `view`, the core's state of it
    (taken after every step; the report is written from it)."""

    phase: Phase
    proc: subprocess.Popen[bytes] | None = None
    stdout: Path | None = None
    log: Path | None = None
    log_offset: int = 0
    view: core.PhaseState = field(init=False)

    def __post_init__(self) -> None:
        self.view = core.PhaseState(self.phase)

    @property
    def outcome(self) -> str | None:
        return self.view.outcome

    @property
    def state(self) -> str:
        return self.view.state

    @state.setter
    def state(self, value: str) -> None:
        self.view = dataclasses.replace(self.view, state=value)

    @property
    def finished_at(self) -> float | None:
        return self.view.finished_at

    @finished_at.setter
    def finished_at(self, value: float | None) -> None:
        self.view = dataclasses.replace(self.view, finished_at=value)

    def to_dict(self, root: Path) -> dict[str, Any]:
        v = self.view
        return {"name": self.phase.name, "kind": self.phase.kind, "description": self.phase.description or
                self.phase.summary(), "start": self.phase.start.describe(), "outcome": v.outcome or "not_run",
                "reason": v.reason, "started_at": v.started_at, "finished_at": v.finished_at,
                "duration_s": None if v.started_at is None or v.finished_at is None
                else round(v.finished_at - v.started_at, 3),
                "exit_code": v.exit_code, "figures": dict(v.figures),
                "log": None if self.log is None else os.path.relpath(self.log, root),
                "result": None if self.stdout is None else os.path.relpath(self.stdout, root)}


@dataclass
class Gameday:
    plan: Plan
    where: Where
    gate: GamedayGate
    run_id: str
    workdir: Path  # the report folder: phases/<name>.json and .log go here
    listener: Listener = field(default_factory=Listener)
    poll_s: float = 0.5
    grace_s: float = GRACE_S
    clock: Callable[[], float] = time.time
    runs: list[PhaseRun] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    unhealthy: list[Burning] = field(default_factory=list)
    state: core.State | None = None

    # -- what the report reads -------------------------------------------------------------------------

    @property
    def last_gate(self) -> Verdict | None:
        return self.state.last_gate if self.state else None

    @property
    def gate_checks(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.state.gate_checks] if self.state else []

    # -- the loop ------------------------------------------------------------------------------------

    def run(self, unhealthy: list[Burning] | None = None) -> Outcome:
        """Run the plan; `unhealthy` is what a preflight already found burning (None: ask the gate now)."""
        self.runs = [PhaseRun(p) for p in self.plan.phases]
        (self.workdir / "phases").mkdir(parents=True, exist_ok=True)
        self.started_at = self.gate.started_at
        self._event(None, "gameday-start", f"gameday {self.plan.name} on {self.where.target} (run {self.run_id})")
        now = self.clock()
        if unhealthy is None:
            unhealthy = self.gate.preflight(now)
        lines = [b.line(now) for b in unhealthy]
        self.state = core.begin(self.plan, self._policy(), self.started_at, now, lines)
        if unhealthy:
            self.unhealthy = unhealthy
            self._apply(*core.refuse(self.state, lines, now))
            self.finished_at = self.clock()
            self._event(None, "gameday-end", f"gameday {self.plan.name} ended before it began")
            return core.outcome(self.state)
        with child.Interrupts() as signals:
            try:
                while not self.state.done:
                    self._tick(self.clock(), signals.seen)
                    time.sleep(self.poll_s)
            except BaseException as exc:
                # Whatever broke here (a tool that would not start, a screen that lost its pipe), nothing we
                # started may outlive us: stop every running phase the same way a failure does, then re-raise.
                self._apply(*core.fail(self.state, f"the gameday itself failed: {exc!r}", self.clock()))
                with contextlib.suppress(BaseException):
                    while not self.state.done:
                        self._tick(self.clock(), False)
                        time.sleep(self.poll_s)
                raise
        self.finished_at = self.clock()
        self._event(None, "gameday-end", f"gameday {self.plan.name} ended")
        return core.outcome(self.state)

    def _policy(self) -> core.Policy:
        """The stop policy, and the SLOs each canary phase is gated on (a gate without SLOs gates none)."""
        from openbell.canary.services import applicable, service

        slos = getattr(self.gate, "slos", None) or []
        canary_slos = {p.name: frozenset(s.name for s in applicable(slos, service(p.action.service)))
                       for p in self.plan.phases if isinstance(p.action, CanaryPhase)}
        return core.Policy(self.grace_s, CANARY_GRACE_MIN_S, CANARY_GRACE_INTERVALS, canary_slos)

    def _tick(self, now: float, interrupted: bool) -> None:
        """Observe, step, carry out; again at once while the core asks the gate."""
        assert self.state is not None
        seen = self._observe(interrupted)
        while True:
            state, actions = core.step(self.state, now, seen)
            asked = self._apply(state, actions)
            if asked is None:
                break
            if asked.phase is None:
                answer = self.gate.check(now, self.state.expected_burn)
            else:
                answer = self.gate.check(now, self.state.expected_burn, asked.severity)
            seen = core.Seen(alive=self._alive(), gate=answer, gate_for=asked.phase)
        self.listener.tick(self.state.phases, self.state.last_gate, now)

    def _observe(self, interrupted: bool) -> core.Seen:
        """What happened since the last step: progress lines forwarded, the children that exited."""
        exited: dict[str, core.Exited] = {}
        for run in self.runs:
            if run.state != "running" or run.proc is None:
                continue
            self._tail(run)
            code = run.proc.poll()
            if code is not None:
                self._tail(run)
                result = core.read_result(run.phase, _read_json(run.stdout))
                exited[run.phase.name] = core.Exited(code, result, _last_line(run.log))
        return core.Seen(interrupted=interrupted, exited=exited, alive=self._alive())

    def _alive(self) -> set[str]:
        return {r.phase.name for r in self.runs if r.proc is not None and r.proc.poll() is None}

    def _apply(self, state: core.State, actions: list[core.Action]) -> core.AskGate | None:
        """Take the core's state and carry out its actions; the gate question, if it asked one."""
        self.state = state
        for run in self.runs:
            run.view = state.phase(run.phase.name)
        asked = None
        not_started: dict[str, str] = {}
        for action in actions:
            if isinstance(action, core.Record):
                self._record(action.event, action.show)
            elif isinstance(action, core.Start):
                why = self._start(self._run(action.name))
                if why is not None:
                    not_started[action.name] = why
            elif isinstance(action, core.Interrupt):
                run = self._run(action.name)
                if run.proc is not None:
                    child.interrupt(run.proc)
            elif isinstance(action, core.Kill):
                run = self._run(action.name)
                if run.proc is not None:
                    child.kill_tree(run.proc.pid)
                    run.proc.wait()
                a = run.phase.action
                if action.abort_canary and isinstance(a, CanaryPhase):
                    self._abort_canary(a)
            elif isinstance(action, core.AskGate):
                asked = action
        if not_started:
            # Started and failed at once: the core hears of it now, before anything else happens.
            # A question this step already asked (an SLO phase starting) is still answered first.
            again = self._apply(*core.step(self.state, self.clock(), core.Seen(not_started=not_started,
                                                                               alive=self._alive())))
            return asked or again
        return asked

    def _due(self, run: PhaseRun, now: float) -> bool:
        return core.due(run.phase, {r.phase.name: r for r in self.runs}, self.started_at, now)

    def _run(self, name: str) -> PhaseRun:
        return next(r for r in self.runs if r.phase.name == name)

    def _start(self, run: PhaseRun) -> str | None:
        """The phase's process, in its own session; why it could not be started (None: it runs)."""
        run.stdout = self.workdir / "phases" / f"{run.phase.name}.json"
        run.log = self.workdir / "phases" / f"{run.phase.name}.log"
        argv = self.argv(run.phase)
        try:
            with open(run.stdout, "wb") as out, open(run.log, "wb") as err:
                err.write(("$ " + " ".join(argv[1:]) + "\n").encode())
                err.flush()
                run.proc = child.start(argv, stdout=out, stderr=err, env=self._env())
        except OSError as exc:
            return f"could not start {argv[0]}: {exc}"
        return None

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "COLUMNS": "160", "OPENBELL_PROGRESS_LINES": "1"}
        if self.where.home is not None:
            env["OPENBELL_HOME"] = str(self.where.home)
        return env

    # -- the phases' commands ------------------------------------------------------------------------

    def argv(self, phase: Phase) -> list[str]:
        """The `openbell` command line a phase runs (JSON on stdout, progress on stderr)."""
        base = [sys.executable, "-m", "openbell", "--output", "json"]
        a, w = phase.action, self.where
        slos = [x for p in self.plan.slo_paths for x in ("--slo", str(p))]
        junit = str(self.workdir / "phases" / f"{phase.name}.junit.xml")
        if isinstance(a, LoadPhase):
            argv = [*base, "load", "run", a.profile, "--no-gate", *slos, "--junit", junit,
                    "--summary", str(self.workdir / "phases" / f"{phase.name}.k6-summary.json")]
            if w.target == "sandbox":
                argv += ["--target", "sandbox"]
            else:
                argv += ["--target", w.base_url or "", "--prometheus", w.prometheus_url]
            if a.scale is not None:
                argv += ["--scale", f"{a.scale:g}"]
            if a.time_scale is not None:
                argv += ["--time-scale", f"{a.time_scale:g}"]
            for key, value in a.env.items():
                argv += ["--env", f"{key}={value}"]
            return argv
        if isinstance(a, CanaryPhase):
            argv = [*base, "canary", "run", a.service, "--version", self.version(a),
                    "--steps", ",".join(map(str, a.steps)), "--hold", f"{a.hold_s:g}s",
                    "--interval", f"{a.interval_s:g}s", "--max-extension", f"{a.max_extension_s:g}s",
                    "--on-inconclusive", a.on_inconclusive, "--target", w.target, *slos, "--junit", junit]
            for key, value in a.sandbox_faults.items():
                argv += ["--sandbox-fault", f"{key}={value}"]
            if a.probe_rate:
                argv += ["--probe-rate", f"{a.probe_rate:g}"]
            argv += ["--judge", a.judge]
            if a.judge == "sequential":
                argv += ["--alpha", f"{a.alpha:g}"]
                if a.min_hold_s is not None:
                    argv += ["--min-hold", f"{a.min_hold_s:g}s"]
                tolerance = [f"{k}={v:g}" for k, v in (("latency", a.latency_tolerance), ("errors", a.error_tolerance))
                             if v is not None]
                if tolerance:
                    argv += ["--tolerance", ",".join(tolerance)]
            return argv + self._kube_args()
        assert isinstance(a, ChaosPhase)
        argv = [*base, "chaos", "run", a.experiment, "--target", w.target, "--junit", junit,
                "--journal", str(self.workdir / "phases" / f"{phase.name}.journal.json")]
        return argv + self._kube_args()

    def _kube_args(self) -> list[str]:
        w = self.where
        if w.target != "kubernetes":
            return []
        args = ["--prometheus", w.prometheus_url]
        if w.kube_context:
            args += ["--context", w.kube_context]
        if w.namespace:
            args += ["--namespace", w.namespace]
        return args

    def version(self, canary: CanaryPhase) -> str:
        return canary.version.replace("{run}", self.run_id)

    def _tail(self, run: PhaseRun) -> None:
        """Forward the child's new complete progress lines (its stderr log) to the listener."""
        if run.log is None:
            return
        try:
            with open(run.log, "rb") as f:
                f.seek(run.log_offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        run.log_offset += end + 1
        for raw in chunk[:end].decode(errors="replace").splitlines():
            text = raw.strip()
            if text and not text.startswith("$ "):
                self.listener.line(run.phase.name, text)

    def _abort_canary(self, canary: CanaryPhase) -> None:
        """A canary killed mid-rollout left its state behind: `canary abort` rolls it back from outside."""
        argv = [sys.executable, "-m", "openbell", "--output", "json", "canary", "abort", canary.service,
                "--target", self.where.target, *self._kube_args()]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.grace_s, env=self._env(),
                                  stdin=subprocess.DEVNULL)
            self._event(None, "rollback", f"canary abort {canary.service}: exit {done.returncode}",
                        "critical" if done.returncode not in (0, 1) else "warning")
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._event(None, "rollback", f"canary abort {canary.service} failed: {exc}", "critical")

    def _event(self, phase: str | None, kind: str, message: str, severity: str = "info") -> None:
        self._record(Event(self.clock(), phase, kind, message, severity))

    def _record(self, event: Event, show: bool = True) -> None:
        self.events.append(event)
        if show:
            self.listener.event(event)


# -- a child's exit, read from its files ------------------------------------------------------------------

def judge_phase(phase: Phase, code: int, result: dict[str, Any] | None, log: Path | None) -> tuple[str, str]:
    """A child's exit code, JSON and log -> the phase's outcome and one-line reason (core.judge_exit)."""
    return core.judge_exit(phase, code, core.read_result(phase, result), _last_line(log))


def child_events(phase: Phase, result: dict[str, Any] | None) -> list[Event]:
    """The child's own timeline from its JSON (core.child_events)."""
    return core.child_events(phase, core.read_result(phase, result))


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_line(log: Path | None) -> str:
    if log is None:
        return ""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
