"""`sandbox up` refuses clearly, and changes nothing, when what it needs is missing or taken; a component
that fails to start is named with the last lines of its log; `down` then leaves nothing running."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from openbell.sandbox.processes import tagged_processes
from tests.scenario.platform_client import openbell


def _one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1, stderr
    return stderr


def test_missing_java_exits_3_naming_it_and_starts_nothing(tmp_path: Path) -> None:
    done = openbell("sandbox", "up", home=tmp_path, env={"OPENBELL_JAVA": "/nonexistent/java"}, timeout_s=60)
    assert done.returncode == 3
    assert "java" in _one_line(done.stderr) and "OPENBELL_JAVA" in done.stderr
    assert tagged_processes(tmp_path) == []
    assert not (tmp_path / "sandbox.json").exists()


def test_missing_kafka_artifacts_exit_3_pointing_at_setup(tmp_path: Path) -> None:
    empty = tmp_path / "no-kafka"
    empty.mkdir()
    home = tmp_path / "home"
    done = openbell("sandbox", "up", home=home, env={"OPENBELL_KAFKA_LIB": str(empty)}, timeout_s=60)
    assert done.returncode == 3
    line = _one_line(done.stderr)
    assert "kafka_2.13-4.1.0.jar" in line and "make setup" in line
    assert tagged_processes(home) == []


def test_a_pinned_port_already_taken_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = openbell("sandbox", "up", "--port", f"prometheus={port}", home=tmp_path, timeout_s=60)
    assert done.returncode == 2
    assert f"prometheus={port}" in _one_line(done.stderr) and "already in use" in done.stderr
    assert tagged_processes(tmp_path) == []


def test_an_unknown_port_name_exits_2_listing_the_known_ones(tmp_path: Path) -> None:
    done = openbell("sandbox", "up", "--port", "zookeeper=2181", home=tmp_path, timeout_s=60)
    assert done.returncode == 2 and "zookeeper" in _one_line(done.stderr) and "haproxy" in done.stderr


def test_a_component_that_fails_to_start_is_named_with_its_log_then_down_leaves_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "prometheus"
    broken.write_text("#!/bin/sh\necho 'err=opening storage failed: lock DB directory: resource busy' >&2\nexit 1\n")
    broken.chmod(0o755)
    home = tmp_path / "home"
    try:
        done = openbell("sandbox", "up", home=home, env={"OPENBELL_PROMETHEUS": str(broken)}, timeout_s=180)
        assert done.returncode == 3
        lines = done.stderr.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("openbell: sandbox: "))
        assert "prometheus exited during start-up" in lines[at]
        assert any("opening storage failed" in line for line in lines[at + 1:])
    finally:
        down = openbell("sandbox", "down", "--purge", "--output", "json", home=home, timeout_s=120)
    assert down.returncode == 0, down.stderr
    assert "postgres" in json.loads(down.stdout)["stopped"]
    assert tagged_processes(home) == []
