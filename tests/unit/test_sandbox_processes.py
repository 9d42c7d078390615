"""The sandbox's daemons: identity by pid and start time, stopped with their process group."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from openbell.sandbox import processes
from openbell.sandbox.processes import ProcessRecord


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
