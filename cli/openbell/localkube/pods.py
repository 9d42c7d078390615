"""A kubelet stand-in for one kind of pod on the local cluster: real processes at the pods' IPs.

KWOK marks pods Running and hands them IPs from the pod network, but nothing runs in them. PodProcesses
watches the pods of one namespace that match a label selector and, for each Running one, starts a real
process inside the cluster's network namespace listening on that pod's IP (the command is built from the pod:
its IP, name, labels, image); when the pod goes away or is marked for deletion the process gets SIGTERM, as a
kubelet would send it. So the API server's pod proxy, a Prometheus with Kubernetes service discovery and the
canary's drain all reach a real server at each pod's address.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openbell.localkube.cluster import NETNS

Command = Callable[[dict[str, Any]], list[str]]


def _die_with_parent() -> None:
    """SIGTERM the pod's process when the thread that started it ends: a runner killed with -9 leaves no
    server behind on a pod IP that KWOK will hand to the next pod."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def pod_key(pod: dict[str, Any]) -> str:
    """A pod's identity: its uid (a pod recreated under the same name is another pod)."""
    meta = pod.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name"))


def wanted(pod: dict[str, Any]) -> bool:
    """Running with an IP, and not on its way out."""
    status = pod.get("status") or {}
    return (status.get("phase") == "Running" and bool(status.get("podIP"))
            and not (pod.get("metadata") or {}).get("deletionTimestamp"))


def container_image(pod: dict[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image", ""))


@dataclass
class PodProcesses:
    """`list_pods()` answers the namespace's pods (dicts) matching the selector; `command(pod)` is the argv."""

    list_pods: Callable[[], list[dict[str, Any]]]
    command: Command
    log_dir: Path
    poll_s: float = 0.3
    grace_s: float = 12.0
    netns: str = NETNS
    running: dict[str, tuple[str, subprocess.Popen[bytes]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[str] = field(default_factory=list)
    # Prometheus file service discovery: the pods served, as `sd_target(pod)` ({"targets": [...], "labels":
    # {...}}), rewritten whenever that set changes (for a Prometheus built without Kubernetes discovery).
    sd_file: Path | None = None
    sd_target: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    _sd_written: str | None = None

    def sync(self) -> None:
        pods = {pod_key(p): p for p in self.list_pods() if wanted(p)}
        for key in list(self.running):
            name, proc = self.running[key]
            if key not in pods or proc.poll() is not None:
                if proc.poll() is None:
                    proc.terminate()  # the pod's SIGTERM; it drains in its own time
                elif key in pods:
                    self.errors.append(f"{name} exited with {proc.returncode}")
                del self.running[key]
        for key, pod in pods.items():
            if key in self.running:
                continue
            name = pod["metadata"]["name"]
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with (self.log_dir / f"{name}.log").open("ab") as log:
                proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *self.command(pod)], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)
            self.running[key] = (name, proc)
        self._write_sd([pods[k] for k in self.running if k in pods])

    def _write_sd(self, served: list[dict[str, Any]]) -> None:
        if self.sd_file is None or self.sd_target is None:
            return
        text = json.dumps(sorted((self.sd_target(p) for p in served), key=json.dumps), indent=1)
        if text != self._sd_written:
            tmp = self.sd_file.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.sd_file)  # Prometheus never reads half a file
            self._sd_written = text

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # the API server restarting: try again at the next poll
                self.errors.append(f"sync: {exc}")
            self._stop.wait(self.poll_s)

    def start(self) -> PodProcesses:
        self._thread = threading.Thread(target=self._loop, name="pod-processes", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for _, proc in self.running.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + self.grace_s
        for _, proc in self.running.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running.clear()

    def __enter__(self) -> PodProcesses:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
