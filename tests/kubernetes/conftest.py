"""A real cluster for the Kubernetes target's live suite, from the environment; nothing here runs without one.

KUBECONFIG                   the cluster (required: the suite is skipped without it)
OPENBELL_K8S_NAMESPACE       namespace holding the gateway Deployment, Services and HTTPRoute [openbell]
OPENBELL_K8S_SERVICE         the service [gateway]
OPENBELL_K8S_CONTEXT         kubeconfig context [current]
OPENBELL_K8S_CANARY_VERSION  image tag the canary runs [the stable's own, so it always pulls]
OPENBELL_K8S_PROMETHEUS      Prometheus scraping the gateway pods (the traffic check is skipped without it)
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from openbell.errors import OpenbellError
from openbell.targets.kubernetes import KubernetesTarget

LIVE = pytest.mark.skipif(not os.environ.get("KUBECONFIG"),
                          reason="needs a cluster: set KUBECONFIG (and OPENBELL_K8S_NAMESPACE) to run the live suite")


@pytest.fixture(scope="module")
def target() -> Iterator[KubernetesTarget]:
    """The target, checked; any canary a failed earlier run left behind is rolled back before and after."""
    pytest.importorskip("kubernetes", reason="the live suite drives the official client: pip install kubernetes")
    tgt = KubernetesTarget(service=os.environ.get("OPENBELL_K8S_SERVICE", "gateway"),
                           namespace=os.environ.get("OPENBELL_K8S_NAMESPACE", "openbell"),
                           kube_context=os.environ.get("OPENBELL_K8S_CONTEXT") or None,
                           prometheus=os.environ.get("OPENBELL_K8S_PROMETHEUS") or "http://prometheus.invalid",
                           progress=print)
    try:
        tgt.check()
    except OpenbellError as exc:
        pytest.fail(f"the cluster is not ready for the live suite (see docs/kubernetes-canary.md): {exc}")
    tgt.rollback()
    try:
        yield tgt
    finally:
        tgt.rollback()  # the cluster is shared: leave it at weight 0 with no canary, whatever happened
