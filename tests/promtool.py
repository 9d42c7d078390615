"""Helpers to run Debian's promtool on generated rules and on generated `promtool test rules` suites."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbell.slo.model import SLO
from openbell.slo.rules import generate
from openbell.slo.rules_yaml import dump


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make setup` (Debian package prometheus)")
    return path


def write_rules(tmp_path: Path, slos: list[SLO]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(dump(generate(slos)))
    return path


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def run_rule_tests(tmp_path: Path, rules: Path, tests: list[dict[str, Any]], interval_s: int) -> None:
    suite = {"rule_files": [rules.name], "evaluation_interval": f"{interval_s}s", "tests": tests}
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False, width=1 << 20))
    proc = subprocess.run([promtool(), "test", "rules", path.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"promtool test rules failed:\n{proc.stdout}\n{proc.stderr}"


def counter(rates_per_step: list[float]) -> str:
    """Explicit cumulative counter values, one per step, from the increase during each step."""
    total, out = 0.0, []
    for inc in rates_per_step:
        total += inc
        out.append(f"{total:g}")
    return " ".join(out)


def gauge(values: list[float]) -> str:
    return " ".join(f"{v:g}" for v in values)
