"""`openbell infra plan --cluster/--context/--kubeconfig` as a user meets it without a cluster: the options,
one-line errors with exit 2 (a kubeconfig or context that cannot be used) or 3 (a cluster that does not answer),
and no Kubernetes client imported for --help. Against the real API server: tests/kubernetes/test_infra_live.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = """apiVersion: v1
kind: Config
current-context: nowhere
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: me
  user: {token: not-a-real-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: me}
"""


def openbell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbell", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("openbell: ") and proc.stdout == ""
    return line


def test_the_cluster_check_needs_the_offline_plan() -> None:
    proc = openbell("infra", "plan", "--stack", "dev", "--context", "prod-eks")
    assert proc.returncode == 2
    assert "dry-runs the offline plan's objects: add --offline" in one_line(proc)


def test_a_kubeconfig_that_is_not_there_is_bad_input(tmp_path: Path) -> None:
    proc = openbell("infra", "plan", "--stack", "dev", "--offline", "--kubeconfig", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert one_line(proc) == f"openbell: --kubeconfig {tmp_path / 'nope'}: no such file"


def test_an_unknown_context_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    proc = openbell("infra", "plan", "--stack", "dev", "--offline", "--kubeconfig", str(tmp_path / "kubeconfig"),
                    "--context", "prod-eks")
    assert proc.returncode == 2
    assert "has no context 'prod-eks' (it has: nowhere)" in one_line(proc)


def test_a_cluster_that_does_not_answer_exits_3(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    proc = openbell("infra", "plan", "--stack", "dev", "--offline", "--kubeconfig", str(tmp_path / "kubeconfig"),
                    "--output", "json")
    assert proc.returncode == 3
    assert "cluster https://127.0.0.1:1 (context nowhere) cannot be reached" in one_line(proc)


def test_the_plan_help_offers_the_cluster_check_without_importing_a_client() -> None:
    code = ("import sys; sys.argv=['openbell','infra','plan','--help']\n"
            "from openbell.commands.app import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('kubernetes', 'pulumi', 'jsonschema', 'openbell.infra.dryrun')"
            " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
    for option in ("--cluster", "--context", "--kubeconfig"):
        assert option in proc.stdout
