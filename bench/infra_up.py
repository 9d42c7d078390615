"""The real Pulumi engine on the local control plane: `openbell infra preview|up|destroy --stack local`, whole
processes as a user runs them, each round from an empty state: preview (76 to create), up (create), up again
(nothing to do), destroy; medians over the rounds, and the engine's own durations as it reports them.

    .venv/bin/python bench/infra_up.py [--rounds 5] [--output json]

Needs root, `make kube` and `make pulumi`. Starts the local cluster with --transcribed-crds when none runs, and
stops it after (a running one is left running, and must have Strimzi's and Altinity's CRDs: `openbell cluster up
--transcribed-crds`). The state lives in a temporary directory; nothing of the user's stacks is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openbell.localkube import cluster

OPENBELL = [sys.executable, "-m", "openbell"]
ROOT = Path(__file__).resolve().parents[1]
STEPS = ("preview", "up", "up again", "destroy")


def timed(env: dict[str, str], *args: str) -> tuple[float, dict[str, object]]:
    start = time.perf_counter()
    proc = subprocess.run([*OPENBELL, "infra", *args, "--stack", "local", "--output", "json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=900)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"infra {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return took, json.loads(proc.stdout)["summary"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    layout = cluster.Layout.default()
    started = not cluster.status(layout)["running"]
    cluster.up(layout, transcribed_crds=True)
    rounds: list[dict[str, float]] = []
    changes: dict[str, object] = {}
    try:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="openbell-infra-bench-") as state:
                env = {**{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")},
                       "KUBECONFIG": str(layout.kubeconfig), "XDG_STATE_HOME": state}
                row: dict[str, float] = {}
                for step, argv in zip(STEPS, (["preview"], ["up", "--yes"], ["up", "--yes"], ["destroy", "--yes"]),
                                      strict=True):
                    row[step], changes[step] = timed(env, *argv)
                rounds.append(row)
    finally:
        if started:
            cluster.down(layout)
    medians = {step: round(statistics.median(r[step] for r in rounds), 2) for step in STEPS}
    result = {"rounds": len(rounds), "median_s": medians, "changes": {k: v.get("changes") if isinstance(v, dict)
                                                                       else v for k, v in changes.items()},
              "per_round_s": rounds}
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        for step in STEPS:
            print(f"{step:9} median {medians[step]:6.2f} s  ({', '.join(f'{r[step]:.2f}' for r in rounds)})"
                  f"  {result['changes'][step]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
