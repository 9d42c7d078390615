"""Spec loading: the native format, OpenSLO v1, Sloth, and every validation error naming file and field."""

import textwrap
from pathlib import Path

import pytest

from openbell.errors import SpecError
from openbell.slo.loader import load_slos
from openbell.slo.model import LatencySLI, RatioSLI, ThresholdSLI

REPO = Path(__file__).resolve().parents[2]

NATIVE = """\
apiVersion: openbell/v1
kind: SLO
metadata:
  name: {name}
spec:
  service: svc
  objective: {objective}
  period: {period}
  sli:
    {sli}
"""
RATIO = "ratio: {bad: 'sum(rate(e_total[{{.window}}]))', total: 'sum(rate(t_total[{{.window}}]))'}"


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def native(tmp_path, name="avail", objective="99.9", period="30d", sli=RATIO, file="spec.yaml", extra=""):
    text = NATIVE.format(name=name, objective=objective, period=period, sli=sli) + extra
    return write(tmp_path, text, file)


def error_of(*paths) -> str:
    with pytest.raises(SpecError) as exc:
        load_slos(list(paths))
    return str(exc.value)


def test_platform_specs_load():
    slos = load_slos([REPO / "slo"])
    names = {s.name for s in slos}
    assert {"gateway-availability", "gateway-push-latency", "api-page-latency", "api-errors", "kafka-consumer-lag",
            "ledger-write-availability", "analytics-query-latency"} <= names
    push = next(s for s in slos if s.name == "gateway-push-latency")
    assert isinstance(push.sli, LatencySLI)
    assert push.sli.threshold_s == 0.05
    assert push.group_by == ("exchange",)


def test_native_ratio(tmp_path):
    (slo,) = load_slos([native(tmp_path)])
    assert slo.objective_ratio == pytest.approx(0.999)
    assert slo.period_s == 30 * 86400
    assert isinstance(slo.sli, RatioSLI)


def test_unknown_field_is_named(tmp_path):
    msg = error_of(native(tmp_path, extra="  objectiv: 99\n"))
    assert "spec.yaml: spec.objectiv: unknown field" in msg


@pytest.mark.parametrize("objective", ["0", "100", "100.5", "-1"])
def test_objective_outside_0_100(tmp_path, objective):
    msg = error_of(native(tmp_path, objective=objective))
    assert "spec.objective: expected a percentage in (0, 100)" in msg


def test_bad_duration(tmp_path):
    msg = error_of(native(tmp_path, period="30 days"))
    assert "spec.period: expected a duration" in msg


def test_latency_threshold_must_be_a_bucket_bound(tmp_path):
    sli = "latency: {histogram: h_seconds, buckets: [0.01, 0.05, 0.1], threshold: 40ms}"
    msg = error_of(native(tmp_path, sli=sli))
    assert "spec.sli.latency.threshold: expected one of the histogram's bucket bounds" in msg
    assert "0.04" in msg


def test_missing_runbook_file(tmp_path):
    path = native(tmp_path, extra="  runbook: ../runbooks/nope.md\n")
    msg = error_of(path)
    assert "spec.runbook: runbook file '../runbooks/nope.md' does not exist" in msg


def test_duplicate_names_across_files(tmp_path):
    a = native(tmp_path, file="a.yaml")
    b = native(tmp_path, file="b.yaml")
    msg = error_of(a, b)
    assert "duplicate SLO 'avail'" in msg
    assert "a.yaml" in msg and "b.yaml" in msg


def test_group_by_label_dropped_by_aggregation_is_refused(tmp_path):
    msg = error_of(native(tmp_path, extra="  groupBy: [exchange]\n"))
    assert "drops the groupBy label 'exchange'" in msg


def test_period_too_short(tmp_path):
    msg = error_of(native(tmp_path, period="1h"))
    assert "spec.period: expected a compliance period of at least" in msg


def test_any_period(tmp_path):
    (slo,) = load_slos([native(tmp_path, period="90d")])
    assert slo.period_s == 90 * 86400


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "apiVersion: openbell/v1\nkind: SLO\nmetadata: {name: [\n")
    assert "spec.yaml: line" in error_of(path)


def test_unknown_api_version(tmp_path):
    path = write(tmp_path, "apiVersion: nope/v9\nkind: SLO\n")
    assert "spec.yaml: apiVersion: expected openbell/v1" in error_of(path)


def test_query_without_window_is_refused(tmp_path):
    sli = "ratio: {bad: 'sum(rate(e_total[5m]))', total: 't_total'}"
    msg = error_of(native(tmp_path, sli=sli))
    assert "spec.sli.ratio.bad: expected a bare counter selector or a PromQL expression with {{.window}}" in msg


def test_threshold_sli(tmp_path):
    sli = "threshold: {gauge: 'lag_seconds{topic=\"ticks\"}', bound: 0.05}"
    (slo,) = load_slos([native(tmp_path, sli=sli)])
    assert isinstance(slo.sli, ThresholdSLI)
    assert (slo.sli.op, slo.sli.bound, slo.sli.aggregation) == ("<=", 0.05, "max")


OPENSLO_INLINE = """\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: search-availability
  displayName: Search availability
spec:
  description: Searches succeed
  service: web-shop
  indicator:
    metadata:
      name: search-errors
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            spec:
              query: http_requests_total{handler="/search", code!~"5.."}
        total:
          metricSource:
            type: Prometheus
            spec:
              query: http_requests_total{handler="/search"}
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: Good
      target: 0.995
"""

OPENSLO_PAIR = """\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: consumer-lag
spec:
  thresholdMetric:
    metricSource:
      type: Prometheus
      spec:
        query: max(kafka_consumergroup_lag_seconds)
---
apiVersion: openslo/v1
kind: Service
metadata:
  name: pipeline
spec:
  description: the pipeline
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: lag
spec:
  service: pipeline
  indicatorRef: consumer-lag
  timeWindow:
    - duration: 1w
      isRolling: true
  budgetingMethod: Timeslices
  objectives:
    - op: lte
      value: 0.05
      targetPercent: 99.9
"""


def test_openslo_inline_ratio(tmp_path):
    (slo,) = load_slos([write(tmp_path, OPENSLO_INLINE)])
    assert (slo.service, slo.name, slo.objective_ratio, slo.period_s) == ("web-shop", "search-availability", 0.995,
                                                                          28 * 86400)
    assert isinstance(slo.sli, RatioSLI)
    assert slo.sli.good is not None and "code!~" in slo.sli.good


def test_openslo_sli_by_reference_with_threshold(tmp_path):
    (slo,) = load_slos([write(tmp_path, OPENSLO_PAIR)])
    assert isinstance(slo.sli, ThresholdSLI)
    assert (slo.sli.op, slo.sli.bound, slo.period_s) == ("<=", 0.05, 7 * 86400)


def test_openslo_unknown_reference(tmp_path):
    text = OPENSLO_PAIR.replace("indicatorRef: consumer-lag", "indicatorRef: nope")
    assert "spec.indicatorRef: no SLI named 'nope'" in error_of(write(tmp_path, text))


def test_openslo_non_prometheus_source(tmp_path):
    text = OPENSLO_INLINE.replace("type: Prometheus", "type: Datadog", 1)
    assert "expected type Prometheus" in error_of(write(tmp_path, text))


SLOTH = """\
version: "prometheus/v1"
service: "myservice"
labels:
  owner: "myteam"
slos:
  - name: "requests-availability"
    objective: 99.9
    description: "Common SLO based on availability for HTTP request responses."
    sli:
      events:
        error_query: sum(rate(http_request_duration_seconds_count{job="myservice",code=~"(5..|429)"}[{{.window}}]))
        total_query: sum(rate(http_request_duration_seconds_count{job="myservice"}[{{.window}}]))
    alerting:
      name: MyServiceHighErrorRate
      labels:
        category: "availability"
      annotations:
        summary: "High error rate on 'myservice' requests responses"
      page_alert:
        labels:
          severity: "pageteam"
          routing_key: "myteam"
      ticket_alert:
        labels:
          severity: "slack"
          slack_channel: "#alerts-myteam"
"""


def test_sloth_spec(tmp_path):
    (slo,) = load_slos([write(tmp_path, SLOTH)])
    assert (slo.service, slo.name, slo.objective_ratio) == ("myservice", "requests-availability", 0.999)
    assert slo.labels == {"owner": "myteam"}
    assert slo.alert_name == "MyServiceHighErrorRate"
    assert slo.alerting.page_labels["routing_key"] == "myteam"


def test_sloth_plugin_is_refused(tmp_path):
    text = SLOTH.replace("      events:\n", "      plugin:\n        id: x\n      events:\n")
    assert "slos[0].sli.plugin: Sloth SLI plugins are not supported" in error_of(write(tmp_path, text))


def test_trailing_by_clause_keeps_the_group_label(tmp_path):
    sli = ("ratio: {bad: 'sum(rate(e_total[{{.window}}])) by (region)', "
           "total: 'sum(rate(t_total[{{.window}}])) by (region)'}")
    (slo,) = load_slos([native(tmp_path, sli=sli, extra="  groupBy: [region]\n")])
    assert slo.group_by == ("region",)


def test_a_period_without_a_unit_is_refused(tmp_path):
    msg = error_of(native(tmp_path, period="2592000"))
    assert "spec.period: expected a duration with a unit" in msg


def test_a_file_without_slos_is_refused(tmp_path):
    empty = write(tmp_path, "# nothing here\n", "empty.yaml")
    assert "no SLOs in these files" in error_of(empty)


def test_the_same_file_named_twice_loads_once(tmp_path):
    path = native(tmp_path)
    assert len(load_slos([path, tmp_path])) == 1


def test_absent_alert_carries_the_spec_labels(tmp_path):
    from openbell.slo.rules import generate

    path = native(tmp_path, extra="")
    text = path.read_text().replace("metadata:\n  name: avail\n", "metadata:\n  name: avail\n  labels: {team: shop}\n")
    path.write_text(text)
    (slo,) = load_slos([path])
    (group,) = generate([slo])["groups"]
    absent = next(r for r in group["rules"] if r.get("alert", "").endswith("SLIAbsent"))
    assert absent["labels"]["team"] == "shop"
    assert group["name"] == "openbell-slo/svc/avail"
