"""A real Prometheus (Debian's package) on 127.0.0.1 for tests: backfilled history plus live scrapes.

History is written as OpenMetrics and turned into TSDB blocks with
`promtool tsdb create-blocks-from openmetrics` before the server starts; live series come from a
prometheus_client exporter the test controls, scraped every second.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class History:
    """OpenMetrics text built family by family; every series sampled every `step_s` up to `end_s`."""

    end_s: int
    span_s: int
    step_s: int = 15
    _families: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    @property
    def times(self) -> list[int]:
        start = self.end_s - self.span_s
        return list(range(start, self.end_s + 1, self.step_s))

    def series(self, family: str, kind: str, sample: str, labels: str,
               value_at: Callable[[int], float | None]) -> None:
        """One series; times at which `value_at` says None have no sample (a series born late)."""
        _, lines = self._families.setdefault(family, (kind, []))
        lines.extend(f"{sample}{{{labels}}} {v:.6g} {t}" for t in self.times if (v := value_at(t)) is not None)

    def counter(self, family: str, labels: str, rate_at: Callable[[int], float], sample: str | None = None) -> None:
        """A counter whose per-second rate at time t is rate_at(t) (cumulated here)."""
        total = {"v": 0.0}

        def value(t: int) -> float:
            total["v"] += rate_at(t) * self.step_s
            return total["v"]

        self.series(family, "counter", sample or f"{family}_total", labels, value)

    def text(self) -> str:
        out = []
        for family, (kind, lines) in self._families.items():
            out.append(f"# TYPE {family} {kind}")
            out.extend(lines)
        out.append("# EOF")
        return "\n".join(out) + "\n"


class PrometheusServer:
    def __init__(self, workdir: Path, scrape_targets: list[str], history: History | None = None,
                 scrape_config: str | None = None) -> None:
        """`scrape_config`, when given, is the whole scrape_configs section (else one static job, `live`)."""
        self.workdir = workdir
        self.scrape_config = scrape_config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scrape_targets = scrape_targets
        self.history = history
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        binary = shutil.which("prometheus")
        promtool = shutil.which("promtool")
        if binary is None or promtool is None:
            raise RuntimeError("prometheus/promtool are not installed: run `make setup`")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        if self.history is not None:
            om = self.workdir / "history.om"
            om.write_text(self.history.text())
            subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                           check=True, capture_output=True, timeout=120)
        targets = ", ".join(f"'{t}'" for t in self.scrape_targets)
        config = self.workdir / "prometheus.yml"
        scrape = self.scrape_config or (
            f"scrape_configs:\n  - job_name: live\n    static_configs:\n      - targets: [{targets}]\n")
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" + scrape)
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=30d",
             "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
