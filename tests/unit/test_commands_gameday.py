"""`openbell gameday` as a user meets it: bad input is one line and exit 2, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from openbell.commands.app import app
from openbell.errors import SpecError
from tests.unit.test_gameday_plan import DEFAULT, _doc, _set

ROOT = Path(__file__).resolve().parents[2]


def test_the_command_exits_2_with_one_line_before_touching_anything(tmp_path: Path) -> None:
    plan = tmp_path / "gamedays" / "broken.yaml"
    plan.parent.mkdir()
    plan.write_text(yaml.safe_dump(_set(_doc(), "spec.phases.1.canary.hold", "forever")))
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "openbell", "gameday", "--plan", str(plan), "--home", str(home)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"openbell: {plan}: spec.phases[1].canary.hold: expected a duration such as 30d, 1h or 250ms, got 'forever'"]
    assert done.stdout == ""
    assert not home.exists()  # no sandbox was brought up for a plan that cannot run
    result = CliRunner().invoke(app, ["gameday", "--plan", str(tmp_path / "none.yaml")])
    assert isinstance(result.exception, SpecError) and result.exception.exit_code == 2


def test_kubernetes_takes_its_own_default_plan_and_needs_prometheus_and_an_entry_point() -> None:
    from openbell.errors import UsageError

    result = CliRunner().invoke(app, ["gameday", "--target", "kubernetes"])
    assert isinstance(result.exception, UsageError)  # the Kubernetes plan resolved; the URLs are missing
    assert "--prometheus URL and --base-url URL are required" in str(result.exception)
    result = CliRunner().invoke(app, ["gameday", "--target", "kubernetes", "--plan", str(DEFAULT)])
    # The sandbox's plan: its load is calibrated on this machine, which a cluster is not.
    assert isinstance(result.exception, SpecError) and "calibrated needs the sandbox target" in str(result.exception)
