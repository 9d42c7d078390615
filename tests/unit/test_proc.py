"""openbell.proc, the one /proc reader, against real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from openbell import proc


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    raw = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 0 0 0 0 7 3 0 0 20 0 1 0 123456 0 0"
    s = proc.parse_stat(4242, raw)
    assert s is not None
    assert (s.state, s.ppid, s.pgid, s.utime, s.stime, s.start_ticks) == ("S", 1, 4242, 7, 3, 123456)
    assert proc.parse_stat(1, "garbage") is None


def test_this_process_is_read_and_a_missing_one_is_none() -> None:
    me = proc.stat(os.getpid())
    assert me is not None and me.alive and me.ppid == os.getppid() and me.pgid == os.getpgid(0)
    assert me.cpu_seconds > 0
    assert proc.stat(2**22 + 7) is None  # above pid_max's default: never a process


def test_descendants_follow_parents_across_sessions_and_stopped_is_seen() -> None:
    # A child that starts a grandchild in a session of its own (as k6 and chaostoolkit do).
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess,sys,time; "
                               "subprocess.Popen(['sleep','30'], start_new_session=True); time.sleep(30)"],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        tree: list[int] = []
        while time.monotonic() < deadline and len(tree) < 2:
            tree = proc.descendants(parent.pid)
            time.sleep(0.05)
        assert tree[0] == parent.pid and len(tree) == 2
        grandchild = proc.stat(tree[1])
        assert grandchild is not None and grandchild.ppid == parent.pid and grandchild.pgid == tree[1]
        assert proc.group(parent.pid) == [parent.pid]
        os.kill(parent.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not (s := proc.stat(parent.pid)) or not s.stopped:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(parent.pid, signal.SIGCONT)
    finally:
        for pid in reversed(proc.descendants(parent.pid)):
            os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_environ_is_the_process_environment() -> None:
    env = proc.environ(os.getpid())
    assert env is not None and f"PATH={os.environ['PATH']}".encode() in env
    assert proc.environ(2**22 + 7) is None
