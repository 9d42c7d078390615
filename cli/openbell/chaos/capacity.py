"""Karpenter capacity during a zone-loss drill: keep NodePools from launching nodes in a zone, as an outage of
that zone would, and let them back afterwards.

`avoid_zone` appends one requirement (`topology.kubernetes.io/zone NotIn [zone]`) to each NodePool's template;
`allow_zone` removes exactly that requirement, wherever it sits, and nothing else. Both are idempotent: a
rollback after a method that never got as far as `avoid_zone` (the safeguard refused to start, the steady state
did not hold) has nothing to undo and says so, instead of failing a JSON-patch `test` at a guessed index and
reporting the platform as possibly not restored. Each patch carries a `test` of the requirements it read, so a
concurrent change to a NodePool is never overwritten (it is read again and retried).
"""

from __future__ import annotations

import time
from typing import Any

from openbell.errors import OpenbellError, SpecError

__all__ = ["allow_zone", "avoid_zone"]

NODEPOOLS = ("karpenter.sh", "v1", "nodepools")
ZONE_LABEL = "topology.kubernetes.io/zone"
REQUIREMENTS = "/spec/template/spec/requirements"


class CapacityError(OpenbellError):
    """A NodePool could not be patched."""


# --- pure ---------------------------------------------------------------------------------------------------


def zone_requirement(zone: str) -> dict[str, Any]:
    return {"key": ZONE_LABEL, "operator": "NotIn", "values": [zone]}


def avoided(requirements: list[dict[str, Any]], zone: str) -> list[dict[str, Any]] | None:
    """The requirements with the zone avoided; None when it already is (nothing to change)."""
    wanted = zone_requirement(zone)
    return None if wanted in requirements else [*requirements, wanted]


def allowed(requirements: list[dict[str, Any]], zone: str) -> list[dict[str, Any]] | None:
    """The requirements without the requirement `avoided` adds; None when it is not there."""
    wanted = zone_requirement(zone)
    return [r for r in requirements if r != wanted] if wanted in requirements else None


def requirements_of(nodepool: dict[str, Any]) -> list[dict[str, Any]]:
    return list((((nodepool.get("spec") or {}).get("template") or {}).get("spec") or {}).get("requirements") or [])


# --- what Chaos Toolkit calls -------------------------------------------------------------------------------


def avoid_zone(nodepools: list[str], zone: str, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """No new node of these NodePools in `zone` (Karpenter honours the extra NotIn requirement)."""
    return {"zone": zone, "changed": _each(nodepools, zone, avoided, secrets), "at": round(time.time(), 3)}


def allow_zone(nodepools: list[str], zone: str, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Undo `avoid_zone` (idempotent: a NodePool without the requirement is left as it is)."""
    return {"zone": zone, "changed": _each(nodepools, zone, allowed, secrets), "at": round(time.time(), 3)}


def _each(nodepools: list[str], zone: str, change: Any, secrets: dict[str, Any] | None) -> list[str]:
    if not nodepools or not all(isinstance(n, str) and n for n in nodepools):
        raise SpecError("nodepools", str(nodepools), "expected a list of NodePool names, e.g. [gateway, data]")
    if not isinstance(zone, str) or not zone or "${" in zone:
        raise SpecError("zone", str(zone), "expected a zone name, e.g. us-east-1a")
    from chaosk8s import create_k8s_api_client  # type: ignore[import-untyped]
    from kubernetes.client.rest import ApiException

    from kubernetes import client

    api = client.CustomObjectsApi(create_k8s_api_client(secrets))
    group, version, plural = NODEPOOLS
    changed = []
    for name in nodepools:
        for attempt in range(5):
            try:
                current = requirements_of(api.get_cluster_custom_object(group, version, plural, name))
            except ApiException as exc:
                raise CapacityError(f"NodePool {name}: {exc.status} {exc.reason}") from None
            new = change(current, zone)
            if new is None:
                break
            patch = [{"op": "test", "path": REQUIREMENTS, "value": current},
                     {"op": "replace", "path": REQUIREMENTS, "value": new}]
            try:
                api.patch_cluster_custom_object(group, version, plural, name, patch,
                                                _content_type="application/json-patch+json")
            except ApiException as exc:
                if exc.status in (409, 422) and attempt < 4:  # changed under us (the test op): read it again
                    time.sleep(0.2)
                    continue
                raise CapacityError(f"NodePool {name}: the API server refused the patch: {exc.status} "
                                    f"{str(exc.body or exc.reason)[:300]}") from None
            changed.append(name)
            break
    return changed
