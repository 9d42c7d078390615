"""The Pulumi program (Pulumi.yaml: `main: infra/`): validate the stack's config, then declare the platform."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `infra` importable when pulumi runs this file

import pulumi

from infra.config import ConfigError, from_pulumi
from infra.program import build

try:
    config = from_pulumi(pulumi.Config("openbell"), pulumi.get_stack())
except ConfigError as exc:
    # One line naming the key and what was expected, before a single resource is declared.
    raise pulumi.RunError(str(exc)) from None
build(config)
