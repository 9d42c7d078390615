"""A gameday plan (YAML) -> a validated Plan: what runs, when it starts, and what the gate judges.

```yaml
apiVersion: openbell/v1
kind: Gameday
metadata: {name: opening-bell, description: ...}
spec:
  slo: [slo/]                       # the SLOs the gameday gate judges (from the working directory, else gamedays/..)
  gate: {severity: page, interval: 5s, max_budget_consumed: 0.05}
  phases:
    - name: market-open
      load: {profile: nyse-open, scale: calibrated, time_scale: 0.05}   # or a fixed scale, e.g. 0.0005
    - name: canary-at-the-bell
      start: {at: 45s}                       # or {after: [names], delay: 5s}; default: after the previous phase
      canary: {service: gateway, version: "rc-{run}", steps: [10, 50, 100], hold: 10s}
    - name: broker-loss
      start: {after: canary-at-the-bell}
      chaos: {experiment: kafka-broker-loss}
      expected_burn: [kafka-consumer-lag]    # held to the budget cap, not the page burn rate, from here on
    - name: closing-budget
      start: {after: [market-open, broker-loss]}
      slo: {}
```

Every error is one SpecError naming the file and the field (`spec.phases[2].canary.hold`), exit 2, before
anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from openbell.durations import parse_duration_s
from openbell.errors import SpecError, UsageError

API_VERSION = "openbell/v1"
KIND = "Gameday"
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+{}-]{0,62}$")
PhaseKind = Literal["load", "canary", "chaos", "slo"]
KINDS: tuple[PhaseKind, ...] = ("load", "canary", "chaos", "slo")


@dataclass(frozen=True)
class Start:
    """When a phase starts: `at` seconds after the gameday began, or `delay` after every `after` phase ended."""

    at_s: float | None = None
    after: tuple[str, ...] = ()
    delay_s: float = 0.0

    def describe(self) -> str:
        if self.at_s is not None:
            return f"at {self.at_s:g}s"
        if not self.after:
            return "at the start"
        return f"after {', '.join(self.after)}" + (f" + {self.delay_s:g}s" if self.delay_s else "")


@dataclass(frozen=True)
class LoadPhase:
    profile: str
    scale: float | None = None  # None with `calibrated`: set from the machine's calibration before the run
    time_scale: float | None = None
    calibrated: bool = False  # scale: calibrated -> capacity_fraction of the largest scale every SLO holds at
    capacity_fraction: float = 0.5
    thresholds: Literal["report", "gate"] = "report"
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CanaryPhase:
    service: str
    version: str
    steps: tuple[int, ...] = (10, 25, 50, 100)
    hold_s: float = 60.0
    interval_s: float = 2.0
    max_extension_s: float = 60.0
    on_inconclusive: Literal["fail", "pass"] = "fail"
    sandbox_faults: dict[str, str] = field(default_factory=dict)
    probe_rate: float = 0.0  # synthetic requests a second to the canary and to stable (`canary run --probe-rate`)
    judge: Literal["fixed", "sequential"] = "sequential"
    min_hold_s: float | None = None  # sequential judge: the least a step holds [the CLI's default]
    alpha: float = 0.01
    latency_tolerance: float | None = None  # None: the CLI's default
    error_tolerance: float | None = None


@dataclass(frozen=True)
class ChaosPhase:
    experiment: str


@dataclass(frozen=True)
class SloPhase:
    severity: Literal["page", "ticket"] = "page"


Action = LoadPhase | CanaryPhase | ChaosPhase | SloPhase


@dataclass(frozen=True)
class Phase:
    name: str
    kind: PhaseKind
    action: Action
    start: Start
    description: str = ""
    expected_burn: tuple[str, ...] = ()
    timeout_s: float | None = None

    def summary(self) -> str:
        a = self.action
        if isinstance(a, LoadPhase):
            return f"load {a.profile}" + (f" at scale {a.scale:g}" if a.scale is not None else "")
        if isinstance(a, CanaryPhase):
            hold = (f"hold {a.min_hold_s:g}-{a.hold_s:g}s" if a.judge == "sequential" and a.min_hold_s is not None
                    else f"hold {a.hold_s:g}s")
            return f"canary {a.service} {a.version} {'/'.join(map(str, a.steps))}% {hold} ({a.judge} judge)"
        if isinstance(a, ChaosPhase):
            return f"chaos {a.experiment}"
        return f"SLO status ({a.severity})"


@dataclass(frozen=True)
class Gate:
    severity: Literal["page", "ticket"] = "page"
    interval_s: float = 5.0
    max_budget_consumed: float = 0.05  # of each SLO's period budget, over the whole gameday


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    path: Path
    slo_paths: tuple[Path, ...]
    gate: Gate
    phases: tuple[Phase, ...]

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)


class _Reader:
    """Field-by-field reading with the path of each field, so an error names exactly what is wrong."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str) -> SpecError:
        return SpecError(self.source, where, expected)

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        return value

    def known(self, raw: dict[str, Any], where: str, allowed: tuple[str, ...]) -> None:
        for key in raw:
            if key not in allowed:
                raise self.fail(f"{where}.{key}" if where else str(key),
                                f"unknown field; expected one of {', '.join(allowed)}")

    def text(self, raw: dict[str, Any], key: str, where: str, default: str | None = None,
             pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        value = raw.get(key, default)
        if value is None:
            raise self.fail(f"{where}.{key}", "required" + (f": {hint}" if hint else ""))
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{where}.{key}", f"expected a string, got {_kind(value)}")
        value = str(value)
        if pattern is not None and not pattern.match(value):
            raise self.fail(f"{where}.{key}", f"expected {hint or pattern.pattern}, got {value!r}")
        return value

    def duration(self, raw: dict[str, Any], key: str, where: str, default: float | None = None,
                 allow_zero: bool = False) -> float | None:
        value = raw.get(key)
        if value is None:
            return default
        if allow_zero and value in (0, "0", "0s"):
            return 0.0
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{where}.{key}", f"expected a duration such as 30s or 5m, got {_kind(value)}")
        try:
            return parse_duration_s(value)
        except ValueError as exc:
            raise self.fail(f"{where}.{key}", str(exc)) from None

    def number(self, raw: dict[str, Any], key: str, where: str, low: float, high: float,
               default: float | None = None) -> float | None:
        value = raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
            raise self.fail(f"{where}.{key}", f"expected a number in ({low:g}, {high:g}], got {value!r}")
        return float(value)

    def choice(self, raw: dict[str, Any], key: str, where: str, options: tuple[str, ...], default: str) -> str:
        value = raw.get(key, default)
        if value not in options:
            raise self.fail(f"{where}.{key}", f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    def names(self, value: Any, where: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self.fail(where, f"expected a name or a list of names, got {_kind(value)}")
        return tuple(items)

    def string_map(self, raw: dict[str, Any], key: str, where: str) -> dict[str, str]:
        value = self.mapping(raw.get(key), f"{where}.{key}")
        for k, v in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
                raise self.fail(f"{where}.{key}.{k}", "expected a name of letters, digits and _")
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise self.fail(f"{where}.{key}.{k}", f"expected a string or number, got {_kind(v)}")
        return {str(k): f"{v:g}" if isinstance(v, float) else str(v) for k, v in value.items()}


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def load_plan(path: Path) -> Plan:
    """Read and validate a plan file (structure, names, durations, start references; not yet the SLO names,
    profiles and experiments, which `check_references` resolves against the repository)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(source, "", f"cannot read the plan ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise SpecError(source, where, f"not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_plan(doc, path)


def parse_plan(doc: Any, path: Path) -> Plan:
    r = _Reader(str(path))
    top = r.mapping(doc, "(document)")
    r.known(top, "", ("apiVersion", "kind", "metadata", "spec"))
    if top.get("apiVersion") != API_VERSION:
        raise r.fail("apiVersion", f"expected {API_VERSION}, got {top.get('apiVersion')!r}")
    if top.get("kind") != KIND:
        raise r.fail("kind", f"expected {KIND}, got {top.get('kind')!r}")
    meta = r.mapping(top.get("metadata"), "metadata")
    r.known(meta, "metadata", ("name", "description"))
    name = r.text(meta, "name", "metadata", pattern=NAME, hint="a lowercase name such as opening-bell")
    description = r.text(meta, "description", "metadata", default="")
    spec = r.mapping(top.get("spec"), "spec")
    r.known(spec, "spec", ("slo", "gate", "phases"))
    slo_names = r.names(spec.get("slo", ["slo"]), "spec.slo")
    if not slo_names:
        raise r.fail("spec.slo", "expected at least one SLO file or folder: the gate judges the gameday by them")
    slo_paths = tuple(_relative(path, p) for p in slo_names)
    gate = _gate(r, r.mapping(spec.get("gate"), "spec.gate"))
    raw_phases = spec.get("phases")
    if not isinstance(raw_phases, list) or not raw_phases:
        raise r.fail("spec.phases", "expected a non-empty list of phases")
    phases: list[Phase] = []
    for i, raw in enumerate(raw_phases):
        phases.append(_phase(r, r.mapping(raw, f"spec.phases[{i}]"), f"spec.phases[{i}]", phases))
    return Plan(name, description, path, slo_paths, gate, tuple(phases))


def _relative(plan: Path, name: str) -> Path:
    """A path in a plan: as given when absolute; else from the working directory (as Chaos Toolkit experiments
    name theirs) when it exists there, else from the project the plan belongs to (gamedays/'s parent)."""
    path = Path(name)
    if path.is_absolute():
        return path
    here = plan.resolve().parent
    project = here.parent if here.name == "gamedays" else here
    for candidate in (Path.cwd() / path, project / path):
        if candidate.exists():
            return candidate.resolve()
    return project / path


def _gate(r: _Reader, raw: dict[str, Any]) -> Gate:
    r.known(raw, "spec.gate", ("severity", "interval", "max_budget_consumed"))
    severity = r.choice(raw, "severity", "spec.gate", ("page", "ticket"), "page")
    interval = r.duration(raw, "interval", "spec.gate", default=5.0)
    cap = r.number(raw, "max_budget_consumed", "spec.gate", 0.0, 1.0, default=0.05)
    assert interval is not None and cap is not None
    return Gate(severity, interval, cap)  # type: ignore[arg-type]


def _phase(r: _Reader, raw: dict[str, Any], where: str, earlier: list[Phase]) -> Phase:
    r.known(raw, where, ("name", "description", "start", "expected_burn", "timeout", *KINDS))
    name = r.text(raw, "name", where, pattern=NAME, hint="a lowercase name such as market-open")
    if any(p.name == name for p in earlier):
        raise r.fail(f"{where}.name", f"{name!r} is used by an earlier phase; names must be unique")
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise r.fail(where, f"expected exactly one of {', '.join(KINDS)}, got {', '.join(kinds) or 'none'}")
    kind = kinds[0]
    body = r.mapping(raw[kind], f"{where}.{kind}")
    action: Action
    if kind == "load":
        action = _load(r, body, f"{where}.load")
    elif kind == "canary":
        action = _canary(r, body, f"{where}.canary")
    elif kind == "chaos":
        r.known(body, f"{where}.chaos", ("experiment",))
        action = ChaosPhase(r.text(body, "experiment", f"{where}.chaos", pattern=re.compile(r"^[\w./-]+$"),
                                   hint="an experiment name from `openbell chaos list`"))
    else:
        r.known(body, f"{where}.slo", ("severity",))
        action = SloPhase(r.choice(body, "severity", f"{where}.slo", ("page", "ticket"), "page"))  # type: ignore[arg-type]
    start = _start(r, r.mapping(raw.get("start"), f"{where}.start"), f"{where}.start", earlier)
    burn = r.names(raw.get("expected_burn", []), f"{where}.expected_burn")
    if kind == "slo" and "timeout" in raw:
        raise r.fail(f"{where}.timeout", "an slo phase is one evaluation: it takes no timeout")
    timeout = r.duration(raw, "timeout", where, default=default_timeout_s(action))
    return Phase(name, kind, action, start, r.text(raw, "description", where, default=""), burn, timeout)


def default_timeout_s(action: Action) -> float | None:
    """Without `timeout`: a canary gets every step's hold and extension twice over plus its promotion, an
    experiment 15 minutes; a load run ends when its profile does (k6 stops itself)."""
    if isinstance(action, CanaryPhase):
        return 2 * len(action.steps) * (action.hold_s + action.max_extension_s) + 300.0
    if isinstance(action, ChaosPhase):
        return 900.0
    return None


MAX_CAPACITY_FRACTION = 0.5  # a default load leaves at least half of what the machine sustains as headroom


def _load(r: _Reader, raw: dict[str, Any], where: str) -> LoadPhase:
    r.known(raw, where, ("profile", "scale", "capacity_fraction", "time_scale", "thresholds", "env"))
    calibrated = raw.get("scale") == "calibrated"
    if isinstance(raw.get("scale"), str) and not calibrated:
        raise r.fail(f"{where}.scale", f"expected a number in (0, 10] or calibrated, got {raw['scale']!r}")
    scale = None if calibrated else r.number(raw, "scale", where, 0.0, 10.0)  # a bad scale is named first
    if "capacity_fraction" in raw and not calibrated:
        raise r.fail(f"{where}.capacity_fraction", "only with scale: calibrated (a fixed scale is the plan's own)")
    fraction = r.number(raw, "capacity_fraction", where, 0.0, MAX_CAPACITY_FRACTION, MAX_CAPACITY_FRACTION)
    return LoadPhase(
        profile=r.text(raw, "profile", where, pattern=re.compile(r"^[\w./-]+$"), hint="a profile name or a .js path"),
        scale=scale,
        time_scale=r.number(raw, "time_scale", where, 0.0, 10.0),
        calibrated=calibrated, capacity_fraction=fraction if fraction is not None else MAX_CAPACITY_FRACTION,
        thresholds=r.choice(raw, "thresholds", where, ("report", "gate"), "report"),  # type: ignore[arg-type]
        env=r.string_map(raw, "env", where))


def _canary(r: _Reader, raw: dict[str, Any], where: str) -> CanaryPhase:
    from openbell.canary.machine import JUDGES, check_judge, check_steps

    r.known(raw, where, ("service", "version", "steps", "hold", "interval", "max_extension", "on_inconclusive",
                         "sandbox_faults", "probe_rate", "judge", "min_hold", "alpha", "tolerance"))
    steps_raw = raw.get("steps", [10, 25, 50, 100])
    if not isinstance(steps_raw, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps_raw):
        raise r.fail(f"{where}.steps", f"expected a list of whole percentages, got {steps_raw!r}")
    steps = tuple(steps_raw)
    why = check_steps(steps)
    if why:
        raise r.fail(f"{where}.steps", why)
    faults = r.string_map(raw, "sandbox_faults", where)
    if faults:
        from openbell.targets.sandbox import parse_faults

        try:
            parse_faults([f"{k}={v}" for k, v in faults.items()])
        except UsageError as exc:
            raise r.fail(f"{where}.sandbox_faults", str(exc).split(": ", 1)[-1]) from None
    judge = r.choice(raw, "judge", where, JUDGES, "sequential")
    hold_s = r.duration(raw, "hold", where, 60.0) or 60.0
    min_hold_s = r.duration(raw, "min_hold", where, None)
    if min_hold_s is not None and min_hold_s > hold_s:
        raise r.fail(f"{where}.min_hold", f"expected at most the hold ({hold_s:g}s), got {min_hold_s:g}s")
    alpha = r.number(raw, "alpha", where, 0.0, 0.5, 0.01)
    tolerance = r.mapping(raw.get("tolerance"), f"{where}.tolerance")
    r.known(tolerance, f"{where}.tolerance", ("latency", "errors"))
    latency = r.number(tolerance, "latency", f"{where}.tolerance", 0.0, 1.0, None)
    errors = r.number(tolerance, "errors", f"{where}.tolerance", 0.0, 1.0, None)
    why = check_judge(alpha if alpha is not None else 0.01, latency if latency is not None else 0.5,
                      errors if errors is not None else 0.05)
    if why:
        raise r.fail(f"{where}.{'alpha' if 'alpha' in why else 'tolerance'}", why)
    if judge == "fixed" and (min_hold_s is not None or "alpha" in raw or tolerance):
        raise r.fail(f"{where}.judge", "min_hold, alpha and tolerance belong to the sequential judge")
    return CanaryPhase(
        service=r.text(raw, "service", where, default="gateway", pattern=NAME, hint="a service name"),
        version=r.text(raw, "version", where, pattern=VERSION,
                       hint="a version label without spaces ({run} is replaced by the gameday's run id)"),
        steps=steps, hold_s=hold_s,
        interval_s=r.duration(raw, "interval", where, 2.0) or 2.0,
        max_extension_s=r.duration(raw, "max_extension", where, 60.0) or 60.0,
        on_inconclusive=r.choice(raw, "on_inconclusive", where, ("fail", "pass"), "fail"),  # type: ignore[arg-type]
        sandbox_faults=faults,
        probe_rate=0.0 if raw.get("probe_rate") == 0 else r.number(raw, "probe_rate", where, 0.0, 1000.0, 0.0) or 0.0,
        judge=judge, min_hold_s=min_hold_s, alpha=alpha if alpha is not None else 0.01,  # type: ignore[arg-type]
        latency_tolerance=latency, error_tolerance=errors)


def _start(r: _Reader, raw: dict[str, Any], where: str, earlier: list[Phase]) -> Start:
    r.known(raw, where, ("at", "after", "delay"))
    if "at" in raw and "after" in raw:
        raise r.fail(where, "expected either at (time from the start) or after (phases), not both")
    if "at" in raw:
        if "delay" in raw:
            raise r.fail(f"{where}.delay", "delay goes with after, not with at")
        return Start(at_s=r.duration(raw, "at", where, allow_zero=True))
    delay = r.duration(raw, "delay", where, default=0.0, allow_zero=True) or 0.0
    if "after" not in raw:
        # Default: after the previous phase (the first phase starts at once).
        return Start(after=(earlier[-1].name,) if earlier else (), delay_s=delay)
    after = r.names(raw["after"], f"{where}.after")
    known = {p.name for p in earlier}
    for name in after:
        if name not in known:
            raise r.fail(f"{where}.after", f"{name!r} is not an earlier phase; expected one of "
                         f"{', '.join(sorted(known)) or '(none: this is the first phase)'}")
    return Start(after=after, delay_s=delay)


def check_references(plan: Plan, target: str, slo_names: set[str], profiles: list[str],
                     experiments: list[str]) -> None:
    """The names a plan uses exist: SLOs in expected_burn, load profiles, chaos experiments of the target."""
    r = _Reader(str(plan.path))
    for i, phase in enumerate(plan.phases):
        where = f"spec.phases[{i}]"
        for name in phase.expected_burn:
            if name not in slo_names:
                raise r.fail(f"{where}.expected_burn", f"{name!r} is not an SLO of {_paths(plan)}; expected one of "
                             f"{', '.join(sorted(slo_names))}")
        a = phase.action
        if isinstance(a, LoadPhase) and a.profile.endswith(".js") and not Path(a.profile).is_file():
            raise r.fail(f"{where}.load.profile", f"no such k6 script: {a.profile}")
        if isinstance(a, LoadPhase) and not a.profile.endswith(".js") and a.profile not in profiles:
            raise r.fail(f"{where}.load.profile",
                         f"unknown profile {a.profile!r}; expected one of {', '.join(profiles)}")
        if isinstance(a, ChaosPhase) and a.experiment not in experiments and not Path(a.experiment).is_file():
            raise r.fail(f"{where}.chaos.experiment", f"no {target} experiment {a.experiment!r}; expected one of "
                         f"{', '.join(experiments)}")
        if isinstance(a, LoadPhase) and a.calibrated and target != "sandbox":
            raise r.fail(f"{where}.load.scale", "calibrated needs the sandbox target (a calibration measures this "
                         "machine); give the scale as a number")
        if isinstance(a, CanaryPhase) and a.probe_rate and target != "sandbox":
            raise r.fail(f"{where}.canary.probe_rate", "synthetic probes reach the instances on the sandbox target "
                         "only; on Kubernetes run a load tester inside the cluster")
        if isinstance(a, CanaryPhase) and a.sandbox_faults and target != "sandbox":
            raise r.fail(f"{where}.canary.sandbox_faults", "fault injection exists only on the sandbox target")


def _paths(plan: Plan) -> str:
    return ", ".join(str(p) for p in plan.slo_paths)
