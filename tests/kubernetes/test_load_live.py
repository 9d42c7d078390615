"""`openbell load render --target kubernetes` applying its ConfigMap and k6-operator TestRun to the local
cluster. k6-operator's own CRD cannot be fetched here (its Go module is refused): the cluster's TestRun CRD is
made from infra/schemas' transcription (openbell.localkube.transcribed, annotated as such). No k6-operator runs
here, so no runner pod starts: the TestRun is accepted and stored, which is what this command owns."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kubernetes.conftest import Kube

NS = "openbell-loadtest"
OPENBELL = str(Path(sys.executable).parent / "openbell")


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    kube.delete_namespace(NS)
    kube.core().create_namespace({"metadata": {"name": NS}})
    yield NS
    kube.delete_namespace(NS)


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPENBELL, "load", "render", "nyse-open", "--scale", "0.01", *args],
                          capture_output=True, text=True, timeout=120, env=os.environ)


def test_render_applies_the_testrun_and_its_script_and_a_rerun_replaces_them(kube: Kube, namespace: str) -> None:
    printed = list(yaml.safe_load_all(_render("--namespace", namespace).stdout))
    for _ in range(2):
        done = _render("--namespace", namespace, "--target", "kubernetes")
        assert done.returncode == 0, done.stderr
    assert "TestRun/openbell-nyse-open (replaced)" in done.stdout
    run = kube.custom().get_namespaced_custom_object("k6.io", "v1alpha1", namespace, "testruns", "openbell-nyse-open")
    want = next(o for o in printed if o["kind"] == "TestRun")
    assert run["spec"] == want["spec"]  # nothing pruned: every field the render writes is in the CRD
    script = kube.core().read_namespaced_config_map("openbell-nyse-open", namespace).data
    assert script == next(o for o in printed if o["kind"] == "ConfigMap")["data"]
    crd = kube.api.sanitize_for_serialization(
        __import__("kubernetes").client.ApiextensionsV1Api(kube.api).read_custom_resource_definition("testruns.k6.io"))
    assert crd["metadata"]["annotations"]["openbell.dev/source"].startswith("transcription: infra/schemas/")


def test_the_api_server_refuses_a_testrun_the_crd_forbids(kube: Kube, namespace: str) -> None:
    from kubernetes.client.rest import ApiException

    printed = list(yaml.safe_load_all(_render("--namespace", namespace).stdout))
    run = next(o for o in printed if o["kind"] == "TestRun")
    run["spec"]["parallelism"] = 0  # the CRD's minimum is 1
    with pytest.raises(ApiException) as refused:
        kube.custom().create_namespaced_custom_object("k6.io", "v1alpha1", namespace, "testruns", run)
    assert refused.value.status == 422 and "parallelism" in str(refused.value.body)


def test_a_missing_namespace_is_one_line_and_exit_3(kube: Kube) -> None:
    done = _render("--namespace", "openbell-nowhere", "--target", "kubernetes")
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        'openbell: target kubernetes: cannot create ConfigMap/openbell-nyse-open in namespace openbell-nowhere:'
        ' namespaces "openbell-nowhere" not found']
