"""The Kubernetes chaos experiments (experiments/kubernetes/) checked without a cluster.

Each experiment must be a Chaos Toolkit experiment Chaos Toolkit itself accepts (chaostoolkit-lib's
`ensure_experiment_is_valid`), carry the header, hypothesis, method, rollbacks and the openbell SLO safeguard
the issue asks for, and call only functions that exist with the arguments it gives them (chaostoolkit-kubernetes
0.39.0, openbell.chaos). What it touches must be what infra/ actually creates: label selectors, namespaces and
object names are compared with the objects the Pulumi program declares (infra.offline's recorded plan of the
staging stack, three zones with Chaos Mesh on), Prometheus queries name metrics infra's JMX exporter rules and
the gateway really export, and the Chaos Mesh NetworkChaos objects validate against our transcription of the
v2.7 CRD (infra/schemas/chaosmesh-networkchaos-v1alpha1.json). Every tolerance is tried on a healthy and an
unhealthy answer, so a hypothesis that could never pass (or never fail) is caught here.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments" / "kubernetes"
CHAOS_MESH_DIR = EXPERIMENTS / "chaos-mesh"
SCHEMA_PATH = ROOT / "infra" / "schemas" / "chaosmesh-networkchaos-v1alpha1.json"
COMMON_SCHEMA_PATH = ROOT / "infra" / "schemas" / "_common.json"
FILES = sorted(p for p in EXPERIMENTS.glob("*.yaml") if p.is_file())
IDS = [p.stem for p in FILES]
SAFEGUARD = {"name": "openbell-slo-safeguard", "module": "openbell.chaos.controls"}
WANTED = {"gateway-pod-loss", "kafka-broker-loss", "postgres-primary-failover", "gateway-kafka-latency",
          "gateway-kafka-partition", "karpenter-spot-interruption", "zone-loss"}
CHAOS_MESH_API = ("chaos-mesh.org", "v1alpha1", "networkchaos")
# chaoslib hands these to an activity out of band of its `arguments` (as its own validation assumes).
INJECTED = ("secrets", "configuration")


# --- reading the experiments -----------------------------------------------------------------------------


@cache
def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{path.name}: not a YAML mapping"
    return doc


def load(path: Path) -> dict[str, Any]:
    """A fresh copy of the experiment (chaoslib and tolerances mutate what they are given)."""
    return copy.deepcopy(_load(path))


def sections(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, activity) for every activity: hypothesis probes, method, rollbacks, and probe tolerances."""
    for probe in (doc.get("steady-state-hypothesis") or {}).get("probes") or []:
        yield "steady-state-hypothesis", probe
    for activity in doc.get("method") or []:
        yield "method", activity
    for activity in doc.get("rollbacks") or []:
        yield "rollbacks", activity
    for where, activity in list(_without_tolerances(doc)):
        tolerance = activity.get("tolerance")
        if isinstance(tolerance, dict) and tolerance.get("type") == "probe":
            yield f"{where} tolerance", tolerance


def _without_tolerances(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for probe in (doc.get("steady-state-hypothesis") or {}).get("probes") or []:
        yield "steady-state-hypothesis", probe
    for activity in doc.get("method") or []:
        yield "method", activity


def python_calls(doc: dict[str, Any]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(where, activity name, module, func, arguments) of every python activity."""
    out = []
    for where, activity in sections(doc):
        provider = activity.get("provider") or {}
        if provider.get("type") == "python":
            out.append((where, str(activity.get("name")), str(provider.get("module")), str(provider.get("func")),
                        dict(provider.get("arguments") or {})))
    return out


def calls_to(doc: dict[str, Any], module: str, func: str, where: str | None = None) -> list[dict[str, Any]]:
    """The arguments of every call to module.func (in one section when `where` is given)."""
    return [args for w, _, m, f, args in python_calls(doc) if (m, f) == (module, func) and where in (None, w)]


def http_queries(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(query, activity) of every Prometheus query made through Chaos Toolkit's http provider."""
    out = []
    for _, activity in sections(doc):
        provider = activity.get("provider") or {}
        if provider.get("type") == "http":
            out.append((str((provider.get("arguments") or {}).get("query", "")), activity))
    return out


def network_chaos_objects() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, namespace the action creates it in, object) of every NetworkChaos: inline in the experiments'
    create_custom_object calls and, when there are any, the files under experiments/kubernetes/chaos-mesh/."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for path in FILES:
        for args in calls_to(load(path), "chaosk8s.crd.actions", "create_custom_object"):
            if (args.get("group"), args.get("version"), args.get("plural")) == CHAOS_MESH_API:
                found.append((path.name, str(args.get("ns", "default")), dict(args["resource"])))
    for path in sorted(CHAOS_MESH_DIR.glob("*.yaml")) if CHAOS_MESH_DIR.is_dir() else []:
        for obj in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if obj:
                found.append((path.name, str(obj["metadata"].get("namespace", "")), obj))
    return found


def selector_dict(selector: str) -> dict[str, str]:
    """An equality-based label selector ("a=b,c=d") as a dict; set-based ones are not used here."""
    out = {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        assert key and value and "!" not in key, f"expected key=value terms, got {selector!r}"
        out[key.strip()] = value.strip()
    return out


def config_default(doc: dict[str, Any], key: str) -> Any:
    entry = (doc.get("configuration") or {})[key]
    return entry["default"] if isinstance(entry, dict) else entry


def resolve(doc: dict[str, Any], text: str) -> str:
    """${key} replaced by the configuration's default (what runs when the environment sets nothing)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: str(config_default(doc, m.group(1))), text)


# --- the plan infra/ declares ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan() -> Any:
    """The staging stack's Pulumi program under pulumi's mocks (three zones, replicated data tier, Chaos Mesh)."""
    pytest.importorskip("pulumi")
    from infra import offline
    from infra.config import load_stack_file

    return offline.run(load_stack_file(ROOT / "stacks" / "Pulumi.staging.yaml"), "staging")


def _objects(plan: Any) -> list[dict[str, Any]]:
    from infra.validate import normalise

    return [normalise(r.inputs) for r in plan.resources
            if r.type.startswith("kubernetes:") and isinstance(r.inputs.get("kind"), str)]


def _find(plan: Any, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    for obj in _objects(plan):
        meta = obj.get("metadata") or {}
        if obj["kind"] == kind and meta.get("name") == name and meta.get("namespace") == namespace:
            return obj
    raise AssertionError(f"infra/ declares no {kind} {namespace}/{name}")


def pod_label_sets(plan: Any) -> dict[str, list[dict[str, str]]]:
    """namespace -> the label sets of the pods the plan's objects will run.

    Deployments carry theirs in the template; operator-run pods get the labels their operators document:
    Strimzi labels every Kafka node pool's pods strimzi.io/cluster, strimzi.io/kind=Kafka and
    strimzi.io/pool-name; CloudNativePG labels instances cnpg.io/cluster, cnpg.io/podRole=instance and
    cnpg.io/instanceRole (primary for one, replica for the others)."""
    pods: dict[str, list[dict[str, str]]] = {}
    for obj in _objects(plan):
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace"))
        if obj["kind"] == "Deployment":
            pods.setdefault(ns, []).append(dict(obj["spec"]["template"]["metadata"]["labels"]))
        elif obj["kind"] == "KafkaNodePool":
            cluster = meta["labels"]["strimzi.io/cluster"]
            _find(plan, "Kafka", cluster, ns)  # the pool belongs to a Kafka that exists
            pods.setdefault(ns, []).append({"strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka",
                                            "strimzi.io/pool-name": meta["name"]})
        elif obj["kind"] == "Cluster" and obj["apiVersion"].startswith("postgresql.cnpg.io/"):
            for role in ("primary", "replica"):
                pods.setdefault(ns, []).append({"cnpg.io/cluster": meta["name"], "cnpg.io/podRole": "instance",
                                                "cnpg.io/instanceRole": role})
    return pods


def matches_a_pod(plan: Any, namespace: str, labels: dict[str, str]) -> bool:
    return any(labels.items() <= pod.items() for pod in pod_label_sets(plan).get(namespace, []))


def namespaces(plan: Any) -> set[str]:
    return {str(o["metadata"]["name"]) for o in _objects(plan) if o["kind"] == "Namespace"}


# --- the NetworkChaos schema -------------------------------------------------------------------------------


@cache
def network_chaos_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    schema = json.loads(SCHEMA_PATH.read_text())
    common = json.loads(COMMON_SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents(s)) for s in (common, schema))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in network_chaos_validator().iter_errors(obj)]


# === the experiments' shape ================================================================================


def test_the_issue_s_kubernetes_experiments_are_all_there() -> None:
    assert set(IDS) >= WANTED, f"missing: {sorted(WANTED - set(IDS))}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_experiment_has_header_hypothesis_method_rollbacks_and_the_safeguard(path: Path) -> None:
    doc = load(path)
    assert str(doc.get("title", "")).strip(), "a title"
    description = " ".join(str(doc.get("description", "")).split())
    assert description.startswith("Proves "), "the header says what the experiment proves"
    assert len(description.split()) >= 40, "the header explains the claim, not just names it"
    assert "kubernetes" in (doc.get("tags") or [])

    hypothesis = doc.get("steady-state-hypothesis") or {}
    assert hypothesis.get("title") and hypothesis.get("probes"), "a steady-state hypothesis with probes"
    assert all("tolerance" in p for p in hypothesis["probes"]), "every hypothesis probe has a tolerance"
    gates = [p for p in hypothesis["probes"]
             if (p["provider"].get("module"), p["provider"].get("func")) == ("openbell.chaos.probes", "slo_gate")]
    assert len(gates) == 1, "the hypothesis is built on the SLO gate"
    gate = gates[0]["provider"]["arguments"]
    assert gate["severity"] == "page" and gate["prometheus_url"] == "${prometheus_url}"
    assert gates[0]["tolerance"]["provider"] == {"type": "python", "module": "openbell.chaos.probes", "func": "ok",
                                                 "arguments": {}}
    for slo in gate["slo_paths"]:
        assert (ROOT / slo).is_file(), f"{slo}: no such SLO spec"
    # The SLO gate, the http probes and the safeguard read the same Prometheus: $OPENBELL_PROMETHEUS_URL,
    # else openbell's own fallback (a port-forward on 127.0.0.1:9090).
    assert doc["configuration"]["prometheus_url"] == {"type": "env", "key": "OPENBELL_PROMETHEUS_URL",
                                                      "default": "http://127.0.0.1:9090"}

    method = doc.get("method") or []
    assert any(a.get("type") == "action" for a in method), "the method does something"
    assert doc.get("rollbacks"), "rollbacks"
    assert doc.get("runtime") == {"rollbacks": {"strategy": "always"}}, "rollbacks run even after an interruption"

    controls = doc.get("controls") or []
    assert [c["name"] for c in controls] == [SAFEGUARD["name"]]
    provider = controls[0]["provider"]
    assert (provider["type"], provider["module"]) == ("python", SAFEGUARD["module"])
    arguments = provider["arguments"]
    assert arguments["slo_paths"] == gate["slo_paths"], "the safeguard watches what the hypothesis judges"
    assert arguments["severity"] == "page"
    assert not any("${" in json.dumps(v) for v in arguments.values()), \
        "Chaos Toolkit does not substitute configuration into a control's configure step"


def test_the_prometheus_configuration_is_openbell_s() -> None:
    """The env key and fallback the experiments use are the ones openbell.chaos.target reads (when built)."""
    try:
        target = importlib.import_module("openbell.chaos.target")
    except ImportError as exc:
        pytest.skip(f"openbell.chaos is not built yet ({exc})")
    for path in FILES:
        config = load(path)["configuration"]["prometheus_url"]
        assert (config["key"], config["default"]) == (target.PROMETHEUS_ENV, target.DEFAULT_PROMETHEUS)


# === every python activity exists and takes the arguments it is given ======================================


def _bind(module: str, func: str, arguments: dict[str, Any], tolerance: bool) -> None:
    target = getattr(importlib.import_module(module), func, None)
    assert callable(target), f"{module}.{func} does not exist"
    signature = inspect.signature(target)
    args = dict(arguments)
    for name in INJECTED:
        if name in signature.parameters:
            args.setdefault(name, None)
    if tolerance:
        args["value"] = None  # chaoslib passes the probe's output to a tolerance probe as `value`
    signature.bind(**args)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_kubernetes_activities_exist_with_their_arguments(path: Path) -> None:
    pytest.importorskip("chaosk8s", reason="chaostoolkit-kubernetes is not installed")
    checked = 0
    for where, name, module, func, arguments in python_calls(load(path)):
        if module.startswith("openbell."):
            continue
        try:
            _bind(module, func, arguments, where.endswith("tolerance"))
        except TypeError as exc:
            raise AssertionError(f"{where} {name!r}: {module}.{func}({', '.join(arguments)}): {exc}") from None
        checked += 1
    assert checked, "the experiment uses chaostoolkit-kubernetes"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_openbell_activities_exist_with_their_arguments(path: Path) -> None:
    calls = [c for c in python_calls(load(path)) if c[2].startswith("openbell.")]
    assert calls
    for where, name, module, func, arguments in calls:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            pytest.skip(f"{module} is not importable yet ({exc}): openbell's chaos extension is built separately")
        try:
            _bind(module, func, arguments, where.endswith("tolerance"))
        except TypeError as exc:
            raise AssertionError(f"{where} {name!r}: {module}.{func}({', '.join(arguments)}): {exc}") from None


def test_the_safeguard_accepts_its_arguments() -> None:
    pytest.importorskip("chaoslib", reason="chaostoolkit-lib is not installed")
    try:
        controls = importlib.import_module(SAFEGUARD["module"])
    except ImportError as exc:
        pytest.skip(f"{SAFEGUARD['module']} is not importable yet ({exc})")
    for path in FILES:
        control = load(path)["controls"][0]
        controls.validate_control(control)


# === Chaos Toolkit's own validation ========================================================================


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_chaostoolkit_lib_validates_the_experiment(path: Path) -> None:
    pytest.importorskip("chaoslib", reason="chaostoolkit-lib is not installed")
    pytest.importorskip("chaosk8s", reason="chaostoolkit-kubernetes is not installed")
    pytest.importorskip("jsonpath2", reason="jsonpath tolerances need chaostoolkit-lib[jsonpath] (jsonpath2)")
    for module in ("openbell.chaos.probes", "openbell.chaos.controls"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            pytest.skip(f"{module} is not importable yet ({exc}): chaoslib imports every python activity")
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    try:
        ensure_experiment_is_valid(load(path))
    except ChaosException as exc:
        raise AssertionError(f"{path.name}: {exc}") from None


# === tolerances judge real answers the right way ===========================================================


def prometheus_answer(value: str | None) -> dict[str, Any]:
    """What chaoslib's http provider returns for an instant query (Prometheus answers application/json)."""
    result = [] if value is None else [{"metric": {}, "value": [1_763_800_000.0, value]}]
    return {"status": 200, "headers": {"Content-Type": "application/json"},
            "body": {"status": "success", "data": {"resultType": "vector", "result": result}}}


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_prometheus_tolerances_pass_healthy_and_fail_unhealthy_answers(path: Path) -> None:
    pytest.importorskip("jsonpath2", reason="jsonpath tolerances need chaostoolkit-lib[jsonpath] (jsonpath2)")
    from chaoslib.hypothesis import within_tolerance

    for query, probe in http_queries(load(path)):
        tolerance = probe.get("tolerance")
        if tolerance is None:
            continue  # a method probe: recorded in the journal, not judged
        expect = tolerance["expect"]
        other = "1" if expect == "0" else "0"
        assert within_tolerance(copy.deepcopy(tolerance), prometheus_answer(expect)), probe["name"]
        assert not within_tolerance(copy.deepcopy(tolerance), prometheus_answer(other)), probe["name"]
        # No series at all (scrape broken, wrong labels) must fail closed, not pass.
        assert not within_tolerance(copy.deepcopy(tolerance), prometheus_answer(None)), probe["name"]
        if re.search(r"[<>]|==|!=", re.sub(r"\{[^}]*\}", "", query)):
            # A comparison without `bool` filters series out instead of answering 0: the tolerance would then
            # see an empty result for "false" (failing closed, but for the wrong reason).
            assert " bool " in query, f"{probe['name']}: compare with `bool` so the answer is 0 or 1"


KUBERNETES_ANSWERS: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {
    # (plural, name) -> (a healthy object, an unhealthy one)
    ("kafkas", "openbell"): (
        {"status": {"conditions": [{"type": "Warning", "status": "True"}, {"type": "Ready", "status": "True"}]}},
        {"status": {"conditions": [{"type": "NotReady", "status": "True"}, {"type": "Ready", "status": "False"}]}}),
    ("clusters", "openbell"): (
        {"status": {"phase": "Cluster in healthy state", "readyInstances": 3}},
        {"status": {"phase": "Failing over", "readyInstances": 2}}),
    ("networkchaos", ""): (
        {"items": [{"metadata": {"name": "old"}, "status": {"experiment": {"desiredPhase": "Stop"}}}]},
        {"items": [{"metadata": {"name": "x"}, "status": {"experiment": {"desiredPhase": "Run"}}}]}),
}


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_kubernetes_object_tolerances_pass_healthy_and_fail_unhealthy_objects(path: Path) -> None:
    pytest.importorskip("jsonpath2", reason="jsonpath tolerances need chaostoolkit-lib[jsonpath] (jsonpath2)")
    from chaoslib.hypothesis import within_tolerance

    for probe in (load(path).get("steady-state-hypothesis") or {}).get("probes") or []:
        provider = probe["provider"]
        if provider.get("module") != "chaosk8s.crd.probes":
            continue
        args = provider["arguments"]
        healthy, unhealthy = KUBERNETES_ANSWERS[(args["plural"], args.get("name", ""))]
        assert within_tolerance(copy.deepcopy(probe["tolerance"]), healthy), probe["name"]
        assert not within_tolerance(copy.deepcopy(probe["tolerance"]), unhealthy), probe["name"]
    assert within_tolerance(True, True) and not within_tolerance(True, False)


# === what the experiments touch is what infra/ creates =====================================================


def test_selectors_and_names_match_what_infra_declares(plan: Any) -> None:
    from infra import apps, kafka, kube, postgres

    seen: set[str] = set()
    for path in FILES:
        doc = load(path)
        for where, name, module, func, args in python_calls(doc):
            ns = args.get("ns") or args.get("pod_namespace")
            if module.startswith("chaosk8s.") and "label_selector" in args and module != "chaosk8s.node.actions" \
                    and module != "chaosk8s.node.probes":
                selector = selector_dict(args["label_selector"])
                assert matches_a_pod(plan, str(ns), selector), \
                    f"{path.name} {where} {name!r}: no pod infra/ runs in {ns} has {selector}"
                seen.add(f"{ns}/{args['label_selector']}")
            if "pod_label_selector" in args:
                selector = selector_dict(args["pod_label_selector"])
                assert matches_a_pod(plan, str(ns), selector), f"{path.name} {name!r}: {selector} in {ns}"
            if module == "openbell.chaos.nodes" and func == "drain_nodes":
                assert set(args["namespaces"]) <= namespaces(plan), f"{path.name} {name!r}: {args['namespaces']}"
                if args.get("hosting"):
                    selector = selector_dict(args["hosting"])
                    assert any(matches_a_pod(plan, n, selector) for n in args["namespaces"]), \
                        f"{path.name} {name!r}: no pod {selector} in {args['namespaces']}"
                    seen.add(f"{args['namespaces'][0]}/{args['hosting']}")
            if module.startswith("chaosk8s.deployment."):
                _find(plan, "Deployment", args["name"], args["ns"])
            if func in ("get_custom_object", "create_custom_object", "list_custom_objects", "delete_network_fault",
                        "get_network_fault"):
                assert args["ns"] in namespaces(plan), f"{path.name} {name!r}: namespace {args['ns']} is not infra's"
            if func == "get_custom_object":
                kind = {"kafkas": "Kafka", "clusters": "Cluster"}[args["plural"]]
                _find(plan, kind, args["name"], args["ns"])
    # The names the experiments rely on, from infra's own constants.
    assert f"{apps.NAMESPACE}/app.kubernetes.io/name=gateway,{apps.ROLE}=stable" in seen
    assert f"{kafka.NAMESPACE}/strimzi.io/cluster={kafka.CLUSTER},strimzi.io/pool-name=broker" in seen
    assert f"{postgres.NAMESPACE}/cnpg.io/cluster={postgres.CLUSTER},cnpg.io/instanceRole=primary" in seen
    assert kube.NAMESPACES["apps"] == "openbell" and kube.POOL_LABEL == "openbell.dev/pool"


def test_node_selectors_match_the_karpenter_pools(plan: Any) -> None:
    from infra import apps, kafka, kube, postgres

    pools = {o["metadata"]["name"]: o for o in _objects(plan) if o["kind"] == "NodePool"}
    gateway = pools["gateway"]["spec"]["template"]
    requirements = {r["key"]: r for r in gateway["spec"]["requirements"]}
    zones = set(requirements[kube.ZONE]["values"])

    spot = load(EXPERIMENTS / "karpenter-spot-interruption.yaml")
    (interrupt,) = calls_to(spot, "openbell.chaos.nodes", "drain_nodes", "method")
    assert selector_dict(interrupt["label_selector"]) == {kube.POOL_LABEL: "gateway", kube.CAPACITY_TYPE: "spot"}
    assert gateway["metadata"]["labels"][kube.POOL_LABEL] == "gateway"
    assert "spot" in requirements[kube.CAPACITY_TYPE]["values"], "the gateway pool runs spot capacity"
    assert interrupt["count"] == 1, "one node at a time"
    assert interrupt["evict"] is True, "Karpenter drains through the Eviction API: the gateway's PDB is honoured"
    assert interrupt["namespaces"] == [apps.NAMESPACE]
    assert selector_dict(interrupt["hosting"]) == {"app.kubernetes.io/name": "gateway", apps.ROLE: "stable"}
    for where in ("method", "rollbacks"):
        (restore,) = calls_to(spot, "openbell.chaos.nodes", "restore_nodes", where)
        assert selector_dict(restore["label_selector"]) == {kube.POOL_LABEL: "gateway"}
    for args in calls_to(spot, "openbell.chaos.nodes", "nodes_schedulable"):
        assert selector_dict(args["label_selector"]) == {kube.POOL_LABEL: "gateway"}

    zone_doc = load(EXPERIMENTS / "zone-loss.yaml")
    assert config_default(zone_doc, "zone") in zones, "the default zone is one the stack runs in"
    (drain,) = calls_to(zone_doc, "openbell.chaos.nodes", "drain_nodes", "method")
    (restore,) = calls_to(zone_doc, "openbell.chaos.nodes", "restore_nodes", "rollbacks")
    assert selector_dict(drain["label_selector"]) == selector_dict(restore["label_selector"]) == {kube.ZONE: "${zone}"}
    # The platform's tiers go dark with the zone; the observer (Prometheus, in monitoring) is spared.
    assert set(drain["namespaces"]) == {apps.NAMESPACE, kafka.NAMESPACE, postgres.NAMESPACE}
    assert kube.NAMESPACES["monitoring"] not in drain["namespaces"]
    assert drain["evict"] is False and drain["grace_period_s"] == 0, "a zone going dark asks no PDB"
    assert not [a for _, a in sections(zone_doc) if (a.get("provider") or {}).get("type") == "process"], \
        "no kubectl: it would act on the kubeconfig's current context, not the one the allow-list checked"


def test_zone_loss_nodepool_changes_are_undone_exactly_and_idempotently(plan: Any) -> None:
    """The method adds one zone NotIn requirement to each NodePool; the rollback removes exactly that one, and
    has nothing to do (rather than failing) when the method never ran. The NodePool stays valid."""
    from infra import validate
    from openbell.chaos import capacity

    doc = load(EXPERIMENTS / "zone-loss.yaml")
    zone = config_default(doc, "zone")
    (avoid,) = calls_to(doc, "openbell.chaos.capacity", "avoid_zone", "method")
    (allow,) = calls_to(doc, "openbell.chaos.capacity", "allow_zone", "rollbacks")
    assert sorted(avoid["nodepools"]) == sorted(allow["nodepools"]) == ["data", "gateway"]
    assert avoid["zone"] == allow["zone"] == "${zone}"
    for name in avoid["nodepools"]:
        pool = copy.deepcopy(_find(plan, "NodePool", name))
        original = capacity.requirements_of(pool)
        assert capacity.allowed(original, zone) is None, "nothing to undo before the method"
        avoided = capacity.avoided(original, zone)
        assert avoided is not None and avoided[-1] == {"key": "topology.kubernetes.io/zone", "operator": "NotIn",
                                                       "values": [zone]}
        assert capacity.avoided(avoided, zone) is None, "idempotent"
        assert capacity.allowed(avoided, zone) == original
        pool["spec"]["template"]["spec"]["requirements"] = avoided
        status, _, errors = validate.validate_object(pool)
        assert status == "ok", errors


def _exported_kafka_metrics() -> set[str]:
    """Metric names infra/kafka.py's JMX exporter rules produce (lowercaseOutputName, $1 from the first group)."""
    from infra import kafka

    names = set()
    for rule in kafka.JMX_RULES:
        first = re.search(r"\(([^()]*)\)", rule["pattern"])
        options = first.group(1).split("|") if first and "$1" in rule["name"] else [""]
        names.update(rule["name"].replace("$1", option).lower() for option in options)
    return names


def _gateway_metrics() -> set[str]:
    source = (ROOT / "services" / "gateway" / "metrics.go").read_text()
    return set(re.findall(r'Name:\s*"(\w+)"', source))


def test_prometheus_queries_name_metrics_and_labels_that_exist(plan: Any) -> None:
    from infra import apps, kafka

    kafka_metrics = _exported_kafka_metrics()
    gateway_metrics = _gateway_metrics()
    assert "kafka_server_replicamanager_underreplicatedpartitions" in kafka_metrics
    # The Kafka PodMonitor maps pod labels strimzi.io/* to strimzi_io_* series labels (the queries' selector).
    monitor = _find(plan, "PodMonitor", f"{kafka.CLUSTER}-kafka", kafka.NAMESPACE)
    maps = [r for r in monitor["spec"]["podMetricsEndpoints"][0]["relabelings"] if r.get("action") == "labelmap"]
    assert maps == [{"action": "labelmap", "regex": "__meta_kubernetes_pod_label_strimzi_io_(.+)",
                     "replacement": "strimzi_io_$1"}]
    relabel = apps.pod_monitor_spec("gateway")["podMetricsEndpoints"][0]["relabelings"]
    assert {"targetLabel": "job", "replacement": "gateway", "action": "replace"} in relabel

    used = 0
    for path in FILES:
        for query, probe in http_queries(load(path)):
            for metric in re.findall(r"\b(kafka_[a-z_]+)\b", query):
                assert metric in kafka_metrics, f"{path.name} {probe['name']}: {metric} is not exported"
                assert f'strimzi_io_cluster="{kafka.CLUSTER}"' in query
                used += 1
            for metric in re.findall(r"\b(gateway_[a-z_]+)\b", query):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                assert base in gateway_metrics, f"{path.name} {probe['name']}: the gateway exports no {base}"
                assert 'job="gateway"' in query
                used += 1
            assert probe["provider"]["url"] == "${prometheus_url}/api/v1/query"
            window = re.search(r"\[(\d+)m:\d+s\]\)$", query)
            if window:  # a look-back over the whole run must be longer than the run's method (at its defaults)
                assert _method_seconds(load(path)) < int(window.group(1)) * 60, f"{path.name}: {query}"
    assert used > 10


def _method_seconds(doc: dict[str, Any]) -> float:
    """How long the method can take at the configuration's defaults: its pauses plus each activity's bound."""
    total = 0.0
    for activity in doc["method"]:
        pauses = activity.get("pauses") or {}
        for key in ("before", "after"):
            total += float(resolve(doc, str(pauses.get(key, 0))))
        provider = activity["provider"]
        total += float(provider.get("timeout") or (provider.get("arguments") or {}).get("timeout") or 0)
    return total


# === Chaos Mesh: the objects, the schema, and their removal ================================================


def test_the_schema_is_a_transcription_of_the_pinned_chaos_mesh() -> None:
    from infra.config import ToolingConfig

    schema = json.loads(SCHEMA_PATH.read_text())
    version = ToolingConfig().chaos_mesh_version
    assert f"Chaos Mesh v{version}'s NetworkChaos CRD" in schema["$comment"]
    assert "Hand-written from" in schema["$comment"]
    assert schema["$id"].endswith("/" + SCHEMA_PATH.name)
    network_chaos_validator()  # a valid draft 2020-12 schema whose $refs resolve


def test_network_chaos_objects_validate_and_are_removed_by_the_rollbacks(plan: Any) -> None:
    from infra import tooling, validate

    objects = network_chaos_objects()
    assert {o["spec"]["action"] for _, _, o in objects} >= {"delay", "partition"}
    assert tooling.CHAOS_NAMESPACE in namespaces(plan), "the staging stack installs Chaos Mesh"
    for source, ns, obj in objects:
        assert schema_errors(obj) == [], f"{source}: {schema_errors(obj)}"
        if (obj["apiVersion"], obj["kind"]) in validate.CRD_SCHEMAS:  # once `openbell infra plan` knows the kind
            assert validate.validate_object(obj)[0] == "ok", validate.validate_object(obj)
        meta = obj["metadata"]
        assert meta["namespace"] == ns, f"{source}: created in {ns} but says {meta['namespace']}"
        for side in (obj["spec"]["selector"], obj["spec"]["target"]["selector"]):
            for namespace in side["namespaces"]:
                assert matches_a_pod(plan, namespace, side["labelSelectors"]), f"{source}: {side}"
        doc = load(EXPERIMENTS / source)
        deletes = calls_to(doc, "chaosk8s.chaosmesh.network.actions", "delete_network_fault", "rollbacks")
        assert {"name": meta["name"], "ns": ns} in deletes, f"{source}: the rollbacks must delete {meta['name']}"
        # The hypothesis runs again after the method and before the rollbacks: by then Chaos Mesh must have
        # lifted the fault (its duration), or "no network fault injecting" could never hold.
        seconds = _go_seconds(obj["spec"]["duration"])
        method = doc["method"]
        start = next(i for i, a in enumerate(method) if a["provider"].get("func") == "create_custom_object")
        waited = sum(float((a.get("pauses") or {}).get("after", 0)) for a in method[start:])
        assert waited > seconds, f"{source}: the method waits {waited:g}s for a {seconds:g}s fault"


def _go_seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", duration))


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda s: s.update(action="latency"), "is not one of"),
    (lambda s: s.update(mode="some"), "is not one of"),
    (lambda s: s.update(mode="fixed-percent", value="150"), "does not match"),
    (lambda s: s.update(mode="fixed"), "'value' is a required property"),
    (lambda s: s.pop("duration"), "'duration' is a required property"),
    (lambda s: s.update(duration="2 minutes"), "does not match"),
    (lambda s: s.update(direction="sideways"), "is not one of"),
    (lambda s: s["delay"].update(latency="40"), "does not match"),
    (lambda s: s["delay"].update(correlation="high"), "does not match"),
    (lambda s: s.pop("delay"), "'delay' is a required property"),
    (lambda s: s.update(direction="both") or s.pop("target"), "'target' is a required property"),
    (lambda s: s["selector"].pop("labelSelectors"), "is not valid under any of the given schemas"),
    (lambda s: s.update(delays={"latency": "1s"}), "Additional properties are not allowed"),
    (lambda s: s.update(action="bandwidth", bandwidth={"rate": "1mbps", "limit": 0, "buffer": 1}),
     "is less than the minimum"),
    (lambda s: s.update(action="partition"), "should not be valid"),
], ids=["action", "mode", "percent", "fixed-value", "no-duration", "duration", "direction", "latency",
        "correlation", "no-delay-block", "from-without-target", "namespace-only", "typo", "bandwidth-limit",
        "partition-with-delay"])
def test_the_schema_refuses_what_chaos_mesh_would(mutate: Any, expected: str) -> None:
    (latency,) = [o for _, _, o in network_chaos_objects() if o["spec"]["action"] == "delay"]
    obj = copy.deepcopy(latency)
    mutate(obj["spec"])
    errors = schema_errors(obj)
    assert any(expected in e for e in errors), errors


def test_chaostoolkit_kubernetes_chaosmesh_module_builds_objects_the_schema_accepts_once_namespaced() -> None:
    """chaosk8s.chaosmesh.network builds NetworkChaos objects itself (no duration, and `metadata.ns` instead
    of a namespace); the experiments create theirs through create_custom_object so what reaches the API is
    exactly what the schema checked. This pins the reason: its objects lack what the schema requires."""
    pytest.importorskip("chaosk8s", reason="chaostoolkit-kubernetes is not installed")
    from chaosk8s.chaosmesh.network import actions

    captured: list[dict[str, Any]] = []

    def capture(group: str, version: str, plural: str, ns: str, resource: dict[str, Any],
                secrets: Any = None) -> dict[str, Any]:
        captured.append(resource)
        return resource

    with mock.patch.object(actions, "create_custom_object", side_effect=capture):
        actions.add_latency("x", ns="openbell", label_selectors="app.kubernetes.io/name=gateway", latency="40ms",
                            target_mode=None)
    errors = schema_errors(captured[0])
    assert any("'duration' is a required property" in e for e in errors), errors
    assert any("'namespace' is a required property" in e for e in errors), errors


# === rollbacks undo what the method did ====================================================================


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_rollbacks_undo_what_the_method_does(path: Path) -> None:
    doc = load(path)
    method = [(m, f, a) for w, _, m, f, a in python_calls(doc) if w == "method"]
    rollbacks = [(m, f, a) for w, _, m, f, a in python_calls(doc) if w == "rollbacks"]
    undone = {
        "create_custom_object": lambda a: ("chaosk8s.chaosmesh.network.actions", "delete_network_fault",
                                           {"name": a["resource"]["metadata"]["name"], "ns": a["ns"]}),
        "cordon_node": lambda a: ("chaosk8s.node.actions", "uncordon_node", {"label_selector": a["label_selector"]}),
        "avoid_zone": lambda a: ("openbell.chaos.capacity", "allow_zone", a),
    }
    for _module, func, args in method:
        if func in undone:
            assert undone[func](args) in rollbacks, f"{func} in the method is not undone by the rollbacks"
        if func == "drain_nodes":
            # restore_nodes uncordons what drain_nodes marked, among nodes the drain's selector (or a wider one
            # of its terms) matches.
            drained = selector_dict(args["label_selector"]).items()
            assert any(m == "openbell.chaos.nodes" and f == "restore_nodes"
                       and selector_dict(a["label_selector"]).items() <= drained for m, f, a in rollbacks), \
                "drain_nodes in the method is not undone by the rollbacks"
        if func in ("terminate_pods", "delete_nodes"):
            # A deleted pod or node comes back through its controller (ReplicaSet, StrimziPodSet, CloudNativePG,
            # Karpenter): the rollbacks wait for it, bounded, and record whether it did.
            assert rollbacks, "the rollbacks wait for the controller to restore what was deleted"
        if func == "terminate_pods":
            assert args.get("qty") == 1 and not args.get("all"), "one pod at a time"
    assert not any(f == "delete_nodes" for _, f, _ in method), \
        "a deleted Node only comes back where Karpenter's finalizer replaces it: nothing restores it"


# === why the node experiments do not use chaosk8s' drain_nodes ============================================


def test_chaosk8s_drain_nodes_still_fails_on_pods_without_volumes() -> None:
    """The gateway's pods have no volumes (no service-account token, no emptyDir): spec.volumes is None, and
    chaostoolkit-kubernetes 0.39.0's drain_nodes dies on it with a TypeError after cordoning the node. The
    spot-interruption and zone-loss experiments drain with openbell.chaos.nodes instead (which also keeps to
    the namespaces it is given and restores only what it cordoned)."""
    pytest.importorskip("chaosk8s", reason="chaostoolkit-kubernetes is not installed")
    from chaosk8s.node import actions

    from kubernetes import client

    pod = client.ApiClient()._ApiClient__deserialize(  # type: ignore[attr-defined]
        {"metadata": {"name": "gateway-0", "namespace": "openbell",
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gateway-1",
                                           "uid": "u", "controller": True}]},
         "spec": {"nodeName": "n1", "containers": [{"name": "gateway"}]}, "status": {"phase": "Running"}}, "V1Pod")
    assert pod.spec.volumes is None
    api = mock.MagicMock()
    api.list_node.return_value = client.V1NodeList(items=[client.V1Node(metadata=client.V1ObjectMeta(name="n1"))])
    api.list_namespaced_pod.return_value = client.V1PodList(items=[pod])
    api.list_pod_for_all_namespaces.return_value = client.V1PodList(items=[pod])
    with mock.patch.object(actions.client, "CoreV1Api", return_value=api), \
            mock.patch.object(actions, "create_k8s_api_client"), pytest.raises(TypeError):
        actions.drain_nodes(label_selector="openbell.dev/pool=gateway", count=1, timeout=1,
                            pod_label_selector="app.kubernetes.io/name=gateway", pod_namespace="openbell")
    api.patch_node.assert_called()  # it had cordoned the node already
    api.create_namespaced_pod_eviction.assert_not_called()


# === openbell.chaos.nodes: drain what is named, restore only what it cordoned ============================


def _node(name: str, cordoned: bool = False, ours: bool = False, ready: bool = True) -> dict[str, Any]:
    labels = {"openbell.dev/pool": "gateway"} | ({"chaos.openbell.dev/cordoned": "true"} if ours else {})
    return {"metadata": {"name": name, "labels": labels}, "spec": {"unschedulable": True} if cordoned else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _pod(name: str, node: str, ns: str = "openbell", owner: str = "ReplicaSet", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "ownerReferences": [{"kind": owner, "name": "x", "controller": True}], **meta},
            "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def test_restore_uncordons_only_the_nodes_the_drain_cordoned() -> None:
    from openbell.chaos import nodes

    fresh, foreign = _node("a"), _node("b", cordoned=True)
    assert nodes.cordon_patch(fresh) == {"metadata": {"labels": {nodes.MARK_LABEL: "true"}},
                                         "spec": {"unschedulable": True}}
    assert nodes.cordon_patch(foreign) is None, "cordoned by someone else: left unmarked"
    assert nodes.restore_patch(foreign) is None, "so the rollback leaves it cordoned"
    ours = _node("a", cordoned=True, ours=True)
    assert nodes.restore_patch(ours) == {"metadata": {"labels": {nodes.MARK_LABEL: None}},
                                         "spec": {"unschedulable": False}}
    assert nodes.restore_patch(fresh) is None, "idempotent: nothing to restore"


def test_a_drain_takes_the_pods_of_its_nodes_but_not_daemonsets_or_static_pods() -> None:
    from openbell.chaos import nodes

    pods = [_pod("g1", "a"), _pod("g2", "b"), _pod("ds", "a", owner="DaemonSet"),
            _pod("static", "a", annotations={"kubernetes.io/config.mirror": "x"})]
    assert [p["metadata"]["name"] for p in nodes.drain_candidates(pods, {"a"})] == ["g1"]
    all_nodes = [_node("a"), _node("b"), _node("c")]
    assert [n["metadata"]["name"] for n in nodes.hosting_nodes(all_nodes, pods[:2])] == ["a", "b"]
    picked = nodes.pick(all_nodes, 2)
    assert len(picked) == 2 and len({n["metadata"]["name"] for n in picked}) == 2, "distinct nodes"
    assert nodes.pick(all_nodes, None) == all_nodes


class _FakeCore:
    """CoreV1Api as drain_nodes uses it: one PDB refusal, then the eviction goes through and the pod is gone."""

    def __init__(self) -> None:
        from kubernetes import client

        self.client = client
        self.nodes = [client.V1Node(metadata=client.V1ObjectMeta(name="spot-a", labels={"pool": "gateway"}),
                                    spec=client.V1NodeSpec())]
        self.pods = {"openbell": [client.V1Pod(
            metadata=client.V1ObjectMeta(name="gateway-1", namespace="openbell", uid="u1", owner_references=[
                client.V1OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="gateway-x", uid="r",
                                        controller=True)]),
            spec=client.V1PodSpec(node_name="spot-a", containers=[client.V1Container(name="gateway")]))]}
        self.listed: list[str] = []
        self.patched: list[tuple[str, Any]] = []
        self.evictions = 0

    def list_node(self, label_selector: str = "") -> Any:
        return self.client.V1NodeList(items=self.nodes)

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> Any:
        self.listed.append(namespace)
        return self.client.V1PodList(items=self.pods.get(namespace, []))

    def patch_node(self, name: str, body: Any) -> None:
        self.patched.append((name, body))

    def create_namespaced_pod_eviction(self, name: str, namespace: str, body: Any) -> None:
        from kubernetes.client.rest import ApiException

        self.evictions += 1
        if self.evictions == 1:
            raise ApiException(status=429, reason="Too Many Requests")
        self.pods[namespace] = []

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        from kubernetes.client.rest import ApiException

        for pod in self.pods.get(namespace, []):
            if pod.metadata.name == name:
                return pod
        raise ApiException(status=404, reason="Not Found")


def test_drain_nodes_evicts_through_the_api_retries_a_pdb_refusal_and_keeps_to_its_namespaces() -> None:
    from kubernetes import client
    from openbell.chaos import nodes

    fake = _FakeCore()
    with mock.patch.object(nodes, "_core", return_value=(fake, client.ApiClient())), \
            mock.patch.object(nodes.time, "sleep"):
        out = nodes.drain_nodes("pool=gateway", ["openbell"], hosting="app=gateway", count=1, timeout_s=30)
    assert out["nodes"] == ["spot-a"] and out["cordoned"] == ["spot-a"]
    assert [d["pod"] for d in out["drained"]] == ["gateway-1"]
    assert fake.evictions == 2, "the PDB's 429 was retried"
    assert set(fake.listed) == {"openbell"}, "no other namespace is read, let alone drained"
    assert fake.patched == [("spot-a", {"metadata": {"labels": {nodes.MARK_LABEL: "true"}},
                                        "spec": {"unschedulable": True}})]


def test_drain_nodes_refuses_a_selector_that_matches_nothing() -> None:
    from kubernetes import client
    from openbell.chaos import nodes

    fake = _FakeCore()
    fake.nodes = []
    with mock.patch.object(nodes, "_core", return_value=(fake, client.ApiClient())), \
            pytest.raises(nodes.NodeFaultError, match="no node matches"):
        nodes.drain_nodes("pool=gateway,karpenter.sh/capacity-type=spot", ["openbell"])
    fake = _FakeCore()
    with mock.patch.object(nodes, "_core", return_value=(fake, client.ApiClient())), \
            pytest.raises(nodes.NodeFaultError, match="hosts a pod"):
        nodes.drain_nodes("pool=gateway", ["kafka"], hosting="app=gateway")
    assert fake.patched == [], "nothing cordoned"


def test_nodes_schedulable_fails_a_cordoned_node_that_chaosk8s_ready_to_schedule_passes() -> None:
    pytest.importorskip("chaosk8s", reason="chaostoolkit-kubernetes is not installed")
    from chaosk8s.node import probes as k8s_probes

    from kubernetes import client
    from openbell.chaos import nodes

    cordoned = client.V1Node(metadata=client.V1ObjectMeta(name="spot-a"), spec=client.V1NodeSpec(unschedulable=True),
                             status=client.V1NodeStatus(conditions=[client.V1NodeCondition(type="Ready",
                                                                                           status="True")]))
    api = mock.MagicMock()
    api.list_node.return_value = client.V1NodeList(items=[cordoned])
    with mock.patch.object(k8s_probes.client, "CoreV1Api", return_value=api), \
            mock.patch.object(k8s_probes, "create_k8s_api_client"):
        assert k8s_probes.all_nodes_must_be_ready_to_schedule(label_selector="pool=gateway") is True
    with mock.patch.object(nodes, "_core", return_value=(api, client.ApiClient())):
        answer = nodes.nodes_schedulable("pool=gateway")
    assert answer["ok"] is False and answer["nodes"] == {"spot-a": {"ready": True, "cordoned": True}}


# === the pre-flight: what the cluster must have before anything runs ======================================


def test_preflight_reads_the_custom_resources_each_experiment_acts_on() -> None:
    from openbell.chaos import preflight

    def wanted(name: str) -> set[str]:
        return {n.describe().split(" (")[0] for n in preflight.needed(load(EXPERIMENTS / f"{name}.yaml"))}

    assert wanted("kafka-broker-loss") == {"kafkas.kafka.strimzi.io/v1beta2",
                                           "kafkas.kafka.strimzi.io/v1beta2 'openbell' in namespace kafka"}
    assert wanted("postgres-primary-failover") == {
        "clusters.postgresql.cnpg.io/v1", "clusters.postgresql.cnpg.io/v1 'openbell' in namespace postgres"}
    assert wanted("zone-loss") == {"nodepools.karpenter.sh/v1", "nodepools.karpenter.sh/v1 'gateway'",
                                   "nodepools.karpenter.sh/v1 'data'"}
    assert wanted("gateway-kafka-latency") >= {"networkchaos.chaos-mesh.org/v1alpha1"}
    assert wanted("gateway-pod-loss") == set()


def test_preflight_names_a_missing_operator_and_a_missing_object_in_one_line() -> None:
    from kubernetes.client.rest import ApiException

    from kubernetes import client
    from openbell.chaos import preflight

    custom = mock.MagicMock()

    def resources(group: str, version: str) -> Any:
        if group == "kafka.strimzi.io":
            raise ApiException(status=404, reason="Not Found")
        return client.V1APIResourceList(group_version=f"{group}/{version}", resources=[
            client.V1APIResource(name="clusters", kind="Cluster", namespaced=True, singular_name="cluster",
                                 verbs=["get"])])

    custom.get_api_resources.side_effect = resources
    custom.get_namespaced_custom_object.side_effect = ApiException(status=404, reason="Not Found")
    wanted = (preflight.needed(load(EXPERIMENTS / "kafka-broker-loss.yaml"))
              + preflight.needed(load(EXPERIMENTS / "postgres-primary-failover.yaml")))
    with mock.patch.object(client, "CustomObjectsApi", return_value=custom):
        absent = preflight.missing(wanted, object())
    line = preflight.message("x", "openbell-local", absent)
    assert "\n" not in line
    assert "kafkas.kafka.strimzi.io/v1beta2 (Strimzi is not installed), needed by kafka-resource-ready" in line
    assert ("clusters.postgresql.cnpg.io/v1 'openbell' in namespace postgres (no such CloudNativePG object), "
            "needed by cluster-healthy, primary-before, primary-after") in line
    assert line.endswith("Nothing was run.")
    # An object of a kind that is not served is not asked for: the missing operator says it all.
    asked = [c.args for c in custom.get_namespaced_custom_object.call_args_list]
    assert asked == [("postgresql.cnpg.io", "v1", "postgres", "clusters", "openbell")]


def test_the_allow_list_sees_every_namespace_a_drain_touches() -> None:
    from openbell.chaos import allowlist

    assert allowlist.experiment_namespaces(load(EXPERIMENTS / "zone-loss.yaml")) >= {"openbell", "kafka", "postgres"}
    assert allowlist.experiment_namespaces(load(EXPERIMENTS / "karpenter-spot-interruption.yaml")) == {"openbell"}


def test_the_run_acts_on_the_context_the_allow_list_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without --context, chaostoolkit-kubernetes would follow the kubeconfig's current context wherever it points
    during the run: the context that was allowed is handed to it ($KUBERNETES_CONTEXT)."""
    from typer.testing import CliRunner

    from openbell.chaos import allowlist, preflight, runner
    from openbell.commands import chaos as command
    from openbell.commands.app import app
    from openbell.slo.verdict import Verdict

    seen: dict[str, Any] = {}

    def run(found: Any, options: Any, *_: Any) -> Any:
        seen["env"] = runner.chaos_env(options)
        return runner.RunResult(found, Verdict("pass", ("ok",)), 0, options.journal_path, tmp_path / "log", None)

    monkeypatch.setattr(allowlist, "load", lambda: [allowlist.Rule("openbell-local", ("*",), ("*",))])
    monkeypatch.setattr(allowlist, "current_context", lambda *_: ("openbell-local", "openbell"))
    monkeypatch.setattr(preflight, "check", lambda *_: None)
    monkeypatch.setattr(command, "_reachable", lambda _: None)
    monkeypatch.setattr(runner, "run", run)
    result = CliRunner().invoke(app, ["chaos", "run", "gateway-pod-loss", "--target", "kubernetes",
                                      "--prometheus", "http://127.0.0.1:1", "--output", "json"])
    assert result.exit_code == 0, result.output
    assert seen["env"]["KUBERNETES_CONTEXT"] == "openbell-local"
