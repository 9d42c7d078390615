"""The host side of the local cluster: the namespace and its network, credentials, the processes' argument
lists, the nodes, the upstream CRDs; up, status and down.

The argument lists and node specs are pure functions of a Layout (unit-tested); `up` and `down` are the only
places that run `ip`, `openssl` and the namespace's first process.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbell.errors import OpenbellError, UsageError

K8S_VERSION = "1.37.2"
NETNS = "openbell-kube"
HOST_IF, NS_IF = "obk-host", "obk-ns"
HOST_IP, NS_IP = "10.201.0.1", "10.201.0.2"
POD_CIDR = "10.244.0.0/16"  # each node a /24 of it (spec.podCIDR), KWOK hands out its pods' IPs
SERVICE_CIDR = "10.96.0.0/16"
API_PORT = 6443
CONTEXT = "openbell-local"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "openbell.dev/pool"  # infra/kube.py's labels: the NodePools and the tiers' node selectors
CAPACITY_TYPE = "karpenter.sh/capacity-type"
ZONE_LABEL = "topology.kubernetes.io/zone"
# Per zone: (pool, capacity type, instance type); the data pool carries the data tier's taint.
NODE_SHAPES = (("system", "on-demand", "m7i.large"), ("gateway", "spot", "c7i.xlarge"),
               ("gateway", "on-demand", "c7i.xlarge"), ("data", "on-demand", "r7i.xlarge"))


def _state_root() -> Path:
    if override := os.environ.get("OPENBELL_KUBE_HOME"):
        return Path(override)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "openbell" / "kube"


def _cache_root() -> Path:
    from openbell.paths import cache_dir

    return cache_dir() / f"kubernetes-v{K8S_VERSION}"


@dataclass(frozen=True)
class Layout:
    """Where the cluster's binaries (cache, built once) and its state (per cluster) live."""

    state: Path
    cache: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(_state_root(), _cache_root())

    @property
    def bin(self) -> Path:
        return self.cache / "bin"

    @property
    def stages(self) -> Path:
        return self.cache / "kwok-stages"

    @property
    def crds(self) -> Path:
        return self.cache / "crds"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def pid_file(self) -> Path:
        return self.state / "cluster.pid"

    @property
    def server(self) -> str:
        return f"https://{NS_IP}:{API_PORT}"

    def missing_binaries(self) -> list[str]:
        names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
        return [n for n in names if not os.access(self.bin / n, os.X_OK)]


# ---- pure: argument lists, kubeconfig, nodes --------------------------------------------------------------

def plan(layout: Layout) -> dict[str, Any]:
    """The processes the supervisor starts, in order, each with the local port that says it serves."""
    b, pki, st = layout.bin, layout.pki, layout.state
    etcd_data = st / "etcd"
    kubeconfig = str(layout.kubeconfig)
    return {"tmpfs": [str(etcd_data)], "processes": [
        {"name": "etcd", "port": 2379, "argv": [
            str(b / "etcd"), f"--data-dir={etcd_data}/data", "--name=openbell-local",
            "--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=openbell-local=http://127.0.0.1:2380",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            # The data is on a tmpfs that dies with the namespace: fsync buys nothing here.
            "--unsafe-no-fsync", "--log-level=warn"]},
        {"name": "kube-apiserver", "port": API_PORT, "argv": [
            str(b / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0", f"--secure-port={API_PORT}", f"--advertise-address={NS_IP}",
            # No kube-proxy and no Endpoints for `kubernetes`: nothing in the cluster dials it.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}", "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true", "--profiling=false",
            "--enable-priority-and-fairness=false", "--v=0"]},
        {"name": "kube-controller-manager", "port": 10257, "argv": [
            str(b / "kube-controller-manager"), f"--kubeconfig={kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--cert-dir={pki / 'kcm'}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false", f"--service-cluster-ip-range={SERVICE_CIDR}",
            # KWOK nodes have no cloud: the node lifecycle controller's evictions stay on (taint-based), the
            # route and IPAM controllers stay off (KWOK hands out pod IPs itself).
            "--allocate-node-cidrs=false", "--profiling=false", "--v=0"]},
        {"name": "kube-scheduler", "port": 10259, "argv": [
            str(b / "kube-scheduler"), f"--kubeconfig={kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--cert-dir={pki / 'scheduler'}", "--profiling=false", "--v=0"]},
        {"name": "kwok", "port": 0, "argv": [
            str(b / "kwok"), f"--kubeconfig={kubeconfig}",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake", f"--cidr={POD_CIDR}",
            f"--node-ip={NS_IP}", "--node-lease-duration-seconds=40",
            *[f"--config={p}" for p in sorted(str(s) for s in layout.stages.glob("*.yaml"))]]},
    ]}


def kubeconfig(layout: Layout, ca_pem: bytes, token: str) -> dict[str, Any]:
    import base64

    return {"apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
            "clusters": [{"name": CONTEXT, "cluster": {
                "server": layout.server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
            "users": [{"name": f"{CONTEXT}-admin", "user": {"token": token}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": f"{CONTEXT}-admin"}}]}


def nodes() -> list[dict[str, Any]]:
    """The KWOK nodes: in each zone a system node, a spot and an on-demand gateway node, and a tainted data
    node, labelled as infra/'s NodePools label theirs (pool, capacity type, zone, instance type)."""
    out = []
    for zone_index, zone in enumerate(ZONES):
        for shape_index, (pool, capacity, instance) in enumerate(NODE_SHAPES):
            name = f"{pool}-{capacity}-{zone}"
            subnet = 1 + zone_index * len(NODE_SHAPES) + shape_index
            labels = {POOL_LABEL: pool, CAPACITY_TYPE: capacity, ZONE_LABEL: zone,
                      "topology.kubernetes.io/region": zone[:-1], "node.kubernetes.io/instance-type": instance,
                      "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
                      "type": "kwok"}
            if pool != "system":
                labels["karpenter.sh/nodepool"] = pool
            spec: dict[str, Any] = {"podCIDR": f"10.244.{subnet}.0/24", "podCIDRs": [f"10.244.{subnet}.0/24"]}
            if pool == "data":
                spec["taints"] = [{"key": POOL_LABEL, "value": "data", "effect": "NoSchedule"}]
            out.append({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
                        "spec": spec,
                        "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                                   "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"}}})
    return out


def crd_files(layout: Layout) -> list[Path]:
    """Every upstream CRD file scripts/kube-build.sh collected (crds/<source>/*.yaml), sorted."""
    return sorted(layout.crds.glob("*/*.yaml")) if layout.crds.is_dir() else []


def crd_documents(path: Path) -> Iterator[dict[str, Any]]:
    import yaml

    with path.open() as fh:
        for doc in yaml.safe_load_all(fh):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                yield doc


# ---- processes and the network ----------------------------------------------------------------------------

def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise OpenbellError(f"cluster: `{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")
    return done


def _netns_exists() -> bool:
    return Path("/run/netns", NETNS).exists()


def _network_up() -> None:
    """The namespace, a veth pair to it, the pod network routed into it (local addresses there)."""
    _network_down()
    _run(["ip", "netns", "add", NETNS])
    _run(["ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF])
    _run(["ip", "link", "set", NS_IF, "netns", NETNS])
    _run(["ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF])
    _run(["ip", "link", "set", HOST_IF, "up"])
    inside = ["ip", "netns", "exec", NETNS]
    _run([*inside, "ip", "link", "set", "lo", "up"])
    _run([*inside, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF])
    _run([*inside, "ip", "link", "set", NS_IF, "up"])
    _run([*inside, "ip", "route", "add", "local", POD_CIDR, "dev", "lo"])
    # Components that look for a default route to pick an address find the veth; nothing lies beyond it.
    _run([*inside, "ip", "route", "add", "default", "via", HOST_IP])
    _run(["ip", "route", "replace", POD_CIDR, "via", NS_IP, "dev", HOST_IF])


def _network_down() -> None:
    _run(["ip", "route", "del", POD_CIDR], check=False)
    _run(["ip", "link", "del", HOST_IF], check=False)
    if _netns_exists():
        _run(["ip", "netns", "del", NETNS], check=False)


def _pki(layout: Layout) -> str:
    """A CA, the API server's serving certificate, the service-account key pair and an admin token (made once)."""
    pki = layout.pki
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    names = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub", "tokens.csv")
    if all((pki / n).is_file() for n in names):
        return _token(layout)  # a restart keeps the cluster's identity: kubeconfigs handed out stay valid
    ssl = shutil.which("openssl")
    if ssl is None:
        raise OpenbellError("cluster: openssl is needed to make the cluster's certificates (apt-get install openssl)")
    _run([ssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", "/CN=openbell-local-ca",
          "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt")])
    _run([ssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
          "-keyout", str(pki / "apiserver.key"), "-out", str(pki / "apiserver.csr")])
    ext = pki / "san.ext"
    ext.write_text(f"subjectAltName=IP:{NS_IP},IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
                   "DNS:kubernetes.default,DNS:kubernetes.default.svc\n")
    _run([ssl, "x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", str(pki / "ca.crt"),
          "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "365", "-extfile", str(ext),
          "-out", str(pki / "apiserver.crt")])
    _run([ssl, "genrsa", "-out", str(pki / "sa.key"), "2048"])
    _run([ssl, "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])
    token = secrets.token_hex(24)
    (pki / "tokens.csv").write_text(f'{token},openbell-admin,openbell-admin,"system:masters"\n')
    return token


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (unshare is our own child while `up` runs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read_pid(layout: Layout) -> int | None:
    try:
        pid = int(layout.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# ---- the API -----------------------------------------------------------------------------------------------

def _client(layout: Layout) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(layout.kubeconfig), client_configuration=cfg)
    return client.ApiClient(configuration=cfg)


def _token(layout: Layout) -> str:
    return (layout.pki / "tokens.csv").read_text().split(",", 1)[0]


def _readyz(layout: Layout) -> bool:
    """The API server's /readyz answers ok (every post-start hook done, etcd reachable)."""
    import ssl

    import httpx

    try:
        response = httpx.get(f"{layout.server}/readyz", verify=ssl.create_default_context(
            cafile=str(layout.pki / "ca.crt")), timeout=2.0,
                             headers={"Authorization": f"Bearer {_token(layout)}"})
    except (httpx.HTTPError, OSError):
        return False
    return response.status_code == 200


def _install_crds(api: Any, layout: Layout, progress: Callable[[str], None]) -> list[str]:
    from kubernetes.client.rest import ApiException

    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in crd_files(layout):
        for doc in crd_documents(path):
            name = doc["metadata"]["name"]
            doc.setdefault("metadata", {}).setdefault("annotations", {})["openbell.dev/source"] = (
                f"{path.parent.name}/{path.name}")
            try:
                ext.create_custom_resource_definition(body=doc, _preload_content=False)
            except ApiException as exc:
                if exc.status != 409:
                    raise OpenbellError(f"cluster: the API server refused CRD {name} from {path}: HTTP {exc.status}"
                                        f" {exc.reason}") from exc
            names.append(name)
    from openbell.localkube import transcribed

    upstream = len(names)
    names += _create_transcribed(ext, transcribed.crds())
    progress(f"{upstream} upstream CRDs and {len(names) - upstream} made from infra/schemas transcriptions"
             " installed")
    return names


def _create_transcribed(ext: Any, docs: list[dict[str, Any]]) -> list[str]:
    """Create CRDs made from infra/schemas transcriptions (one already there is left as it is); their names."""
    from kubernetes.client.rest import ApiException

    for doc in docs:
        try:
            ext.create_custom_resource_definition(body=doc, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise OpenbellError(f"cluster: the API server refused CRD {doc['metadata']['name']} made from"
                                    f" {doc['metadata']['annotations']['openbell.dev/source']}: HTTP {exc.status}"
                                    f" {_one_line(exc.body)}") from exc
    return [doc["metadata"]["name"] for doc in docs]


def _install_operator_transcriptions(api: Any, progress: Callable[[str], None]) -> list[str]:
    """Strimzi's and Altinity's kinds, made from infra/schemas transcriptions (annotated as such); idempotent."""
    from kubernetes import client
    from openbell.localkube import transcribed

    names = _create_transcribed(client.ApiextensionsV1Api(api), transcribed.crds(
        names=transcribed.OPERATOR_TRANSCRIPTIONS))
    progress(f"{len(names)} CRDs for Strimzi and Altinity made from infra/schemas transcriptions installed")
    return names


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:400]


def _wait_established(api: Any, names: list[str], timeout_s: float) -> None:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for item in ext.list_custom_resource_definition().items:
            conditions = {c.type: c.status for c in (item.status.conditions or [])}
            if conditions.get("Established") == "True":
                pending.discard(item.metadata.name)
        if pending:
            time.sleep(0.3)
    if pending:
        raise OpenbellError(f"cluster: CRDs not established after {timeout_s:g}s: {', '.join(sorted(pending))}")


def _create_nodes(api: Any) -> None:
    from kubernetes.client.rest import ApiException

    from kubernetes import client

    core = client.CoreV1Api(api)
    for node in nodes():
        try:
            core.create_node(body=node, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise


def _wait_nodes_ready(api: Any, want: int, timeout_s: float) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api)
    deadline, ready = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        ready = sum(1 for n in core.list_node().items
                    if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])))
        if ready >= want:
            return
        time.sleep(0.3)
    raise OpenbellError(f"cluster: {ready}/{want} KWOK nodes Ready after {timeout_s:g}s")


def status(layout: Layout | None = None) -> dict[str, Any]:
    """Whether the cluster runs, where, and what it holds."""
    layout = layout or Layout.default()
    pid = _read_pid(layout)
    out: dict[str, Any] = {"running": False, "pid": pid, "server": layout.server, "context": CONTEXT,
                           "kubeconfig": str(layout.kubeconfig), "version": f"v{K8S_VERSION}",
                           "binaries": str(layout.bin), "missing_binaries": layout.missing_binaries()}
    if pid is None or not layout.kubeconfig.exists():
        return out
    out["ready"] = _readyz(layout)
    out["running"] = bool(out["ready"])
    if out["ready"]:
        from kubernetes import client

        api = _client(layout)
        out["nodes"] = len(client.CoreV1Api(api).list_node().items)
        out["crds"] = len(client.ApiextensionsV1Api(api).list_custom_resource_definition().items)
    return out


def _spawn(layout: Layout) -> int:
    layout.state.mkdir(parents=True, exist_ok=True)
    (layout.state / "plan.json").write_text(json.dumps(plan(layout), indent=1))
    (layout.state / "supervisor.ready").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    log = (layout.state / "supervisor.log").open("ab")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NETNS, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
         sys.executable, "-m", "openbell.localkube.supervise", str(layout.state)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    log.close()
    layout.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def up(layout: Layout | None = None, timeout_s: float = 120.0,
       progress: Callable[[str], None] = lambda _m: None, transcribed_crds: bool = False) -> dict[str, Any]:
    """Start the cluster (a running one is left as it is), install the CRDs and the nodes, wait until ready.
    `transcribed_crds`: also Strimzi's and Altinity's kinds, made from infra/schemas (installed on a running
    cluster too)."""
    layout = layout or Layout.default()
    if os.geteuid() != 0:
        raise UsageError("cluster up: needs root (a network namespace and a route for the pod network)")
    if missing := layout.missing_binaries():
        raise UsageError(f"cluster up: {', '.join(missing)} not built in {layout.bin}: run `make kube`"
                         " (scripts/kube-build.sh)")
    current = status(layout)
    if current["running"]:
        progress(f"already running at {layout.server}")
        if transcribed_crds:
            _wait_established(_client(layout), _install_operator_transcriptions(_client(layout), progress), timeout_s)
            current = status(layout)
        return current
    down(layout)
    started = time.monotonic()
    _network_up()
    token = _pki(layout)
    import yaml

    ca = (layout.pki / "ca.crt").read_bytes()
    layout.kubeconfig.write_text(yaml.safe_dump(kubeconfig(layout, ca, token), sort_keys=False))
    os.chmod(layout.kubeconfig, 0o600)
    pid = _spawn(layout)
    progress(f"control plane starting in namespace {NETNS} (pid {pid})")
    api = _client(layout)
    deadline = started + timeout_s
    while not _readyz(layout):
        marker = layout.state / "supervisor.ready"
        failed = marker.exists() and marker.read_text(errors="replace").strip() == "failed"
        if failed or _read_pid(layout) is None:
            detail = _tail(layout.state / "supervisor.log")
            down(layout)
            raise OpenbellError(f"cluster: the control plane did not start ({detail}; logs in {layout.state}/logs)")
        if time.monotonic() > deadline:
            down(layout)
            raise OpenbellError(f"cluster: the API server not ready after {timeout_s:g}s (logs in {layout.state}/logs)")
        time.sleep(0.2)
    progress(f"API server ready at {layout.server} in {time.monotonic() - started:.1f}s")
    names = _install_crds(api, layout, progress)
    if transcribed_crds:
        names += _install_operator_transcriptions(api, progress)
    _create_nodes(api)
    _wait_established(api, names, max(5.0, deadline - time.monotonic()))
    _wait_nodes_ready(api, len(nodes()), max(5.0, deadline - time.monotonic()))
    progress(f"ready in {time.monotonic() - started:.1f}s: {len(nodes())} KWOK nodes in {len(ZONES)} zones,"
             f" {len(names)} CRDs")
    out = status(layout)
    out["ready_s"] = round(time.monotonic() - started, 2)
    return out


def down(layout: Layout | None = None, grace_s: float = 15.0) -> bool:
    """Stop the cluster (its supervisor gets SIGTERM, then SIGKILL) and remove its network; True if it ran."""
    layout = layout or Layout.default()
    pid = _read_pid(layout)
    ran = pid is not None
    if pid is not None:
        _signal(_children(pid), signal.SIGTERM)  # the supervisor: PID 1 of the namespace (unshare ignores TERM)
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _signal([*_children(pid), pid], signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # unshare is our child when `up` ran in this process
            os.waitpid(pid, os.WNOHANG)
    layout.pid_file.unlink(missing_ok=True)
    _network_down()
    return ran
