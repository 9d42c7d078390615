"""`openbell canary` as a user meets it without a sandbox: one line, the right exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args,code,expected", [
    (["run", "gateway", "--version", "v2"], 3, "not running: `openbell sandbox up` first"),
    (["run", "gateway", "--version", "v2", "--steps", "25,10"], 2, "strictly increasing"),
    (["run", "gateway", "--version", "v2", "--on-inconclusive", "maybe"], 2, "expected fail or pass"),
    (["abort", "gateway"], 3, "not running"),
    (["status", "gateway"], 0, "no rollout of gateway recorded"),
])
def test_the_cli_without_a_sandbox(tmp_path: Path, args: list[str], code: int, expected: str) -> None:
    done = subprocess.run([sys.executable, "-m", "openbell", "canary", *args, "--home", str(tmp_path / "none"),
                           *(["--slo", str(ROOT / "slo")] if args[0] == "run" else [])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
