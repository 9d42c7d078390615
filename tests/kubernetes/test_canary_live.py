"""KubernetesTarget against a real cluster (Gateway API CRDs, the gateway's Deployment, Services and HTTPRoute
in $OPENBELL_K8S_NAMESPACE): canary up, weights set and read back, rollback, the end state verified, the lock."""

from __future__ import annotations

import os
import socket

import pytest

from openbell.targets.base import RunConflict
from openbell.targets.kubernetes import KubernetesRunStore, KubernetesTarget
from tests.kubernetes.conftest import LIVE

pytestmark = LIVE


def test_canary_weights_read_back_and_rollback_leaves_stable_alone(target: KubernetesTarget) -> None:
    version = os.environ.get("OPENBELL_K8S_CANARY_VERSION") or target.stable_version()
    before = target.stable_version()
    target.start_canary(version, {})
    assert target.canary_running()
    for percent in (10, 25, 50, 0):
        target.set_weight(percent)
        assert target.weight() == percent
    assert target.churn(0.0) == 0  # every stable pod's drain endpoint answers; fraction 0 closes nothing
    target.set_weight(10)
    target.rollback()
    assert not target.canary_running() and target.weight() == 0
    assert target.verify_stable() == []
    assert target.stable_version() == before
    target.rollback()  # idempotent


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


@pytest.mark.skipif(not os.environ.get("OPENBELL_K8S_PROMETHEUS"), reason="set OPENBELL_K8S_PROMETHEUS")
def test_traffic_counts_connections_per_role(target: KubernetesTarget) -> None:
    traffic = target.traffic()
    assert traffic.source == "prometheus gateway_connections"
    assert traffic.stable_connections >= 0 and traffic.canary_connections == 0
