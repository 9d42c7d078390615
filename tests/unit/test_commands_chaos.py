"""`openbell chaos` as a user meets it: listing, validation messages and refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.unit.test_chaos_allowlist import ALLOW
from tests.unit.test_chaos_catalogue import EXPERIMENTS, SANDBOX_EXPERIMENTS

ROOT = Path(__file__).resolve().parents[2]


def openbell(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def test_chaos_list_json_and_validate_a_catalogued_experiment() -> None:
    listed = openbell("chaos", "list", "--target", "sandbox", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert {e["name"] for e in json.loads(listed.stdout)} == SANDBOX_EXPERIMENTS
    done = openbell("chaos", "validate", "kafka-broker-loss", "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"experiment": "kafka-broker-loss",
                                       "path": str(EXPERIMENTS / "sandbox" / "kafka-broker-loss.json"),
                                       "valid": True, "safeguard": True}


def test_an_invalid_experiment_is_exit_2_with_chaostoolkits_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"title": "no description", "method": []}))
    done = openbell("chaos", "validate", str(bad))
    assert done.returncode == 2
    assert done.stderr == f"openbell: {bad}: experiment requires a description\n"


def kubeconfig(path: Path, context: str, namespace: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u", "namespace": namespace}}]}))
    return path


def test_a_kubernetes_target_is_refused_unless_context_namespace_and_experiment_are_allowed(tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", "prod-eks", "openbell")),
           "OPENBELL_CHAOS_ALLOW": str(tmp_path / "allow.yaml")}
    done = openbell("chaos", "run", "gateway-pod-loss", "--target", "kubernetes", env=env)
    assert done.returncode == 2 and "no chaos allow-list" in done.stderr and done.stderr.count("\n") == 1
    (tmp_path / "allow.yaml").write_text(yaml.safe_dump(ALLOW))
    done = openbell("chaos", "run", "gateway-pod-loss", "--target", "kubernetes", env=env)
    assert done.returncode == 2
    assert "does not allow experiment 'gateway-pod-loss' in context 'prod-eks', namespace 'openbell'" in done.stderr
    # Allowed in the current namespace, but the experiment also touches one that is not listed.
    (tmp_path / "allow.yaml").write_text(yaml.safe_dump({"allow": [
        {"context": "prod-eks", "namespaces": ["default"], "experiments": ["gateway-pod-loss"]}]}))
    env["KUBECONFIG"] = str(kubeconfig(tmp_path / "kubeconfig", "prod-eks", "default"))
    done = openbell("chaos", "run", "gateway-pod-loss", "--target", "kubernetes", env=env)
    assert done.returncode == 2 and "namespaces 'default', 'openbell'" in done.stderr
    (tmp_path / "allow.yaml").write_text(yaml.safe_dump(ALLOW))
    # A sandbox experiment is not run against a cluster, allowed or not.
    done = openbell("chaos", "run", "enricher-stall", "--target", "kubernetes", env=env)
    assert done.returncode == 2 and "is for the sandbox target" in done.stderr
