"""PID 1 of the local cluster's PID namespace: starts the control plane's processes in order and stops them.

Run by `openbell cluster up` as `ip netns exec NS unshare --pid --fork --mount-proc python -m
openbell.localkube.supervise STATE_DIR`. It reads STATE_DIR/plan.json (written by the host side: each
process's name, argv and the local TCP port that says it is serving), mounts a tmpfs for etcd's data, starts
each process once the previous one's port accepts connections, and then waits. If any process exits, or on
SIGTERM/SIGINT, it stops the others (last started first; SIGTERM, then SIGKILL after a grace period) and exits:
as PID 1 of the namespace its exit takes whatever is left with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GRACE_S = 8.0
PORT_WAIT_S = 60.0


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} supervise: {message}", flush=True)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Supervisor:
    def __init__(self, state: Path, plan: dict[str, Any]) -> None:
        self.state, self.plan = state, plan
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def _stop_signal(self, signum: int, _frame: object) -> None:
        _log(f"signal {signum}: stopping")
        self.stopping = True

    def start(self, proc: dict[str, Any]) -> bool:
        logs = self.state / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{proc['name']}.log").open("ab") as out:
            child = subprocess.Popen(proc["argv"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.children.append((proc["name"], child))
        _log(f"{proc['name']} started (pid {child.pid})")
        port = proc.get("port")
        if not port:
            return True
        deadline = time.monotonic() + PORT_WAIT_S
        while not self.stopping and time.monotonic() < deadline:
            if child.poll() is not None:
                _log(f"{proc['name']} exited with {child.returncode} before serving")
                return False
            if _port_open(int(port)):
                _log(f"{proc['name']} serving on {port}")
                return True
            time.sleep(0.1)
        _log(f"{proc['name']} not serving on {port} after {PORT_WAIT_S:g}s")
        return False

    def stop(self) -> None:
        for name, child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(GRACE_S)
                except subprocess.TimeoutExpired:
                    _log(f"{name} ignored SIGTERM for {GRACE_S:g}s: killed")
                    child.kill()
                    child.wait()

    def reap(self) -> None:
        """Reap whatever PID 1 inherits (orphans of the processes above); a child of ours keeps its status."""
        ours = {child.pid: child for _, child in self.children}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in ours:
                ours[pid].returncode = os.waitstatus_to_exitcode(status)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        for path in self.plan.get("tmpfs", []):
            Path(path).mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=0700", "tmpfs", path], check=True)
        ok = all(self.start(proc) for proc in self.plan["processes"])
        (self.state / "supervisor.ready").write_text("ok\n" if ok else "failed\n")
        code = 0 if ok else 1
        while ok and not self.stopping:
            for name, child in self.children:
                if child.poll() is not None:
                    _log(f"{name} exited with {child.returncode}: stopping the cluster")
                    self.stopping, code = True, 1
                    break
            self.reap()
            time.sleep(0.5)
        self.stop()
        _log(f"stopped ({code})")
        return code


def main(argv: list[str]) -> int:
    state = Path(argv[1])
    plan = json.loads((state / "plan.json").read_text())
    return Supervisor(state, plan).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
