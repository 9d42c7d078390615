"""The real Pulumi engine (`make pulumi`: the pulumi CLI and pulumi-resource-kubernetes built from the Go module
proxy) deploying the platform's Kubernetes layer, stack `local`, onto the local control plane (openbell.localkube),
through the real `openbell infra` CLI. The cluster is this package's: started for it and stopped after it (left
running if it already was). Strimzi's and Altinity's CRDs, made from infra/schemas transcriptions, stand in for the
operators the stack assumes installed, and are removed again if this package installed them (the chaos suite needs
a cluster where Strimzi is not installed). The Pulumi state and workspaces live in the test's own directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openbell.infra import deploy
from openbell.localkube import cluster, transcribed

ROOT = Path(__file__).resolve().parents[2]
OPENBELL = [sys.executable, "-m", "openbell"]


@dataclass
class Engine:
    kubeconfig: Path
    state: Path
    api: Any  # kubernetes.client.ApiClient

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        return {**keep, "KUBECONFIG": str(self.kubeconfig), "XDG_STATE_HOME": str(self.state), **extra}

    def openbell(self, *args: str, env: dict[str, str] | None = None,
                 timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*OPENBELL, *args], capture_output=True, text=True, cwd=ROOT, check=False,
                              env=env or self.env(), timeout=timeout_s)

    def infra(self, operation: str, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """`openbell infra <operation> --stack local ... --output json`: the process and its JSON (or {})."""
        yes = ("--yes",) if operation in ("up", "destroy") else ()
        proc = self.openbell("infra", operation, "--stack", "local", *yes, *args, "--output", "json")
        out = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        return proc, out


@pytest.fixture(scope="package")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.fail("the engine suite needs root (the local cluster's network namespace)")
    layout = cluster.Layout.default()
    if missing := layout.missing_binaries():
        pytest.fail(f"the local cluster is not built ({', '.join(missing)}): run `make kube`")
    try:
        deploy.find_engine("local", needs_kubernetes=True)
    except Exception as exc:
        pytest.fail(f"the Pulumi engine is not built ({exc}): run `make pulumi`")
    started = not cluster.status(layout)["running"]
    from kubernetes import client, config

    cluster.up(layout, progress=print)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(layout.kubeconfig), client_configuration=cfg)
    api = client.ApiClient(cfg)
    ext = client.ApiextensionsV1Api(api)
    names = [c["metadata"]["name"] for c in transcribed.crds(names=transcribed.OPERATOR_TRANSCRIPTIONS)]
    had = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    cluster.up(layout, progress=print, transcribed_crds=True)
    state = tmp_path_factory.mktemp("pulumi-state")
    eng = Engine(layout.kubeconfig, state, api)
    try:
        yield eng
    finally:
        if (state / "openbell" / "pulumi" / "backend").is_dir():
            eng.infra("destroy")  # whatever a failed test left deployed
        if started:
            cluster.down(layout)
        else:
            for name in names:
                if name not in had:
                    ext.delete_custom_resource_definition(name)
