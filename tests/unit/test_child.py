"""openbell.child: one SIGINT forwarded, later Ctrl-C ignored, the tree killed after the grace period; signals
as an exception or as a flag. Real child processes and real signals to this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openbell import child, proc

# Exits 0 on its first SIGINT, after saying how many it got (a second one would be counted).
POLITE = """
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *a: got.append(1))
print('ready', flush=True)
while not got:
    time.sleep(0.01)
time.sleep(0.3)
print('sigints', len(got), flush=True)
"""

# Ignores SIGINT and starts a grandchild in a session of its own.
STUBBORN = """
import signal, subprocess, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
g = subprocess.Popen(['sleep', '60'], start_new_session=True)
print(g.pid, flush=True)
time.sleep(60)
"""


def _ready(p: subprocess.Popen[bytes], out: Path) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = out.read_text()
        if text.strip():
            return text
        time.sleep(0.02)
    raise AssertionError("the child never started")


def test_a_child_runs_in_a_session_of_its_own(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open(out, "wb") as f:
        p = child.start([sys.executable, "-c", POLITE], stdout=f)
    try:
        _ready(p, out)
        assert os.getpgid(p.pid) == p.pid and os.getsid(p.pid) == p.pid != os.getsid(0)
    finally:
        assert child.stop(p, grace_s=10)


def test_stop_sends_one_sigint_and_ignores_a_ctrl_c_meanwhile(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open(out, "wb") as f:
        p = child.start([sys.executable, "-c", POLITE], stdout=f)
    _ready(p, out)
    # A Ctrl-C to openbell while the child stops must neither raise here nor reach the child.
    import threading

    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    assert child.stop(p, grace_s=10) is True
    timer.join()
    assert p.returncode == 0 and "sigints 1" in out.read_text()
    assert child.stop(p, grace_s=1) is True  # already exited: nothing to do


def test_a_child_that_will_not_stop_is_killed_with_its_tree_after_the_grace(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open(out, "wb") as f:
        p = child.start([sys.executable, "-c", STUBBORN], stdout=f)
    grandchild = int(_ready(p, out).split()[0])
    started = time.monotonic()
    assert child.stop(p, grace_s=0.5) is False
    assert 0.5 <= time.monotonic() - started < 10
    assert p.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while (s := proc.stat(grandchild)) is not None and s.alive:
        assert time.monotonic() < deadline, "the grandchild outlived the kill"
        time.sleep(0.02)


def test_interrupts_raise_the_callers_exception_and_restore_the_handlers() -> None:
    class Stop(Exception):
        pass

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stop), child.interrupts_raise(lambda signum: Stop(signal.Signals(signum).name)):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(KeyboardInterrupt), child.interrupts_raise():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)


def test_interrupts_as_a_flag_count_every_signal() -> None:
    with child.Interrupts() as signals:
        assert not signals.seen
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert signals.count == 2
    with child.interrupts_ignored():
        os.kill(os.getpid(), signal.SIGINT)  # nothing happens
        time.sleep(0.05)


def test_niceness_goes_through_nice_and_zero_leaves_argv_alone() -> None:
    assert child.with_niceness(["k6", "run"], 0) == ["k6", "run"]
    niced = child.with_niceness(["k6", "run"], 5)
    assert niced[-2:] == ["k6", "run"] and niced[-4:-2] == ["-n", "5"]
