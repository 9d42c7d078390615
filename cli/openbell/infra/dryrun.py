"""`openbell infra plan --offline --cluster`: every Kubernetes object of the plan sent to a real API server as a
server-side dry-run (`dryRun=All`: nothing is persisted), so the cluster itself judges it: the built-in kinds' Go
validation (names, keys, label values, a selector that misses its template...), the installed CRDs' schemas and
CEL rules, unknown fields (`fieldValidation=Strict`) and validating admission (webhooks, admission policies).

How each object is sent:

- cluster-scoped, or in a namespace that exists: a server-side apply (force, field manager `openbell-plan`), as
  the pulumi-kubernetes provider applies it. On an object the cluster already holds the server also runs its
  update checks (immutable fields, CEL transition rules); when only those refuse it - the same object as a dry-run
  create passes validation and admission and then meets AlreadyExists - it is accepted with `update_refused` set:
  the object is valid, the change to what the cluster holds is not (Pulumi replaces a Deployment whose selector
  changed; a CR's transition rule fails the `pulumi up`), shown to the user, not failed.
- in a namespace the plan creates (the server answers 404 for the namespace): a create in a stand-in namespace
  that exists (`default`). The namespace is only where the object would be stored, and a create is what the
  object will be in a brand-new namespace. A 409 AlreadyExists there (the stand-in holds a namesake) comes only
  after validation and admission passed, so it counts as accepted. Policy bound to the real namespace (its
  Pod Security level, quotas, webhooks selecting it by label) cannot be seen; each result says where it was
  checked.
- a kind the cluster does not serve: a custom resource whose CRD is not installed is "unchecked" (listed, not
  failed: the offline schemas still cover it, and the plan's Helm releases may install the CRD); a built-in kind
  the server does not serve (a removed API version) is rejected: the deploy would fail.

Secret values are replaced by placeholders of the same size before they leave the machine: validation needs the
keys and sizes, and a dry-run request still reaches the cluster's audit log.

`check()` holds the order of things; the decisions (`judge`, `unserved`, `redact`) are pure functions, and
`KubeServer` is the only place that talks HTTP (a test passes any `ApiServer`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from openbell.errors import UnreachableError, UsageError

FIELD_MANAGER = "openbell-plan"
STAND_IN = "default"
TIMEOUT_S = 15.0

Status = Literal["accepted", "rejected", "unchecked"]
Operation = Literal["apply", "create", ""]

# API groups the API server itself serves (every other group comes from a CRD or an aggregated API).
BUILTIN_GROUPS = frozenset({
    "", "apps", "autoscaling", "batch", "policy", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "apiregistration.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "certificates.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io", "networking.k8s.io", "node.k8s.io", "rbac.authorization.k8s.io",
    "resource.k8s.io", "scheduling.k8s.io", "storage.k8s.io", "storagemigration.k8s.io",
})
_RBAC_FORBIDDEN = re.compile(r'is forbidden: User ".*" cannot ')
_WARNING = re.compile(r'^\d{3} \S+ "(?P<text>(?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ClusterRef:
    """The cluster a user names: a kubeconfig (else $KUBECONFIG, else ~/.kube/config) and one of its contexts
    (else its current one)."""

    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True)
class Planned:
    """One Kubernetes object of the plan: the Pulumi resource that declares it and the object as declared."""

    resource: str
    body: Mapping[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str | None:
        ns = (self.body.get("metadata") or {}).get("namespace")
        return str(ns) if ns else None

    @property
    def ref(self) -> str:
        """kind namespace/name, as kubectl names it."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class ServedKind:
    """Where a kind lives in the REST API (from the group-version's discovery document)."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool


@dataclass(frozen=True)
class ObjectResult:
    """The server's answer for one object. `checked_in` is the namespace the object was sent to when that is not
    its own (the stand-in, for a namespace the plan creates); `operation` is apply or create ("" if not sent)."""

    resource: str
    api_version: str
    kind: str
    namespace: str | None
    name: str
    status: Status
    message: str = ""
    operation: Operation = ""
    checked_in: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    update_refused: str = ""  # valid as a new object; the server's refusal of it as an update of what exists

    @property
    def ref(self) -> str:
        """kind namespace/name, as kubectl names it."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "apiVersion": self.api_version, "kind": self.kind,
                "namespace": self.namespace, "name": self.name, "status": self.status, "message": self.message,
                "operation": self.operation or None, "checkedIn": self.checked_in, "warnings": list(self.warnings),
                "updateRefused": self.update_refused or None}


@dataclass
class ServerReport:
    """A plan's objects as one API server judged them."""

    server: str
    context: str | None
    version: str
    stand_in: str
    results: list[ObjectResult] = field(default_factory=list)

    def _with(self, status: Status) -> list[ObjectResult]:
        return [r for r in self.results if r.status == status]

    @property
    def accepted(self) -> list[ObjectResult]:
        return self._with("accepted")

    @property
    def rejected(self) -> list[ObjectResult]:
        return self._with("rejected")

    @property
    def unchecked(self) -> list[ObjectResult]:
        return self._with("unchecked")

    @property
    def update_refused(self) -> list[ObjectResult]:
        return [r for r in self.results if r.update_refused]

    @property
    def passed(self) -> bool:
        return not self.rejected

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server, "context": self.context, "version": self.version, "standIn": self.stand_in,
            "passed": self.passed, "checked": len(self.results), "accepted": len(self.accepted),
            "rejected": [r.as_dict() for r in self.rejected],
            "updateRefused": [r.as_dict() for r in self.update_refused],
            "unchecked": [r.as_dict() for r in self.unchecked],
            "objects": [r.as_dict() for r in self.results],
        }


# --- decisions (pure) ------------------------------------------------------------------------------------


class Refused(Exception):
    """The API server answered a request with an error status (`message`, `reason` and `details` from its
    Status object; status 0 when no HTTP answer came back)."""

    def __init__(self, status: int, message: str, reason: str = "", details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.reason = status, message, reason
        self.details: Mapping[str, Any] = details or {}


class Judgement(enum.Enum):
    REJECTED = "the object is invalid or refused by admission: the plan fails"
    NAMESPACE_MISSING = "the object's namespace does not exist (yet): try the stand-in"
    EXISTS = "a namesake exists where a create was tried: validation and admission had passed"
    NOT_ALLOWED = "the credentials may not do this: nothing is known about the object"
    TROUBLE = "the server could not answer (throttled, a webhook down, an internal error)"


def judge(refusal: Refused, namespace: str | None, creating: bool) -> Judgement:
    """What an error answer to a dry-run apply (or create, when `creating`) of an object in `namespace` means."""
    status, message = refusal.status, refusal.message
    if status == 404 and namespace and refusal.details.get("kind") == "namespaces" \
            and refusal.details.get("name") == namespace:
        return Judgement.NAMESPACE_MISSING
    if status == 409 and creating and refusal.reason == "AlreadyExists":
        return Judgement.EXISTS
    if status == 401 or (status == 403 and _RBAC_FORBIDDEN.search(message)):
        return Judgement.NOT_ALLOWED
    # Server-side apply reports a field its schema lacks, or a wrong type, as a 500 "failed to create typed patch
    # object": a property of the object, not of the server.
    if intrinsic(refusal):
        return Judgement.REJECTED
    if status == 0 or status == 429 or status >= 500:
        return Judgement.TROUBLE
    # 400 (decoding: unknown field, wrong type), 422 (validation, CEL), 403 (an admission webhook or policy
    # denied it, a quota), 404/405/409/413...: the server said no to this object.
    return Judgement.REJECTED


def intrinsic(refusal: Refused) -> bool:
    """A server-side apply refusal that concerns the applied object alone, whatever the cluster holds: its
    fields against the schema (an unknown field, a wrong type, a duplicate key in a keyed list)."""
    return refusal.status == 500 and "failed to create typed patch object" in refusal.message


def is_builtin(api_version: str) -> bool:
    """Whether the API server itself serves this group (else a CRD or an aggregated API does)."""
    group = api_version.rpartition("/")[0]
    return group in BUILTIN_GROUPS


def unserved(obj: Planned, group_versions: Iterable[str], server_version: str) -> tuple[Status, str]:
    """The verdict for an object whose kind the cluster does not serve, given the versions its group serves."""
    served = sorted(group_versions)
    if is_builtin(obj.api_version):
        others = f" (it serves {', '.join(served)})" if served else ""
        return "rejected", (f"the API server ({server_version}) does not serve {obj.api_version} {obj.kind}"
                            f"{others}: the deploy would fail")
    group = obj.api_version.rpartition("/")[0]
    if served and obj.api_version not in served:
        return "unchecked", (f"not checked by the server (the cluster's {group} CRDs serve "
                             f"{', '.join(v.rpartition('/')[2] for v in served)}, not "
                             f"{obj.api_version.rpartition('/')[2]})")
    return "unchecked", f"not checked by the server (no CRD for {obj.api_version} {obj.kind} on the cluster)"


# Secret keys whose content the API server parses (registry credentials must be JSON): a placeholder keeps the form.
_PARSED_KEYS = {".dockerconfigjson", ".dockercfg"}


def _placeholder(key: str, plain: bytes) -> bytes | None:
    """A stand-in for a secret value of `len(plain)` bytes; None to send the value itself (content the server
    parses and that is broken: the server must still refuse it)."""
    if key in _PARSED_KEYS:
        try:
            json.loads(plain)
        except ValueError:
            return None
        return b"{}"
    return b"x" * len(plain)


def redact(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object to send: a core Secret's values replaced by same-size placeholders (keys kept; registry
    credentials by `{}`; values the server would refuse anyway - not base64, not JSON - kept as they are)."""
    out = dict(body)
    if body.get("apiVersion") != "v1" or body.get("kind") != "Secret":
        return out
    if isinstance(body.get("stringData"), Mapping):
        string_data: dict[str, Any] = {}
        for k, v in body["stringData"].items():
            stand_in = _placeholder(k, v.encode()) if isinstance(v, str) else None
            string_data[k] = v if stand_in is None else stand_in.decode()
        out["stringData"] = string_data
    if isinstance(body.get("data"), Mapping):
        data: dict[str, Any] = {}
        for k, v in body["data"].items():
            try:
                stand_in = _placeholder(k, base64.b64decode(v, validate=True)) if isinstance(v, str) else None
            except (binascii.Error, ValueError):
                stand_in = None
            data[k] = v if stand_in is None else base64.b64encode(stand_in).decode()
        out["data"] = data
    return out


def in_namespace(body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """`body` moved to `namespace` (for the stand-in)."""
    return {**body, "metadata": {**(body.get("metadata") or {}), "namespace": namespace}}


def warning_texts(values: Iterable[str]) -> tuple[str, ...]:
    """The texts of HTTP Warning headers (`299 - "text"`)."""
    out = []
    for value in values:
        m = _WARNING.match(value)
        out.append(m["text"].replace('\\"', '"').replace("\\\\", "\\") if m else value)
    return tuple(out)


def one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the check -------------------------------------------------------------------------------------------


class ApiServer(Protocol):
    """What the check needs of an API server (KubeServer is the real one)."""

    host: str
    context: str | None

    def version(self) -> str: ...

    def kinds(self, api_version: str) -> dict[str, ServedKind] | None:
        """The kinds a group-version serves; None when the server does not serve it."""

    def group_versions(self, group: str) -> list[str]:
        """The group-versions (g/v) the server serves of `group`; [] when none."""

    def apply(self, kind: ServedKind, body: Mapping[str, Any], namespace: str | None) -> tuple[str, ...]:
        """Server-side apply with dryRun=All; the server's warnings. Raises Refused."""

    def create(self, kind: ServedKind, body: Mapping[str, Any], namespace: str | None) -> tuple[str, ...]:
        """Create with dryRun=All; the server's warnings. Raises Refused."""


def check(objects: Iterable[Planned], server: ApiServer, stand_in: str = STAND_IN) -> ServerReport:
    """Dry-run every object on `server`; raises UnreachableError when the server cannot give an answer (the
    credentials may not write, a webhook is down) rather than guess."""
    version = server.version()
    report = ServerReport(server.host, server.context, version, stand_in)
    missing: set[str] = set()  # namespaces the server said do not exist
    for obj in objects:
        report.results.append(_check_one(obj, server, version, stand_in, missing))
    return report


def _check_one(obj: Planned, server: ApiServer, version: str, stand_in: str, missing: set[str]) -> ObjectResult:
    def result(status: Status, message: str = "", operation: Operation = "", checked_in: str | None = None,
               warnings: tuple[str, ...] = (), update_refused: str = "") -> ObjectResult:
        return ObjectResult(obj.resource, obj.api_version, obj.kind, obj.namespace, obj.name, status, message,
                            operation, checked_in, warnings, update_refused)

    served = (server.kinds(obj.api_version) or {}).get(obj.kind)
    if served is None:
        group = obj.api_version.rpartition("/")[0]
        return result(*unserved(obj, server.group_versions(group), version))
    body = redact(obj.body)
    # A namespaced object without one lands in the provider's default namespace (infra.validate flags it).
    namespace = (obj.namespace or "default") if served.namespaced else None
    if namespace is None or namespace not in missing:
        try:
            return result("accepted", operation="apply", warnings=server.apply(served, body, namespace))
        except Refused as refusal:
            verdict = judge(refusal, namespace, creating=False)
            if verdict is Judgement.REJECTED and not intrinsic(refusal) \
                    and _valid_as_new(server, served, body, namespace):
                return result("accepted", operation="apply", update_refused=one_line(refusal.message))
            if verdict is not Judgement.NAMESPACE_MISSING:
                return _refused(obj, refusal, verdict, server, "apply", None)
            missing.add(str(namespace))
    try:
        warnings = server.create(served, in_namespace(body, stand_in), stand_in)
        return result("accepted", operation="create", checked_in=stand_in, warnings=warnings)
    except Refused as refusal:
        verdict = judge(refusal, stand_in, creating=True)
        if verdict is Judgement.EXISTS:
            return result("accepted", f"a {obj.kind} {obj.name} already exists in the stand-in namespace: "
                                      "it passed validation and admission", "create", stand_in)
        if verdict is Judgement.NAMESPACE_MISSING:
            raise UnreachableError(f"cluster {server.host}: the stand-in namespace {stand_in!r} does not exist "
                                   f"(needed for {obj.ref} in namespace {namespace!r}, which the plan creates)"
                                   ) from None
        return _refused(obj, refusal, verdict, server, "create", stand_in)


def _valid_as_new(server: ApiServer, served: ServedKind, body: Mapping[str, Any], namespace: str | None) -> bool:
    """Whether the object exists on the cluster and is valid as a new one: a dry-run create passes validation and
    admission, then meets AlreadyExists. (A create that succeeds means the apply was a create too, refused for
    the object itself.)"""
    try:
        server.create(served, body, namespace)
    except Refused as refusal:
        return judge(refusal, namespace, creating=True) is Judgement.EXISTS
    return False


def _refused(obj: Planned, refusal: Refused, verdict: Judgement, server: ApiServer, operation: Operation,
             checked_in: str | None) -> ObjectResult:
    where = obj.ref
    if verdict is Judgement.NOT_ALLOWED:
        raise UnreachableError(f"cluster {server.host}: not allowed to dry-run {operation} {where} "
                               f"(HTTP {refusal.status}): {one_line(refusal.message, 300)}")
    if verdict is Judgement.TROUBLE:
        raise UnreachableError(f"cluster {server.host}: no answer for {where} "
                               f"(HTTP {refusal.status}): {one_line(refusal.message, 300)}")
    return ObjectResult(obj.resource, obj.api_version, obj.kind, obj.namespace, obj.name, "rejected",
                        one_line(refusal.message) or f"HTTP {refusal.status} {refusal.reason}", operation, checked_in)


# --- the API server, through the official client ---------------------------------------------------------


class _NoDiscovery:
    """DynamicClient's discoverer slot left empty: KubeServer looks up the few group-versions a plan uses
    itself (the default discoverer re-reads every API group for each kind it does not find, and writes a cache
    file)."""

    def __init__(self, client: Any, cache_file: Any) -> None:
        pass


def _kubeconfig_paths(ref: ClusterRef) -> tuple[list[str], str]:
    """The kubeconfig files to read and how to name them in a message."""
    if ref.kubeconfig is not None:
        path = ref.kubeconfig.expanduser()
        if not path.is_file():
            raise UsageError(f"--kubeconfig {ref.kubeconfig}: no such file")
        if not os.access(path, os.R_OK):
            raise UsageError(f"--kubeconfig {ref.kubeconfig}: not readable")
        return [str(path)], str(ref.kubeconfig)
    env = os.environ.get("KUBECONFIG", "")
    if env:
        paths = [p for p in env.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        if not paths:
            raise UsageError(f"$KUBECONFIG={env}: no such file; name a kubeconfig with --kubeconfig")
        return [str(Path(p).expanduser()) for p in paths], env
    default = Path("~/.kube/config").expanduser()
    if not default.is_file():
        raise UsageError("no kubeconfig (~/.kube/config does not exist and $KUBECONFIG is not set): "
                         "name one with --kubeconfig")
    return [str(default)], "~/.kube/config"


def connect(ref: ClusterRef, timeout_s: float = TIMEOUT_S) -> KubeServer:
    """A KubeServer for the named cluster, its reachability checked. A kubeconfig or context that cannot be used
    is a UsageError (exit 2); a server that does not answer, or refuses the credentials, an UnreachableError
    (exit 3)."""
    try:
        from kubernetes import client, config, dynamic
    except ImportError as exc:
        raise UnreachableError("--cluster needs the `kubernetes` Python package: pip install 'openbell[infra]'"
                               ) from exc

    paths, where = _kubeconfig_paths(ref)
    joined = os.pathsep.join(paths)
    try:
        contexts, current = config.list_kube_config_contexts(config_file=joined)
    except Exception as exc:  # ConfigException, or YAML/type errors from a file that is not a kubeconfig
        raise UsageError(f"kubeconfig {where}: not a usable kubeconfig ({one_line(str(exc), 200)})") from None
    names = [str(c.get("name")) for c in contexts or []]
    if ref.context is not None and ref.context not in names:
        raise UsageError(f"kubeconfig {where} has no context {ref.context!r} "
                         f"(it has: {', '.join(names) or 'none'})")
    context = ref.context or (str(current.get("name")) if current else None)
    if not context:
        raise UsageError(f"kubeconfig {where} has no current-context: name one with --context")
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=joined, context=context, client_configuration=cfg,
                                persist_config=False)
    except Exception as exc:  # a context without its cluster or user, bad certificate data, a failing exec plugin
        raise UsageError(f"kubeconfig {where}, context {context}: {one_line(str(exc), 300)}") from None
    api = client.ApiClient(configuration=cfg)
    server = KubeServer(dynamic.DynamicClient(api, discoverer=_NoDiscovery), str(cfg.host), context, timeout_s)
    server.version()
    return server


class KubeServer:
    """An API server through the `kubernetes` client's DynamicClient (its request(), which works on plain
    dicts and any path in every client version); every error is a Refused or an UnreachableError."""

    def __init__(self, dynamic: Any, host: str, context: str | None, timeout_s: float = TIMEOUT_S) -> None:
        self.dynamic, self.host, self.context, self.timeout_s = dynamic, host, context, timeout_s
        self._kinds: dict[str, dict[str, ServedKind] | None] = {}
        self._version: str | None = None

    def close(self) -> None:
        close = getattr(self.dynamic.client, "close", None)
        if callable(close):
            close()

    def _request(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
                 **kwargs: Any) -> tuple[Any, tuple[str, ...]]:
        """(JSON answer, warnings); Refused for an error status, UnreachableError when nothing answers."""
        from kubernetes.client.rest import ApiException

        try:
            response = self.dynamic.request(method, path, body=body, query_params=list(query or []),
                                            serialize=False, _request_timeout=self.timeout_s, **kwargs)
        except ApiException as exc:
            status = int(getattr(exc, "status", 0) or 0)
            if status == 0:
                raise self._unreachable(getattr(exc, "reason", None) or exc) from None
            raise _refusal(status, getattr(exc, "body", None), str(getattr(exc, "reason", "") or "")) from None
        except Exception as exc:
            if _is_transport_error(exc):
                raise self._unreachable(getattr(exc, "reason", None) or exc) from None
            raise
        headers = getattr(response, "headers", None)
        getlist = getattr(headers, "getlist", None)
        warnings = warning_texts(getlist("Warning")) if callable(getlist) else ()
        data = getattr(response, "data", b"")
        try:
            return (json.loads(data) if data else {}), warnings
        except ValueError:
            raise UnreachableError(f"cluster {self.host}: {method.upper()} {path} answered without JSON") from None

    def _unreachable(self, cause: Any) -> UnreachableError:
        # urllib3 nests the cause (MaxRetryError > NewConnectionError > ...): its last words say it.
        text = one_line(str(cause), 300).rsplit(": ", 1)[-1]
        return UnreachableError(f"cluster {self.host} (context {self.context}) cannot be reached: {text}")

    def version(self) -> str:
        if self._version is None:
            try:
                answer, _ = self._request("get", "/version")
            except Refused as refusal:
                if refusal.status in (401, 403):
                    raise UnreachableError(f"cluster {self.host} (context {self.context}) refused the credentials "
                                           f"(HTTP {refusal.status}): {one_line(refusal.message, 200)}") from None
                raise UnreachableError(f"cluster {self.host}: GET /version: HTTP {refusal.status} "
                                       f"{one_line(refusal.message, 200)}") from None
            self._version = str(answer.get("gitVersion") or "unknown")
        return self._version

    def kinds(self, api_version: str) -> dict[str, ServedKind] | None:
        if api_version not in self._kinds:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                answer, _ = self._request("get", path)
            except Refused as refusal:
                if refusal.status != 404:
                    raise UnreachableError(f"cluster {self.host}: GET {path}: HTTP {refusal.status} "
                                           f"{one_line(refusal.message, 200)}") from None
                answer = None
            self._kinds[api_version] = None if answer is None else {
                r["kind"]: ServedKind(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in answer.get("resources") or [] if "/" not in str(r.get("name", ""))}
        return self._kinds[api_version]

    def group_versions(self, group: str) -> list[str]:
        if group == "":
            return ["v1"]
        try:
            answer, _ = self._request("get", f"/apis/{group}")
        except Refused as refusal:
            if refusal.status == 404:
                return []
            raise UnreachableError(f"cluster {self.host}: GET /apis/{group}: HTTP {refusal.status} "
                                   f"{one_line(refusal.message, 200)}") from None
        return [str(v.get("groupVersion")) for v in answer.get("versions") or []]

    def _path(self, kind: ServedKind, namespace: str | None, name: str | None = None) -> str:
        prefix = "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"
        where = f"/namespaces/{namespace}" if kind.namespaced and namespace else ""
        return f"{prefix}{where}/{kind.plural}" + (f"/{name}" if name else "")

    def apply(self, kind: ServedKind, body: Mapping[str, Any], namespace: str | None) -> tuple[str, ...]:
        name = str((body.get("metadata") or {}).get("name") or "")
        _, warnings = self._request("patch", self._path(kind, namespace, name), body=dict(body),
                                    query=[("fieldValidation", "Strict")], content_type="application/apply-patch+yaml",
                                    dry_run="All", field_manager=FIELD_MANAGER, force_conflicts="true")
        return warnings

    def create(self, kind: ServedKind, body: Mapping[str, Any], namespace: str | None) -> tuple[str, ...]:
        _, warnings = self._request("post", self._path(kind, namespace), body=dict(body),
                                    query=[("fieldValidation", "Strict")], dry_run="All", field_manager=FIELD_MANAGER)
        return warnings


def _refusal(status: int, body: Any, reason: str) -> Refused:
    try:
        answer = json.loads(body) if body else {}
    except (TypeError, ValueError):
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    message = str(answer.get("message") or (body if isinstance(body, str) else "") or reason)
    details = answer.get("details") if isinstance(answer.get("details"), dict) else {}
    return Refused(status, message, str(answer.get("reason") or ""), details)


def _is_transport_error(exc: Exception) -> bool:
    import importlib

    try:
        urllib3_error: type[Exception] = importlib.import_module("urllib3.exceptions").HTTPError
    except ImportError:  # pragma: no cover - the kubernetes client depends on urllib3
        urllib3_error = OSError
    return isinstance(exc, urllib3_error | OSError)


def planned(resources: Iterable[Any]) -> list[Planned]:
    """The plan's Kubernetes objects (infra.offline.Recorded) as they would be sent (numbers and secrets
    normalised by infra.validate)."""
    from infra import validate

    return [Planned(r.name, validate.normalise(r.inputs)) for r in resources if validate.is_object(r)]

