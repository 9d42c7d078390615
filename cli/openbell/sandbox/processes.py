"""Daemon processes: start detached, recognise by pid *and* start time, stop by process group, find orphans.

A pid alone is not an identity: after a crash the number can be reused by an unrelated process. Every
process the sandbox starts is recorded with its kernel start time and tagged with `OPENBELL_SANDBOX=<home>`
in its environment, so `down` can also find children whose parent died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from openbell import proc
from openbell.child import with_niceness

TAG = "OPENBELL_SANDBOX"


@dataclass(frozen=True)
class ProcessRecord:
    """What the state file remembers of a started process."""

    pid: int
    start_ticks: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}


def start_ticks(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (field 22 of /proc/<pid>/stat), None if gone."""
    s = proc.stat(pid)
    return s.start_ticks if s else None


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process (not a reused pid) exists and is not a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(record.pid, os.WNOHANG)  # reap it if it was our child and has exited
    s = proc.stat(record.pid)
    return s is not None and s.alive and s.start_ticks == record.start_ticks


def spawn(
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    home: Path,
    cwd: Path | None = None,
    user: str | None = None,
    niceness: int = 0,
) -> ProcessRecord:
    """Start `argv` detached (own session, stdin closed, output appended to `log`); it outlives the CLI."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, TAG: str(home)}
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start: {' '.join(argv)}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            with_niceness(argv, niceness), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=full_env,
            cwd=cwd, start_new_session=True, close_fds=True, user=user, group=user,
            extra_groups=[] if user else None,
        )
    ticks = start_ticks(popen.pid)
    return ProcessRecord(popen.pid, ticks if ticks is not None else -1)


def stop(record: ProcessRecord, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> bool:
    """Ask the process to stop with `sig`, wait up to `timeout_s`, then SIGKILL its group.

    The signal goes to the leader only: it stops its own children the way it knows (PostgreSQL's
    postmaster must not have SIGINT sent to every backend). Whatever of its group outlives it is killed.
    Returns True when it stopped on its own, False when it had to be killed.
    """
    if is_running(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(record):
            _kill_group_leftovers(record.pid)
            return True
        time.sleep(0.05)
    _kill_group_leftovers(record.pid)
    end = time.monotonic() + 5
    while is_running(record) and time.monotonic() < end:
        time.sleep(0.05)
    return False


def kill_leftovers(record: ProcessRecord, home: Path) -> None:
    """SIGKILL what is left of a dead leader's group (its children), before a restart. Only processes
    tagged with this sandbox: the old pid may since have been reused by a stranger."""
    if is_running(record):
        return
    for pid in tagged_processes(home):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == record.pid:
                os.kill(pid, signal.SIGKILL)


def _kill_group_leftovers(pgid: int, timeout_s: float = 2.0) -> None:
    """SIGKILL a process group and wait (bounded) until none of it is left but zombies."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while proc.group(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def tagged_processes(home: Path) -> list[int]:
    """Pids of live processes started by the sandbox at `home` (found by the environment tag)."""
    needle = f"{TAG}={home}".encode()
    pids = []
    for pid in proc.pids():
        if pid == os.getpid() or needle not in (proc.environ(pid) or ()):
            continue
        s = proc.stat(pid)
        if s is not None and s.alive:
            pids.append(pid)
    return pids


def kill_orphans(home: Path, timeout_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process still tagged with this sandbox; returns the pids found."""
    pids = tagged_processes(home)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and tagged_processes(home):
        time.sleep(0.1)
    for pid in tagged_processes(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last `lines` lines of a log file (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
