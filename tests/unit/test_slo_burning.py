"""When a burn began (`openbell.slo.burning.onset`), on a plain "was it burning at t?" question."""

from __future__ import annotations

from openbell.slo.burning import Burning, onset, runbook_path
from openbell.slo.model import SLO, RatioSLI

NOW = 1_700_000_000.0


def test_the_onset_is_found_to_the_resolution_and_asked_only_a_few_times() -> None:
    began = NOW - 137.4
    asked: list[float] = []

    def burning_at(t: float) -> bool:
        asked.append(t)
        return t >= began

    found = onset(burning_at, NOW, resolution_s=1.0)
    assert found is not None and began <= found <= began + 1.0
    assert len(asked) <= 16


def test_a_burn_that_just_began_is_dated_within_the_first_step() -> None:
    found = onset(lambda t: t >= NOW - 2.0, NOW)
    assert found is not None and NOW - 2.0 <= found <= NOW - 1.0


def test_a_burn_older_than_the_horizon_has_no_onset() -> None:
    assert onset(lambda t: True, NOW, horizon_s=600.0) is None


def test_the_line_names_the_series_its_figures_since_when_and_the_runbook() -> None:
    b = Burning("gateway/gateway-push-latency{exchange=XLON}", "page 6h/30m: burn rate 7.1x (long) and 7.1x (short)",
                NOW - 190.0, "runbooks/gateway-push-latency.md", "GatewayPushLatencyErrorBudgetBurn")
    line = b.line(NOW)
    assert line.startswith("gateway/gateway-push-latency{exchange=XLON}: page 6h/30m: burn rate 7.1x")
    assert "burning since" in line and "(3m 10s ago)" in line
    assert line.endswith("; runbook runbooks/gateway-push-latency.md")
    assert "burning for over 1h" in Burning("a/b", "r", None, None, "X").line(NOW)


def test_a_runbook_is_resolved_from_its_spec_file(tmp_path) -> None:
    slo = SLO(service="s", name="n", objective_ratio=0.99, sli=RatioSLI(total="t", bad="b"),
              runbook="../runbooks/n.md", source=str(tmp_path / "slo" / "n.yaml"))
    assert runbook_path(slo, relative_to=tmp_path) == "runbooks/n.md"
    url = SLO(service="s", name="n", objective_ratio=0.99, sli=RatioSLI(total="t", bad="b"), runbook="https://x/y")
    assert runbook_path(url) == "https://x/y"
