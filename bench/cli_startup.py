"""How instant `openbell --help` feels: median wall time over repeated runs, beside bare Python.

    .venv/bin/python bench/cli_startup.py [--runs 30]

Prints the median and p90 of each command (run interleaved, so machine noise hits all alike) and
checks that the heavy libraries are not imported on the --help path.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "openbell --help": [str(BIN / "openbell"), "--help"],
    "openbell slo --help": [str(BIN / "openbell"), "slo", "--help"],
    "openbell --version": [str(BIN / "openbell"), "--version"],
}
HEAVY = ("httpx", "yaml", "pulumi", "kubernetes", "boto3", "chaoslib")


def heavy_imports() -> list[str]:
    code = "import sys; sys.argv=['openbell','--help']\n" \
           "from openbell.commands.app import app\n" \
           "try:\n    app()\nexcept SystemExit:\n    pass\n" \
           f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = next(x for x in reversed(out.splitlines()) if x.startswith("HEAVY="))
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<24}{'median ms':>10}{'p90 ms':>10}{'minus python':>14}")
    for name, values in times.items():
        values.sort()
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"{name:<24}{statistics.median(values):>10.1f}{p90:>10.1f}{statistics.median(values) - base:>14.1f}")
    heavy = heavy_imports()
    print(f"heavy modules imported by --help: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
