"""Where the extension's activities act: the sandbox at `home` (else $OPENBELL_HOME, else the default), its
endpoints, its Prometheus, and the SLO specs an experiment names.

`openbell chaos run` passes its choices to the Chaos Toolkit subprocess through the environment (the variables
below), so an experiment file stays the same whichever sandbox, Prometheus or SLO set it runs against.
"""

from __future__ import annotations

import os
from pathlib import Path

from openbell.errors import SpecError, UnreachableError
from openbell.sandbox.layout import Layout

SLO_ENV = "OPENBELL_CHAOS_SLO"
"""os.pathsep-separated SLO paths: `openbell chaos run --slo` replaces the ones an experiment names."""

PROMETHEUS_ENV = "OPENBELL_PROMETHEUS_URL"
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"


def layout(home: str | Path | None = None) -> Layout:
    """The sandbox's directories: `home`, else $OPENBELL_HOME, else the default state directory."""
    from openbell.sandbox.layout import default_home

    return Layout(Path(home).expanduser().resolve() if home else default_home())


def endpoints(home: str | Path | None = None) -> dict[str, str]:
    """The sandbox's endpoints (market_url, prometheus_url, kafka_bootstrap, feed_url, postgres_dsn, ...)."""
    from openbell.sandbox import supervisor

    lay = layout(home)
    found = supervisor.endpoints(supervisor.context(lay))
    if not found:
        raise UnreachableError(f"sandbox {lay.home}: it was never started; `openbell sandbox up` first")
    return found


def prometheus_url(explicit: str | None = None, home: str | Path | None = None) -> str:
    """`explicit`, else $OPENBELL_PROMETHEUS_URL, else the sandbox's running Prometheus, else 127.0.0.1:9090."""
    if explicit:
        return explicit
    env = os.environ.get(PROMETHEUS_ENV)
    if env:
        return env
    from openbell.sandbox.supervisor import running_url

    return running_url("prometheus", layout(home)) or DEFAULT_PROMETHEUS


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
