"""Where openbell's own files are: the source tree it runs from and the user's cache (stdlib only)."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The source tree openbell runs from (slo/, services/, build/ live there)."""
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """`$OPENBELL_CACHE`, else `$XDG_CACHE_HOME/openbell`: downloaded and built artifacts (Kafka's jars, the
    Kubernetes and Pulumi binaries)."""
    env = os.environ.get("OPENBELL_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "openbell"
