"""The detection matrix: the default gameday passes, a bad canary fails it for its canary, every time.

    .venv/bin/python bench/detection.py [--runs 10] [--plans default,slow,errors] [--output text|json]

Each run starts from a purged sandbox (`sandbox down --purge` in one fresh home, then the gameday brings it up
and lets it settle), and runs the real `openbell gameday --output json` with one of three plans, interleaved
round by round so that whatever else the machine does hits all three alike:

- `default`: gamedays/opening-bell.yaml as it is. Expected: pass. Anything else is a false failure.
- `slow`: the same, with the canary started with `latency_ms=80` (each frame and REST answer 80 ms late).
- `errors`: the same, with the canary answering 5% of its REST requests and WebSocket handshakes 503.

A bad canary is caught when the gameday fails because the canary phase failed (rolled back by its own gates);
a pass is a miss; a failure for another reason (the gameday's gate, an unhealthy platform) is caught but not
for its canary, and counted apart. The machine's calibration is kept between runs (it is per machine and
code, not per sandbox), so every run uses the same default scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OPENBELL = [sys.executable, "-m", "openbell"]
DEFAULT = ROOT / "gamedays" / "opening-bell.yaml"
FAULTS = {"default": {}, "slow": {"latency_ms": "80"}, "errors": {"error_rate": "0.05"}}


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def plan_for(kind: str, folder: Path) -> Path:
    """The default plan, its canary carrying the kind's fault (the plan keeps every other setting)."""
    if kind == "default":
        return DEFAULT
    plan = yaml.safe_load(DEFAULT.read_text())
    plan["metadata"]["name"] = f"opening-bell-{kind}"
    plan["spec"]["slo"] = [str(ROOT / "slo")]
    canary = next(p for p in plan["spec"]["phases"] if "canary" in p)["canary"]
    canary["sandbox_faults"] = FAULTS[kind]
    canary["version"] = f"{kind}-{{run}}"
    path = folder / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def classify(kind: str, doc: dict[str, Any]) -> str:
    """pass / false-failure for the default plan; caught / caught-not-for-its-canary / missed for a bad canary."""
    outcome = doc.get("verdict", {}).get("outcome")
    canary = next((p for p in doc.get("phases", []) if p["kind"] == "canary"), {})
    if kind == "default":
        return "pass" if outcome == "pass" else "false-failure"
    if outcome == "pass" or canary.get("outcome") == "pass":
        return "missed"
    return "caught" if canary.get("outcome") == "fail" else "caught-not-for-its-canary"


def one_run(kind: str, plan: Path, home: Path, report: Path) -> dict[str, Any]:
    subprocess.run([*OPENBELL, "sandbox", "down", "--purge", "--home", str(home)], capture_output=True, timeout=300)
    launched = time.time()
    done = subprocess.run([*OPENBELL, "gameday", "--plan", str(plan), "--home", str(home), "--report", str(report),
                           "--output", "json"], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    doc = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    canary = next((p for p in doc.get("phases", []) if p["kind"] == "canary"), {})
    return {
        "plan": kind, "exit_code": done.returncode, "wall_s": round(time.time() - launched, 1),
        "verdict": doc.get("verdict", {}).get("outcome"), "reason": doc.get("verdict", {}).get("reason")
        or done.stderr.strip().splitlines()[-1:], "canary": canary.get("outcome"),
        "canary_reason": canary.get("reason"), "scale": next((n["scale"] for n in doc.get("load", [])), None),
        "class": classify(kind, doc) if doc else "error",
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(r["plan"] for r in runs):
        mine = [r for r in runs if r["plan"] == kind]
        counts: dict[str, int] = {}
        for r in mine:
            counts[r["class"]] = counts.get(r["class"], 0) + 1
        n = len(mine)
        if kind == "default":
            out[kind] = {"runs": n, "passed": counts.get("pass", 0),
                         "false_failure_rate": round(1 - counts.get("pass", 0) / n, 3), "classes": counts}
        else:
            out[kind] = {"runs": n, "caught_for_its_canary": counts.get("caught", 0),
                         "miss_rate": round(counts.get("missed", 0) / n, 3), "classes": counts}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds (one run of each plan per round)")
    parser.add_argument("--plans", default="default,slow,errors")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args()
    kinds = [k for k in args.plans.split(",") if k]
    unknown = set(kinds) - set(FAULTS)
    if unknown:
        raise SystemExit(f"--plans: unknown {sorted(unknown)}; expected {', '.join(FAULTS)}")
    work = Path(tempfile.mkdtemp(prefix="openbell-detection-"))
    home = work / "sandbox"
    runs: list[dict[str, Any]] = []
    try:
        plans = {k: plan_for(k, work) for k in kinds}
        for i in range(args.runs):
            for kind in kinds:
                result = one_run(kind, plans[kind], home, work / f"report-{i + 1}-{kind}")
                result["round"] = i + 1
                runs.append(result)
                say(f"round {i + 1} {kind}: {result['class']} (gameday {result['verdict']}, canary {result['canary']}"
                    f", {result['wall_s']:.0f}s): {str(result['reason'])[:160]}")
    finally:
        subprocess.run([*OPENBELL, "sandbox", "down", "--purge", "--home", str(home)], capture_output=True,
                       timeout=300)
        shutil.rmtree(work, ignore_errors=True)
    result = {"summary": summary(runs), "runs": runs}
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return
    for kind, s in result["summary"].items():
        print(f"{kind}: {json.dumps(s)}")


if __name__ == "__main__":
    main()
