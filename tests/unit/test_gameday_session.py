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
