"""The sandbox as a canary target (targets/sandbox.py): its faults, its run lock and store."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from openbell.targets.base import RunConflict
from openbell.targets.sandbox import SandboxRunStore, parse_faults

ROOT = Path(__file__).resolve().parents[2]


def test_sandbox_faults_are_validated() -> None:
    assert parse_faults(["error_rate=0.05", "latency_ms=80"]) == {"error_rate": "0.05", "latency_ms": "80"}
    for bad in ("error_rate=2", "latency_ms=-1", "latency=80", "error_rate", "latency_ms=fast"):
        with pytest.raises(Exception, match="--sandbox-fault"):
            parse_faults([bad])


HOLD_LOCK = """
import sys, time
sys.path.insert(0, {cli!r})
from pathlib import Path
from openbell.targets.sandbox import SandboxRunStore
store = SandboxRunStore(Path({d!r}), "gateway")
store.acquire("holder-process")
print("held", flush=True)
time.sleep(60)
"""


def test_the_run_lock_refuses_a_second_run_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(cli=str(ROOT / "cli"), d=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        store = SandboxRunStore(tmp_path, "gateway")
        with pytest.raises(RunConflict, match="holder-process"):
            store.acquire("me")
        assert store.holder() == "holder-process"
        holder.kill()  # kill -9: the kernel releases the flock with the process
        holder.wait(10)
        deadline = time.monotonic() + 5
        while store.holder() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        store.acquire("me")
        store.release()
    finally:
        holder.kill()


def test_the_store_keeps_documents_and_requests(tmp_path: Path) -> None:
    store = SandboxRunStore(tmp_path / "canary", "gateway")
    assert store.load() is None and store.take_request() is None
    store.save({"rollout": {"phase": "progressing"}})
    store.request("abort")
    assert store.load() == {"rollout": {"phase": "progressing"}}
    assert store.take_request() == "abort" and store.take_request() is None
