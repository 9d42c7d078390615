"""The sandbox's state file: options, ports, processes. Written atomically after every change."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openbell.errors import SpecError
from openbell.sandbox.processes import ProcessRecord

STATE_VERSION = 1


@dataclass
class SandboxState:
    """Everything `up`, `status` and `down` need to find the sandbox again from another process."""

    gateway_replicas: int = 2
    canary_slots: int = 2
    scrape_interval_s: float = 1.0
    # ~100 ticks/s over 500 Zipf-active symbols gives a trader watching 40-80 popular ones the ~40-60
    # records/s of production: the rate traders see, scaled down with the universe.
    feed_rate: float = 100.0
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    kafka_cluster_id: str = ""
    started_at: float = 0.0
    # The version label the stable gateways run (a promoted canary's version after a rollout).
    stable_version: str = "stable"

    def to_json(self) -> dict[str, Any]:
        return {
            "state_version": STATE_VERSION,
            "gateway_replicas": self.gateway_replicas,
            "canary_slots": self.canary_slots,
            "scrape_interval_s": self.scrape_interval_s,
            "feed_rate": self.feed_rate,
            "ports": self.ports,
            "processes": {name: rec.to_json() for name, rec in self.processes.items()},
            "kafka_cluster_id": self.kafka_cluster_id,
            "started_at": self.started_at,
            "stable_version": self.stable_version,
        }


def load(path: Path) -> SandboxState | None:
    """The saved state, None when there is none; a corrupt file is named (exit 2), never silently reset."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SpecError(str(path), "", f"unreadable sandbox state ({exc}); remove it after `sandbox down`") from exc
    try:
        return SandboxState(
            gateway_replicas=int(raw["gateway_replicas"]),
            canary_slots=int(raw.get("canary_slots", 2)),
            scrape_interval_s=float(raw["scrape_interval_s"]),
            feed_rate=float(raw.get("feed_rate", 100.0)),
            ports={str(k): int(v) for k, v in raw["ports"].items()},
            processes={
                str(k): ProcessRecord(int(v["pid"]), int(v["start_ticks"])) for k, v in raw["processes"].items()
            },
            kafka_cluster_id=str(raw.get("kafka_cluster_id", "")),
            started_at=float(raw.get("started_at", 0.0)),
            stable_version=str(raw.get("stable_version", "stable")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SpecError(str(path), "", f"malformed sandbox state ({exc!r})") from exc


def save(path: Path, state: SandboxState) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
