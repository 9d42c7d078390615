"""One sandbox for every scenario test in this folder: started once per session with the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
