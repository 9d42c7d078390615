"""Chaos Toolkit as a subprocess: `chaos run --journal-path J --rollback-strategy always EXPERIMENT`, with the
target's settings in its environment, live progress from the SLO safeguard's event stream, and the JOURNAL read
afterwards (not only the exit code) to decide pass or fail.

Why a subprocess: the safeguard interrupts an experiment by signalling its own process (SIGUSR1, Chaos Toolkit's
graceful exit), which must not be openbell's. Ctrl-C (or SIGTERM) is forwarded once as SIGINT, so Chaos Toolkit
records the interruption and still runs the rollbacks; openbell waits for that, bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openbell import child
from openbell.chaos import controls, journal
from openbell.chaos.catalogue import Experiment
from openbell.chaos.result import ChaosResult
from openbell.chaos.target import SLO_ENV
from openbell.errors import SpecError, UnreachableError
from openbell.slo.verdict import Verdict

ROLLBACK_STRATEGIES = ("always", "default", "deviated", "never")


@dataclass(frozen=True)
class RunOptions:
    """How to run one experiment."""

    workdir: Path  # chaos' log, the event stream, the safeguard record (and the journal by default)
    journal_path: Path
    home: Path | None = None  # the sandbox's state directory (target sandbox)
    slo_paths: tuple[Path, ...] = ()  # replaces the experiment's SLO paths when given
    prometheus_url: str | None = None
    dry: bool = False
    rollback_strategy: str = "always"
    kube_context: str | None = None
    grace_s: float = 300.0  # after Ctrl-C: how long the rollbacks may take before chaos is killed
    timeout_s: float = 3600.0  # the whole run


@dataclass
class Live:
    """What the run is doing now, for the status line."""

    phase: str = "starting"
    activity: str = ""
    gate: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    safeguard: str = ""


@dataclass
class RunResult:
    experiment: Experiment
    verdict: Verdict
    exit_code: int
    journal_path: Path
    log_path: Path
    reading: journal.Reading | None
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def outcome(self) -> str:
        """The verdict's outcome, or `unhealthy` when the safeguard refused a platform already burning."""
        guard = self.verdict.figures.get("safeguard") or {}
        return "unhealthy" if guard.get("refused") and guard.get("unhealthy") else self.verdict.outcome

    def result(self, target: str) -> ChaosResult:
        return ChaosResult(self.experiment.name, self.experiment.title, str(self.experiment.path), target,
                           self.outcome, self.exit_code, str(self.journal_path), str(self.log_path),
                           round(self.elapsed_s, 3), self.verdict, tuple(self.reading.timeline) if self.reading else ())

    def to_json(self, target: str) -> dict[str, Any]:
        return self.result(target).to_json()


def chaos_binary() -> Path:
    """$OPENBELL_CHAOS, the `chaos` installed beside this Python (openbell's `chaos` extra), or on PATH."""
    found, where = child.find_tool("chaos", "OPENBELL_CHAOS")
    if found is not None:
        return found
    raise UnreachableError(f"chaos (Chaos Toolkit): not found {where}; install openbell's chaos extra "
                           "(pip install 'openbell[chaos]': chaostoolkit 1.19, chaostoolkit-lib 1.44)")


def _base_argv(workdir: Path) -> list[str]:
    # No version check (it calls the internet), our own log file, and a settings file of our own (absent:
    # empty settings) unless the user points at theirs: a user's notification settings are not ours to fire.
    settings = os.environ.get("OPENBELL_CHAOS_SETTINGS") or str(workdir / "chaostoolkit-settings.yaml")
    return [str(chaos_binary()), "--no-version-check", "--log-file", str(workdir / "chaostoolkit.log"),
            "--settings", settings]


def validate(path: Path, workdir: Path, timeout_s: float = 120.0) -> str | None:
    """`chaos validate`: None when valid, else Chaos Toolkit's own message (its ERROR lines)."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [*_base_argv(workdir), "validate", str(path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=_env({}),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"chaos validate did not finish within {timeout_s:g}s"
    if done.returncode == 0:
        return None
    return error_lines(done.stdout + "\n" + done.stderr) or f"chaos validate exited {done.returncode}"


_LOG_LINE = re.compile(r"^\[[^\]]*\b(ERROR|CRITICAL)\]\s*(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_lines(text: str) -> str:
    """Chaos Toolkit's error messages from its console output (colours stripped), on one line; else the
    output's last line (a traceback's message, e.g. for a file that is not JSON)."""
    text = _ANSI.sub("", text)
    found = [m.group(2).strip() for m in map(_LOG_LINE.match, text.splitlines()) if m and m.group(2).strip()]
    if not found:
        tail = [line.strip() for line in text.splitlines() if line.strip()]
        found = tail[-1:] if tail else []
    return " ".join(" | ".join(found[-3:]).split())


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def chaos_env(options: RunOptions) -> dict[str, str]:
    """What the extension inside chaos needs to find the target: the sandbox home, Prometheus, the SLO
    override, where to write its events and its record."""
    env = {controls.EVENTS_ENV: str(options.workdir / "events.jsonl"),
           controls.RECORD_ENV: str(options.workdir / "safeguard.json")}
    if options.home is not None:
        env["OPENBELL_HOME"] = str(options.home)
    if options.prometheus_url:
        env["OPENBELL_PROMETHEUS_URL"] = options.prometheus_url
    if options.slo_paths:
        env[SLO_ENV] = os.pathsep.join(str(p.resolve()) for p in options.slo_paths)
    if options.kube_context:
        env["KUBERNETES_CONTEXT"] = options.kube_context
    return env


def has_safeguard(document: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and (c.get("provider") or {}).get("module") == "openbell.chaos.controls"
               for c in document.get("controls") or [])


def run(experiment: Experiment, options: RunOptions, on_progress: Callable[[Live], None] = lambda _: None
        ) -> RunResult:
    """Run the experiment to its end (or until Ctrl-C) and judge it from its journal."""
    if options.rollback_strategy not in ROLLBACK_STRATEGIES:
        raise SpecError("--rollback-strategy", options.rollback_strategy, f"expected {', '.join(ROLLBACK_STRATEGIES)}")
    options.workdir.mkdir(parents=True, exist_ok=True)
    options.journal_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (options.journal_path, options.workdir / "events.jsonl", options.workdir / "safeguard.json"):
        stale.unlink(missing_ok=True)
    argv = [*_base_argv(options.workdir), "run", "--journal-path", str(options.journal_path),
            "--rollback-strategy", options.rollback_strategy]
    if options.dry:
        argv += ["--dry", "activities"]
    if not has_safeguard(experiment.document):
        # Every openbell run is guarded: an experiment without the safeguard gets it as a global control.
        control_file = options.workdir / "safeguard-control.json"
        paths = [str(p) for p in options.slo_paths] or ["slo"]
        control_file.write_text(json.dumps({controls.NAME: {"provider": {
            "type": "python", "module": "openbell.chaos.controls", "arguments": {"slo_paths": paths}}}}))
        argv += ["--control-file", str(control_file)]
    argv.append(str(experiment.path))
    log_path = options.workdir / "chaos-output.log"
    live = Live()
    started = time.monotonic()
    interrupted = False
    with open(log_path, "wb") as log:
        # Its own session (openbell.child): the terminal's Ctrl-C reaches openbell only, which hands chaos one
        # SIGINT; SIGTERM stops it the same way.
        proc = child.start(argv, stdout=log, env=_env(chaos_env(options)))
        events = _Tail(options.workdir / "events.jsonl")
        try:
            with child.interrupts_raise():
                while proc.poll() is None:
                    time.sleep(0.2)
                    live.elapsed_s = time.monotonic() - started
                    for event in events.read():
                        _apply(live, event)
                    on_progress(live)
                    if live.elapsed_s > options.timeout_s:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupted = True
            live.phase = "interrupted: rollbacks"
            on_progress(live)
        finally:
            # One SIGINT: chaos marks the run interrupted and plays the rollbacks (a second one would make it
            # skip the rest, so further Ctrl-C are ignored meanwhile); killed after the grace period.
            child.stop(proc, options.grace_s)
    elapsed = time.monotonic() - started
    doc = _load_journal(options.journal_path)
    if doc is None:
        output = log_path.read_text(errors="replace")
        if interrupted:
            verdict = Verdict("fail", ("interrupted before Chaos Toolkit wrote a journal",))
            return RunResult(experiment, verdict, journal.EXIT_INTERRUPTED, options.journal_path, log_path, None,
                             True, elapsed)
        message = error_lines(output) or f"chaos exited {proc.returncode} without a journal"
        raise SpecError(f"chaos ({experiment.path})", "", message)
    reading = journal.read(doc)
    if reading.safeguard is None:
        reading = _with_record(reading, options.workdir / "safeguard.json")
    verdict, code = journal.judge(reading, interrupted_by_user=interrupted)
    return RunResult(experiment, verdict, code, options.journal_path, log_path, reading, interrupted, elapsed)


def _load_journal(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _with_record(reading: journal.Reading, path: Path) -> journal.Reading:
    """The safeguard's record from its file, when the journal lacks it (chaos killed before writing it)."""
    from dataclasses import replace

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return reading
    return replace(reading, safeguard=record) if isinstance(record, dict) else reading


class _Tail:
    """New complete lines of a file that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    out.append(event)
        return out


def _apply(live: Live, event: dict[str, Any]) -> None:
    kind = event.get("kind")
    if kind == "phase":
        live.phase = str(event.get("phase"))
        live.activity = ""
    elif kind == "activity":
        name = f"{event.get('type')} {event.get('name')}"
        live.activity = name if event.get("state") == "start" else f"{name}: {event.get('status')}"
    elif kind == "gate":
        live.gate = event
    elif kind == "safeguard":
        live.safeguard = str(event.get("reason"))
