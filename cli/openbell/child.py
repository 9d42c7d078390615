"""Child processes openbell runs and answers for (k6, Chaos Toolkit, the gameday's phases), and the signals
that stop them. One set of rules, in one place:

- A child starts in a session of its own with stdin closed: a terminal's Ctrl-C reaches openbell only, and
  openbell hands the child **one** SIGINT, the tool's graceful stop (k6 writes its summary, Chaos Toolkit
  plays its rollbacks, a canary rolls back). The whole process group getting it twice would cut that short.
- While a child stops, further Ctrl-C are ignored; a child still running after its grace period is killed
  with every process descending from it (also those in sessions of their own).
- SIGTERM (a CI job's timeout) stops like Ctrl-C: as an exception where the caller blocks (`interrupts_raise`),
  or as a flag a polling loop reads (`Interrupts`), so a signal never lands half way through a start or stop.

Stdlib only; /proc is read through `openbell.proc`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from openbell import proc

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def start(argv: Sequence[str], stdout: IO[bytes] | int, stderr: IO[bytes] | int = subprocess.STDOUT,
          env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """`argv` in a session of its own, stdin closed (raises OSError when it cannot be started)."""
    return subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=None if env is None else dict(env), cwd=cwd)


def find_tool(name: str, env: str) -> tuple[Path | None, str]:
    """An executable: `$env` when set, else `name` beside this Python (a virtualenv's console script or a
    PyPI-shipped binary), else on PATH. The path, or None and where it was looked for (for the error line)."""
    override = os.environ.get(env)
    candidates = [override] if override else [str(Path(sys.executable).parent / name), shutil.which(name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate), ""
    return None, f"${env}={override}" if override else "beside Python or on PATH"


def with_niceness(argv: Sequence[str], niceness: int) -> list[str]:
    """`argv` run at `niceness` (every thread it ever starts inherits it), through coreutils' `nice`, which
    execs the program (same pid, same start time). A raise the user may not make (a negative value without
    root or CAP_SYS_NICE) only prints a warning into the log and runs the program at the usual priority."""
    nice = shutil.which("nice")
    if niceness == 0 or nice is None:
        return list(argv)
    return [nice, "-n", str(niceness), *argv]


def interrupt(child: subprocess.Popen[bytes]) -> bool:
    """Send the child its one SIGINT; False when it had already exited."""
    if child.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGINT)
    return True


def stop(child: subprocess.Popen[bytes], grace_s: float) -> bool:
    """One SIGINT, then wait up to `grace_s` with Ctrl-C and SIGTERM ignored; past it, kill the child's tree.
    True when it stopped on its own (or had already exited)."""
    if child.poll() is not None:
        return True
    with interrupts_ignored():
        interrupt(child)
        try:
            child.wait(timeout=grace_s)
            return True
        except subprocess.TimeoutExpired:
            kill_tree(child.pid)
            child.wait()
            return False


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, also those in sessions of their own (k6, chaostoolkit)."""
    for member in proc.descendants(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)


def _raise_keyboard_interrupt(signum: int) -> BaseException:
    return KeyboardInterrupt()


@contextlib.contextmanager
def interrupts_raise(exception: Callable[[int], BaseException] = _raise_keyboard_interrupt) -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise `exception(signum)` in the main thread (KeyboardInterrupt unless told)."""
    def handler(signum: int, frame: object) -> None:
        raise exception(signum)

    with _handled(handler):
        yield


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM are ignored (an undo in progress must not be cut short)."""
    with _handled(signal.SIG_IGN):
        yield


def ignore_interrupts() -> None:
    """From now on SIGINT and SIGTERM are ignored, until the enclosing `interrupts_*` context restores them."""
    for sig in INTERRUPTS:
        signal.signal(sig, signal.SIG_IGN)


class Interrupts:
    """Inside: SIGINT and SIGTERM only count (`count`, `seen`), for a loop that reads the flag between steps."""

    def __init__(self) -> None:
        self.count = 0
        self._saved: dict[int, object] = {}

    @property
    def seen(self) -> bool:
        return self.count > 0

    def _handler(self, signum: int, frame: object) -> None:
        self.count += 1

    def __enter__(self) -> Interrupts:
        self.count = 0
        self._saved = {s: signal.signal(s, self._handler) for s in INTERRUPTS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._saved.items():
            signal.signal(s, previous)  # type: ignore[arg-type]


@contextlib.contextmanager
def _handled(handler: Callable[[int, object], None] | signal.Handlers) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield
        return
    saved = {s: signal.signal(s, handler) for s in INTERRUPTS}
    try:
        yield
    finally:
        for s, previous in saved.items():
            signal.signal(s, previous)
