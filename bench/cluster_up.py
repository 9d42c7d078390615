"""The local Kubernetes cluster (`openbell cluster up`): time from nothing to ready (API server /readyz, every
CRD established, every KWOK node Ready) and its memory once ready (RSS of every process in its namespace),
median over repeated runs; then a 4-replica Deployment to Available, the controller-manager and scheduler at work.

    .venv/bin/python bench/cluster_up.py [--runs 5] [--output json]

Needs root and `make kube`. Stops a running cluster first and leaves none running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from openbell.localkube import cluster

OPENBELL = [sys.executable, "-m", "openbell"]


def rss_mib(layout: cluster.Layout) -> dict[str, float]:
    """RSS per process of the cluster's PID namespace (the supervisor's children), MiB."""
    pid = int(layout.pid_file.read_text().split()[0])
    out: dict[str, float] = {}
    for supervisor in cluster._children(pid):
        for child in cluster._children(supervisor):
            status = Path(f"/proc/{child}/status").read_text()
            name = status.split("Name:", 1)[1].split()[0]
            rss = int(status.split("VmRSS:", 1)[1].split()[0]) / 1024
            out[name] = round(out.get(name, 0.0) + rss, 1)
    return out


def deployment_available_s(kubeconfig: Path) -> float:
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # kubectl caches there
    start = time.perf_counter()
    subprocess.run(["kubectl", "create", "deployment", "bench", "--image=nginx", "--replicas=4"], env=env,
                   check=True, capture_output=True)
    subprocess.run(["kubectl", "wait", "deployment/bench", "--for=condition=Available", "--timeout=60s"], env=env,
                   check=True, capture_output=True)
    took = time.perf_counter() - start
    subprocess.run(["kubectl", "delete", "deployment", "bench", "--wait=false"], env=env, capture_output=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    layout = cluster.Layout.default()
    runs = []
    for _ in range(args.runs):
        cluster.down(layout)
        start = time.perf_counter()
        state = cluster.up(layout)
        ready = time.perf_counter() - start
        time.sleep(5)  # settle: informers synced, first node heartbeats
        memory = rss_mib(layout)
        runs.append({"ready_s": round(ready, 2), "rss_mib": memory, "rss_total_mib": round(sum(memory.values()), 1),
                     "deployment_available_s": round(deployment_available_s(layout.kubeconfig), 2),
                     "nodes": state.get("nodes"), "crds": state.get("crds")})
    cluster.down(layout)
    summary = {"runs": runs,
               "median_ready_s": statistics.median(r["ready_s"] for r in runs),
               "median_rss_total_mib": statistics.median(r["rss_total_mib"] for r in runs),
               "median_deployment_available_s": statistics.median(r["deployment_available_s"] for r in runs)}
    if args.output == "json":
        print(json.dumps(summary, indent=1))
    else:
        for r in runs:
            print(f"ready {r['ready_s']:.2f}s  rss {r['rss_total_mib']:.0f} MiB {r['rss_mib']}  "
                  f"4-replica Deployment available {r['deployment_available_s']:.2f}s")
        print(f"median: ready {summary['median_ready_s']:.2f}s, rss {summary['median_rss_total_mib']:.0f} MiB, "
              f"Deployment available {summary['median_deployment_available_s']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
