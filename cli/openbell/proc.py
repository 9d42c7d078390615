"""The one reader of Linux's /proc for openbell: a process' state, parent, group, CPU time and start time.

Stdlib only and nothing else of openbell: the sandbox (identities, process groups, orphans), child-process
control (a tree to kill) and the chaos actions (is a component frozen?) all read processes through here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
GONE = ("Z", "X")  # zombie, dead: the process has exited (a zombie waits to be reaped)


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat openbell uses (proc(5) numbers them from 1)."""

    pid: int
    state: str  # (3) R running, S sleeping, T stopped by a signal, Z zombie...
    ppid: int  # (4)
    pgid: int  # (5)
    utime: int  # (14) clock ticks
    stime: int  # (15) clock ticks
    start_ticks: int  # (22) clock ticks since boot: with the pid, the process' identity

    @property
    def alive(self) -> bool:
        """Running, sleeping or stopped: not exited."""
        return self.state not in GONE

    @property
    def stopped(self) -> bool:
        """Stopped by a signal (SIGSTOP), state T."""
        return self.state == "T"

    @property
    def cpu_seconds(self) -> float:
        """User + system CPU time used so far, every thread included."""
        return (self.utime + self.stime) / os.sysconf("SC_CLK_TCK")


def stat(pid: int) -> Stat | None:
    """The process' stat, None when it does not exist (or cannot be read)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return parse_stat(pid, raw)


def parse_stat(pid: int, raw: str) -> Stat | None:
    """One /proc/<pid>/stat line. The command name (field 2) may hold spaces and parentheses: the fields
    start after its last closing parenthesis."""
    try:
        f = raw[raw.rindex(")") + 2:].split()
        return Stat(pid, f[0], int(f[1]), int(f[2]), int(f[11]), int(f[12]), int(f[19]))
    except (ValueError, IndexError):
        return None


def pids() -> Iterator[int]:
    """Every pid in /proc now (processes, not threads)."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def stats() -> Iterator[Stat]:
    """The stat of every process that still exists when it is read."""
    for pid in pids():
        s = stat(pid)
        if s is not None:
            yield s


def descendants(pid: int) -> list[int]:
    """`pid` and every process descending from it, by parent links (so also those that started sessions
    or groups of their own, as k6 and Chaos Toolkit's children do); parents before children."""
    children: dict[int, list[int]] = {}
    for s in stats():
        children.setdefault(s.ppid, []).append(s.pid)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def group(pgid: int) -> list[int]:
    """Live (not exited) members of a process group."""
    return [s.pid for s in stats() if s.pgid == pgid and s.alive]


def environ(pid: int) -> list[bytes] | None:
    """The process' environment as `KEY=value` entries, None when it cannot be read."""
    try:
        return (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
