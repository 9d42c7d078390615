"""Per-component CPU of the sandbox and of what runs against it, sampled from /proc while a bench runs.

Each live process is put in one group: a sandbox component (its process group: every component is started in
a session of its own, so PostgreSQL's backends count as `postgres`), a canary gateway, k6, Chaos Toolkit, or
the openbell command that drives the run (gameday, load, canary, chaos). Everything else on the machine is
`other`, so what the bench did not start is visible too.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int] | None:
    """(pgid, CPU ticks user + system) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[2]), int(fields[11]) + int(fields[12])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def classify(cmdline: str) -> str:
    """The group of a process that is not a sandbox component, from its command line."""
    if "/k6 " in cmdline or cmdline.startswith("k6 "):
        return "k6"
    if "chaostoolkit" in cmdline or "/chaos " in cmdline:
        return "chaostoolkit"
    if "openbell-gateway" in cmdline:
        return "gateway-canary"
    if " -m openbell" in cmdline or "bin/openbell " in cmdline:
        for verb in ("gameday", "load", "canary", "chaos", "slo", "sandbox"):
            if f" {verb} " in f"{cmdline} ":
                return f"openbell {verb}"
        return "openbell"
    return "other"


class CpuSampler:
    """Samples every process each `interval_s` in a thread; `between(t0, t1)` gives CPU seconds per group.

    `components` maps a sandbox component's name to its pid (= its process group). A process's CPU is
    counted from its first sample (or from 0 when it was born after the sampler started), so short-lived
    children (chaos, k6) are counted too, to within one interval at their end.
    """

    def __init__(self, components: dict[str, int], interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.groups_by_pgid = {pid: name for name, pid in components.items()}
        self._names: dict[int, str] = {}
        self._last: dict[int, int] = {}
        # (time, {group: cumulative CPU seconds since the sampler started})
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._totals: dict[str, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._first = True

    def start(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _group(self, pid: int, pgid: int) -> str:
        name = self._names.get(pid)
        if name is None:
            name = self.groups_by_pgid.get(pgid) or classify(_cmdline(pid))
            self._names[pid] = name
        return name

    def _sample(self) -> None:
        now = time.time()
        seen = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _stat(pid)
            if stat is None:
                continue
            pgid, ticks = stat
            seen[pid] = ticks
            previous = self._last.get(pid)
            if previous is None:
                # Present at the first sample: count from here. Born since: count all of its life.
                previous = ticks if self._first else 0
            if ticks > previous:
                self._totals[self._group(pid, pgid)] += (ticks - previous) * TICK_S
        self._first = False
        self._last = seen
        self.samples.append((now, dict(self._totals)))

    def _at(self, t: float) -> dict[str, float]:
        best: dict[str, float] = {}
        for when, totals in self.samples:
            if when > t:
                break
            best = totals
        return best

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per group between two times (to within one sampling interval), largest first."""
        a, b = self._at(t0), self._at(t1)
        used = {g: b.get(g, 0.0) - a.get(g, 0.0) for g in b}
        return dict(sorted(((g, round(v, 2)) for g, v in used.items() if v > 0), key=lambda kv: -kv[1]))

    def figures(self, t0: float, t1: float) -> dict[str, Any]:
        """CPU per group between t0 and t1: seconds and share of one core, with the machine's total."""
        span = max(1e-9, t1 - t0)
        used = self.between(t0, t1)
        total = sum(used.values())
        return {
            "span_s": round(span, 1),
            "cores": os.cpu_count(),
            "total_core_share": round(total / span, 3),
            "by_group": {g: {"cpu_s": v, "core_share": round(v / span, 3)} for g, v in used.items()},
        }
