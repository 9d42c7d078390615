"""The sandbox's state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell.errors import SpecError
from openbell.sandbox import state
from openbell.sandbox.processes import ProcessRecord


def test_state_round_trips_and_a_corrupt_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    saved = state.SandboxState(gateway_replicas=3, ports={"kafka": 9092},
                               processes={"kafka": ProcessRecord(123, 456)}, kafka_cluster_id="abc")
    state.save(path, saved)
    loaded = state.load(path)
    assert loaded is not None
    assert loaded.to_json() == saved.to_json()
    path.write_text("{not json")
    with pytest.raises(SpecError, match=r"sandbox\.json"):
        state.load(path)
    assert state.load(tmp_path / "none.json") is None
