"""The gameday orchestrator: phases as child `openbell` commands, started on time, watched by one gate.

Each phase runs the tool SREs already use on its own (`openbell load run`, `canary run`, `chaos run`) as a
child process in its own session, with `--output json` (its result) and a log of its stderr. That keeps
each tool's own guarantees intact (the canary rolls back on SIGINT, Chaos Toolkit runs its rollbacks, k6
writes its summary), lets phases overlap without threads, and gives the report the same data each tool
gives CI. The orchestrator adds what no single tool has: the schedule (`at`, `after` + `delay`), the gameday
gate over every SLO, and the rule that one failure stops every risky thing still running.

Stopping means one SIGINT to every running child, then waiting (each has `grace_s`) for them to undo what
they did; a child that will not stop is killed and the target made safe from outside (`canary abort`).
Ctrl-C or SIGTERM stops the same way and ends with exit 130; a second Ctrl-C during the stop is ignored.
"""

from __future__ import annotations

import contextlib
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
from openbell.gameday.events import Event, Listener
from openbell.gameday.plan import CanaryPhase, ChaosPhase, LoadPhase, Phase, Plan, SloPhase
from openbell.slo.verdict import Verdict

if TYPE_CHECKING:
    from openbell.gameday.gate import GamedayGate
    from openbell.slo.burning import Burning

GRACE_S = 180.0  # a canary's rollback, chaos rollbacks and a k6 stop all fit well within this
CANARY_GRACE_INTERVALS = 3  # polls of its own gates a running canary gets to act on a burn of its SLOs
CANARY_GRACE_MIN_S = 8.0


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
    phase: Phase
    state: str = "waiting"  # waiting | running | done
    outcome: str | None = None  # pass | fail | stopped | interrupted | error | skipped | not_run
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    signalled_at: float | None = None
    result: dict[str, Any] | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    stdout: Path | None = None
    log: Path | None = None
    log_offset: int = 0

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {"name": self.phase.name, "kind": self.phase.kind, "description": self.phase.description or
                self.phase.summary(), "start": self.phase.start.describe(), "outcome": self.outcome or "not_run",
                "reason": self.reason, "started_at": self.started_at, "finished_at": self.finished_at,
                "duration_s": None if self.started_at is None or self.finished_at is None
                else round(self.finished_at - self.started_at, 3),
                "exit_code": self.exit_code, "figures": self.figures,
                "log": None if self.log is None else os.path.relpath(self.log, root),
                "result": None if self.stdout is None else os.path.relpath(self.stdout, root)}


@dataclass
class Outcome:
    verdict: str  # pass | fail | unhealthy | interrupted | error
    exit_code: int
    reason: str
    reasons: list[str]


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
    gate_checks: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    stopping: str | None = None
    interrupted: bool = False
    failures: list[str] = field(default_factory=list)
    last_gate: Verdict | None = None
    unhealthy: list[Burning] = field(default_factory=list)
    canary_grace_until: float | None = None

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
        self.gate_checks.append({"at": now, "outcome": "fail" if unhealthy else "pass", "preflight": True,
                                 "reasons": [b.line(now) for b in unhealthy]})
        if unhealthy:
            return self._unhealthy(unhealthy, now)
        next_gate = self.clock()
        # Ctrl-C and SIGTERM only set a flag the loop reads: a signal can never land half way through starting
        # or stopping a phase, and a second one cannot cut the rollbacks short.
        with child.Interrupts() as signals:
            try:
                while any(r.state != "done" for r in self.runs):
                    now = self.clock()
                    if signals.seen and not self.interrupted:
                        self._interrupt()
                    self._reap(now)
                    if now >= next_gate and not self.stopping:
                        next_gate = now + self.plan.gate.interval_s
                        self._ask_gate(now)
                    if self.stopping:
                        self._stop_all(now)
                    else:
                        self._start_due(now)
                    self.listener.tick(self.runs, self.last_gate, now)
                    time.sleep(self.poll_s)
            except BaseException as exc:
                # Whatever broke here (a tool that would not start, a screen that lost its pipe), nothing we
                # started may outlive us: stop every running phase the same way a failure does, then re-raise.
                self._fail(f"the gameday itself failed: {exc!r}")
                with contextlib.suppress(BaseException):
                    self._drain()
                raise
        self.finished_at = self.clock()
        self._event(None, "gameday-end", f"gameday {self.plan.name} ended")
        return self._outcome()

    def _unhealthy(self, burning: list[Burning], now: float) -> Outcome:
        """The platform burns its budget before anything started: no phase runs, and the reason says what
        burns, since when, and which runbook to open (a gameday cannot tell its damage from what was there)."""
        lines = [b.line(now) for b in burning]
        for run in self.runs:
            run.state, run.outcome = "done", "not_run"
            run.reason = "not started: the platform was unhealthy before the gameday"
        self.unhealthy = burning
        self._event(None, "unhealthy", "unhealthy before the gameday, nothing started: " + "; ".join(lines),
                    "critical")
        self.finished_at = self.clock()
        self._event(None, "gameday-end", f"gameday {self.plan.name} ended before it began")
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        return Outcome("unhealthy", 1, f"unhealthy before the gameday: {lines[0]}{more}", lines)

    def _interrupt(self) -> None:
        self.interrupted = True
        self.stopping = "interrupted (Ctrl-C or SIGTERM)"
        self._event(None, "interrupt", "interrupted: stopping every running phase (rollbacks run first); "
                    "further Ctrl-C is ignored until they are done", "critical")

    def _drain(self) -> None:
        while any(r.state != "done" for r in self.runs):
            now = self.clock()
            self._reap(now)
            self._stop_all(now)
            self.listener.tick(self.runs, self.last_gate, now)
            time.sleep(self.poll_s)

    # -- scheduling ----------------------------------------------------------------------------------

    def _due(self, run: PhaseRun, now: float) -> bool:
        start = run.phase.start
        if start.at_s is not None:
            return now >= self.started_at + start.at_s
        ends = []
        for name in start.after:
            other = self._run(name)
            if other.state != "done" or other.finished_at is None:
                return False
            ends.append(other.finished_at)
        return now >= max(ends, default=self.started_at) + start.delay_s

    def _start_due(self, now: float) -> None:
        for run in self.runs:
            if run.state == "waiting" and self._due(run, now):
                self._start(run, now)
            elif run.state == "running" and run.phase.timeout_s is not None and run.started_at is not None \
                    and now - run.started_at > run.phase.timeout_s and run.signalled_at is None:
                self._fail(f"{run.phase.name}: still running after its timeout of {run.phase.timeout_s:g}s")
                self._signal(run, now)

    def _run(self, name: str) -> PhaseRun:
        return next(r for r in self.runs if r.phase.name == name)

    def _start(self, run: PhaseRun, now: float) -> None:
        run.state, run.started_at = "running", now
        self._event(run.phase.name, "phase-start", f"{run.phase.name}: {run.phase.summary()}")
        if isinstance(run.phase.action, SloPhase):
            self._slo_phase(run, now)
            return
        run.stdout = self.workdir / "phases" / f"{run.phase.name}.json"
        run.log = self.workdir / "phases" / f"{run.phase.name}.log"
        argv = self.argv(run.phase)
        try:
            with open(run.stdout, "wb") as out, open(run.log, "wb") as err:
                err.write(("$ " + " ".join(argv[1:]) + "\n").encode())
                err.flush()
                run.proc = child.start(argv, stdout=out, stderr=err, env=self._env())
        except OSError as exc:
            run.state, run.finished_at, run.outcome = "done", self.clock(), "error"
            run.reason = f"could not start {argv[0]}: {exc}"
            self._event(run.phase.name, "phase-end", f"{run.phase.name}: error — {run.reason}", "critical")
            self._fail(f"{run.phase.name} could not run: {run.reason}")

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

    # -- results -------------------------------------------------------------------------------------

    def _reap(self, now: float) -> None:
        for run in self.runs:
            if run.state == "running" and run.proc is None and not isinstance(run.phase.action, SloPhase):
                run.state, run.finished_at, run.outcome = "done", now, "error"
                run.reason = "its process was never started"
                continue
            if run.state == "running":
                self._tail(run)
            if run.state == "running" and run.proc is not None and run.proc.poll() is not None:
                self._tail(run)
                self._finish(run, now, run.proc.returncode)

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

    def _finish(self, run: PhaseRun, now: float, code: int) -> None:
        run.state, run.finished_at, run.exit_code = "done", now, code
        run.result = _read_json(run.stdout)
        outcome, reason = judge_phase(run.phase, code, run.result, run.log)
        if run.signalled_at is not None and outcome != "error":
            # Why the gameday stopped is said once, in the verdict; the row says what this phase did.
            outcome = "interrupted" if self.interrupted else "stopped"
            reason = "stopped with the gameday; " + (reason or "")
        run.outcome, run.reason = outcome, reason.strip("; ")
        run.figures = phase_figures(run.phase, run.result)
        # Recorded for the report, not shown again: their progress lines were forwarded as they happened.
        self.events.extend(child_events(run.phase, run.result))
        sev = {"pass": "info", "stopped": "warning", "interrupted": "warning"}.get(outcome, "critical")
        self._event(run.phase.name, "phase-end", f"{run.phase.name}: {outcome}" + (f" — {run.reason}" if run.reason
                                                                                     else ""), sev)
        if outcome != "pass" and run.signalled_at is None:
            what = {"fail": "failed", "error": "could not run"}.get(outcome, f"ended {outcome}")
            self._fail(f"{run.phase.name} {what}: {run.reason}")

    def _slo_phase(self, run: PhaseRun, now: float) -> None:
        assert isinstance(run.phase.action, SloPhase)
        verdict = self.gate.check(now, self.expected_burn(), run.phase.action.severity)
        self.last_gate = verdict
        self.gate_checks.append({"at": now, "outcome": verdict.outcome, "reasons": list(verdict.reasons)})
        run.state, run.finished_at, run.exit_code = "done", self.clock(), 0 if verdict.passed else 1
        run.outcome = "pass" if verdict.passed else "fail"
        run.reason = "; ".join(verdict.reasons)
        run.figures = {"spend": verdict.figures.get("spend", []), "notes": verdict.figures.get("notes", [])}
        self._event(run.phase.name, "phase-end", f"{run.phase.name}: {run.outcome} — {run.reason}",
                    "info" if verdict.passed else "critical")
        if not verdict.passed:
            self._fail(f"{run.phase.name}: {run.reason}")

    # -- the gate and stopping -----------------------------------------------------------------------

    def expected_burn(self) -> set[str]:
        return {name for r in self.runs if r.started_at is not None for name in r.phase.expected_burn}

    def _ask_gate(self, now: float) -> None:
        verdict = self.gate.check(now, self.expected_burn())
        self.last_gate = verdict
        self.gate_checks.append({"at": now, "outcome": verdict.outcome, "reasons": list(verdict.reasons),
                                 "spend": verdict.figures.get("spend", [])})
        if verdict.outcome != "fail":
            self.canary_grace_until = None
            return
        if self._canary_owns(verdict, now):
            return
        self._event(None, "gate", "SLO gate failed: " + "; ".join(verdict.reasons), "critical")
        self._fail("SLO gate: " + "; ".join(verdict.reasons))

    def _canary_owns(self, verdict: Verdict, now: float) -> bool:
        """While a canary rolls out, a burn of an SLO it is gated on is first the canary's to act on: its own
        gates (polled every `interval`) roll it back and say why, and the gameday fails for that canary. The
        gameday waits CANARY_GRACE_INTERVALS of its polls for that; a canary that has not reacted by then is
        stopped with everything else."""
        failing = set(verdict.figures.get("failing", []))
        for run in self.runs:
            a = run.phase.action
            if run.state != "running" or run.signalled_at is not None or not isinstance(a, CanaryPhase):
                continue
            from openbell.canary.services import applicable, service

            if not failing or not failing <= {s.name for s in applicable(self.gate.slos, service(a.service))}:
                continue
            if self.canary_grace_until is None:
                self.canary_grace_until = now + max(CANARY_GRACE_MIN_S, CANARY_GRACE_INTERVALS * a.interval_s)
                self._event(run.phase.name, "gate", "SLO gate failed while the canary rolls out, on SLOs it is "
                            f"gated on: its own gates have {self.canary_grace_until - now:.0f}s to roll it back: "
                            + "; ".join(verdict.reasons), "warning")
            return now < self.canary_grace_until
        return False

    def _fail(self, reason: str) -> None:
        self.failures.append(reason)
        if not self.stopping:
            self.stopping = reason
            self._event(None, "stop", f"stopping: {reason}", "critical")

    def _stop_all(self, now: float) -> None:
        for run in self.runs:
            if run.state == "waiting":
                run.state, run.outcome, run.reason = "done", "not_run", "not started: the gameday had stopped"
            elif run.state == "running":
                if run.signalled_at is None:
                    self._signal(run, now)
                elif now - run.signalled_at > self.grace_s and run.proc is not None and run.proc.poll() is None:
                    self._event(run.phase.name, "kill", f"{run.phase.name}: did not stop within {self.grace_s:g}s; "
                                "killed with what it started", "critical")
                    child.kill_tree(run.proc.pid)
                    run.proc.wait()
                    if isinstance(run.phase.action, CanaryPhase):
                        self._abort_canary(run.phase.action)

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

    def _signal(self, run: PhaseRun, now: float) -> None:
        run.signalled_at = now
        if run.proc is not None and run.proc.poll() is None:
            self._event(run.phase.name, "stop", f"{run.phase.name}: SIGINT (roll back / stop)", "warning")
            child.interrupt(run.proc)

    # -- events and the end --------------------------------------------------------------------------

    def _event(self, phase: str | None, kind: str, message: str, severity: str = "info") -> None:
        self._record(Event(self.clock(), phase, kind, message, severity))

    def _record(self, event: Event) -> None:
        self.events.append(event)
        self.listener.event(event)

    def _outcome(self) -> Outcome:
        if self.interrupted:
            return Outcome("interrupted", 130, "interrupted: every running phase was stopped and rolled back",
                           self.failures or ["interrupted"])
        errors = [r for r in self.runs if r.outcome == "error"]
        if errors:
            code = 3 if any(r.exit_code == 3 for r in errors) else 1
            return Outcome("error", code, self.failures[0] if self.failures else errors[0].reason,
                           self.failures or [errors[0].reason])
        failed = [f"{r.phase.name}: {r.outcome}" for r in self.runs if r.outcome != "pass"]
        if self.failures or failed:
            reasons = list(dict.fromkeys(self.failures or failed))  # the same failure once
            return Outcome("fail", 1, reasons[0], reasons)
        return Outcome("pass", 0, f"every phase passed and the SLO gate held ({len(self.runs)} phases)",
                       [f"{r.phase.name}: pass" for r in self.runs])


# -- pure pieces, tested on plain values ---------------------------------------------------------------

def judge_phase(phase: Phase, code: int, result: dict[str, Any] | None, log: Path | None) -> tuple[str, str]:
    """A child's exit code and JSON -> the phase's outcome and one-line reason."""
    a = phase.action
    if code in (2, 3) or code < 0 or (result is None and code != 130):
        return "error", _last_line(log) or f"exit {code}"
    if code == 130:
        return "interrupted", "interrupted"
    if isinstance(a, LoadPhase):
        verdict = (result or {}).get("verdict") or {}
        reasons = "; ".join(verdict.get("reasons") or [])
        if code == 0:
            return "pass", reasons
        if a.thresholds == "report" and _only_thresholds(verdict):
            return "pass", f"k6 thresholds crossed (reported, not gating: the SLO gate judges): {reasons}"
        return "fail", reasons or f"k6 exited {code}"
    if isinstance(a, CanaryPhase):
        r = result or {}
        if code == 0:
            return "pass", f"{r.get('version', a.version)} promoted: {r.get('reason') or 'every step passed'}"
        steps = (r.get("policy") or {}).get("steps") or []
        step = r.get("step")
        weight = steps[step - 1] if isinstance(step, int) and 0 < step <= len(steps) else r.get("weight", "?")
        return "fail", f"rolled back at step {step or '?'} ({weight}%): {r.get('reason', '')}"
    verdict = (result or {}).get("verdict") or {}
    reasons = "; ".join(verdict.get("reasons") or [])
    return ("pass" if code == 0 else "fail"), reasons or f"chaos exited {code}"


def _only_thresholds(verdict: dict[str, Any]) -> bool:
    """A load verdict that failed on k6 thresholds alone (k6 itself ran to the end)."""
    figures = verdict.get("figures") or {}
    return bool(figures.get("thresholds")) and not figures.get("slo_gate") and not figures.get("error")


def phase_figures(phase: Phase, result: dict[str, Any] | None) -> dict[str, Any]:
    """The few numbers a reader wants per phase, from the child's JSON."""
    r = result or {}
    a = phase.action
    if isinstance(a, LoadPhase):
        figures = ((r.get("verdict") or {}).get("figures") or {})
        keep = {k: v for k, v in figures.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
        crossed = [t for t in figures.get("thresholds", []) if not t.get("passed")]
        keep["thresholds_crossed"] = len(crossed)
        return keep
    if isinstance(a, CanaryPhase):
        last = r.get("last_gates") or {}
        return {"version": r.get("version"), "outcome": r.get("outcome"), "step": r.get("step"),
                "weight": r.get("weight"), "duration_s": r.get("duration_s"),
                "stable_version_before": r.get("stable_version_before"),
                "judge": (last.get("judge") or {}).get("outcome") if isinstance(last.get("judge"), dict) else None}
    if isinstance(a, ChaosPhase):
        verdict = r.get("verdict") or {}
        return {"experiment": r.get("experiment"), "title": r.get("title"), "outcome": verdict.get("outcome"),
                "elapsed_s": r.get("elapsed_s"), "journal": r.get("journal")}
    return {}


_CRITICAL = {"rollback", "rolled_back", "verify", "interrupted"}
_WARNING = {"extend"}


def child_events(phase: Phase, result: dict[str, Any] | None) -> list[Event]:
    """The child's own timeline (canary steps and rollbacks, faults injected and rolled back, the safeguard)."""
    r = result or {}
    out: list[Event] = []
    if isinstance(phase.action, CanaryPhase):
        for e in r.get("timeline") or []:
            kind = str(e.get("kind", ""))
            if kind == "poll":
                continue
            sev = "critical" if kind in _CRITICAL else "warning" if kind in _WARNING else "info"
            out.append(Event(float(e.get("at") or 0.0), phase.name, kind, str(e.get("message", "")), sev))
    elif isinstance(phase.action, ChaosPhase):
        for step in r.get("timeline") or []:
            at = _epoch(step.get("start"))
            if at is None:
                continue
            part, status = step.get("phase"), step.get("status")
            if part == "method":
                kind, sev = ("fault" if step.get("type") == "action" else "probe"), "warning"
            elif part == "rollbacks":
                kind, sev = "rollback", "warning"
            elif status not in ("succeeded", None) or step.get("tolerance_met") is False:
                kind, sev = "steady-state", "critical"
            else:
                continue
            if status not in ("succeeded", None):
                sev = "critical"
            out.append(Event(at, phase.name, kind, f"{part}: {step.get('name')} ({status})", sev))
        guard = ((r.get("verdict") or {}).get("figures") or {}).get("safeguard")
        if isinstance(guard, dict) and (guard.get("tripped") or guard.get("refused")):
            at = _epoch(guard.get("signalled_at")) or max((e.at for e in out), default=0.0)
            what = "stopped the experiment" if guard.get("tripped") else "refused to start the experiment"
            out.append(Event(at, phase.name, "safeguard", f"SLO safeguard {what}: {guard.get('reason', '')}",
                             "critical"))
    return [e for e in out if e.at > 0]


def _epoch(value: Any) -> float | None:
    """A time from the child's JSON: the chaos journal reader already gives unix seconds."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
