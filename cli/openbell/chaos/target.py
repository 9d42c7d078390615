"""The SLO specs an experiment judges, and the variables that carry openbell's choices into Chaos Toolkit.
Where the extension's activities act (the sandbox at `home`, its endpoints, its Prometheus) is resolved by
targets/platform.py, the one place for every command.

`openbell chaos run` passes its choices to the Chaos Toolkit subprocess through the environment (the variables
below), so an experiment file stays the same whichever sandbox, Prometheus or SLO set it runs against.
"""

from __future__ import annotations

import os
from pathlib import Path

from openbell.errors import SpecError
from openbell.targets.platform import DEFAULT_PROMETHEUS, PROMETHEUS_ENV

__all__ = ["DEFAULT_PROMETHEUS", "PROMETHEUS_ENV", "SLO_ENV", "slo_paths"]

SLO_ENV = "OPENBELL_CHAOS_SLO"
"""os.pathsep-separated SLO paths: `openbell chaos run --slo` replaces the ones an experiment names."""

def slo_paths(declared: str | list[str] | None) -> list[Path]:
    """The SLO specs to judge: $OPENBELL_CHAOS_SLO when set, else the experiment's (a list, or one string
    with os.pathsep or commas). A relative path is taken from the working directory when it exists there,
    else from the openbell source tree (where slo/ and experiments/ live)."""
    override = os.environ.get(SLO_ENV)
    raw: list[str]
    if override:
        raw = [p for p in override.split(os.pathsep) if p]
    elif isinstance(declared, str):
        raw = [p.strip() for p in declared.replace(",", os.pathsep).split(os.pathsep) if p.strip()]
    else:
        raw = [str(p) for p in declared or []]
    if not raw:
        raise SpecError("slo_paths", "", "expected at least one SLO file or folder (e.g. slo/)")
    from openbell.paths import repo_root

    resolved = []
    for text in raw:
        path = Path(text).expanduser()
        if not path.is_absolute() and not path.exists():
            path = repo_root() / path
        resolved.append(path)
    return resolved
