"""`openbell infra`: the Pulumi program in infra/ seen from the CLI - an offline plan (pulumi's mocks, the
policy pack's rules, schema checks) and preview/up/destroy through the Automation API.

Nothing here imports pulumi at import time: `openbell --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

from openbell.errors import UsageError


def repo_root(start: Path | None = None) -> Path:
    """The checkout holding Pulumi.yaml and infra/: the working directory or one of its parents, else the
    checkout this package was installed from (an editable install)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents, Path(__file__).resolve().parents[3]):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / "infra" / "program.py").is_file():
            return candidate
    raise UsageError("no Pulumi.yaml with an infra/ program here or above: run from the openbell repository")


def importable(root: Path) -> None:
    """Make the repository's `infra` package importable (it is not installed with the CLI)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def stack_file(root: Path, stack: str, override: Path | None = None) -> Path:
    return override if override is not None else root / "stacks" / f"Pulumi.{stack}.yaml"
