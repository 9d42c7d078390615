"""KubernetesTarget and `openbell canary` against the local cluster: real Deployments and ReplicaSets under the
controller-manager (its garbage collector finishes foreground deletions), HTTPRoute weights checked by the
upstream Gateway API CRD, the Lease lock contended, the drain through the API server's pod proxy to real
gateways, and the judge's per-version series from a real Prometheus."""

from __future__ import annotations

import os
import socket

import pytest

from openbell.targets.base import RunConflict
from openbell.targets.kubernetes import HTTPROUTE, KubernetesRunStore, KubernetesTarget
from tests.kubernetes.conftest import GatewayStack, Kube, _query


def test_canary_weights_read_back_and_rollback_leaves_stable_alone(target: KubernetesTarget, kube: Kube) -> None:
    before = target.stable_version()
    target.start_canary("1.1.0", {})
    assert target.canary_running()
    # The canary's pod is served by a gateway at its version.
    kube.wait("the canary pod to be served", lambda: kube.pods(target.namespace, "role=canary"))
    for percent in (10, 25, 50, 0):
        target.set_weight(percent)
        assert target.weight() == percent
    assert target.churn(0.0) == 0  # every stable pod's drain endpoint answers through the pod proxy
    target.set_weight(10)
    target.rollback()
    assert not target.canary_running() and target.weight() == 0
    assert target.verify_stable() == []
    assert target.stable_version() == before
    # The garbage collector removed the canary's ReplicaSet and pods with it (foreground deletion).
    assert kube.apps().list_namespaced_replica_set(target.namespace, label_selector="role=canary").items == []
    kube.wait("the canary's pods to be gone", lambda: not kube.pods(target.namespace, "role=canary"))
    target.rollback()  # idempotent


def test_the_api_server_refuses_a_weight_the_crd_forbids(target: KubernetesTarget) -> None:
    """The upstream CRD's schema, which the hand-made fake never had: weight must be 0..1,000,000."""
    from openbell.errors import OpenbellError

    route = target._route()
    rules = route["spec"]["rules"]
    rules[0]["backendRefs"][0]["weight"] = -1
    with pytest.raises(OpenbellError, match=r"refused.*weight"):
        target._kube().patch(HTTPROUTE, target.route, {"spec": {"rules": rules}})
    assert target.weight() == 0


def test_one_run_holds_the_lock(target: KubernetesTarget) -> None:
    mine, theirs = target.store(), target.store()
    assert isinstance(mine, KubernetesRunStore) and isinstance(theirs, KubernetesRunStore)
    owner = f"{socket.gethostname()}:{os.getpid()}:live-test"
    mine.acquire(owner)
    try:
        with pytest.raises(RunConflict, match=owner):
            theirs.acquire("someone-else:1")
        mine.renew()
        assert theirs.holder() == owner
    finally:
        mine.release()
    assert theirs.holder() is None


def test_traffic_and_per_version_series_come_from_prometheus(target: KubernetesTarget, gateway: GatewayStack) -> None:
    traffic = target.traffic()
    assert traffic.source == "prometheus gateway_connections"
    assert traffic.stable_connections == 0 and traffic.canary_connections == 0  # nobody connected
    assert _query(gateway.prometheus, 'count(gateway_connections{job="gateway",role="stable",version="1.0.0"}) == 2')


def test_a_canary_held_by_a_finalizer_times_out_naming_it(gateway: GatewayStack, kube: Kube) -> None:
    """What a Deployment deleted in the foreground looks like while something holds it (on a cluster without
    a controller-manager the garbage collector's own foregroundDeletion never goes): a bounded wait, and
    an error that names the finalizer rather than "still present"."""
    from openbell.targets.kubernetes import RolloutTimeout

    tgt = gateway.target(delete_timeout_s=3.0)
    tgt.start_canary("1.1.0", {})
    kube.apps().patch_namespaced_deployment("gateway-canary", gateway.namespace,
                                            {"metadata": {"finalizers": ["openbell.dev/test-hold"]}})
    try:
        with pytest.raises(RolloutTimeout, match=r"finalizers pending: .*openbell.dev/test-hold"):
            tgt.rollback()
    finally:
        kube.apps().patch_namespaced_deployment("gateway-canary", gateway.namespace,
                                                {"metadata": {"finalizers": None}})
    tgt.rollback()
    assert not tgt.canary_running()
