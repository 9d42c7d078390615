"""The k6-operator objects (load/render.py) checked against the TestRun CRD's schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from openbell.errors import SpecError
from openbell.load import catalogue, render

ROOT = Path(__file__).resolve().parents[2]


# The fields of k6-operator's TestRun (k6.io/v1alpha1) that `load render` writes, with their types as the
# operator's CRD declares them (config/crd/bases/k6.io_testruns.yaml); unknown fields are refused here
# where the API server would silently prune them, so a typo fails the test.
TESTRUN_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "k6.io/v1alpha1"}, "kind": {"const": "TestRun"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "namespace": {"type": "string"}, "labels": {"type": "object",
                                                         "additionalProperties": {"type": "string"}}}},
        "spec": {"type": "object", "required": ["parallelism", "script"], "additionalProperties": False,
                 "properties": {
                     "parallelism": {"type": "integer", "minimum": 1, "maximum": 2147483647},
                     "script": {"type": "object", "additionalProperties": False, "properties": {
                         "configMap": {"type": "object", "required": ["name"], "additionalProperties": False,
                                       "properties": {"name": {"type": "string"}, "file": {"type": "string"}}},
                         "localFile": {"type": "string"},
                         "volumeClaim": {"type": "object", "required": ["name"]}}},
                     "separate": {"type": "boolean"},
                     "cleanup": {"enum": ["post"]},
                     "arguments": {"type": "string"},
                     "quiet": {"type": "string"}, "paused": {"type": "string"},
                     "runner": {"type": "object", "additionalProperties": False, "properties": {
                         "image": {"type": "string"},
                         "env": {"type": "array", "items": {
                             "type": "object", "required": ["name"], "additionalProperties": False,
                             "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
                         "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
                         "resources": {"type": "object", "additionalProperties": False, "properties": {
                             "requests": {"type": "object", "additionalProperties": {"type": "string"}},
                             "limits": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}},
    },
}


def _profile(tmp_path: Path) -> catalogue.Profile:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "trader.js").write_text("export function trader() {}\n")
    script = tmp_path / "nyse-open.js"
    script.write_text("// profile: nyse-open\n// description: the opening bell\n"
                      "import { trader } from './lib/trader.js';\nexport default function () { trader(); }\n")
    return catalogue.read_profile(script)


def test_rendered_testrun_matches_the_crd_and_the_configmap_carries_script_and_library(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    assert (profile.name, profile.description) == ("nyse-open", "the opening bell")
    name = render.object_name(profile)
    run = render.testrun(profile, name, "loadtest", 8, {"BASE_URL": "http://gw", "SCALE": "1"})
    jsonschema.validate(run, TESTRUN_SCHEMA)
    cm = render.configmap(profile, name, "loadtest")
    assert set(cm["data"]) == {"nyse-open.js", "trader.js"}
    assert all(render.CONFIGMAP_KEY.match(k) for k in cm["data"])
    assert "from './trader.js'" in cm["data"]["nyse-open.js"]
    assert run["spec"]["script"]["configMap"] == {"name": cm["metadata"]["name"], "file": "nyse-open.js"}
    # The stock image (the traders need no extension) and the runner's trend stats, sample counts included.
    assert run["spec"]["runner"]["image"].startswith("grafana/k6:")
    assert "--summary-trend-stats avg,min,med,max,p(50),p(90),p(95),p(99),p(99.9),count" in run["spec"]["arguments"]


def test_a_typo_in_the_testrun_is_caught_by_the_schema(tmp_path: Path) -> None:
    run = render.testrun(_profile(tmp_path), "openbell-x", "loadtest", 2, {})
    run["spec"]["paralellism"] = run["spec"].pop("parallelism")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(run, TESTRUN_SCHEMA)


def test_render_refuses_zero_runners_and_an_unknown_profile_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="parallelism"):
        render.testrun(_profile(tmp_path), "openbell-x", "loadtest", 0, {})
    with pytest.raises(SpecError, match="unknown profile"):
        catalogue.find("tokyo-open", tmp_path)


def _openbell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_load_render_prints_a_configmap_and_a_testrun_that_match_the_crd() -> None:
    done = _openbell("load", "render", "nyse-open", "--parallelism", "8", "--scale", "1")
    assert done.returncode == 0, done.stderr
    cm, run = list(yaml.safe_load_all(done.stdout))
    jsonschema.validate(run, TESTRUN_SCHEMA)
    assert run["spec"]["parallelism"] == 8 and cm["kind"] == "ConfigMap"
    assert set(cm["data"]) == {"nyse-open.js", "trader.js"}
    env = {e["name"]: e["value"] for e in run["spec"]["runner"]["env"]}
    assert env["SCALE"] == "1" and json.loads(env["OPENBELL_THRESHOLDS"])["ws_push_latency_ms"] == ["p(99)<50"]


def test_load_render_to_kubernetes_without_a_kubeconfig_says_so_and_exits_3(tmp_path: Path) -> None:
    done = _openbell("load", "render", "soak", "--target", "kubernetes", "--kubeconfig", str(tmp_path / "none"))
    assert done.returncode == 3 and "no kubeconfig" in done.stderr and done.stderr.count("\n") == 1
