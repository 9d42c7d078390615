"""The CLI as a user meets it: subprocesses, exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def openbell(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_version():
    proc = openbell("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("openbell ")


def test_help_lists_the_command_groups():
    proc = openbell("--help")
    assert proc.returncode == 0
    assert "slo" in proc.stdout and "runbook" in proc.stdout


def test_explain_json_has_the_window_figures():
    proc = openbell("slo", "explain", "slo/gateway-availability.yaml", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    (slo,) = json.loads(proc.stdout)
    windows = slo["windows"]
    assert [w["severity"] for w in windows] == ["page", "page", "ticket", "ticket"]
    first = windows[0]
    assert {"severity", "long_window_s", "short_window_s", "burn_rate", "budget_consumed",
            "detection_time_s"} <= set(first)
    assert (first["long_window_s"], first["short_window_s"], first["burn_rate"]) == (3600, 300, 14.4)
    assert first["budget_consumed"] == pytest.approx(0.02)
    assert first["detection_time_s"] == pytest.approx(3600 * 14.4 * 0.0005)


def test_global_output_flag_works_before_the_command():
    proc = openbell("--output", "json", "slo", "lint", "slo/")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] is True


def test_explain_text_speaks_in_words():
    proc = openbell("slo", "explain", "slo/api-errors.yaml")
    assert proc.returncode == 0
    assert "a total outage fires it after 5.18s" in proc.stdout


@pytest.mark.parametrize("fmt", ["prometheus", "prometheus-operator"])
def test_rules_formats(tmp_path, fmt):
    out = tmp_path / "rules.yaml"
    proc = openbell("slo", "rules", "slo/", "--format", fmt, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(out.read_text())
    groups = doc["groups"] if fmt == "prometheus" else doc["spec"]["groups"]
    if fmt == "prometheus-operator":
        assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    burn = [a for a in alerts if a["alert"] == "GatewayAvailabilityErrorBudgetBurn"]
    assert {a["labels"]["severity"] for a in burn} == {"page", "ticket"}
    for alert in alerts:
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        assert alert["annotations"]["runbook_url"].startswith("runbooks/")


def test_runbook_base_url_prefixes_the_file_name(tmp_path):
    proc = openbell("slo", "rules", "slo/api-errors.yaml", "--runbook-base-url", "https://runbooks.example/")
    assert "runbook_url: https://runbooks.example/api-errors.md" in proc.stdout


def test_bad_spec_is_one_line_exit_2_and_no_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("apiVersion: openbell/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  service: s\n"
                    "  objective: 120\n  sli: {ratio: {bad: a_total, total: b_total}}\n")
    for command in ("lint", "explain", "rules"):
        proc = openbell("slo", command, str(spec))
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0
        assert f"{spec}: spec.objective: expected a percentage in (0, 100)" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_missing_path_exit_2():
    proc = openbell("slo", "lint", "no/such/dir")
    assert proc.returncode == 2
    assert "no/such/dir: no such file or folder" in proc.stderr


def test_usage_error_exit_2():
    proc = openbell("slo", "rules", "slo/", "--format", "nagios")
    assert proc.returncode == 2


def test_runbook_list_and_show_by_alert_name():
    proc = openbell("runbook", "list", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    books = {b["name"]: b for b in json.loads(proc.stdout)}
    assert "GatewayAvailabilityErrorBudgetBurn" in books["gateway-availability"]["alerts"]
    shown = openbell("runbook", "show", "KafkaConsumerLagErrorBudgetBurn")
    assert shown.returncode == 0
    assert "Confirm it" in shown.stdout


def test_runbook_show_unknown_is_exit_2():
    proc = openbell("runbook", "show", "NoSuchAlert")
    assert proc.returncode == 2
    assert "no runbook or alert of that name" in proc.stderr


def test_every_platform_alert_has_a_runbook_that_lists_it():
    proc = openbell("slo", "lint", "slo/")
    assert proc.returncode == 0
    assert "warning" not in proc.stderr
    rules = yaml.safe_load(openbell("slo", "rules", "slo/").stdout)
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    books = json.loads(openbell("runbook", "list", "--output", "json").stdout)
    answered = {a for b in books for a in b["alerts"]}
    assert alerts <= answered


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; sys.argv=['openbell','slo','--help']\n"
            "from openbell.commands.app import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('httpx','yaml','pulumi','kubernetes','boto3','chaoslib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
