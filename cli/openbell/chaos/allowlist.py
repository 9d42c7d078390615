"""Which experiments may run against which Kubernetes contexts and namespaces: nobody breaks production by a typo.

`openbell chaos run --target kubernetes` is refused unless one entry of the allow-list names the kube context
(exactly), the experiment, and every namespace the run touches: the current one (--namespace, else the
context's) and each one the experiment's activities name (`ns`, `namespace`, `pod_namespace`, `namespaces`).
The file is `$OPENBELL_CHAOS_ALLOW`, else `$XDG_CONFIG_HOME/openbell/chaos-allow.yaml` (default
`~/.config/openbell/chaos-allow.yaml`):

    allow:
      - context: staging-eks                 # kubeconfig context name, exact (no wildcard)
        namespaces: [openbell, kafka]        # every namespace the run touches, or ["*"]
        experiments: [gateway-pod-loss]      # experiment names, or ["*"]

No file, or no matching entry, is a refusal (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbell.errors import SpecError, UnreachableError, UsageError

ALLOW_ENV = "OPENBELL_CHAOS_ALLOW"


@dataclass(frozen=True)
class Rule:
    context: str
    namespaces: tuple[str, ...]
    experiments: tuple[str, ...]

    def allows(self, experiment: str, context: str, namespaces: set[str]) -> bool:
        return (self.context == context and ("*" in self.namespaces or namespaces <= set(self.namespaces))
                and ("*" in self.experiments or experiment in self.experiments))


def allow_file() -> Path:
    env = os.environ.get(ALLOW_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "openbell" / "chaos-allow.yaml"


def parse(doc: Any, source: str) -> list[Rule]:
    """Pure: the rules of an allow-list document; a malformed one is a SpecError naming the field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("allow"), list):
        raise SpecError(source, "allow", "expected a list of {context, namespaces, experiments} entries")
    rules = []
    for i, entry in enumerate(doc["allow"]):
        where = f"allow[{i}]"
        if not isinstance(entry, dict):
            raise SpecError(source, where, "expected a mapping with context, namespaces, experiments")
        unknown = sorted(set(entry) - {"context", "namespaces", "experiments"})
        if unknown:
            raise SpecError(source, f"{where}.{unknown[0]}", "unknown field; expected context, namespaces, experiments")
        context = entry.get("context")
        if not isinstance(context, str) or not context or "*" in context:
            raise SpecError(source, f"{where}.context", "expected one exact kube context name (no wildcard)")
        lists = {}
        for key in ("namespaces", "experiments"):
            value = entry.get(key)
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                raise SpecError(source, f"{where}.{key}", 'expected a non-empty list of names (or ["*"])')
            lists[key] = tuple(value)
        rules.append(Rule(context, lists["namespaces"], lists["experiments"]))
    return rules


def load(path: Path | None = None) -> list[Rule]:
    import yaml

    path = path or allow_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise UsageError(f"--target kubernetes: refused, no chaos allow-list at {path} (set ${ALLOW_ENV} or create "
                         "it: see `openbell chaos run --help`)") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(str(path), "", f"not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse(doc, str(path))


def check(rules: list[Rule], experiment: str, context: str, namespaces: set[str],
          source: str = "the allow-list") -> None:
    """Refuse (UsageError, exit 2) unless one rule allows this experiment in this context and all these
    namespaces."""
    if any(rule.allows(experiment, context, namespaces) for rule in rules):
        return
    listed = ", ".join(repr(n) for n in sorted(namespaces))
    raise UsageError(f"--target kubernetes: refused, {source} does not allow experiment {experiment!r} in "
                     f"context {context!r}, namespace{'s' if len(namespaces) > 1 else ''} {listed}")


def experiment_namespaces(document: dict[str, Any]) -> set[str]:
    """The namespaces an experiment's activities name literally (`ns`, `namespace`, `pod_namespace` arguments,
    and each of a `namespaces` list, as openbell.chaos.nodes' drain takes), tolerances and rollbacks included;
    values substituted at run time (`${...}`) are not knowable here."""
    found: set[str] = set()

    def named(value: Any) -> None:
        if isinstance(value, str) and value and "${" not in value:
            found.add(value)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            arguments = node.get("arguments")
            if isinstance(arguments, dict):
                for key in ("ns", "namespace", "pod_namespace"):
                    named(arguments.get(key))
                listed = arguments.get("namespaces")
                for value in listed if isinstance(listed, list) else []:
                    named(value)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([document.get("steady-state-hypothesis"), document.get("method"), document.get("rollbacks")])
    return found


def current_context(kube_context: str | None = None, namespace: str | None = None) -> tuple[str, str]:
    """The kube context (--context, else the kubeconfig's current one) and namespace (--namespace, else the
    context's, else "default")."""
    try:
        from kubernetes import config
    except ImportError:
        raise UnreachableError("--target kubernetes needs the kubernetes client (the kubernetes extra)") from None
    try:
        contexts, active = config.list_kube_config_contexts()
    except Exception as exc:  # ConfigException, a missing or unreadable kubeconfig
        raise UnreachableError(f"--target kubernetes: no usable kubeconfig ({exc})") from None
    chosen = active
    if kube_context:
        chosen = next((c for c in contexts or [] if c.get("name") == kube_context), None)
        if chosen is None:
            raise UsageError(f"--context {kube_context!r}: not in the kubeconfig")
    if not chosen:
        raise UnreachableError("--target kubernetes: the kubeconfig has no current context")
    ns = namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return str(chosen["name"]), str(ns)
