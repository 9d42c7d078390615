"""A gameday run start to report (gameday/session.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openbell.gameday.plan import load_plan
from openbell.gameday.runner import Where
from tests.unit.test_gameday_runner import DEFAULT, _Gate

ROOT = Path(__file__).resolve().parents[2]


def test_a_platform_left_burning_by_the_calibration_ends_the_gameday_as_unhealthy(tmp_path: Path,
                                                                                   monkeypatch: Any) -> None:
    """The preflight is asked before the calibration and again after it; a burn found the second time ends the
    gameday at once (outcome unhealthy, exit 1) and no phase starts."""
    from openbell.errors import UnreachableError
    from openbell.gameday import gate as gate_module
    from openbell.gameday import session
    from openbell.metrics import prometheus
    from openbell.slo.burning import Burning

    asked: list[str] = []

    class Client:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def build_info(self) -> dict[str, str]:
            return {}

        def query_range(self, *args: Any, **kwargs: Any) -> Any:
            raise UnreachableError("no Prometheus in a unit test")

        query = query_range

    class Gate(_Gate):
        def __init__(self, client: Any, slos: Any, rules: Any, started_at: float) -> None:
            self.client, self.slos, self.started_at = client, slos, started_at

        def preflight(self, now: float) -> list[Any]:
            asked.append("preflight")
            if len(asked) == 1:
                return []
            return [Burning("gateway/gateway-push-latency", "page 1h/5m: burn rate 20x", now - 30, None, "A")]

    def calibrate(plan: Any) -> tuple[Any, list[dict[str, Any]]]:
        asked.append("calibrate")
        return plan, []

    monkeypatch.setattr(prometheus, "PrometheusClient", Client)
    monkeypatch.setattr(gate_module, "GamedayGate", Gate)
    plan = load_plan(DEFAULT)

    doc, code = session.run_gameday(plan, [], Where("sandbox", "http://127.0.0.1:1", tmp_path), "T",
                                    tmp_path / "report", prepare=calibrate)
    assert asked == ["preflight", "calibrate", "preflight"]
    assert (doc["verdict"]["outcome"], code) == ("unhealthy", 1)
    assert all(p["outcome"] != "pass" and p["started_at"] is None for p in doc["phases"])
    assert "gateway/gateway-push-latency" in doc["verdict"]["reason"]


class _Lag:
    """The lag SLO as Prometheus would answer over the last minute (a stand-in client: the wait's logic, not
    Prometheus, is under test here; tests/scenario runs it against the real one)."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.queries: list[str] = []

    def query(self, promql: str, at: float | None = None) -> list[Any]:
        from openbell.metrics.types import Sample

        self.queries.append(promql)
        return [Sample({}, self.ratio)]


class _Waiting:
    """A gameday gate whose preflight finds the lag SLO burning `times` times, then nothing."""

    def __init__(self, ratio: float, times: int) -> None:
        from openbell.gameday.plan import Gate
        from openbell.slo.loader import load_slos

        self.client, self.rules, self.times = _Lag(ratio), Gate(interval_s=5.0), times
        self.slos = [s for s in load_slos([ROOT / "slo"]) if s.name == "kafka-consumer-lag"]
        self.asked = 0

    def preflight(self, now: float) -> list[Any]:
        from openbell.slo.burning import Burning

        self.asked += 1
        if self.asked > self.times:
            return []
        return [Burning("enricher/kafka-consumer-lag", "page 1h/5m: burn rate 41x", now - 60, None, "A")]


def _clock() -> tuple[Any, Any, list[float]]:
    now = [1000.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    return (lambda: now[0]), sleep, slept


def test_a_burn_that_stopped_is_waited_out_until_it_leaves_the_alert_windows() -> None:
    from openbell.gameday import session

    gate = _Waiting(ratio=0.0, times=3)  # within budget over the last minute: the burn stopped
    clock, sleep, slept = _clock()
    said: list[str] = []
    left = session.settled(gate, gate.preflight(clock()), said.append, clock, sleep)  # type: ignore[arg-type]
    assert left == [] and slept == [5.0, 5.0, 5.0] and gate.asked == 4
    assert "stopped burning" in said[0] and "enricher_consumer_lag" in gate.client.queries[0]


def test_a_burn_that_goes_on_is_not_waited_for_and_a_wait_is_bounded() -> None:
    from openbell.gameday import gate as gate_module
    from openbell.gameday import session

    still = _Waiting(ratio=0.05, times=100)  # 5% over the last minute: still burning
    clock, sleep, slept = _clock()
    left = session.settled(still, still.preflight(clock()), lambda _: None, clock, sleep)  # type: ignore[arg-type]
    assert len(left) == 1 and slept == []
    stopped_forever = _Waiting(ratio=0.0, times=10_000)
    clock, sleep, slept = _clock()
    left = session.settled(stopped_forever, stopped_forever.preflight(clock()), lambda _: None, clock,  # type: ignore[arg-type]
                           sleep)
    assert len(left) == 1 and sum(slept) == gate_module.SETTLE_MAX_S
