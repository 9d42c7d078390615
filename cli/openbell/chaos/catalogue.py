"""The experiment catalogue: Chaos Toolkit experiments under experiments/<target>/, named by their file.

An experiment's name is its file name without the extension (`gateway-replica-loss`); its target is the folder
it sits in (`sandbox`, `kubernetes`); what it proves is its `description`, the header every experiment carries.
Files that are not experiments (SLO specs, Chaos Mesh objects kept beside them) are skipped: an experiment is a
JSON or YAML mapping with a `title` and a `method`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbell.errors import SpecError

SUFFIXES = (".json", ".yaml", ".yml")
TARGETS = ("sandbox", "kubernetes")


@dataclass(frozen=True)
class Experiment:
    """One experiment file: its name, target, title, what it proves, and the parsed document."""

    name: str
    target: str | None
    title: str
    description: str
    path: Path
    document: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "title": self.title, "description": self.description,
                "path": str(self.path), "tags": list(self.document.get("tags") or [])}


def experiments_dir(explicit: str | Path | None = None) -> Path:
    """--experiments, else $OPENBELL_EXPERIMENTS, else the source tree's experiments/."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("OPENBELL_EXPERIMENTS")
    if env:
        return Path(env)
    from openbell.paths import repo_root

    return repo_root() / "experiments"


def read_document(path: Path) -> dict[str, Any]:
    """The experiment file's mapping (JSON or YAML); a file that cannot be read or parsed is a SpecError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read the experiment ({exc.strerror})") from None
    import yaml

    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:  # json.JSONDecodeError is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(str(path), "", f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {first}") from None
    if not isinstance(doc, dict):
        raise SpecError(str(path), "", "expected a mapping (an experiment with title, method, ...)")
    return doc


def is_experiment(doc: dict[str, Any]) -> bool:
    return "title" in doc and "method" in doc


def read_experiment(path: Path, root: Path | None = None) -> Experiment:
    """An experiment from its file; the target is the folder under `root` it sits in (None elsewhere)."""
    doc = read_document(path)
    folder: str | None = None
    if root is not None:
        try:
            folder = path.resolve().relative_to(root.resolve()).parts[0]
        except ValueError:
            folder = None
    return Experiment(path.stem, folder if folder in TARGETS else None, str(doc.get("title", path.stem)),
                      " ".join(str(doc.get("description", "")).split()), path, doc)


def list_experiments(directory: Path, target: str | None = None) -> list[Experiment]:
    """Every experiment under `directory` (optionally of one target), sorted by target and name."""
    if not directory.is_dir():
        raise SpecError(str(directory), "", "expected a folder of Chaos Toolkit experiments (experiments/)")
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        try:
            experiment = read_experiment(path, directory)
        except SpecError:
            continue  # a broken file is named by `chaos validate`, not by the listing
        if is_experiment(experiment.document) and (target is None or experiment.target == target):
            found.append(experiment)
    return sorted(found, key=lambda e: (e.target or "", e.name))


def find(name_or_path: str, directory: Path, target: str | None = None) -> Experiment:
    """An experiment by name (the target's folder first; without a target, the sandbox's, as `chaos run`
    defaults to it) or by path to any experiment file."""
    path = Path(name_or_path)
    if path.suffix in SUFFIXES and (path.exists() or os.sep in name_or_path):
        if not path.exists():
            raise SpecError(name_or_path, "", "no such experiment file")
        return read_experiment(path, directory if directory.is_dir() else None)
    known = list_experiments(directory)
    matches = [e for e in known if e.name == name_or_path]
    matches.sort(key=lambda e: e.target != (target or "sandbox"))
    if matches:
        return matches[0]
    names = ", ".join(sorted({e.name for e in known if target is None or e.target == target}))
    raise SpecError("chaos", name_or_path, f"unknown experiment; expected one of {names} or a path to a file")
