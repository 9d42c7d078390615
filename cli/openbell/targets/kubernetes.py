"""Kubernetes target: the canary is a Deployment openbell manages, the router a Gateway API HTTPRoute.

Expected on the cluster (docs/kubernetes-canary.md): Deployment `<service>` whose pods carry `role: stable`
(in its selector too), Services `<service>-stable` / `<service>-canary` selecting `role: stable|canary`, and an
HTTPRoute `<service>` with a backendRef to `<service>-stable`. openbell creates `<service>-canary`, moves the
route's weights, and keeps its run state in ConfigMap and Lease `openbell-canary-<service>`.

The pure builders below work on plain dicts (unit-tested against the API schemas); `KubeApi` is the only
place that talks to the API server, through the official `kubernetes` client imported when first needed,
so `openbell --help` never pays for it.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from openbell.errors import OpenbellError, SpecError, UnreachableError, UsageError
from openbell.targets.base import CanaryTarget, MetricScope, RunConflict, RunStore, Traffic

ROLE = "role"
MANAGED_BY = "app.kubernetes.io/managed-by"
CANARY_VERSION = "openbell.dev/canary-version"
# Copied from the stable these would lie about the canary: kubectl's record of what it applied, and the
# Deployment controller's revision counter.
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")
STATE_KEY = "state.json"
REQUEST_KEY = "request"
CONFIGMAP_MAX_BYTES = 1024 * 1024
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API. Deployments and Leases go through CustomObjectsApi too: it sends
    dicts verbatim, where the typed APIs of recent clients re-serialise bodies through their models (which
    rewrites a Lease's MicroTime and refuses fields the client does not know)."""

    group: str
    version: str
    plural: str
    kind: str

    def ref(self, name: str) -> str:
        return f"{self.kind.lower()}/{name}"


DEPLOYMENT = Kind("apps", "v1", "deployments", "Deployment")
HTTPROUTE = Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
LEASE = Kind("coordination.k8s.io", "v1", "leases", "Lease")


# ---- images -----------------------------------------------------------------------------------------------

def image_repository(ref: str) -> str:
    """The image reference without its tag or digest (a registry's :port is not a tag)."""
    name = ref.split("@", 1)[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


def image_version(ref: str) -> str:
    """The tag of an image reference, else its digest, else "latest" (what the runtime pulls)."""
    name, _, digest = ref.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[colon + 1:]
    return digest or "latest"


def versioned_image(current: str, version: str, image: str | None = None) -> str:
    """`current` retagged to `version` (a tag, or a digest like sha256:...); `image`, when given, replaces the
    repository, and is used as is when it carries its own tag or digest."""
    if DIGEST.match(version):
        sep = "@"
    elif TAG.match(version):
        sep = ":"
    else:
        raise SpecError("--version", version, "expected an image tag ([A-Za-z0-9_.-], at most 128 characters)"
                                              " or a digest such as sha256:<hex>")
    if image and ("@" in image or image_repository(image) != image):
        return image
    return f"{image_repository(image or current)}{sep}{version}"


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The service's container: the one named like the Deployment, or the only one."""
    name = deployment["metadata"]["name"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c.get("name") == name]
    found: list[dict[str, Any]] = named or (containers if len(containers) == 1 else [])
    if found:
        return found[0]
    raise SpecError(f"deployment/{name}", "spec.template.spec.containers",
                    f"expected a container named {name} (there are {len(containers)})")


# ---- Deployments ------------------------------------------------------------------------------------------

def _stable_selector(stable: dict[str, Any]) -> dict[str, str]:
    name = stable["metadata"]["name"]
    labels: dict[str, str] = stable["spec"].get("selector", {}).get("matchLabels") or {}
    # Without role: stable in its selector the stable Deployment would also select the canary's pods.
    if labels.get(ROLE) != "stable":
        raise SpecError(f"deployment/{name}", "spec.selector.matchLabels",
                        f"expected {ROLE}: stable, so that the stable selector leaves the canary's pods alone")
    return labels


def canary_deployment(stable: dict[str, Any], version: str, image: str | None = None) -> dict[str, Any]:
    """The apps/v1 Deployment `<stable>-canary`: the stable's spec at 1 replica, `role: canary` in selector and
    pod labels, the service's container at `version` (or `image`), marked as openbell's."""
    _stable_selector(stable)
    meta = stable["metadata"]
    spec = copy.deepcopy(stable["spec"])
    spec["replicas"] = 1
    spec["selector"]["matchLabels"][ROLE] = "canary"
    template = spec["template"].setdefault("metadata", {})
    template.pop("creationTimestamp", None)
    template["labels"] = {**(template.get("labels") or {}), ROLE: "canary"}
    template["annotations"] = {**(template.get("annotations") or {}), CANARY_VERSION: version}
    container = _container({"metadata": meta, "spec": spec})
    container["image"] = versioned_image(container["image"], version, image)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in DROPPED_ANNOTATIONS}
    metadata: dict[str, Any] = {
        "name": f"{meta['name']}-canary",
        "labels": {**(meta.get("labels") or {}), ROLE: "canary", MANAGED_BY: "openbell"},
        "annotations": {**annotations, CANARY_VERSION: version},
    }
    if meta.get("namespace"):
        metadata["namespace"] = meta["namespace"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def stable_replace_patch(stable: dict[str, Any], version: str, image: str | None = None) -> dict[str, Any]:
    """A strategic merge patch moving the stable Deployment's container to `version`, rolling with
    maxUnavailable 0 (new pods are ready before old ones drain) unless its owner chose otherwise."""
    name = stable["metadata"]["name"]
    container = _container(stable)
    patch: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [
        {"name": container["name"], "image": versioned_image(container["image"], version, image)}]}}}}
    strategy = stable["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise SpecError(f"deployment/{name}", "spec.strategy.type",
                        f"expected RollingUpdate: {strategy.get('type')} would stop every pod and drop every"
                        " connection at once on promotion")
    rolling = strategy.get("rollingUpdate") or {}
    # The API server writes its default (25%) into every Deployment it stores, so 25% reads as "not set".
    if str(rolling.get("maxUnavailable", "25%")) == "25%":
        update: dict[str, Any] = {"maxUnavailable": 0}
        if str(rolling.get("maxSurge", "25%")) in ("0", "0%"):
            update["maxSurge"] = 1  # both 0 is invalid: nothing could move
        patch["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": update}
    return patch


def rollout_pending(deployment: dict[str, Any]) -> str | None:
    """None when the Deployment's latest spec runs everywhere (observed, every replica updated, ready and
    available, no old pods left); else what it is still waiting for, in words."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration", 0)) < int(deployment.get("metadata", {}).get("generation", 0)):
        # Seen on an API server without kube-controller-manager: nothing ever observes the spec.
        return ("the Deployment controller has not observed the latest spec (generation"
                f" {deployment.get('metadata', {}).get('generation')}, observed {status.get('observedGeneration', 0)}:"
                " is kube-controller-manager running?)")
    for key, what in (("updatedReplicas", "updated"), ("readyReplicas", "ready"), ("availableReplicas", "available")):
        if int(status.get(key, 0)) < want:
            return f"{status.get(key, 0)}/{want} {what}"
    if int(status.get("replicas", 0)) > want:
        return f"{int(status['replicas']) - want} old replicas terminating"
    return None


def deletion_pending(obj: dict[str, Any] | None) -> str | None:
    """None when the object is gone; else why it is still there, in words: a foreground deletion keeps the
    object, with its finalizers, until the garbage collector has removed its dependents and then them."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    if not meta.get("deletionTimestamp"):
        return "still present (not being deleted)"
    finalizers = meta.get("finalizers") or []
    if not finalizers:
        return f"being deleted since {meta['deletionTimestamp']}"
    why = " (the garbage collector in kube-controller-manager removes it once the dependents are gone)" \
        if "foregroundDeletion" in finalizers else ""
    return f"being deleted since {meta['deletionTimestamp']}, finalizers pending: {', '.join(finalizers)}{why}"


# ---- HTTPRoute --------------------------------------------------------------------------------------------

def _is_service(ref: dict[str, Any], name: str) -> bool:
    return ref.get("name") == name and ref.get("kind", "Service") == "Service" and ref.get("group", "") == ""


def route_weights_patch(route: dict[str, Any], stable_svc: str, canary_svc: str, percent: int) -> dict[str, Any]:
    """A JSON merge patch of the HTTPRoute: every rule that sends to `stable_svc` gets backendRefs
    [stable 100-percent, canary percent] on the stable's port. Lists merge whole, so the patch carries every
    rule; the read's resourceVersion makes the API server refuse it (409) if the route changed meanwhile."""
    name = route.get("metadata", {}).get("name", "?")
    if not 0 <= percent <= 100:
        raise UsageError(f"canary weight {percent}: expected a percentage, 0 to 100")
    rules = copy.deepcopy(route.get("spec", {}).get("rules") or [])
    touched = 0
    for rule in rules:
        stable = next((r for r in rule.get("backendRefs") or [] if _is_service(r, stable_svc)), None)
        if stable is not None:
            rule["backendRefs"] = [{**stable, "weight": 100 - percent},
                                   {**stable, "name": canary_svc, "weight": percent}]
            touched += 1
    if not touched:
        raise SpecError(f"httproute/{name}", "spec.rules[].backendRefs",
                        f"expected a backendRef to Service {stable_svc}")
    patch: dict[str, Any] = {"spec": {"rules": rules}}
    if route.get("metadata", {}).get("resourceVersion"):
        patch["metadata"] = {"resourceVersion": route["metadata"]["resourceVersion"]}
    return patch


def route_weight(route: dict[str, Any], canary_svc: str) -> int:
    """The canary's share, percent, of the rules that send to it (weights need not total 100; an unset weight
    is 1, as Gateway API defaults it). The largest share when rules disagree; 0 when no rule names it."""
    share = 0
    for rule in route.get("spec", {}).get("rules") or []:
        refs = rule.get("backendRefs") or []
        total = sum(int(r.get("weight", 1)) for r in refs)
        for ref in refs:
            if _is_service(ref, canary_svc) and total > 0:
                share = max(share, round(100 * int(ref.get("weight", 1)) / total))
    return share


# ---- run state and lock -----------------------------------------------------------------------------------

def state_name(service: str) -> str:
    return f"openbell-canary-{service}"


def _labels(service: str) -> dict[str, str]:
    return {MANAGED_BY: "openbell", "openbell.dev/service": service}


def state_configmap(service: str, namespace: str, document: dict[str, Any]) -> dict[str, Any]:
    """ConfigMap `openbell-canary-<service>` holding the rollout document as `state.json`."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > CONFIGMAP_MAX_BYTES:
        raise OpenbellError(f"the rollout state of {service} is {len(text.encode())} bytes; a ConfigMap holds 1 MiB")
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": state_name(service), "namespace": namespace, "labels": _labels(service)},
            "data": {STATE_KEY: text}}


def micro_time(at: datetime) -> str:
    """`at` as a Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(service: str, namespace: str, owner: str, now: datetime, duration_s: int) -> dict[str, Any]:
    """coordination.k8s.io/v1 Lease `openbell-canary-<service>` held by `owner` from `now` for `duration_s`."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": state_name(service), "namespace": namespace, "labels": _labels(service)},
            "spec": {"holderIdentity": owner, "acquireTime": micro_time(now), "renewTime": micro_time(now),
                     "leaseDurationSeconds": duration_s}}


def lease_expiry(lease_obj: dict[str, Any]) -> datetime | None:
    """When the lease lapses: renewTime (else acquireTime) + leaseDurationSeconds; None if it cannot say."""
    spec = lease_obj.get("spec") or {}
    stamp, duration = spec.get("renewTime") or spec.get("acquireTime"), spec.get("leaseDurationSeconds")
    if not stamp or duration is None:
        return None
    return datetime.fromisoformat(stamp) + timedelta(seconds=int(duration))


def holder_gone(holder: str, host: str, alive: Callable[[int], bool]) -> bool:
    """True when `holder` ("host:pid", what the canary controller writes) is a process of this host that no
    longer exists: a run killed with -9 here. Its lease would block `resume` until it lapses; it is dead for
    sure, so it holds nothing. A holder on another host is only ever judged by its lease."""
    parts = holder.split(":")
    if len(parts) < 2 or parts[0] != host or not parts[1].isdigit():
        return False
    return not alive(int(parts[1]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_holder(lease_obj: dict[str, Any] | None, now: datetime, host: str | None = None,
                alive: Callable[[int], bool] = _pid_alive) -> str | None:
    """Who holds the lock at `now`: None when the Lease is absent, released, or expired (a holder that died
    stops renewing, so it never blocks forever; a Lease without times counts as expired for the same reason),
    or, given this `host`, held by a process of this host that is gone."""
    if lease_obj is None or not (lease_obj.get("spec") or {}).get("holderIdentity"):
        return None
    expiry = lease_expiry(lease_obj)
    holder = str(lease_obj["spec"]["holderIdentity"])
    if expiry is None or expiry <= now or (host is not None and holder_gone(holder, host, alive)):
        return None
    return holder


# ---- the API server ---------------------------------------------------------------------------------------

class NotFound(UnreachableError):
    """The API server answered 404 for a named object."""


class Conflict(OpenbellError):
    """The API server answered 409: the object exists already, or changed since it was read."""


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kubernetes() -> Any:
    try:
        return importlib.import_module("kubernetes")
    except ImportError as exc:
        raise UnreachableError("target kubernetes: the `kubernetes` Python package is not installed"
                               " (pip install kubernetes)") from exc


class KubeApi:
    """The calls the target makes, on plain dicts, in one namespace; every failure is one OpenbellError line."""

    def __init__(self, namespace: str, core: Any, apps: Any, custom: Any, host: str = "",
                 timeout_s: float = 30.0) -> None:
        """`timeout_s` bounds each HTTP call to the API server."""
        self.namespace, self.core, self.apps, self.custom = namespace, core, apps, custom
        self.host, self.timeout_s = host, timeout_s

    @classmethod
    def connect(cls, namespace: str, context: str | None, kubeconfig: str | None = None,
                timeout_s: float = 30.0) -> KubeApi:
        """Credentials from the kubeconfig (`kubeconfig`, else $KUBECONFIG, else ~/.kube/config; `context` or its
        current one), or the pod's service account when running in a cluster without one."""
        kubernetes = _kubernetes()
        client, config = kubernetes.client, kubernetes.config
        cfg = client.Configuration()
        # Read $KUBECONFIG now: the client reads it once, when first imported.
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        in_cluster = context is None and path is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        try:
            if in_cluster and not os.path.exists(os.path.expanduser("~/.kube/config")):
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
        except Exception as exc:  # ConfigException, or OSError/YAML errors from a broken file
            where = "in-cluster service account" if in_cluster else f"kubeconfig {path or '~/.kube/config'}"
            where += f" (context {context})" if context else ""
            raise UnreachableError(f"target kubernetes: no usable {where}: {_one_line(str(exc))}") from exc
        # The pod proxy's path carries the gateway's query (?fraction=F): the generated client escapes path
        # parameters whole, so '/', '?' and '=' would reach the pod as %2F, %3F, %3D. This Configuration is
        # ours alone, and object names (DNS labels) never contain these characters.
        cfg.safe_chars_for_path_param = "/?="
        api = client.ApiClient(configuration=cfg)
        return cls(namespace, client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api), cfg.host,
                   timeout_s)

    def _call(self, action: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout_s)
        try:
            return fn(*args, **kwargs)
        except OpenbellError:
            raise
        except Exception as exc:
            raise self._error(action, what, exc) from exc

    def _error(self, action: str, what: str, exc: Exception) -> Exception:
        status = getattr(exc, "status", None)
        where = f"{what} in namespace {self.namespace}"
        if not isinstance(status, int) or status == 0:
            try:
                urllib3_error: type[Exception] = importlib.import_module("urllib3.exceptions").HTTPError
            except ImportError:
                urllib3_error = OSError
            if isinstance(exc, urllib3_error | OSError):
                # urllib3 nests the cause (MaxRetryError > NewConnectionError > ...): its last words say it.
                cause = str(getattr(exc, "reason", None) or exc).rsplit(": ", 1)[-1]
                return UnreachableError(f"target kubernetes: the API server {self.host} cannot be reached"
                                        f" ({_one_line(cause)})")
            return exc
        try:
            message = json.loads(getattr(exc, "body", None) or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = ""
        message = _one_line(message or getattr(exc, "reason", "") or "")
        if status in (401, 403):
            return UnreachableError(f"target kubernetes: not allowed: {action} {where} ({message})")
        if status == 404:
            return NotFound(f"target kubernetes: {where} not found")
        if status == 409:
            return Conflict(f"target kubernetes: {action} {where}: {message}")
        if status in (400, 422):
            return OpenbellError(f"target kubernetes: the API server refused to {action} {where}: {message}")
        return UnreachableError(f"target kubernetes: {action} {where}: HTTP {status} {message}")

    def _custom(self, kind: Kind) -> tuple[str, str, str, str]:
        return kind.group, kind.version, self.namespace, kind.plural

    def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object, None when it does not exist."""
        try:
            return _dict(self._call("get", kind.ref(name), self.custom.get_namespaced_custom_object,
                                    *self._custom(kind), name))
        except NotFound:
            return None

    def create(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        return _dict(self._call("create", kind.ref(body["metadata"]["name"]),
                                self.custom.create_namespaced_custom_object, *self._custom(kind), body))

    def replace(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        """PUT; with metadata.resourceVersion set, only if nobody changed the object since (else Conflict)."""
        name = body["metadata"]["name"]
        return _dict(self._call("replace", kind.ref(name), self.custom.replace_namespaced_custom_object,
                                *self._custom(kind), name, body))

    def patch(self, kind: Kind, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (what the client sends for a dict to CustomObjectsApi, in every version)."""
        return _dict(self._call("patch", kind.ref(name), self.custom.patch_namespaced_custom_object,
                                *self._custom(kind), name, body))

    def patch_deployment(self, name: str, body: dict[str, Any]) -> None:
        """A strategic merge patch (the client's choice for a dict to a built-in kind): containers merge by name."""
        self._call("patch", f"deployment/{name}", self.apps.patch_namespaced_deployment, name, self.namespace, body,
                   _preload_content=False)

    def delete(self, kind: Kind, name: str) -> bool:
        """Delete in the foreground (dependents first); False when it was already gone."""
        try:
            self._call("delete", kind.ref(name), self.custom.delete_namespaced_custom_object,
                       *self._custom(kind), name, propagation_policy="Foreground")
            return True
        except NotFound:
            return False

    def _json(self, response: Any) -> dict[str, Any]:
        try:
            return _dict(json.loads(response.data))
        except ValueError as exc:
            raise UnreachableError(f"target kubernetes: the API server {self.host} answered without JSON") from exc

    def service(self, name: str) -> dict[str, Any]:
        return self._json(self._call("get", f"service/{name}", self.core.read_namespaced_service, name,
                                     self.namespace, _preload_content=False))

    def configmap(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self._call("get", f"configmap/{name}", self.core.read_namespaced_config_map, name,
                                         self.namespace, _preload_content=False))
        except NotFound:
            return None

    def put_configmap(self, body: dict[str, Any]) -> None:
        """Create, or when it exists merge `body`'s data keys into it (one request either way: a reader sees the
        old or the new value of each key; keys `body` does not name are left alone)."""
        name = body["metadata"]["name"]
        try:
            self._call("create", f"configmap/{name}", self.core.create_namespaced_config_map, self.namespace,
                       body, _preload_content=False)
        except Conflict:
            self.patch_configmap(name, {"data": body["data"]})

    def patch_configmap(self, name: str, body: dict[str, Any]) -> None:
        """A strategic merge patch: a null value deletes the key; metadata.resourceVersion makes it conditional."""
        self._call("patch", f"configmap/{name}", self.core.patch_namespaced_config_map, name, self.namespace,
                   body, _preload_content=False)

    def pods(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        listing = self._json(self._call("list", f"pods {text}", self.core.list_namespaced_pod, self.namespace,
                                        label_selector=text, _preload_content=False))
        return list(listing.get("items") or [])

    def drain(self, pod: str, port: int, fraction: float) -> int:
        """POST /admin/drain?fraction=F to one pod through the API server's pod proxy; connections closed."""
        response = self._call("drain", f"pod/{pod}", self.core.connect_post_namespaced_pod_proxy_with_path,
                              f"{pod}:{port}", self.namespace, f"admin/drain?fraction={fraction:g}",
                              _preload_content=False)
        try:
            return int(self._json(response)["closed"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UnreachableError(f"target kubernetes: pod/{pod} answered /admin/drain without"
                                   " {\"closed\": N}: is it a gateway?") from exc


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnreachableError(f"target kubernetes: expected a JSON object, got {type(value).__name__}")
    return value


def pod_ready(pod: dict[str, Any]) -> bool:
    """Running, Ready, and not on its way out."""
    status = pod.get("status") or {}
    if pod.get("metadata", {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_problems(pods: list[dict[str, Any]]) -> list[str]:
    """Why pods are not ready, from their containers' waiting states (CrashLoopBackOff, ImagePullBackOff...)."""
    problems = []
    for pod in pods:
        for c in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (c.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                problems.append(f"{pod['metadata']['name']}: {waiting['reason']}")
    return problems


class RolloutTimeout(UnreachableError):
    """A bounded wait on the cluster ran out (exit 3)."""


# ---- the target -------------------------------------------------------------------------------------------

@dataclass
class KubernetesTarget(CanaryTarget):
    """The gateway on a cluster: canary Deployment `<service>-canary`, weights on HTTPRoute `<route>`.

    Times are seconds. `prometheus` is the Prometheus that scrapes the gateway pods (required)."""

    namespace: str = "openbell"
    kube_context: str | None = None
    kubeconfig: str | None = None  # default $KUBECONFIG, then ~/.kube/config
    prometheus: str | None = None
    route: str = ""  # default: the service's name
    image: str | None = None  # another repository (or a full reference) for the canary and the promotion
    admin_port: int = 8080  # the gateway's HTTP port, where /admin/drain listens
    ready_timeout_s: float = 300.0
    rollout_timeout_s: float = 900.0
    delete_timeout_s: float = 180.0
    poll_s: float = 2.0
    route_settle_s: float = 3.0
    request_timeout_s: float = 30.0
    lease_s: int = 60
    api: KubeApi | None = field(default=None, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    name: str = "kubernetes"

    def __post_init__(self) -> None:
        if not self.prometheus:
            raise UsageError("target kubernetes needs a Prometheus URL: the canary's gates and its traffic are"
                             " read from the gateway pods' series there")
        self.route = self.route or self.service

    @property
    def canary_name(self) -> str:
        return f"{self.service}-canary"

    @property
    def stable_svc(self) -> str:
        return f"{self.service}-stable"

    @property
    def canary_svc(self) -> str:
        return f"{self.service}-canary"

    def _kube(self) -> KubeApi:
        if self.api is None:
            self.api = KubeApi.connect(self.namespace, self.kube_context, self.kubeconfig, self.request_timeout_s)
        return self.api

    def _stable(self) -> dict[str, Any]:
        found = self._kube().get(DEPLOYMENT, self.service)
        if found is None:
            raise NotFound(f"target kubernetes: deployment/{self.service} not found in namespace {self.namespace}")
        return found

    def _route(self) -> dict[str, Any]:
        found = self._kube().get(HTTPROUTE, self.route)
        if found is None:
            raise NotFound(f"target kubernetes: httproute/{self.route} not found in namespace {self.namespace}"
                           " (are the Gateway API CRDs installed?)")
        return found

    def prometheus_url(self) -> str:
        return str(self.prometheus)

    def scrape_interval_s(self) -> float:
        """How often Prometheus scrapes the service's pods, from its own targets (the judge's rate windows and
        sample counts follow it); 15 s, the Prometheus Operator's default, when it cannot say."""
        from openbell.metrics.prometheus import PrometheusClient

        try:
            with PrometheusClient(self.prometheus_url()) as prom:
                interval = prom.scrape_interval_s(self.scope().job)
        except OpenbellError as exc:
            self.progress(f"scrape interval of job {self.scope().job} unknown ({exc}): assuming 15s")
            return 15.0
        if interval is None:
            self.progress(f"Prometheus scrapes no target of job {self.scope().job}: assuming a 15s interval")
            return 15.0
        return interval

    def scope(self) -> MetricScope:
        return MetricScope(job=self.service)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "namespace": self.namespace, "context": self.kube_context, "route": self.route}

    def check(self) -> None:
        """Reach the cluster, and refuse early what would fail half way: the stable Deployment, the route to its
        Service and both Services must exist, and the stable must be one the canary can be cloned from."""
        stable, route = self._stable(), self._route()
        for svc in (self.stable_svc, self.canary_svc):
            self._kube().service(svc)
        canary_deployment(stable, "check", self.image)
        stable_replace_patch(stable, "check", self.image)
        route_weights_patch(route, self.stable_svc, self.canary_svc, 0)

    def stable_version(self) -> str:
        return image_version(_container(self._stable())["image"])

    def start_canary(self, version: str, faults: dict[str, str]) -> None:
        if faults:
            raise UsageError(f"target kubernetes: fault injection ({', '.join(sorted(faults))}) exists only on the"
                             " sandbox target")
        body = canary_deployment(self._stable(), version, self.image)
        kube = self._kube()
        try:
            kube.create(DEPLOYMENT, body)
            self.progress(f"created deployment/{self.canary_name} at {version}")
        except Conflict:
            kube.replace(DEPLOYMENT, body)  # a canary left by a crashed run, or this run retried: same spec wins
            self.progress(f"replaced deployment/{self.canary_name} with {version}")
        self._wait_rollout(self.canary_name, self.ready_timeout_s)

    def _wait_rollout(self, name: str, timeout_s: float) -> None:
        def pending() -> str | None:
            deployment = self._kube().get(DEPLOYMENT, name)
            if deployment is None:
                raise NotFound(f"target kubernetes: deployment/{name} disappeared while openbell waited for it")
            state = rollout_pending(deployment)
            if state is not None:
                problems = pod_problems(self._kube().pods(deployment["spec"]["selector"]["matchLabels"]))
                state += f" ({'; '.join(problems)})" if problems else ""
            return state

        self._wait(f"deployment/{name} to be ready", timeout_s, pending)

    def _wait(self, what: str, timeout_s: float, pending: Callable[[], str | None]) -> None:
        """Poll `pending` every poll_s until it answers None; RolloutTimeout after `timeout_s`."""
        deadline = self.clock() + timeout_s
        while (state := pending()) is not None:
            if self.clock() >= deadline:
                raise RolloutTimeout(f"target kubernetes: waited {timeout_s:g}s for {what}: {state}")
            self.heartbeat()
            self.sleep(self.poll_s)

    def canary_running(self) -> bool:
        return self._kube().get(DEPLOYMENT, self.canary_name) is not None

    def weight(self) -> int:
        return route_weight(self._route(), self.canary_svc)

    def set_weight(self, percent: int) -> None:
        attempts = 3  # the route changed between read and patch: read again; past that, someone keeps
        for attempt in range(attempts):  # rewriting it (a GitOps sync?): say so rather than fight it
            patch = route_weights_patch(self._route(), self.stable_svc, self.canary_svc, percent)
            try:
                self._kube().patch(HTTPROUTE, self.route, patch)
                break
            except Conflict:
                if attempt == attempts - 1:
                    raise
        self.progress(f"httproute/{self.route}: canary weight {percent}%")

    def traffic(self) -> Traffic:
        from openbell.metrics.prometheus import PrometheusClient

        query = f'sum by ({self.scope().role_label}) (gateway_connections{{job="{self.service}"}})'
        with PrometheusClient(self.prometheus_url()) as prom:
            samples = prom.query(query)
        count = {"stable": 0, "canary": 0}
        for sample in samples:
            role = sample.labels.get(self.scope().role_label, "")
            if role in count and math.isfinite(sample.value):
                count[role] += int(sample.value)
        return Traffic(count["stable"], count["canary"], "prometheus gateway_connections")

    def _drain_pods(self, selector: dict[str, str], fraction: float) -> int:
        """Drain `fraction` of each ready pod's connections; one pod failing is reported and skipped, all failing
        raises (the drain is what moves sticky WebSockets, so it must not silently do nothing)."""
        if not 0 <= fraction <= 1:
            raise UsageError(f"churn fraction {fraction:g}: expected 0 to 1")
        pods = [p["metadata"]["name"] for p in self._kube().pods(selector) if pod_ready(p)]
        closed, failures = 0, []
        for pod in pods:
            try:
                closed += self._kube().drain(pod, self.admin_port, fraction)
            except OpenbellError as exc:
                failures.append(exc)
                self.progress(f"drain pod/{pod} failed: {exc}")
        if pods and len(failures) == len(pods):
            raise failures[0]
        return closed

    def churn(self, fraction: float) -> int:
        closed = self._drain_pods(_stable_selector(self._stable()), fraction)
        self.progress(f"churn {fraction:g}: {closed} stable connections closed with a reconnect hint")
        return closed

    def _remove_canary(self) -> None:
        """Weight 0, wait for the data plane to take it, drain the canary fully, delete it and wait until gone."""
        self.set_weight(0)  # raises rather than go on: deleting a canary with weight fails that share of requests
        kube = self._kube()
        canary = kube.get(DEPLOYMENT, self.canary_name)
        if canary is not None:
            # Gateways apply HTTPRoute changes asynchronously: drained clients must reconnect to a router that
            # already routes them to stable.
            self.sleep(self.route_settle_s)
            try:
                closed = self._drain_pods(canary["spec"]["selector"]["matchLabels"], 1.0)
                self.progress(f"drained the canary: {closed} connections told to reconnect")
            except OpenbellError as exc:
                # Deleting still drains: each pod's SIGTERM closes its connections with the same reconnect hint.
                self.progress(f"drain of the canary failed ({exc}); its pods drain on SIGTERM instead")
        if kube.delete(DEPLOYMENT, self.canary_name):
            self.progress(f"deleting deployment/{self.canary_name}")
        self._wait(f"deployment/{self.canary_name} to be deleted", self.delete_timeout_s,
                   lambda: deletion_pending(kube.get(DEPLOYMENT, self.canary_name)))

    def rollback(self) -> None:
        self._remove_canary()

    def promote(self, version: str) -> None:
        patch = stable_replace_patch(self._stable(), version, self.image)
        self._kube().patch_deployment(self.service, patch)
        self.progress(f"deployment/{self.service} rolling to {version}")
        self._wait_rollout(self.service, self.rollout_timeout_s)
        self._remove_canary()

    def verify_stable(self) -> list[str]:
        problems = []
        if (percent := self.weight()) != 0:
            problems.append(f"httproute/{self.route} still sends {percent}% to {self.canary_svc}")
        if self.canary_running():
            problems.append(f"deployment/{self.canary_name} is still present")
        if (state := rollout_pending(self._stable())) is not None:
            problems.append(f"deployment/{self.service} is not fully available: {state}")
        return problems

    def store(self) -> KubernetesRunStore:
        return KubernetesRunStore(self.service, self.namespace, self._kube, self.lease_s)


class KubernetesRunStore(RunStore):
    """The rollout document in ConfigMap `openbell-canary-<service>`, the lock in the Lease of the same name.

    The lock is taken and renewed with the read's resourceVersion, so of two runs racing for it exactly one
    wins; the other gets RunConflict. Call `renew()` well within `lease_s` seconds (every poll)."""

    def __init__(self, service: str, namespace: str, api: Callable[[], KubeApi], lease_s: int = 60,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.service, self.namespace, self._api, self.lease_s, self._now = service, namespace, api, lease_s, now
        self.name = state_name(service)
        self.owner: str | None = None

    def load(self) -> dict[str, Any] | None:
        found = self._api().configmap(self.name)
        if found is None or STATE_KEY not in (found.get("data") or {}):
            return None
        try:
            return _dict(json.loads((found.get("data") or {})[STATE_KEY]))
        except (KeyError, ValueError, UnreachableError) as exc:
            raise SpecError(f"configmap/{self.name}", f"data.{STATE_KEY}", "expected the rollout document as"
                            " JSON (delete the ConfigMap to start over)") from exc

    def save(self, document: dict[str, Any]) -> None:
        self._api().put_configmap(state_configmap(self.service, self.namespace, document))

    # An operator's request lives in its own key of the ConfigMap: the live run saves its document after every
    # transition, and a whole-document write would race with (and drop) a request left between two polls.
    def request(self, command: str) -> None:
        body = state_configmap(self.service, self.namespace, {})
        body["data"] = {REQUEST_KEY: command}
        self._api().put_configmap(body)

    def take_request(self) -> str | None:
        found = self._api().configmap(self.name)
        command = ((found or {}).get("data") or {}).get(REQUEST_KEY)
        if not command or found is None:
            return None
        try:  # conditional on the read: a request written meanwhile is not deleted unseen
            version = found["metadata"]["resourceVersion"]
            self._api().patch_configmap(self.name, {"metadata": {"resourceVersion": version},
                                                    "data": {REQUEST_KEY: None}})
        except Conflict:
            return None  # taken at the next poll
        return str(command)

    def holder(self) -> str | None:
        """Who holds the lock now (None when nobody does): for `status`."""
        return live_holder(self._api().get(LEASE, self.name), self._now())

    def _conflict(self, what: str) -> RunConflict:
        current = self._api().get(LEASE, self.name)
        holder = live_holder(current, self._now()) or "another run"
        expiry = lease_expiry(current) if current else None
        until = f", lease until {micro_time(expiry)}" if expiry else ""
        return RunConflict(f"{what}: the rollout of {self.service} is held by {holder}"
                           f" (lease {self.namespace}/{self.name}{until})")

    def acquire(self, owner: str) -> None:
        kube, now = self._api(), self._now()
        current = kube.get(LEASE, self.name)
        holder = live_holder(current, now, socket.gethostname())
        if holder is not None and holder != owner:
            raise self._conflict("cannot start")
        body = lease(self.service, self.namespace, owner, now, self.lease_s)
        try:
            if current is None:
                kube.create(LEASE, body)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                if holder == owner:
                    body["spec"]["acquireTime"] = current["spec"].get("acquireTime", body["spec"]["acquireTime"])
                kube.replace(LEASE, body)
        except Conflict:
            raise self._conflict("lost the race for the lock") from None
        self.owner = owner

    def renew(self) -> None:
        """Push the lease's expiry lease_s seconds ahead; RunConflict when another run has taken it."""
        kube = self._api()
        current = kube.get(LEASE, self.name)
        if self.owner is None or current is None or (current.get("spec") or {}).get("holderIdentity") != self.owner:
            raise self._conflict("lost the lock")
        current["spec"]["renewTime"] = micro_time(self._now())
        current["spec"]["leaseDurationSeconds"] = self.lease_s
        try:
            kube.replace(LEASE, current)
        except Conflict:
            raise self._conflict("lost the lock") from None

    def release(self) -> None:
        """Clear the holder if it is still us (the Lease object stays for the next run); idempotent."""
        if self.owner is None:
            return
        kube = self._api()
        for _ in range(3):
            current = kube.get(LEASE, self.name)
            if current is None or (current.get("spec") or {}).get("holderIdentity") != self.owner:
                break
            current["spec"] = {k: v for k, v in current["spec"].items() if k not in ("holderIdentity", "renewTime")}
            try:
                kube.replace(LEASE, current)
                break
            except Conflict:
                continue  # changed between read and write (our own renew from another thread): read again
        self.owner = None
