"""The SLO safeguard, as a Chaos Toolkit control: an experiment may only break what the error budget can pay for.

Declared in an experiment as

    "controls": [{"name": "openbell-slo-safeguard",
                  "provider": {"type": "python", "module": "openbell.chaos.controls",
                               "arguments": {"slo_paths": ["slo/"], "interval_s": 1}}}]

- Before the experiment it asks the SLO gate once and refuses to start (the run is interrupted before the
  steady-state hypothesis) when a page-severity window already burns, when the gate cannot see (inconclusive,
  unless `on_inconclusive` is "proceed"), or when an SLO's remaining error budget is below
  `min_budget_remaining` (a fraction; null turns the check off).
- During the method a background thread asks the gate every `interval_s`. On a burn at `severity` it records
  the figures that tripped it and signals its own process with SIGUSR1, Chaos Toolkit's "stop now, but
  gracefully": the method is abandoned and the rollbacks run (experiments declare
  `"runtime": {"rollbacks": {"strategy": "always"}}`, and `openbell chaos run` passes it too, because
  Chaos Toolkit's default strategy skips rollbacks after an interruption). The thread stops when the method
  ends, so it never interrupts a rollback.
- What it saw is added to the journal (`extensions`, name "openbell-slo-safeguard") and, when
  $OPENBELL_CHAOS_SAFEGUARD names a file, written there the moment it trips. $OPENBELL_CHAOS_EVENTS, when set,
  receives one JSON line per activity and per gate poll: `openbell chaos run` shows them live.

Chaos Toolkit passes the control's arguments to every one of its functions, hence the `**arguments`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NAME = "openbell-slo-safeguard"
EVENTS_ENV = "OPENBELL_CHAOS_EVENTS"
RECORD_ENV = "OPENBELL_CHAOS_SAFEGUARD"
DEFAULT_MIN_BUDGET = 0.1

__all__ = ["Policy", "Safeguard", "after_activity_control", "after_experiment_control", "after_method_control",
           "before_activity_control", "before_experiment_control", "before_hypothesis_control",
           "before_method_control", "before_rollback_control", "cleanup_control", "configure_control",
           "refusal", "validate_control"]


@dataclass(frozen=True)
class Policy:
    """What the safeguard judges and how often: the control's arguments, validated."""

    slo_paths: tuple[str, ...]
    severity: str = "page"
    interval_s: float = 1.0
    min_budget_remaining: float | None = DEFAULT_MIN_BUDGET
    on_inconclusive: str = "refuse"
    prometheus_url: str | None = None
    home: str | None = None

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> Policy:
        """Validate the control's arguments; a bad one raises ValueError naming it."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise ValueError(f"unknown argument {unknown[0]!r}; expected {', '.join(sorted(known))}")
        raw = arguments.get("slo_paths")
        paths = (raw,) if isinstance(raw, str) else tuple(str(p) for p in raw or ())
        if not paths:
            raise ValueError("slo_paths: expected at least one SLO file or folder")
        severity = str(arguments.get("severity", "page"))
        if severity not in ("page", "ticket"):
            raise ValueError(f"severity: expected page or ticket, got {severity!r}")
        interval = float(arguments.get("interval_s", 1.0))
        if not 0.1 <= interval <= 60:
            raise ValueError(f"interval_s: expected 0.1 to 60 seconds, got {interval:g}")
        budget = arguments.get("min_budget_remaining", DEFAULT_MIN_BUDGET)
        if budget is not None and not (isinstance(budget, int | float) and math.isfinite(budget) and budget <= 1):
            raise ValueError(f"min_budget_remaining: expected a fraction up to 1, or null, got {budget!r}")
        on_inconclusive = str(arguments.get("on_inconclusive", "refuse"))
        if on_inconclusive not in ("refuse", "proceed"):
            raise ValueError(f"on_inconclusive: expected refuse or proceed, got {on_inconclusive!r}")
        return cls(paths, severity, interval, None if budget is None else float(budget), on_inconclusive,
                   arguments.get("prometheus_url") or None, arguments.get("home") or None)


def refusal(summary: dict[str, Any], policy: Policy) -> str | None:
    """Pure: why the experiment must not start, given the gate's summary (None: it may)."""
    if summary["outcome"] == "fail":
        return f"{policy.severity}-severity burn before the experiment: " + "; ".join(summary["reasons"])
    if summary["outcome"] == "inconclusive" and policy.on_inconclusive == "refuse":
        return "the SLO gate cannot see (inconclusive): " + "; ".join(summary["reasons"])
    if policy.min_budget_remaining is not None:
        low = {k: v for k, v in summary.get("budget_remaining", {}).items()
               if v is not None and v < policy.min_budget_remaining}
        if low:
            listed = ", ".join(f"{k} {v:.1%}" for k, v in sorted(low.items(), key=lambda kv: kv[1]))
            return f"error budget below {policy.min_budget_remaining:.0%}: {listed}"
    return None


@dataclass
class Safeguard:
    """One experiment's safeguard: the pre-start check, the polling thread, and what it saw."""

    policy: Policy
    record: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _slos: list[Any] | None = None

    def __post_init__(self) -> None:
        self.record = {"name": NAME, "policy": {**asdict(self.policy), "slo_paths": list(self.policy.slo_paths)},
                       "tripped": False, "refused": False, "phase": None, "reason": None, "polls": 0,
                       "before": None, "trip": None, "last": None, "started_at": None, "stopped_at": None}

    # The gate --------------------------------------------------------------------------------------------

    def ask(self) -> dict[str, Any]:
        """The gate's summary now; a Prometheus that cannot be asked is an inconclusive answer, not a crash."""
        from openbell.chaos import probes, target
        from openbell.targets import platform

        try:
            if self._slos is None:
                from openbell.slo.loader import load_slos

                self._slos = load_slos(target.slo_paths(list(self.policy.slo_paths)))
            url = platform.prometheus_url(self.policy.prometheus_url, self.policy.home)
            verdict, results = probes.evaluate_gate(self._slos, self.policy.severity, url)
            return probes.summarize(verdict, results, self.policy.severity)
        except Exception as exc:  # the safeguard reports any failure to ask as "cannot see"
            return {"ok": False, "outcome": "inconclusive", "severity": self.policy.severity,
                    "at": round(time.time(), 3), "reasons": [f"SLO gate could not be asked: {exc}"],
                    "burning": [], "budget_remaining": {}, "lowest_budget_remaining": None, "slos": []}

    def check_before(self) -> None:
        """Refuse to start (InterruptExecution) when the budget already burns or is too low. A platform that
        already burns is named series by series, with since when and the runbook: nothing was injected."""
        summary = self.ask()
        self.record["before"] = summary
        emit({"kind": "gate", "phase": "before-experiment", **_brief(summary)})
        why = refusal(summary, self.policy)
        if why is None:
            return
        if summary["outcome"] == "fail":
            unhealthy = self._burning()
            if unhealthy:
                now = time.time()
                self.record["unhealthy"] = [b.to_dict() for b in unhealthy]
                why = "unhealthy before the experiment: " + "; ".join(b.line(now) for b in unhealthy)
        self.record.update(refused=True, phase="before-experiment", reason=why, trip=summary)
        self.save()
        emit({"kind": "safeguard", "phase": "before-experiment", "reason": why})
        from chaoslib.exceptions import InterruptExecution  # type: ignore[import-untyped]

        raise InterruptExecution(f"openbell SLO safeguard refused to start: {why}")

    def _burning(self) -> list[Any]:
        """What burns now and since when (`openbell.slo.burning`); empty when that cannot be asked."""
        from openbell.metrics.prometheus import PrometheusClient
        from openbell.slo.burning import burning
        from openbell.targets import platform

        try:
            url = platform.prometheus_url(self.policy.prometheus_url, self.policy.home)
            with PrometheusClient(url, timeout_s=5.0) as client:
                return burning(client, self._slos or [], self.policy.severity)
        except Exception:  # the refusal stands with the gate's own reasons
            return []

    # The watch during the method ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self.record["started_at"] = round(time.time(), 3)
        self._thread = threading.Thread(target=self._watch, name="openbell-slo-safeguard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the watch; after this returns, the safeguard never signals the process."""
        with self._lock:
            self._stop.set()
            if self.record["stopped_at"] is None and self.record["started_at"] is not None:
                self.record["stopped_at"] = round(time.time(), 3)

    def _watch(self) -> None:
        while not self._stop.wait(self.policy.interval_s):
            summary = self.ask()
            self.record["polls"] += 1
            self.record["last"] = summary
            emit({"kind": "gate", "phase": "method", **_brief(summary)})
            if summary["outcome"] != "fail":
                continue
            with self._lock:
                if self._stop.is_set():
                    return
                reason = f"{self.policy.severity}-severity burn during the method: " + "; ".join(summary["reasons"])
                self.record.update(tripped=True, phase="method", reason=reason, trip=summary,
                                   signalled_at=round(time.time(), 3))
                self.save()
                emit({"kind": "safeguard", "phase": "method", "reason": reason})
                self._stop.set()
                # Chaos Toolkit's graceful exit: the main thread leaves the method, the rollbacks run.
                os.kill(os.getpid(), signal.SIGUSR1)
            return

    def save(self) -> None:
        path = os.environ.get(RECORD_ENV)
        if not path:
            return
        with contextlib.suppress(OSError):
            tmp = Path(path).with_suffix(".tmp")
            tmp.write_text(json.dumps(self.record, default=str))
            tmp.replace(path)


_guard: Safeguard | None = None


def _safeguard(arguments: dict[str, Any]) -> Safeguard:
    global _guard
    if _guard is None:
        _guard = Safeguard(Policy.from_arguments(arguments))
    return _guard


def emit(event: dict[str, Any]) -> None:
    """One JSON line to $OPENBELL_CHAOS_EVENTS (the live view of `openbell chaos run`), when it is set."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"at": round(time.time(), 3), **event}, default=str) + "\n")


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    worst = max(summary.get("burning") or [{}], key=lambda b: b.get("short_burn_rate") or 0.0)
    fastest = [s["fastest_burn_rate"] for s in summary.get("slos", []) if s.get("fastest_burn_rate") is not None]
    return {"outcome": summary["outcome"], "burning": len(summary.get("burning") or []),
            "worst": worst.get("slo"), "fastest_burn_rate": max(fastest) if fastest else None,
            "lowest_budget_remaining": summary.get("lowest_budget_remaining")}


# --- Chaos Toolkit's control interface ---------------------------------------------------------------------


def validate_control(control: dict[str, Any]) -> None:
    """`chaos validate`: the safeguard's arguments must make sense before anything runs."""
    from chaoslib.exceptions import InvalidControl

    try:
        Policy.from_arguments(dict(control.get("provider", {}).get("arguments", {})))
    except (ValueError, TypeError) as exc:
        raise InvalidControl(f"control {control.get('name', NAME)!r}: {exc}") from None


def configure_control(experiment: Any = None, configuration: Any = None, secrets: Any = None,
                      settings: Any = None, **arguments: Any) -> None:
    """Chaos Toolkit calls this once, before the run: build the safeguard from its arguments."""
    global _guard
    _guard = Safeguard(Policy.from_arguments(arguments))


def cleanup_control() -> None:
    """End of the run: no thread outlives it."""
    if _guard is not None:
        _guard.stop()


def before_experiment_control(context: Any, **arguments: Any) -> None:
    emit({"kind": "phase", "phase": "experiment", "title": (context or {}).get("title")})
    _safeguard(arguments).check_before()


def before_hypothesis_control(context: Any, **arguments: Any) -> None:
    emit({"kind": "phase", "phase": "steady-state-hypothesis"})


def before_method_control(context: Any, **arguments: Any) -> None:
    emit({"kind": "phase", "phase": "method"})
    _safeguard(arguments).start()


def after_method_control(context: Any, state: Any = None, **arguments: Any) -> None:
    _safeguard(arguments).stop()


def before_rollback_control(context: Any, **arguments: Any) -> None:
    _safeguard(arguments).stop()  # never a signal during the rollbacks, whatever path led here
    emit({"kind": "phase", "phase": "rollbacks"})


def before_activity_control(context: Any, **arguments: Any) -> None:
    activity = context or {}
    emit({"kind": "activity", "state": "start", "type": activity.get("type"), "name": activity.get("name")})


def after_activity_control(context: Any, state: Any = None, **arguments: Any) -> None:
    activity, run = context or {}, state or {}
    emit({"kind": "activity", "state": "end", "type": activity.get("type"), "name": activity.get("name"),
          "status": run.get("status") if isinstance(run, dict) else None})


def after_experiment_control(context: Any, state: Any = None, **arguments: Any) -> None:
    """Put what the safeguard saw into the journal (`extensions`), for the runner and for reports."""
    guard = _safeguard(arguments)
    guard.stop()
    guard.save()
    if isinstance(state, dict):
        state.setdefault("extensions", []).append(guard.record)
    emit({"kind": "phase", "phase": "end", "status": state.get("status") if isinstance(state, dict) else None})
