"""CRDs for the kinds whose operator publishes none this machine can fetch, made from infra/schemas' hand
transcriptions: k6-operator's TestRun (github.com/grafana/k6-operator is refused by the Go module proxy).

A JSON Schema (2020-12, with $refs) becomes the structural OpenAPI v3 schema a CRD needs: local and
_common.json $refs and another transcription's $defs are inlined, `const` becomes a one-value enum, a
`["T", "null"]` type becomes T with nullable, references to Kubernetes core types (kubernetes-validate's
definitions) become objects whose fields are preserved unchecked, the fields of conditional branches
(if/then/else, anyOf, oneOf) are declared, and what a structural schema cannot say (which branch applies, `not`,
uniqueItems: a list of scalars becomes a set-type list instead) is left to the offline check.
`additionalProperties: false` is dropped: the API server prunes unknown fields, and refuses them under
fieldValidation=Strict. Every CRD made here carries the annotation openbell.dev/source naming its
transcription, so nobody takes it for the operator's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRANSCRIPTIONS = ("k6-testrun-v1alpha1.json",)
OPERATOR_TRANSCRIPTIONS = ("strimzi-kafka-v1beta2.json", "strimzi-kafkanodepool-v1beta2.json",
                           "strimzi-kafkatopic-v1beta2.json", "altinity-clickhouseinstallation-v1.json",
                           "altinity-clickhousekeeperinstallation-v1.json")
"""Strimzi's and Altinity's kinds (their CRDs ship generated at release, in no module or jar served here): only with
`openbell cluster up --transcribed-crds`, for `infra up --stack local`, which assumes the operators' CRDs are
installed. Not by default: without them the cluster is one where Strimzi is not installed, as chaos's preflight
tests need."""
KEEP = ("type", "properties", "required", "items", "enum", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
        "minProperties", "maxProperties", "description", "default")


def schemas_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "infra" / "schemas"


class _Converter:
    def __init__(self, defs: dict[str, Any], common: dict[str, Any], base: Path | None = None) -> None:
        self.defs, self.common, self.base = defs, common, base

    def ref(self, ref: str) -> dict[str, Any]:
        where, _, pointer = ref.partition("#")
        name = pointer.rsplit("/", 1)[-1]
        if where == "":
            return self.convert(self.defs[name])
        if where == "_common.json":
            return self.convert(self.common[name])
        if self.base is not None and (self.base / where).is_file():  # another transcription's definitions
            defs = json.loads((self.base / where).read_text()).get("$defs", {})
            return _Converter(defs, self.common, self.base).convert(defs[name])
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}  # a Kubernetes core type

    def convert(self, node: Any) -> dict[str, Any]:
        if not isinstance(node, dict):
            return {"x-kubernetes-preserve-unknown-fields": True}
        if "$ref" in node:
            return self.ref(str(node["$ref"]))
        out: dict[str, Any] = {k: v for k, v in node.items() if k in KEEP}
        # A conditional shape (if/then/else, anyOf, oneOf, allOf) cannot be said structurally: its branches'
        # fields are declared (so they are kept, not pruned), what each branch requires is left to the offline check.
        branches = [node[k] for k in ("then", "else") if isinstance(node.get(k), dict)]
        branches += [b for k in ("anyOf", "oneOf", "allOf") for b in node.get(k) or [] if isinstance(b, dict)]
        for branch in branches:
            for key, value in self.convert(branch).get("properties", {}).items():
                out.setdefault("properties", {}).setdefault(key, value)
        if "const" in node:
            out["enum"] = [node["const"]]
        if isinstance(out.get("type"), list):
            types = [t for t in out["type"] if t != "null"]
            out["type"] = types[0] if len(types) == 1 else None
            out["nullable"] = "null" in node["type"]
            if out["type"] is None:
                del out["type"]
        if "type" not in out and "enum" in out:
            kinds = {type(v).__name__ for v in out["enum"]}
            out["type"] = {"str": "string", "int": "integer", "bool": "boolean", "float": "number"}.get(
                kinds.pop(), "string") if len(kinds) == 1 else None
            if out["type"] is None:
                del out["type"]
        if "properties" in out:
            out["properties"] = {k: self.convert(v) for k, v in out["properties"].items()}
            out.setdefault("type", "object")
        if isinstance(node.get("additionalProperties"), dict) and "properties" not in out:
            out["additionalProperties"] = self.convert(node["additionalProperties"])
            out.setdefault("type", "object")
        if "items" in out:
            out["items"] = self.convert(out["items"])
            out.setdefault("type", "array")
            if node.get("uniqueItems") and out["items"].get("type") in ("string", "integer", "number", "boolean"):
                out["x-kubernetes-list-type"] = "set"
        open_object = out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out
        if "type" not in out or open_object:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out


def crd(path: Path) -> dict[str, Any]:
    """The CustomResourceDefinition for the kind `path` (an infra/schemas transcription) describes."""
    schema = json.loads(path.read_text())
    common = json.loads((path.parent / "_common.json").read_text()).get("$defs", {})
    props = schema["properties"]
    group, _, version = props["apiVersion"]["const"].partition("/")
    kind = props["kind"]["const"]
    plural = kind.lower() + "s"
    spec = _Converter(schema.get("$defs", {}), common, path.parent).convert(props["spec"])
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}",
                     "annotations": {"openbell.dev/source": f"transcription: infra/schemas/{path.name}"}},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": version, "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "required": ["spec"],
                                   "properties": {"spec": spec, "status": {
                                       "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
    }


def crds(directory: Path | None = None, names: tuple[str, ...] = TRANSCRIPTIONS) -> list[dict[str, Any]]:
    base = directory or schemas_dir()
    return [crd(base / name) for name in names if (base / name).is_file()]
