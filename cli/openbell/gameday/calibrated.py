"""A plan's `scale: calibrated` load phases, given their scale from this machine's calibration.

The default gameday runs at a stated fraction (at most half) of the largest scale at which every SLO holds on
the machine it runs on, measured by `openbell sandbox calibrate` and kept per machine, code and profile; a
plan that fixes its scale keeps it. When no calibration is kept, one is measured first, on the sandbox the
gameday is about to run on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openbell.errors import EXIT_GATE_FAILED, OpenbellError
from openbell.gameday.plan import LoadPhase, Plan
from openbell.slo.model import SLO


class NoCapacity(OpenbellError):
    """Not even the smallest load holds every SLO on this machine: there is nothing to rehearse at."""

    exit_code = EXIT_GATE_FAILED


def resolve(plan: Plan, slos: list[SLO], endpoints: dict[str, str], workdir: Path,
            say: Callable[[str], None] = lambda _: None) -> tuple[Plan, list[dict[str, Any]]]:
    """The plan with every calibrated load phase's scale set, and for the report what each was set from."""
    from openbell.load import calibrate

    phases = list(plan.phases)
    notes: list[dict[str, Any]] = []
    for i, phase in enumerate(phases):
        action = phase.action
        if not isinstance(action, LoadPhase) or not action.calibrated:
            continue
        settings = calibrate.Settings(time_scale=action.time_scale or calibrate.Settings.time_scale)
        found, cached = calibrate.ensure(action.profile, endpoints, slos, workdir, settings, say=say)
        if found.capacity_scale is None:
            smallest = min(found.levels, key=lambda lv: lv.scale)
            raise NoCapacity(f"calibration: no load holds every SLO on this machine (the smallest level, scale "
                             f"{smallest.scale:g}: {'; '.join(smallest.reasons)}); `openbell sandbox calibrate` "
                             "shows each level's figures")
        scale = found.scale_for(action.capacity_fraction)
        phases[i] = dataclasses.replace(phase, action=dataclasses.replace(action, scale=scale))
        note = {"phase": phase.name, "profile": found.profile, "scale": scale,
                "capacity_scale": found.capacity_scale, "capped": found.capped,
                "capacity_fraction": action.capacity_fraction, "headroom": round(1 - scale / found.capacity_scale, 3),
                "measured_at": found.measured_at, "cached": cached,
                "file": str(calibrate.cache_path(found.profile, found.fingerprint)), "machine": found.machine,
                "levels": len(found.levels)}
        notes.append(note)
        when = (f"calibrated {time.strftime('%Y-%m-%d %H:%M', time.gmtime(found.measured_at))}Z" if cached
                else "just calibrated")
        say(f"{phase.name}: scale {scale:g}, {action.capacity_fraction:.0%} of the "
            f"{'at least ' if found.capped else ''}{found.capacity_scale:g} every SLO held at on this machine ({when})")
    return dataclasses.replace(plan, phases=tuple(phases)), notes
