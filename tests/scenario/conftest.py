"""One sandbox for every scenario test in this folder: started once per session with the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenario.platform_client import Sandbox, openbell


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
