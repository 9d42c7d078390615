"""openbell.infra.deploy's parts that decide without the engine: the one line a failure becomes, the route guard's
reading of a preview, the per-stack workspace, the backend and the policy pack's launcher. The engine itself is in
tests/engine (the real pulumi CLI and Kubernetes provider against the local control plane)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from infra.config import from_values
from openbell.infra import deploy

ROOT = Path(__file__).resolve().parents[2]
LOCAL = {"openbell:target": "existing-cluster",
         "openbell:existingCluster": {"backupDestination": "s3://b-ups/ledger/"}}

POLICY_FAILURE = """code: 255
stdout: Updating (local):
    pulumi:pulumi:Stack openbell-local running error: Resource monitor has terminated, shutting down
Policies:
    \u274c openbell-platform@v0.1.0 (local: /state/policy-pack/openbell-policies)
        - [mandatory]  resource-requests-on-every-container  (kubernetes:apps/v1:Deployment: apps-gateway)
          Every container of every pod template requests cpu and memory.
          Deployment 'gateway' spec.template.spec.containers[0] (gateway) has no cpu request
Diagnostics:
    error: Resource monitor has terminated, shutting down
stderr: error: update failed
"""

CONFLICT = "\n".join([
    "code: 255",
    "stdout:  ~  kubernetes:gateway.networking.k8s.io/v1:HTTPRoute apps-route **updating failed** [diff: ~spec];"
    " error: 1 error occurred:",
    "    error: 1 error occurred:",
    '    \t* the Kubernetes API server reported that "openbell/gateway" failed to fully initialize or become live:'
    " Server-Side Apply field conflict detected.",
    "stderr: error: update failed",
])


def test_a_policy_violation_is_the_line_shown() -> None:
    line = deploy._last_line(POLICY_FAILURE)
    assert line.startswith("[mandatory]  resource-requests-on-every-container")
    assert "has no cpu request" in line


def test_a_provider_error_is_the_line_shown_not_the_engine_summary() -> None:
    line = deploy._last_line(CONFLICT)
    assert line.startswith('the Kubernetes API server reported that "openbell/gateway"') and "field conflict" in line


def event(urn: str, op: str) -> SimpleNamespace:
    return SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=SimpleNamespace(
        urn=urn, op=SimpleNamespace(value=op))))


def test_the_guard_reads_the_routes_planned_operation() -> None:
    base = "urn:pulumi:local::openbell::openbell:infra:Apps$kubernetes:"
    urn = base + "gateway.networking.k8s.io/v1:HTTPRoute::apps-route"
    other = base + "apps/v1:Deployment::apps-gateway"
    assert deploy.route_changes([event(other, "update"), event(urn, "same"), SimpleNamespace()]) == []
    assert deploy.route_changes([event(urn, "update")]) == ["update"]
    assert deploy.route_changes([event(urn, "replace")]) == ["replace"]


def test_the_workspace_takes_the_config_from_the_repo_and_keeps_its_secrets_salt(tmp_path: Path) -> None:
    source = tmp_path / "Pulumi.local.yaml"
    source.write_text(yaml.safe_dump({"config": {"openbell:environment": "dev"}}))
    workspace = tmp_path / "ws"
    deploy.prepare_workspace("local", source, workspace)
    assert yaml.safe_load((workspace / "Pulumi.yaml").read_text())["name"] == "openbell"
    written = workspace / "Pulumi.local.yaml"
    written.write_text(yaml.safe_dump({"encryptionsalt": "v1:salt", "config": {"openbell:environment": "dev"}}))
    source.write_text(yaml.safe_dump({"config": {"openbell:environment": "staging"}}))
    deploy.prepare_workspace("local", source, workspace)
    assert yaml.safe_load(written.read_text()) == {"config": {"openbell:environment": "staging"},
                                                    "encryptionsalt": "v1:salt"}
    # A stack file with its own secrets provider (a team's, committed) wins over what the workspace had.
    source.write_text(yaml.safe_dump({"secretsprovider": "awskms://alias/x", "config": {}}))
    deploy.prepare_workspace("local", source, workspace)
    assert yaml.safe_load(written.read_text()) == {"secretsprovider": "awskms://alias/x", "config": {}}


def test_an_existing_cluster_stack_gets_a_file_backend_and_a_private_passphrase(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(key, raising=False)
    env = deploy.backend_env(from_values(LOCAL), tmp_path)
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path / 'backend'}"
    passphrase = Path(env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600 and len(passphrase.read_text()) >= 32
    again = deploy.backend_env(from_values(LOCAL), tmp_path)
    assert again == env and passphrase.read_text() == Path(again["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text()
    assert deploy.backend_env(from_values({}), tmp_path) == {}  # aws: whatever `pulumi login` chose
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://team-state")
    assert deploy.backend_env(from_values(LOCAL), tmp_path) == {}


def test_the_policy_launcher_serves_the_pack_with_this_interpreter(tmp_path: Path) -> None:
    launcher = deploy.policy_launcher(ROOT, tmp_path)
    assert os.access(launcher, os.X_OK) and (tmp_path / "PulumiPolicy.yaml").is_file()
    # Run as the engine runs it: the pack serves gRPC and prints its port first.
    proc = subprocess.Popen([str(launcher), "127.0.0.1:1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().decode().strip()
        assert port.isdigit() and int(port) > 0, proc.stderr.read() if proc.poll() is not None else port
    finally:
        proc.kill()
        proc.wait(10)


def test_the_engine_is_found_in_openbells_cache_first(tmp_path: Path) -> None:
    bin_dir = deploy.engine_root(tmp_path) / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("pulumi", "pulumi-resource-kubernetes"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    engine = deploy.find_engine("local", needs_kubernetes=True, cache=tmp_path, path="/nonexistent")
    assert engine.root == deploy.engine_root(tmp_path)
    assert engine.env["PATH"].split(os.pathsep)[0] == str(bin_dir)
    assert engine.env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
