"""Load SLO specs from files and folders, in any supported format, into one validated list.

Formats are told apart by their header: ``apiVersion: openbell/v1`` (native), ``openslo/v1``
(OpenSLO SLO and SLI documents), ``version: prometheus/v1`` or ``apiVersion: sloth.slok.dev/v1``
(Sloth). A file may hold several YAML documents. Other OpenSLO kinds (Service, DataSource,
AlertPolicy...) are skipped: they do not define objectives.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from openbell.errors import SpecError
from openbell.slo.model import SLO
from openbell.slo.native import API_VERSION as NATIVE
from openbell.slo.native import load_native
from openbell.slo.openslo import API_VERSION as OPENSLO
from openbell.slo.openslo import load_openslo_slo, sli_name
from openbell.slo.sloth import load_sloth
from openbell.slo.validate import check_slo, check_unique

SPEC_SUFFIXES = (".yaml", ".yml")


def spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every spec file under `paths` (folders are searched recursively), in a stable order."""
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file())
        elif path.is_file():
            found = [path]
        else:
            raise SpecError(str(path), "", "no such file or folder")
        for file in found:  # the same file named twice (a folder and a file in it) loads once
            real = file.resolve()
            if real not in seen:
                seen.add(real)
                files.append(file)
    if not files:
        raise SpecError(", ".join(str(p) for p in paths) or "(no paths)", "", "no SLO spec files (*.yaml, *.yml) found")
    return files


def read_documents(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(str(path), where, f"expected valid YAML: {problem}") from None
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise SpecError(str(path), f"document {i + 1}", "expected a mapping with apiVersion and kind")
    return docs


def load_slos(paths: Iterable[str | Path]) -> list[SLO]:
    """Load, validate and return every SLO under `paths`. Raises SpecError on the first problem."""
    entries: list[tuple[str, dict[str, Any]]] = []
    files = spec_files(list(paths))
    for file in files:
        entries.extend((str(file), doc) for doc in read_documents(file))

    openslo_slis: dict[str, tuple[str, dict[str, Any]]] = {}
    for source, doc in entries:
        if doc.get("apiVersion") == OPENSLO and doc.get("kind") == "SLI":
            openslo_slis[sli_name(source, doc)] = (source, doc)

    slos: list[SLO] = []
    for source, doc in entries:
        slos.extend(_load_document(source, doc, openslo_slis))
    if not slos:
        raise SpecError(", ".join(str(f) for f in files), "", "no SLOs in these files (expected kind: SLO documents)")
    check_unique(slos)
    return slos


def _load_document(source: str, doc: dict[str, Any],
                   openslo_slis: dict[str, tuple[str, dict[str, Any]]]) -> list[SLO]:
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if api == NATIVE:
        if kind != "SLO":
            raise SpecError(source, "kind", f"expected SLO for apiVersion {NATIVE}, got {kind!r}")
        slo = load_native(source, doc)
        check_slo(slo)
        return [slo]
    if api == OPENSLO:
        if kind == "SLO":
            return load_openslo_slo(source, doc, openslo_slis)
        return []
    if doc.get("version") == "prometheus/v1" or (
            isinstance(api, str) and api.startswith("sloth.slok.dev/") and kind == "PrometheusServiceLevel"):
        return load_sloth(source, doc)
    raise SpecError(source, "apiVersion", f"expected {NATIVE}, {OPENSLO}, sloth.slok.dev/v1 or Sloth's"
                    f" version: prometheus/v1, got {api!r}")
