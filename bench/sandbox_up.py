"""`openbell sandbox up` to all-healthy: cold (fresh home: initdb, Kafka storage format) and warm (data kept,
processes stopped), median over repeated runs, with where the time goes per component.

    .venv/bin/python bench/sandbox_up.py [--runs 3]

Target: <= 30 s to all-healthy. Each run uses its own home under a temp dir and tears it down.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPENBELL = [sys.executable, "-m", "openbell"]


def timed_up(home: Path) -> tuple[float, dict[str, float]]:
    """Wall time of `sandbox up` and, from its progress lines, when each component turned healthy."""
    start = time.perf_counter()
    proc = subprocess.Popen([*OPENBELL, "sandbox", "up", "--home", str(home)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    healthy: dict[str, float] = {}
    assert proc.stderr is not None
    for line in proc.stderr:
        if " healthy (" in line:
            name = line.split(" healthy (")[0].split()[-1]
            healthy[name] = time.perf_counter() - start
    if proc.wait() != 0:
        raise SystemExit(f"sandbox up failed in {home}")
    return time.perf_counter() - start, healthy


def down(home: Path, purge: bool) -> None:
    args = [*OPENBELL, "sandbox", "down", "--home", str(home), "--output", "json"]
    subprocess.run([*args, "--purge"] if purge else args, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cold: list[float] = []
    warm: list[float] = []
    per_component: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="openbell-bench-") as tmp:
        for run in range(args.runs):
            home = Path(tmp) / f"run-{run}"
            seconds, healthy = timed_up(home)
            cold.append(seconds)
            for name, at in healthy.items():
                per_component.setdefault(name, []).append(at)
            down(home, purge=False)
            seconds, _ = timed_up(home)
            warm.append(seconds)
            down(home, purge=True)
    order = sorted(per_component, key=lambda name: statistics.median(per_component[name]))
    print(json.dumps({
        "runs": args.runs,
        "cold_median_s": round(statistics.median(cold), 2),
        "warm_median_s": round(statistics.median(warm), 2),
        "cold_s": [round(x, 2) for x in cold],
        "warm_s": [round(x, 2) for x in warm],
        "healthy_at_median_s": {name: round(statistics.median(per_component[name]), 2) for name in order},
    }, indent=2))


if __name__ == "__main__":
    main()
