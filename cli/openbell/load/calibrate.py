"""Calibration: the largest load at which every SLO holds on this machine, measured, cached, and what the default
gameday runs at (a stated fraction of it, at most half).

A level is one short k6 run of the profile in calibration mode (`CALIBRATE_S`: its peak, the most traders it
ever has, its peak order rate and the feed at its peak multiplier, held steady at a scale) on the sandbox. It
holds when, over its measured part, every SLO's error ratio is within its error budget (each SLI meets its
objective) and the load generator kept up (its event loop at most CLIENT_DELAY_LIMIT_MS late, p99): a scale at
which k6 itself falls behind is beyond what this machine can run and measure, whatever the platform does.
Levels double while they hold; after the first that does not, one level between the two refines the answer.

The pure parts (`next_scale`, `judge_level`, `fingerprint`, the record) are tested on plain values; `run`
does the I/O. A calibration is kept per machine, platform code and profile (`cache_path`): what bounds the
load here is this machine's cores and this code, so either changing makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openbell.slo.model import SLO

SCHEMA = "openbell/calibration/v1"
START_SCALE = 0.00025  # 19 traders at the NYSE open: the smallest level worth running
MAX_SCALE = 0.016  # 1,200 traders: far beyond one small machine; a calibration that reaches it says "at least"
MIN_SCALE = START_SCALE / 8
HOLD_S = 30.0
RAMP_S = 5.0
SETTLE_S = 8.0  # after the ramp, before the measured part: connections made, the feed at its peak
PAUSE_S = 5.0  # between levels: the last one's sessions close and the platform idles
CLIENT_DELAY_LIMIT_MS = 50.0  # a client later than the push objective's threshold cannot measure it
REFINE_ABOVE = 1.45  # refine between a held and a failed level while they are more than this apart
DEFAULT_FRACTION = 0.5


@dataclass(frozen=True)
class Level:
    """One level: its scale, when it was measured, whether every SLO held, and the figures."""

    scale: float
    holds: bool
    reasons: tuple[str, ...]
    measured_from: float
    measured_to: float
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Calibration:
    """What a calibration found: the largest scale that held (None: not even the smallest)."""

    profile: str
    capacity_scale: float | None
    capped: bool  # the largest level tried held: the capacity is at least capacity_scale
    levels: tuple[Level, ...]
    measured_at: float
    machine: dict[str, Any]
    fingerprint: str
    time_scale: float
    hold_s: float
    load_average: float | None = None  # the machine's 1-minute load average when it began

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self), "levels": [asdict(level) for level in self.levels]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Calibration:
        levels = tuple(Level(scale=float(lv["scale"]), holds=bool(lv["holds"]), reasons=tuple(lv["reasons"]),
                             measured_from=float(lv["measured_from"]), measured_to=float(lv["measured_to"]),
                             figures=dict(lv.get("figures") or {})) for lv in doc["levels"])
        capacity = doc.get("capacity_scale")
        return cls(profile=str(doc["profile"]), capacity_scale=None if capacity is None else float(capacity),
                   capped=bool(doc.get("capped")), levels=levels, measured_at=float(doc["measured_at"]),
                   machine=dict(doc.get("machine") or {}), fingerprint=str(doc["fingerprint"]),
                   time_scale=float(doc["time_scale"]), hold_s=float(doc["hold_s"]),
                   load_average=doc.get("load_average"))

    def scale_for(self, fraction: float) -> float:
        """The scale a plan runs at: `fraction` of the capacity, to the 2 significant figures it was measured to."""
        if self.capacity_scale is None:
            raise ValueError("no capacity: not even the smallest level held")
        return float(f"{self.capacity_scale * fraction:.2g}")


# -- the search (pure) --------------------------------------------------------------------------------------

def next_scale(tried: list[tuple[float, bool]], start: float = START_SCALE, max_scale: float = MAX_SCALE,
               min_scale: float = MIN_SCALE) -> float | None:
    """The next level to run given (scale, held) so far, or None when the answer is known: double while every
    level holds (up to `max_scale`); below `start` halve while none holds (down to `min_scale`); once a level
    held and a larger one failed, one level at their geometric mean, then stop."""
    if not tried:
        return start
    held = [s for s, ok in tried if ok]
    failed = [s for s, ok in tried if not ok]
    if not failed:
        nxt = max(held) * 2
        return nxt if nxt <= max_scale * (1 + 1e-9) else None
    if not held:
        nxt = min(failed) / 2
        return nxt if nxt >= min_scale * (1 - 1e-9) else None
    lo = max(held)
    above = [s for s in failed if s > lo]
    if not above:
        return None
    hi = min(above)
    if hi / lo <= REFINE_ABOVE:
        return None
    return float(f"{math.sqrt(lo * hi):.3g}")


def capacity(tried: list[tuple[float, bool]]) -> float | None:
    """The largest level that held below every level that failed."""
    failed = [s for s, ok in tried if not ok]
    ceiling = min(failed) if failed else math.inf
    held = [s for s, ok in tried if ok and s < ceiling]
    return max(held) if held else None


def judge_level(slos: list[SLO], ratios: dict[str, dict[str, float | None]], client_delay_p99_ms: float | None,
                k6_error: str = "") -> tuple[bool, tuple[str, ...], dict[str, Any]]:
    """Whether a level held: every SLO's worst group within its error budget over the measured part (an SLO
    with no events there is not judged), and the load generator kept up. Returns (holds, reasons, figures)."""
    reasons: list[str] = []
    figures: dict[str, Any] = {"slos": {}, "client_delay_p99_ms": client_delay_p99_ms}
    if k6_error:
        reasons.append(f"k6 did not run the level: {k6_error}")
    for slo in slos:
        groups = {g: v for g, v in ratios.get(slo.name, {}).items() if v is not None and math.isfinite(v)}
        if not groups:
            figures["slos"][slo.name] = None
            continue
        group, worst = max(groups.items(), key=lambda kv: kv[1])
        figures["slos"][slo.name] = {"error_ratio": round(worst, 6), "error_budget": slo.error_budget,
                                     "burn_rate": round(worst / slo.error_budget, 3), "group": group}
        if worst > slo.error_budget:
            label = f"{slo.name}{{{group}}}" if group else slo.name
            reasons.append(f"{label}: {worst:.2%} bad over the level, more than its {slo.error_budget:.2%} budget "
                           f"({worst / slo.error_budget:.1f}x)")
    if client_delay_p99_ms is not None and client_delay_p99_ms > CLIENT_DELAY_LIMIT_MS:
        reasons.append(f"the load generator fell behind: its event loop ran {client_delay_p99_ms:g} ms late (p99, "
                       f"limit {CLIENT_DELAY_LIMIT_MS:g} ms)")
    holds = not reasons
    if holds:
        reasons.append("every SLO held and the load generator kept up")
    return holds, tuple(reasons), figures


# -- where a calibration is kept (pure but for reading files) -----------------------------------------------

def machine() -> dict[str, Any]:
    """What bounds the load on this machine: its cores, their model, its memory."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                             if ln.startswith("MemTotal:")))
    except (OSError, StopIteration, ValueError, IndexError):
        memory_kb = 0
    return {"cpus": os.cpu_count() or 0, "cpu_model": model, "memory_gib": round(memory_kb / 2**20)}


def platform_files(root: Path) -> list[Path]:
    """The code whose speed the calibration measured: the services, the sandbox's components and configs."""
    files = [*root.glob("services/**/*.py"), *root.glob("services/**/*.go"),
             root / "cli/openbell/sandbox/components.py", root / "cli/openbell/sandbox/configs.py"]
    return sorted(f for f in files if f.is_file())


def fingerprint(machine_facts: dict[str, Any], files: Iterable[Path], profile_files: Iterable[Path]) -> str:
    """A key that changes with what bounds the load: the machine, the platform's code and the profile. How
    long each level held and the time scale its sessions ran at are how it was measured, recorded in the
    calibration: a plan at another time scale uses it as it is (its peak is the same traders and ticks)."""
    digest = hashlib.sha256(json.dumps(machine_facts, sort_keys=True).encode())
    for path in [*files, *profile_files]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def calibration_dir() -> Path:
    """`$OPENBELL_CALIBRATION_DIR`, else the cache's `calibration/` (it outlives `sandbox down --purge`)."""
    env = os.environ.get("OPENBELL_CALIBRATION_DIR")
    if env:
        return Path(env).expanduser().resolve()
    from openbell.paths import cache_dir

    return cache_dir() / "calibration"


def cache_path(profile: str, key: str) -> Path:
    return calibration_dir() / f"{profile}-{key}.json"


def load_cached(profile: str, key: str) -> Calibration | None:
    """The calibration kept for this profile and key, None when there is none (or it is unreadable)."""
    path = cache_path(profile, key)
    try:
        doc = json.loads(path.read_text())
        if doc.get("schema") != SCHEMA:
            return None
        return Calibration.from_dict(doc)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(calibration: Calibration) -> Path:
    path = cache_path(calibration.profile, calibration.fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(calibration.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    return path


# -- the I/O ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    start: float = START_SCALE
    max_scale: float = MAX_SCALE
    hold_s: float = HOLD_S
    ramp_s: float = RAMP_S
    settle_s: float = SETTLE_S
    pause_s: float = PAUSE_S
    time_scale: float = 0.05


def run(profile: Any, target: Any, slos: list[SLO], prometheus_url: str, workdir: Path, settings: Settings,
        key: str, say: Callable[[str], None] = lambda _: None) -> Calibration:
    """Run levels on `target` (a targets.platform.Entry on this machine) until the answer is known."""
    from openbell.metrics.prometheus import PrometheusClient

    tried: list[tuple[float, bool]] = []
    levels: list[Level] = []
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.time()
    with PrometheusClient(prometheus_url, timeout_s=30.0) as client:
        scale = next_scale(tried, settings.start, settings.max_scale)
        while scale is not None:
            say(f"level {len(levels) + 1}: scale {scale:g} for {settings.ramp_s + settings.hold_s:g}s")
            level = _level(profile, target, slos, client, workdir, settings, scale)
            levels.append(level)
            tried.append((scale, level.holds))
            say(f"level {len(levels)}: scale {scale:g} {'held' if level.holds else 'did not hold'}: "
                + "; ".join(level.reasons))
            scale = next_scale(tried, settings.start, settings.max_scale)
            if scale is not None:
                time.sleep(settings.pause_s)
    found = capacity(tried)
    capped = found is not None and not any(not ok and s > found for s, ok in tried)
    return Calibration(profile=profile.name, capacity_scale=found, capped=capped, levels=tuple(levels),
                       measured_at=started, machine=machine(), fingerprint=key, time_scale=settings.time_scale,
                       hold_s=settings.hold_s, load_average=None if load_average is None else round(load_average, 2))


def _level(profile: Any, target: Any, slos: list[SLO], client: Any, workdir: Path, settings: Settings,
           scale: float) -> Level:
    from openbell.load.runner import RunOptions
    from openbell.load.runner import run as run_k6

    tag = f"{scale:g}"
    options = RunOptions(scale=scale, time_scale=settings.time_scale, thresholds={},
                         summary_path=workdir / f"level-{tag}.k6-summary.json", log_path=workdir / f"level-{tag}.log",
                         env={"CALIBRATE_S": f"{settings.hold_s:g}", "CALIBRATE_RAMP_S": f"{settings.ramp_s:g}"})
    result = run_k6(profile, target, options)
    ended = time.time()
    # The measured part: after the ramp and the settling, up to the end of the hold (sessions end a second
    # before the scenario does, and k6 runs its teardown after it).
    measured_to = ended - 2.0
    measured_from = max(measured_to - (settings.hold_s - settings.settle_s), ended - result.elapsed_s)
    error = result.error if result.returncode not in (0, 99) else ""
    ratios = _ratios(client, slos, measured_from, measured_to)
    delay = result.summary.figures.get("client_delay_p99_ms") if result.summary else None
    holds, reasons, figures = judge_level(slos, ratios, delay, error)
    if result.summary is not None:
        figures["k6"] = {k: v for k, v in result.summary.figures.items()
                         if k in ("vus_max", "ws_messages_per_s", "http_requests_per_s", "push_latency_p99_ms",
                                  "client_delay_p50_ms", "client_delay_p99_ms")}
    return Level(scale, holds, reasons, round(measured_from, 3), round(measured_to, 3), figures)


def _ratios(client: Any, slos: list[SLO], t0: float, t1: float) -> dict[str, dict[str, float | None]]:
    """Each SLO's error ratio over [t0, t1] per group, from the same PromQL the gate uses."""
    from openbell.metrics.prometheus import QueryError, QueryTimeout
    from openbell.slo.promql import error_ratio

    window = max(2.0, round(t1 - t0))
    out: dict[str, dict[str, float | None]] = {}
    for slo in slos:
        try:
            samples = client.query(error_ratio(slo, window), at=t1)
        except (QueryError, QueryTimeout):
            out[slo.name] = {}
            continue
        out[slo.name] = {",".join(f"{k}={s.labels.get(k, '')}" for k in slo.group_by): s.value for s in samples}
    return out


def key_for(profile: Any, settings: Settings) -> str:
    """This machine's, this code's and this profile's calibration key."""
    from openbell.paths import repo_root

    lib = profile.path.parent / "lib" / "trader.js"
    profile_files = [profile.path, *([lib] if lib.is_file() else [])]
    return fingerprint(machine(), platform_files(repo_root()), profile_files)


def ensure(profile_name: str, endpoints: dict[str, str], slos: list[SLO], workdir: Path, settings: Settings,
           force: bool = False, say: Callable[[str], None] = lambda _: None) -> tuple[Calibration, bool]:
    """The calibration kept for this machine, code and profile (and True), or one measured now on the running
    sandbox at `endpoints` and kept (and False)."""
    from openbell.load.catalogue import find, profiles_dir
    from openbell.targets.platform import Entry

    profile = find(profile_name, profiles_dir())
    key = key_for(profile, settings)
    if not force:
        cached = load_cached(profile.name, key)
        if cached is not None:
            return cached, True
    target = Entry("sandbox", endpoints["market_url"], endpoints["websocket_url"], endpoints["feed_url"],
                    endpoints["prometheus_url"])
    workdir.mkdir(parents=True, exist_ok=True)
    found = run(profile, target, slos, endpoints["prometheus_url"], workdir, settings, key, say)
    save(found)
    return found, False
