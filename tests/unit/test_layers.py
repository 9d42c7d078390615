"""The layer contract (pyproject.toml [tool.importlinter]) holds for the tree, and the check fails on a
back-arrow: a copy of the package with one import pointing up is refused, naming the import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is in the dev extra")


def _lint(package_parent: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The package is found through PYTHONPATH, so a copy shadows the installed (editable) tree.
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_the_tree_keeps_its_layers() -> None:
    done = _lint(ROOT / "cli", ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "back_arrow", "contract"), [
    ("slo/model.py", "from openbell.canary import machine as _up", "commands -> capabilities"),
    ("canary/machine.py", "import httpx as _io", "import no I/O library"),
    ("load/verdict.py", "from openbell.sandbox import supervisor as _inside", "through targets/"),
])
def test_a_back_arrow_is_refused(tmp_path: Path, module: str, back_arrow: str, contract: str) -> None:
    copy = tmp_path / "cli" / "openbell"
    shutil.copytree(ROOT / "cli" / "openbell", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    text = target.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    target.write_text(head + sep + back_arrow + "\n" + rest)
    done = _lint(tmp_path / "cli", tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = done.stdout.split("Broken contracts", 1)[1]
    assert contract in " ".join(broken.split())
    assert "openbell." + module.removesuffix(".py").replace("/", ".") in broken
