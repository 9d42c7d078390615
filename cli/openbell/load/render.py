"""k6-operator objects for a distributed run on the cluster: a ConfigMap holding the profile (and the
library it imports) and a TestRun (k6.io/v1alpha1) that runs it on `parallelism` runner pods."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from openbell.errors import SpecError
from openbell.load.catalogue import Profile
from openbell.load.summary import TREND_STATS

IMPORT = re.compile(r"""(from\s+['"])\./lib/([A-Za-z0-9._-]+\.js)(['"])""")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIGMAP_MAX_BYTES = 1024 * 1024


def configmap(profile: Profile, name: str, namespace: str) -> dict[str, Any]:
    """The profile and every `./lib/*.js` it imports, flattened into one ConfigMap (keys cannot hold '/')."""
    script = profile.path.read_text(encoding="utf-8")
    data = {profile.path.name: IMPORT.sub(r"\1./\2\3", script)}
    for lib in sorted(set(m.group(2) for m in IMPORT.finditer(script))):
        path = profile.path.parent / "lib" / lib
        try:
            data[lib] = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(str(profile.path), f"import ./lib/{lib}", f"cannot read {path} ({exc.strerror})") from exc
    size = sum(len(v.encode()) for v in data.values())
    if size > CONFIGMAP_MAX_BYTES:
        raise SpecError(str(profile.path), "", f"the script and its library are {size} bytes; a ConfigMap holds 1 MiB")
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels(profile)}, "data": data}


def testrun(profile: Profile, name: str, namespace: str, parallelism: int, env: dict[str, str],
            image: str = "grafana/k6:1.1.0") -> dict[str, Any]:
    """A TestRun: k6-operator splits the profile's VUs across `parallelism` runners (execution segments)."""
    if parallelism < 1:
        raise SpecError("--parallelism", str(parallelism), "expected a whole number of runner pods, 1 or more")
    return {
        "apiVersion": "k6.io/v1alpha1",
        "kind": "TestRun",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(profile)},
        "spec": {
            "parallelism": parallelism,
            "script": {"configMap": {"name": name, "file": profile.path.name}},
            "separate": False,
            "cleanup": "post",
            # The stock k6 image runs the script unmodified (no extension); the trend stats are the local
            # runner's, count included, so a cluster run's summary states how much the traders sampled.
            "arguments": f"--tag testid={name} --summary-trend-stats {TREND_STATS}",
            "runner": {
                "image": image,
                "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                "metadata": {"labels": _labels(profile)},
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            },
        },
    }


def _labels(profile: Profile) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "openbell", "openbell.dev/profile": profile.name}


def object_name(profile: Profile) -> str:
    """A DNS-1123 name for the objects: openbell-<profile>."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"openbell-{profile.name}".lower()).strip("-")
    return name[:63].rstrip("-")


def apply(objects: list[dict[str, Any]], kubeconfig: str | None) -> list[str]:
    """Create or replace the objects on the cluster of the kubeconfig (clear error without one)."""
    import os
    import tempfile

    from openbell.errors import UnreachableError

    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not Path(path).is_file():
        raise UnreachableError(f"target kubernetes: no kubeconfig at {path}; set --kubeconfig or KUBECONFIG, "
                               "or print the objects with `openbell load render` and apply them yourself")
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise UnreachableError("target kubernetes: the `kubernetes` Python package is not installed"
                               " (pip install kubernetes)") from exc
    try:
        config.load_kube_config(config_file=path)
    except Exception as exc:  # ConfigException, or a broken file
        raise UnreachableError(f"target kubernetes: no usable kubeconfig {path}: {' '.join(str(exc).split())}") \
            from exc
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

    applied = []
    try:
        # Discovery now, not from the file the client keeps per server address: that file still lists kinds a
        # cluster restarted at the same address no longer serves.
        with tempfile.TemporaryDirectory(prefix="openbell-discovery-") as directory:
            dyn = DynamicClient(client.ApiClient(), cache_file=os.path.join(directory, "discovery.json"))
        for obj in objects:
            meta = obj["metadata"]
            what = f"{obj['kind']}/{meta['name']} in namespace {meta.get('namespace')}"
            try:
                resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            except ResourceNotFoundError:
                raise UnreachableError(f"target kubernetes: the cluster has no {obj['apiVersion']} {obj['kind']}"
                                       " (is k6-operator installed? its CRD defines TestRun)") from None
            try:
                resource.create(body=obj, namespace=meta.get("namespace"))
                applied.append(f"{obj['kind']}/{meta['name']}")
            except ConflictError:  # a rerun: the same name gets this run's objects
                current = resource.get(name=meta["name"], namespace=meta.get("namespace"))
                body = {**obj, "metadata": {**meta, "resourceVersion": current.metadata.resourceVersion}}
                resource.replace(body=body, namespace=meta.get("namespace"))
                applied.append(f"{obj['kind']}/{meta['name']} (replaced)")
            except NotFoundError as exc:
                raise UnreachableError(f"target kubernetes: cannot create {what}: {_message(exc)}") from None
    except UnreachableError:
        raise
    except Exception as exc:  # the API server refused (422) or could not be reached
        raise UnreachableError(f"target kubernetes: apply failed after {len(applied)} object(s): {_message(exc)}") \
            from exc
    return applied


def _message(exc: Exception) -> str:
    """The API server's own message (its Status body), else the exception's words, on one line."""
    import json

    body = getattr(exc, "body", None)
    try:
        message = json.loads(body).get("message") if body else None
    except (TypeError, ValueError):
        message = None
    return " ".join(str(message or exc).split())[:400]
