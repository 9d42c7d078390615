"""The Pulumi program (Pulumi.yaml: `main: infra/`) for a plain `pulumi` run: validate the stack's config, then
declare the platform. `openbell infra` runs the same `main` inline."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `infra` importable when pulumi runs this file

from infra.program import main

main()
