"""`openbell infra preview|up|destroy`: the real thing, through Pulumi's Automation API.

A LocalWorkspace on the repository root (Pulumi.yaml: the program in infra/, stack config in stacks/)
drives the pulumi CLI; preview and up run the policy pack in infra/policies, so a mandatory violation
stops an update. Before anything runs: the stack's config must validate (exit 2), the pulumi CLI must be
on PATH and AWS credentials must be configured (exit 3 otherwise, with what to do).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openbell.errors import EXIT_GATE_FAILED, OpenbellError, UnreachableError
from openbell.infra import importable
from openbell.infra.plan import load_config

Operation = Literal["preview", "up", "destroy"]

INSTALL_HINT = "install it (https://www.pulumi.com/docs/iac/download-install/), or run " \
               "`openbell infra plan --stack {stack} --offline`, which needs neither the CLI nor a cloud"


class OperationFailed(OpenbellError):
    """Pulumi ran and said no: a failed preview/update (a mandatory policy violation, a provider error)."""

    exit_code = EXIT_GATE_FAILED


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    stack: str
    summary: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "stack": self.stack, "summary": self.summary}


def aws_credentials(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """Where AWS credentials would come from, or None when nothing is configured. Checked without boto3:
    the environment (keys, profile, web identity, container/pod identity) and the shared files."""
    env = os.environ if env is None else env
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return "AWS_ACCESS_KEY_ID"
    for key in ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        if env.get(key):
            return key
    base = (home or Path.home()) / ".aws"
    for key, default in (("AWS_SHARED_CREDENTIALS_FILE", base / "credentials"), ("AWS_CONFIG_FILE", base / "config")):
        path = Path(env[key]).expanduser() if env.get(key) else default
        if path.is_file() and path.stat().st_size > 0:
            return str(path)
    return None


def check_tools(stack: str) -> None:
    """The pulumi CLI and AWS credentials, or exit 3 saying which is missing."""
    if shutil.which("pulumi") is None:
        raise UnreachableError("the pulumi CLI is not on PATH: " + INSTALL_HINT.format(stack=stack))
    if aws_credentials() is None:
        raise UnreachableError("no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY), use web or pod identity, or configure ~/.aws; or run "
                               f"`openbell infra plan --stack {stack} --offline`")
    if shutil.which("aws") is None:
        # The cluster's kubeconfig authenticates with `aws eks get-token`: without it every Kubernetes
        # call of the run would fail half way through.
        raise UnreachableError("the aws CLI is not on PATH (the kubeconfig runs `aws eks get-token`): install it")


UNREACHABLE_HINTS = ("pulumi login", "PULUMI_ACCESS_TOKEN", "NoCredentialProviders", "no valid credential",
                     "could not connect", "dial tcp", "ExpiredToken")
"""Failures that mean the backend or the cloud cannot be reached (exit 3), not that the change was refused."""


def _last_line(text: str) -> str:
    lines = [ln.strip().removeprefix("stderr:").strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln and not ln.startswith(("code:", "stdout:"))]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["pulumi failed"])[-1][:400]


def run(operation: Operation, root: Path, stack: str, stack_path: Path | None = None) -> Outcome:
    """Validate, check the tools, then preview/up/destroy `stack` with progress streamed to stderr."""
    if stack_path is not None:
        from openbell.errors import UsageError

        # The Automation API deploys stacks/Pulumi.<stack>.yaml: checking another file would check
        # something other than what gets deployed.
        raise UsageError("--stack-file: only with `infra plan --offline`; preview/up/destroy use "
                         f"stacks/Pulumi.{stack}.yaml")
    cfg = load_config(root, stack, stack_path)
    check_tools(stack)
    importable(root)
    from pulumi import automation as auto

    def progress(line: str) -> None:
        sys.stderr.write(line if line.endswith("\n") else line + "\n")

    policies = [str(root / "infra" / "policies")]
    try:
        # The policy pack runs under the pulumi CLI: it judges the stack's configured environment (the
        # 3-zone rule is prod's), whatever the stack is called - as the offline plan does.
        workspace_stack = auto.create_or_select_stack(
            stack_name=stack, work_dir=str(root),
            opts=auto.LocalWorkspaceOptions(env_vars={"OPENBELL_ENVIRONMENT": cfg.environment}))
        if operation == "preview":
            preview = workspace_stack.preview(on_output=progress, policy_packs=policies)
            summary: dict[str, Any] = {str(k): v for k, v in preview.change_summary.items()}
        elif operation == "up":
            up = workspace_stack.up(on_output=progress, policy_packs=policies)
            summary = {"result": up.summary.result,
                       "changes": {str(k): v for k, v in (up.summary.resource_changes or {}).items()},
                       "outputs": {k: v.value for k, v in up.outputs.items() if not v.secret}}
        else:
            destroy = workspace_stack.destroy(on_output=progress)
            summary = {"result": destroy.summary.result,
                       "changes": {str(k): v for k, v in (destroy.summary.resource_changes or {}).items()}}
    except FileNotFoundError:
        raise UnreachableError("the pulumi CLI could not be run: " + INSTALL_HINT.format(stack=stack)) from None
    except auto.errors.CommandError as exc:
        reason = _last_line(str(exc))
        if any(hint.lower() in str(exc).lower() for hint in UNREACHABLE_HINTS):
            raise UnreachableError(f"pulumi {operation} --stack {stack}: {reason}") from None
        raise OperationFailed(f"pulumi {operation} --stack {stack} failed: {reason}") from None
    return Outcome(operation, stack, summary)
