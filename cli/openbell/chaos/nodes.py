"""Node faults for the Kubernetes experiments: cordon and drain nodes (a spot node as Karpenter's termination
drains it, or every node of a zone), and put back exactly what was changed.

Why not chaostoolkit-kubernetes' `drain_nodes` or `kubectl drain`:
- `drain_nodes` (0.39.0) dies with a TypeError on a pod without volumes (the gateway's pods have none) after
  cordoning the node and before evicting anything;
- both drain every namespace of the node, which the chaos allow-list cannot see (it checks the namespaces an
  experiment names), and on a shared cluster that is other teams' pods; `kubectl` also ignores `--context`
  (the Kubernetes context `openbell chaos run` checked against the allow-list reaches chaostoolkit-kubernetes
  as $KUBERNETES_CONTEXT, which this module honours too);
- `uncordon_node` by label uncordons every node of the label, including one an operator had cordoned before the
  experiment for a reason of their own.

So `drain_nodes` drains only the pods of the namespaces it is given, and marks every node it cordons (label
`chaos.openbell.dev/cordoned`); `restore_nodes` uncordons marked nodes only, and is idempotent, so a rollback can
always run, whether the method finished, failed half way or was stopped by the SLO safeguard.

The decisions (which nodes, which pods, which patch) are pure functions of plain dicts, unit-tested; the
functions Chaos Toolkit calls fetch, decide, then act.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import Any

from openbell.errors import OpenbellError, SpecError

__all__ = ["drain_nodes", "nodes_schedulable", "restore_nodes"]

MARK_LABEL = "chaos.openbell.dev/cordoned"
"""On a node this module cordoned (value "true"): what `restore_nodes` will uncordon."""


class NodeFaultError(OpenbellError):
    """A node fault could not be injected or completed (Chaos Toolkit records the activity as failed)."""


# --- pure: what to do -------------------------------------------------------------------------------------


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def is_cordoned(node: dict[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def is_ours(node: dict[str, Any]) -> bool:
    return _labels(node).get(MARK_LABEL) == "true"


def is_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def cordon_patch(node: dict[str, Any]) -> dict[str, Any] | None:
    """The patch that cordons `node` and marks it ours; None when it is cordoned already (by us, or by someone
    else: then it is not marked, so the rollback leaves it as it was found)."""
    if is_cordoned(node):
        return None
    return {"metadata": {"labels": {MARK_LABEL: "true"}}, "spec": {"unschedulable": True}}


def restore_patch(node: dict[str, Any]) -> dict[str, Any] | None:
    """The patch that undoes `cordon_patch`; None for a node this module did not cordon."""
    if not is_ours(node):
        return None
    return {"metadata": {"labels": {MARK_LABEL: None}}, "spec": {"unschedulable": False}}


def node_name_of(pod: dict[str, Any]) -> str | None:
    return (pod.get("spec") or {}).get("nodeName")


def hosting_nodes(nodes: list[dict[str, Any]], pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes (in their order) that host at least one of `pods`."""
    used = {node_name_of(p) for p in pods}
    return [n for n in nodes if n["metadata"]["name"] in used]


def drain_candidates(pods: Iterable[dict[str, Any]], node_names: set[str]) -> list[dict[str, Any]]:
    """The pods on `node_names` a drain removes: not DaemonSet pods (a drain leaves them, as `kubectl drain
    --ignore-daemonsets` does) and not static (mirror) pods, which the API cannot remove."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if node_name_of(pod) not in node_names:
            continue
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            continue
        if any(o.get("kind") == "DaemonSet" and o.get("controller") for o in meta.get("ownerReferences") or []):
            continue
        out.append(pod)
    return out


def pick(nodes: list[dict[str, Any]], count: int | None, rng: random.Random | None = None) -> list[dict[str, Any]]:
    """`count` distinct nodes at random (all of them when count is None)."""
    if count is None or count >= len(nodes):
        return list(nodes)
    if count < 1:
        raise SpecError("drain_nodes", "count", f"expected at least 1, got {count}")
    return (rng or random.Random()).sample(nodes, count)


def pod_ref(pod: dict[str, Any]) -> dict[str, str]:
    meta = pod["metadata"]
    return {"namespace": str(meta["namespace"]), "pod": str(meta["name"]), "uid": str(meta.get("uid", "")),
            "node": str(node_name_of(pod) or "")}


# --- what Chaos Toolkit calls -----------------------------------------------------------------------------


def drain_nodes(label_selector: str, namespaces: list[str], hosting: str | None = None, count: int | None = None,
                evict: bool = True, grace_period_s: int | None = None, timeout_s: float = 300.0,
                secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Cordon the nodes matching `label_selector` (with `hosting`, only those hosting a pod of that label
    selector in one of `namespaces`; with `count`, that many of them at random) and remove their pods of
    `namespaces`: through the Eviction API when `evict` (PodDisruptionBudgets respected: an eviction they refuse
    is retried until `timeout_s`), else deleted outright with `grace_period_s` (a zone going dark does not ask
    PDBs). Returns once every removed pod is gone, with the nodes and pods it touched; raises (the nodes stay
    cordoned for the rollback to restore) when a selector matches nothing or the pods outlive `timeout_s`."""
    if not namespaces or not all(isinstance(n, str) and n for n in namespaces):
        raise SpecError("drain_nodes", "namespaces", "expected the namespaces whose pods are drained, e.g. [openbell]")
    if not 0 < timeout_s <= 3600:
        raise SpecError("drain_nodes", "timeout_s", f"expected 0 < timeout_s <= 3600, got {timeout_s:g}")
    core, api = _core(secrets)
    started = time.monotonic()
    nodes = _serialise(api, core.list_node(label_selector=label_selector).items)
    if not nodes:
        raise NodeFaultError(f"no node matches {label_selector!r}")
    if hosting:
        pods = [p for ns in namespaces for p in _serialise(api, core.list_namespaced_pod(
            ns, label_selector=hosting).items)]
        nodes = hosting_nodes(nodes, pods)
        if not nodes:
            raise NodeFaultError(f"no node matching {label_selector!r} hosts a pod {hosting!r} in "
                                 f"{', '.join(namespaces)}")
    chosen = pick(nodes, count)
    names = {n["metadata"]["name"] for n in chosen}
    cordoned = []
    for node in chosen:
        patch = cordon_patch(node)
        if patch is not None:
            core.patch_node(node["metadata"]["name"], patch)
            cordoned.append(node["metadata"]["name"])
    victims = [p for ns in namespaces for p in drain_candidates(_serialise(api, core.list_namespaced_pod(ns).items),
                                                                   names)]
    pending = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in victims}
    removed: set[tuple[str, str]] = set()
    refused: dict[str, str] = {}
    deadline = started + timeout_s
    while pending:
        for key, pod in list(pending.items()):
            if key not in removed:
                why = _remove(core, pod, evict, grace_period_s)
                if why is None:
                    removed.add(key)
                else:
                    refused[key[1]] = why
            if key in removed and _gone(core, pod):
                del pending[key]
                refused.pop(key[1], None)
        if not pending:
            break
        if time.monotonic() >= deadline:
            left = ", ".join(f"{ns}/{name}" + (f" ({refused[name]})" if name in refused else "")
                             for ns, name in sorted(pending))
            raise NodeFaultError(f"drain of {', '.join(sorted(names))}: pods still there after {timeout_s:g}s: "
                                 f"{left}")
        time.sleep(0.5)
    return {"nodes": sorted(names), "cordoned": sorted(cordoned), "namespaces": list(namespaces),
            "drained": [pod_ref(p) for p in victims], "evicted": bool(evict),
            "took_s": round(time.monotonic() - started, 3), "at": round(time.time(), 3)}


def restore_nodes(label_selector: str | None = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Uncordon every node `drain_nodes` cordoned (optionally only among `label_selector`) and drop its mark.
    A node someone else cordoned is left alone; nothing to restore is success (rollbacks always run)."""
    core, api = _core(secrets)
    selector = f"{MARK_LABEL}=true" + (f",{label_selector}" if label_selector else "")
    restored = []
    for node in _serialise(api, core.list_node(label_selector=selector).items):
        patch = restore_patch(node)
        if patch is not None:
            core.patch_node(node["metadata"]["name"], patch)
            restored.append(node["metadata"]["name"])
    return {"restored": sorted(restored), "at": round(time.time(), 3)}


def nodes_schedulable(label_selector: str, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe: every node matching `label_selector` is Ready and schedulable (not cordoned). `ok` is False when
    no node matches. chaostoolkit-kubernetes' `all_nodes_must_be_ready_to_schedule` checks Ready only: a
    cordoned node passes it."""
    core, api = _core(secrets)
    nodes = _serialise(api, core.list_node(label_selector=label_selector).items)
    states = {n["metadata"]["name"]: {"ready": is_ready(n), "cordoned": is_cordoned(n)} for n in nodes}
    good = bool(states) and all(s["ready"] and not s["cordoned"] for s in states.values())
    return {"ok": good, "selector": label_selector, "nodes": states}


# --- I/O helpers ------------------------------------------------------------------------------------------


def _core(secrets: dict[str, Any] | None) -> tuple[Any, Any]:
    """The CoreV1Api chaostoolkit-kubernetes would use: same kubeconfig, same $KUBERNETES_CONTEXT."""
    from chaosk8s import create_k8s_api_client  # type: ignore[import-untyped]

    from kubernetes import client

    api = create_k8s_api_client(secrets)
    return client.CoreV1Api(api), api


def _serialise(api: Any, items: list[Any]) -> list[dict[str, Any]]:
    return list(api.sanitize_for_serialization(items))


def _remove(core: Any, pod: dict[str, Any], evict: bool, grace_period_s: int | None) -> str | None:
    """Evict or delete one pod: None when done (or already gone), else why it was refused for now (a PDB)."""
    from kubernetes.client.rest import ApiException

    from kubernetes import client

    meta = pod["metadata"]
    options = client.V1DeleteOptions(grace_period_seconds=grace_period_s,
                                      preconditions=client.V1Preconditions(uid=meta.get("uid")))
    try:
        if evict:
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=meta["name"], namespace=meta["namespace"]),
                                     delete_options=options)
            core.create_namespaced_pod_eviction(meta["name"], meta["namespace"], body)
        else:
            core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options)
    except ApiException as exc:
        if exc.status == 404 or (exc.status == 409 and "uid" in str(exc.body or "").lower()):
            return None  # gone already, or another pod of that name (ours went)
        if exc.status == 429:  # a PodDisruptionBudget says not now
            return "a PodDisruptionBudget refuses the eviction for now"
        raise NodeFaultError(f"{'evicting' if evict else 'deleting'} {meta['namespace']}/{meta['name']}: "
                             f"{exc.status} {exc.reason}: {str(exc.body or '')[:300]}") from None
    return None


def _gone(core: Any, pod: dict[str, Any]) -> bool:
    """The pod object is gone (a replacement of the same name, as a StatefulSet makes, is another uid)."""
    from kubernetes.client.rest import ApiException

    meta = pod["metadata"]
    try:
        now = core.read_namespaced_pod(meta["name"], meta["namespace"])
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return bool(now.metadata.uid != meta.get("uid"))
