"""The sandbox's traffic router: HAProxy's admin socket sets the canary's share of new connections and
requests, and enables or disables a backend's servers, at runtime. Open connections are never touched:
a WebSocket stays on the replica it was opened on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from openbell.errors import UnreachableError, UsageError
from openbell.sandbox.configs import haproxy_weights
from openbell.sandbox.probes import haproxy_command

STABLE_BACKEND = "gateway-stable"
CANARY_BACKEND = "gateway-canary"


@dataclass(frozen=True)
class BackendLoad:
    """A backend's live figures from `show stat`: open sessions and sessions opened since start."""

    current_sessions: int
    total_sessions: int
    servers_up: int


class HAProxyRouter:
    """Weights and servers of the gateway backends, through one admin socket."""

    def __init__(self, socket_path: Path, weights_map: Path) -> None:
        self.socket_path = socket_path
        self.weights_map = weights_map

    def _command(self, command: str) -> str:
        try:
            answer = haproxy_command(self.socket_path, command)
        except OSError as exc:
            raise UnreachableError(f"haproxy: admin socket {self.socket_path}: {exc}") from exc
        if any(word in answer for word in ("Unknown command", "Unknown map", "No such", "not found", "Require")):
            raise UnreachableError(f"haproxy: `{command}` refused: {answer.strip().splitlines()[0]}")
        return answer

    def canary_weight(self) -> int:
        """The canary's share of new connections, percent (from the running HAProxy, not the file)."""
        for line in self._command(f"show map {self.weights_map}").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "canary":
                return int(parts[2])
        return 0

    def websocket_weight(self) -> int:
        for line in self._command(f"show map {self.weights_map}").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "canary_ws":
                return int(parts[2])
        return self.canary_weight()

    def set_canary_weight(self, percent: int) -> None:
        """Send `percent` of new connections and requests to the canary backend, now and after a restart."""
        if not 0 <= percent <= 100:
            raise UsageError(f"canary weight: expected a percentage 0..100, got {percent}")
        self._command(f"set map {self.weights_map} canary {percent}")
        self._set_or_add("canary_ws", percent)
        tmp = self.weights_map.with_suffix(".tmp")
        tmp.write_text(haproxy_weights(percent))
        os.replace(tmp, self.weights_map)

    def steer_websockets(self, percent: int) -> None:
        """Send `percent` of new WebSocket upgrades (only) to the canary until the next set_canary_weight.
        Runtime only: a restarted HAProxy reads the file, where both shares are the canary weight."""
        if not 0 <= percent <= 100:
            raise UsageError(f"websocket weight: expected a percentage 0..100, got {percent}")
        self._set_or_add("canary_ws", percent)

    def _set_or_add(self, key: str, percent: int) -> None:
        # A map loaded from a file written before canary_ws existed has no such key: add it.
        try:
            answer = haproxy_command(self.socket_path, f"set map {self.weights_map} {key} {percent}")
        except OSError as exc:
            raise UnreachableError(f"haproxy: admin socket {self.socket_path}: {exc}") from exc
        if answer.strip():
            self._command(f"add map {self.weights_map} {key} {percent}")

    def set_server(self, backend: str, server: str, enabled: bool) -> None:
        self._command(f"{'enable' if enabled else 'disable'} server {backend}/{server}")

    def backend_load(self) -> dict[str, BackendLoad]:
        """Per backend: open sessions, total sessions, servers up (the real traffic share, not the weight)."""
        lines = self._command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        loads: dict[str, BackendLoad] = {}
        for row in rows:
            if row.get("svname") != "BACKEND":
                continue
            up = sum(1 for r in rows if r.get("pxname") == row["pxname"]
                     and r.get("svname") not in ("BACKEND", "FRONTEND") and r.get("status", "").startswith("UP"))
            loads[row["pxname"]] = BackendLoad(int(row.get("scur") or 0), int(row.get("stot") or 0), up)
        return loads
