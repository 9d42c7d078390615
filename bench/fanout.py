"""Gateway fan-out, end to end on this machine: feed -> Kafka -> enricher -> Kafka -> gateway -> HAProxy ->
client. A fresh sandbox, the Go load client (services/gateway/cmd/wsbench) with C clients x S symbols (drawn
uniformly, or by the feed's Zipf popularity), and the CPU each process used while it ran (where the time goes).

    .venv/bin/python bench/fanout.py [--clients 1000] [--symbols-per-client 50] [--feed-rate 650]
                                     [--duration 40s] [--replicas 2] [--direct]

Target: >= 50,000 records/s delivered at 1,000 clients x 50 symbols with p99 <= 50 ms end to end.
`--direct` connects to the gateway replicas themselves (no HAProxy hop), to measure what the proxy costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from openbell import proc

ROOT = Path(__file__).resolve().parents[1]
OPENBELL = [sys.executable, "-m", "openbell"]
WSBENCH = ROOT / "build" / "bin" / "wsbench"


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in a process group (a component and its children)."""
    return sum(s.cpu_seconds for s in proc.stats() if s.pgid == pgid and s.alive)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--symbols-per-client", type=int, default=50)
    parser.add_argument("--feed-rate", type=float, default=650)
    parser.add_argument("--duration", default="40s")
    parser.add_argument("--warmup", default="10s")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--direct", action="store_true")
    parser.add_argument("--popularity", choices=["uniform", "zipf"], default="uniform",
                        help="how clients pick symbols: uniformly, or weighted by the feed's Zipf activity")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    parser.add_argument("--client-nice", type=int, default=0,
                        help="niceness of the load client (the sandbox runs the tick path at -10): -10 gives it the "
                             "platform's priority, as a trader's own machine would")
    args = parser.parse_args()
    if not WSBENCH.exists():
        subprocess.run(["go", "build", "-o", str(WSBENCH), "./cmd/wsbench"], cwd=ROOT / "services" / "gateway",
                       check=True)
    home = Path(tempfile.mkdtemp(prefix="openbell-fanout-"))
    up = subprocess.run([*OPENBELL, "sandbox", "up", "--home", str(home), "--output", "json",
                         "--gateway-replicas", str(args.replicas), "--feed-rate", f"{args.feed_rate:g}"],
                        capture_output=True, text=True)
    if up.returncode != 0:
        # Whatever did start (a half-up sandbox) goes, before reporting why.
        subprocess.run([*OPENBELL, "sandbox", "down", "--purge", "--home", str(home)], capture_output=True)
        raise SystemExit(up.stderr)
    status = json.loads(up.stdout)
    try:
        result = run(args, status, home)
    finally:
        if not args.keep:
            subprocess.run([*OPENBELL, "sandbox", "down", "--purge", "--home", str(home)], capture_output=True)
    print(json.dumps(result, indent=2))


def run(args: argparse.Namespace, status: dict[str, Any], home: Path) -> dict[str, Any]:
    endpoints = status["endpoints"]
    universe = httpx.get(endpoints["feed_url"] + "/v1/symbols", timeout=5).json()["symbols"]
    symbols_file = home / "symbols.txt"
    weighted = args.popularity == "zipf"
    symbols_file.write_text("".join(f"{s['symbol']} {s['weight'] if weighted else 1}\n" for s in universe))
    pids = {row["name"]: row["pid"] for row in status["components"]}
    urls = [endpoints["websocket_url"]]
    if args.direct:
        urls = [endpoints[f"gateway-{i}_url"].replace("http://", "ws://") + "/ws" for i in range(1, args.replicas + 1)]
    cpu_before = {name: group_cpu(pid) for name, pid in pids.items()}
    started = time.monotonic()
    benches = [
        subprocess.Popen([*nice(args.client_nice), str(WSBENCH), "--url", url,
                          "--clients", str(args.clients // len(urls)),
                          "--symbols-per-client", str(args.symbols_per_client), "--symbols-file", str(symbols_file),
                          "--duration", args.duration, "--warmup", args.warmup, "--seed", str(i + 1)],
                         stdout=subprocess.PIPE, text=True)
        for i, url in enumerate(urls)
    ]
    outputs = [json.loads(b.communicate()[0]) for b in benches]
    wall = time.monotonic() - started
    client_cpu = cpu_seconds_children()
    cpu = {name: round(group_cpu(pid) - cpu_before[name], 1) for name, pid in pids.items()}
    feed = httpx.get(endpoints["feed_url"] + "/v1/rate", timeout=5).json()
    server = server_side(endpoints["prometheus_url"], seconds(args.duration) - seconds(args.warmup))
    return {
        "clients": args.clients, "symbols_per_client": args.symbols_per_client, "feed_rate": args.feed_rate,
        "popularity": args.popularity, "gateway_replicas": args.replicas,
        "via": "direct" if args.direct else "haproxy", "feed": feed,
        "wsbench": outputs if len(outputs) > 1 else outputs[0],
        # Several load clients (--direct: one per replica): delivered rates add up; the worst p99 stands.
        "records_per_s": sum(o["records_per_s"] for o in outputs),
        "latency_p50_ms": max(o["latency_p50_ms"] for o in outputs),
        "latency_p99_ms": max(o["latency_p99_ms"] for o in outputs),
        # The platform's own view of the same window (Prometheus): what the gateways measured up to the write,
        # without the load client's scheduling, and how batched their Kafka fetches were.
        "server": server,
        "client_nice": args.client_nice,
        "wall_s": round(wall, 1),
        "cpu_s_by_component": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        "cpu_s_load_client": round(client_cpu, 1),
    }


def nice(niceness: int) -> list[str]:
    return ["nice", "-n", str(niceness)] if niceness else []


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60}[duration[-1]]


def server_side(prometheus_url: str, window_s: int) -> dict[str, float | None]:
    """The gateways' push and ingest p99 (ms), fetches/s and records per fetch over the measured window."""
    time.sleep(2)  # the last scrape of the window
    def p99(histogram: str) -> str:
        return f"1000 * histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket[{window_s}s])))"

    def per_s(counter: str) -> str:
        return f"sum(rate({counter}[{window_s}s]))"

    queries = {
        "push_p99_ms": p99("gateway_push_latency_seconds"),
        "ingest_p99_ms": p99("gateway_ingest_latency_seconds"),
        "enricher_consume_p99_ms": p99("enricher_consume_latency_seconds"),
        "fetches_per_s": per_s("gateway_kafka_fetches_total"),
        "records_per_fetch": f"{per_s('gateway_kafka_records_total')} / {per_s('gateway_kafka_fetches_total')}",
        "frames_per_s": per_s("gateway_frames_sent_total"),
    }
    out: dict[str, float | None] = {}
    for name, query in queries.items():
        result = httpx.get(prometheus_url + "/api/v1/query", params={"query": query}, timeout=10).json()
        rows = result.get("data", {}).get("result", [])
        out[name] = round(float(rows[0]["value"][1]), 1) if rows else None
    return out


def cpu_seconds_children() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


if __name__ == "__main__":
    main()
