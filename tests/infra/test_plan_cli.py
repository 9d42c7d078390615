"""`openbell infra` as a user meets it: real subprocesses, exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbell.infra.deploy import aws_credentials

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("network", "cluster", "karpenter", "kafka", "postgres", "clickhouse", "apps", "observability", "tooling")
HAVE_PROGRAM = all((ROOT / "infra" / f"{c}.py").exists() for c in COMPONENTS)
needs_program = pytest.mark.skipif(not HAVE_PROGRAM, reason="the components (infra/network.py ... "
                                                            "infra/tooling.py) are not all written yet")


def openbell(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No pulumi on PATH or in openbell's cache, no AWS credentials anywhere, a HOME without ~/.aws."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_", "XDG_"))}
    (tmp_path / "bin").mkdir(exist_ok=True)
    return {**keep, "PATH": str(tmp_path / "bin"), "HOME": str(tmp_path), "OPENBELL_CACHE": str(tmp_path / "cache"),
            **extra}


def never_run(path: Path) -> None:
    """A pulumi on PATH that must not be run: the checks before it fail first."""
    path.write_text("#!/bin/sh\necho 'pulumi should not run' >&2\nexit 99\n")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def plans() -> dict[str, tuple[subprocess.CompletedProcess[str], dict[str, Any]]]:
    out = {}
    for stack in ("dev", "prod"):
        proc = openbell("infra", "plan", "--stack", stack, "--offline", "--output", "json")
        out[stack] = (proc, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {})
    return out


@needs_program
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_offline_plan_passes_with_an_inventory(plans: dict[str, Any], stack: str) -> None:
    proc, report = plans[stack]
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    assert report["stack"] == stack and report["environment"] == stack and report["passed"] is True
    assert report["policies"]["violations"] == []
    assert [r["rule"] for r in report["policies"]["rules"]] == [
        "data-tier-never-on-spot", "stateful-spread-3-zones-in-prod", "pdb-for-replicated-workloads",
        "no-public-data-tier", "encryption-at-rest", "resource-requests-on-every-container", "images-pinned"]
    assert report["schemas"]["invalid"] == [] and report["schemas"]["ok"] > 30
    assert report["resources"] == len(report["inventory"]) == sum(report["counts"].values())
    types = {i["type"] for i in report["inventory"]}
    assert {"aws:eks/cluster:Cluster", "kubernetes:kafka.strimzi.io/v1beta2:KafkaNodePool",
            "kubernetes:postgresql.cnpg.io/v1:Cluster", "kubernetes:karpenter.sh/v1:NodePool"} <= types
    assert not any(t.startswith(("openbell:", "pulumi:")) for t in types)  # components and providers are not listed


@needs_program
def test_prod_inventory_shows_the_sizing(plans: dict[str, Any]) -> None:
    _, report = plans["prod"]
    settings = {i["name"]: i["settings"] for i in report["inventory"]}
    assert report["counts"]["aws:ec2/natGateway:NatGateway"] == 3
    brokers = next(s for i, s in settings.items() if "broker" in i and "x9" in s)
    assert "broker x9" in brokers
    assert any("144 partitions x3" in s for s in settings.values())
    assert any("3 instances" in s and "sync any 1" in s for s in settings.values())
    _, dev = plans["dev"]
    assert dev["counts"]["aws:ec2/natGateway:NatGateway"] == 1


@needs_program
def test_offline_plan_text_shows_tables_and_verdict() -> None:
    proc = openbell("infra", "plan", "--stack", "dev", "--offline")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for heading in ("Stack dev (dev)", "key settings", "Resources per type", "Policies (infra/policies, mandatory)",
                    "images-pinned", "Schemas:", "Plan passed"):
        assert heading in out


def test_a_bad_stack_value_is_one_line_naming_the_key(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    document["config"]["openbell:kafka"]["brokers"] = 0
    bad = tmp_path / "Pulumi.prod.yaml"
    bad.write_text(yaml.safe_dump(document))
    proc = openbell("infra", "plan", "--stack", "prod", "--offline", "--stack-file", str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("openbell: ") and "kafka.brokers" in line and str(bad) in line


def test_a_missing_stack_is_bad_input() -> None:
    proc = openbell("infra", "plan", "--stack", "nosuch", "--offline")
    assert proc.returncode == 2
    assert "Pulumi.nosuch.yaml: no such stack file" in proc.stderr


def test_preview_without_the_pulumi_cli_exits_3(tmp_path: Path) -> None:
    proc = openbell("infra", "preview", "--stack", "dev", env=bare_env(tmp_path))
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert "the pulumi CLI is not built or on PATH" in line and "make pulumi" in line
    assert "infra plan --stack dev --offline" in line


def test_plan_without_offline_is_a_preview(tmp_path: Path) -> None:
    proc = openbell("infra", "plan", "--stack", "dev", env=bare_env(tmp_path))
    assert proc.returncode == 3
    assert "pulumi CLI" in proc.stderr


def test_preview_without_aws_credentials_exits_3(tmp_path: Path) -> None:
    env = bare_env(tmp_path)
    never_run(tmp_path / "bin" / "pulumi")
    proc = openbell("infra", "preview", "--stack", "prod", env=env)
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert "no AWS credentials" in line


def test_preview_without_the_aws_cli_exits_3(tmp_path: Path) -> None:
    env = bare_env(tmp_path, AWS_PROFILE="ci")
    never_run(tmp_path / "bin" / "pulumi")
    proc = openbell("infra", "preview", "--stack", "dev", env=env)
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert "the aws CLI is not on PATH" in line


def test_a_deploy_validates_its_stack_file_before_looking_for_tools(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.local.yaml").read_text())
    document["config"]["openbell:existingCluster"]["backupDestination"] = "http://not-s3/"
    bad = tmp_path / "local.yaml"
    bad.write_text(yaml.safe_dump(document))
    proc = openbell("infra", "up", "--stack", "local", "--stack-file", str(bad), "--yes", env=bare_env(tmp_path))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "existingCluster.backupDestination" in line and str(bad) in line


def test_the_kubernetes_provider_is_required_for_an_existing_cluster(tmp_path: Path) -> None:
    env = bare_env(tmp_path)
    never_run(tmp_path / "bin" / "pulumi")
    proc = openbell("infra", "preview", "--stack", "local", env=env)
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert "pulumi-resource-kubernetes" in line and "make pulumi" in line


def test_kubeconfig_is_for_existing_cluster_stacks_only(tmp_path: Path) -> None:
    proc = openbell("infra", "preview", "--stack", "dev", "--kubeconfig", str(tmp_path / "k"), env=bare_env(tmp_path))
    assert proc.returncode == 2 and "target existing-cluster" in proc.stderr


FAKE_PULUMI = """#!/bin/sh
# Stands in for the pulumi CLI: answers `version` (the Automation API asks first), fails everything else.
if [ "$1" = "version" ]; then echo "v3.272.0"; exit 0; fi
echo "$FAKE_PULUMI_ERROR" >&2
exit 255
"""


@pytest.mark.parametrize(("error", "code", "expected"), [
    ("error: preview failed: 1 mandatory policy violation (data-tier-never-on-spot)", 1,
     "pulumi preview --stack dev failed: error: preview failed: 1 mandatory policy violation"),
    ("error: failed to load checkpoint: run `pulumi login`", 3, "pulumi login"),
])
def test_automation_api_failures_are_one_line(tmp_path: Path, error: str, code: int, expected: str) -> None:
    fake = tmp_path / "bin" / "pulumi"
    env = bare_env(tmp_path, AWS_PROFILE="ci", FAKE_PULUMI_ERROR=error)
    env["PATH"] = f"{tmp_path / 'bin'}:/usr/bin:/bin"
    fake.write_text(FAKE_PULUMI)
    fake.chmod(0o755)
    aws = tmp_path / "bin" / "aws"  # present, never run: the fake pulumi fails before any token is needed
    aws.write_text("#!/bin/sh\nexit 99\n")
    aws.chmod(0o755)
    proc = openbell("infra", "preview", "--stack", "dev", env=env)
    assert proc.returncode == code, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("openbell: ") and expected in line


def test_a_bad_stack_is_reported_before_missing_tools(tmp_path: Path) -> None:
    proc = openbell("infra", "preview", "--stack", "nosuch", env=bare_env(tmp_path))
    assert proc.returncode == 2


@pytest.mark.parametrize("operation", ["up", "destroy"])
def test_up_and_destroy_want_yes(operation: str, tmp_path: Path) -> None:
    proc = openbell("infra", operation, "--stack", "dev", env=bare_env(tmp_path))
    assert proc.returncode == 2
    assert "--yes" in proc.stderr
    proc = openbell("infra", operation, "--stack", "dev", "--yes", env=bare_env(tmp_path))
    assert proc.returncode == 3


def test_aws_credentials_are_found_without_boto3(tmp_path: Path) -> None:
    assert aws_credentials({}, tmp_path) is None
    assert aws_credentials({"AWS_ACCESS_KEY_ID": "AKIA"}, tmp_path) is None  # half a key pair is none
    assert aws_credentials({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}, tmp_path)
    assert aws_credentials({"AWS_PROFILE": "prod"}, tmp_path) == "AWS_PROFILE"
    assert aws_credentials({"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token"}, tmp_path)
    assert aws_credentials({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}, tmp_path)
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\naws_access_key_id = AKIA\n")
    assert aws_credentials({}, tmp_path) == str(tmp_path / ".aws" / "credentials")


def test_the_infra_commands_do_not_import_pulumi() -> None:
    code = ("import sys; sys.argv=['openbell','infra','--help']\n"
            "import openbell.commands.infra\n"
            "from openbell.commands.app import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pulumi','pulumi_aws','pulumi_kubernetes','pulumi_policy','jsonschema','infra')"
            " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
    assert "plan" in proc.stdout and "preview" in proc.stdout and "destroy" in proc.stdout


def test_help_lists_the_infra_group() -> None:
    proc = openbell("--help")
    assert proc.returncode == 0 and "infra" in proc.stdout


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_failing_plan_lists_each_violation_and_does_not_pass() -> None:
    """In process, with a small program of our own: a data pool that allows spot, an unencrypted queue."""
    from rich.console import Console

    from openbell.infra.plan import render, run_plan

    def program(cfg: Any) -> None:
        import pulumi
        import pulumi_aws as aws
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("k8s", kubeconfig="{}")
        k8s.apiextensions.CustomResource(
            "data-pool", api_version="karpenter.sh/v1", kind="NodePool", metadata={"name": "data"},
            spec={"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]}},
                "disruption": {"consolidateAfter": "5m", "budgets": [{"nodes": "ten"}]}},
            opts=pulumi.ResourceOptions(provider=provider))
        aws.sqs.Queue("queue", sqs_managed_sse_enabled=False)

    report = run_plan(ROOT, "dev", program=program)
    assert not report.passed
    assert {(v.rule, v.resource) for v in report.violations} == {("data-tier-never-on-spot", "data-pool"),
                                                                 ("encryption-at-rest", "queue")}
    assert [s.resource for s in report.invalid] == ["data-pool"]  # nodes "ten", and no EC2NodeClass "default"
    assert any("is not declared" in e for e in report.invalid[0].errors)
    console = Console(record=True, width=200)
    render(report, console)
    text = console.export_text()
    assert "Violations" in text and "FAIL (1)" in text and "Plan failed: 2 policy violation(s), 1 invalid" in text
    data = report.as_dict()
    assert data["passed"] is False and len(data["policies"]["violations"]) == 2
