"""The sandbox's parts on plain values and real small processes: configs checked by the real tools,
port choice, process identity by pid and start time, the state file."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openbell.errors import SpecError
from openbell.sandbox import configs, ports, processes, state
from openbell.sandbox.processes import ProcessRecord


def test_haproxy_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is not installed: run `make setup`")
    weights = tmp_path / "weights.map"
    weights.write_text(configs.haproxy_weights(25))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(configs.haproxy_cfg(
        8080, 8404, tmp_path / "admin.sock", weights,
        [configs.Backend("gateway-1", 9001), configs.Backend("gateway-2", 9002)],
        [configs.Backend("gateway-canary-1", 9003, disabled=True)], 9010, 9011, maxconn=4000))
    done = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = cfg.read_text()
    assert "server gateway-canary-1 127.0.0.1:9003 check disabled" in text
    assert "server gateway-2 127.0.0.1:9002 check\n" in text


def test_prometheus_config_is_valid_for_promtool(tmp_path: Path) -> None:
    targets = tmp_path / "gateway.json"
    targets.write_text(configs.file_sd([("127.0.0.1:9001", {"replica": "gateway-1", "role": "stable"})]))
    rules = tmp_path / "rules.yaml"
    rules.write_text("groups: []\n")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(configs.prometheus_yml(0.5, [rules], {"feed": ["127.0.0.1:9005"]}, {"gateway": targets}))
    done = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(cfg.read_text())["global"]["scrape_interval"] == "500ms"


def test_picked_ports_are_distinct_free_and_avoid_the_taken_ones() -> None:
    first = ports.pick(5)
    second = ports.pick(5, avoid=set(first))
    assert len(set(first)) == 5 and not set(first) & set(second)
    assert all(ports.is_free(p) for p in second)


def test_a_bound_port_is_not_free() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not ports.is_free(sock.getsockname()[1])


def test_stopping_a_process_takes_its_children_with_it(tmp_path: Path) -> None:
    # A parent that starts a child of its own: stopping the parent's group must take the child too.
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    record = processes.spawn([sys.executable, "-c", script], tmp_path / "p.log", {}, tmp_path)
    assert processes.is_running(record)
    deadline = time.monotonic() + 5
    while len(processes.tagged_processes(tmp_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes.tagged_processes(tmp_path)) == 2
    assert processes.stop(record, signal.SIGTERM, timeout_s=5) is True
    assert not processes.is_running(record)
    assert processes.tagged_processes(tmp_path) == []


def test_a_reused_pid_is_not_mistaken_for_the_recorded_process(tmp_path: Path) -> None:
    record = processes.spawn(["sleep", "30"], tmp_path / "s.log", {}, tmp_path)
    try:
        impostor = ProcessRecord(record.pid, record.start_ticks + 1)
        assert processes.is_running(record)
        assert not processes.is_running(impostor)
    finally:
        processes.stop(record, timeout_s=2)


def test_a_process_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              " print('REA' + 'DY', flush=True); time.sleep(60)")
    record = processes.spawn([sys.executable, "-c", script], tmp_path / "x.log", {}, tmp_path)
    deadline = time.monotonic() + 5
    while "READY" not in (tmp_path / "x.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes.stop(record, signal.SIGTERM, timeout_s=0.5) is False
    assert not processes.is_running(record)


def test_tail_reads_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert processes.tail(log, 3) == ["line 97", "line 98", "line 99"]
    assert processes.tail(tmp_path / "missing.log") == []


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


def test_the_kafka_version_the_sandbox_expects_is_the_one_maven_fetches() -> None:
    from openbell.paths import repo_root
    from openbell.sandbox.layout import KAFKA_VERSION

    pom = (repo_root() / "services" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
