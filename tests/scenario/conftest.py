"""One sandbox for every scenario test in this folder: started once per session with the real CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scenario.platform_client import Sandbox, openbell

# The calibration is short in the suite (two levels of 15 s, up to scale 0.0005): what is tested is that it
# measures, keeps and is used, not this machine's full capacity (bench/detection.py and `make run` do that).
CALIBRATION = ("--start", "0.00025", "--max-scale", "0.0005", "--hold", "15s")


@pytest.fixture(scope="session", autouse=True)
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's calibrations go to a folder of its own, never the user's kept ones."""
    folder = tmp_path_factory.mktemp("calibration")
    before = os.environ.get("OPENBELL_CALIBRATION_DIR")
    os.environ["OPENBELL_CALIBRATION_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("OPENBELL_CALIBRATION_DIR", None)
    else:
        os.environ["OPENBELL_CALIBRATION_DIR"] = before


@pytest.fixture(scope="session")
def calibrated(sandbox: Sandbox, calibration_dir: Path) -> dict[str, Any]:
    """`openbell sandbox calibrate` on the shared sandbox, once per session: its JSON."""
    done = openbell("sandbox", "calibrate", *CALIBRATION, "--output", "json", home=sandbox.home, timeout_s=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    home = tmp_path_factory.mktemp("sandbox-home")
    try:
        done = openbell("sandbox", "up", "--output", "json", "--timeout", "150s", home=home)
        if done.returncode != 0:
            pytest.fail(f"sandbox up failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        yield Sandbox(home, json.loads(done.stdout)["endpoints"])
    finally:
        # Always, also when `up` failed or timed out half way: nothing may outlive the test session.
        down = openbell("sandbox", "down", "--purge", "--output", "json", home=home)
        assert down.returncode == 0, down.stderr


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The gameday runs first, on a platform with a clean history. The other modules burn budget on purpose
    (a harsh chaos experiment takes every gateway down, faulty canaries serve errors), and within the
    sandbox's short history that burn still pages minutes later, so the gameday's experiments would rightly
    refuse to start: chaos is not injected into a platform that is already burning."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if item.path.parent == here]
    ours = sorted((items[i] for i in slots), key=lambda item: 0 if item.path.name == "test_gameday.py" else 1)
    for slot, item in zip(slots, ours, strict=True):
        items[slot] = item
