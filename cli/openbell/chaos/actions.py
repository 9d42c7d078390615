"""openbell's Chaos Toolkit actions on the sandbox: faults through the sandbox's own supervisor, and the
client traffic an experiment needs to check its claims from data.

A fault only ever signals a process the sandbox recorded (pid *and* kernel start time, as `sandbox status`
knows it), never a pid found by name: a reused pid or a stranger's process is refused. Every restoring action
(`resume`, `restart`, `heal`) is idempotent, so an experiment's rollbacks can always run, whether its method
finished, failed half way, or was interrupted by the SLO safeguard.
"""

from __future__ import annotations

import contextlib
import json
import signal as signals
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from openbell.errors import OpenbellError, SpecError, UnreachableError
from openbell.targets.platform import Sandbox

if TYPE_CHECKING:
    from openbell.sandbox.processes import ProcessRecord

__all__ = ["heal", "kill", "kill_all_gateways", "network_fault", "network_heal", "restart", "resume", "stop",
           "submit_orders"]


class ActionError(OpenbellError):
    """An action could not do what it was asked (Chaos Toolkit records it as a failed activity)."""


def kill(component: str, signal: str = "SIGKILL", home: str | None = None) -> dict[str, Any]:
    """Send `signal` (default SIGKILL: a crash, nothing flushed) to a running sandbox component's main
    process, as `kill -9 <pid>` would. Its children are left as a crash leaves them; `restart`/`heal`
    clean them up before starting it again."""
    sig = parse_signal(signal)
    sandbox, name = _running(component, home)
    record = _signalled(sandbox.signal(name, sig), name)
    return {"component": name, "pid": record.pid, "signal": signals.Signals(sig).name, "at": round(time.time(), 3)}


def kill_all_gateways(signal: str = "SIGKILL", home: str | None = None) -> dict[str, Any]:
    """Every stable gateway replica at once: the harsh variant, where no replica is left to fail over to."""
    sandbox = _sandbox(home)
    killed = [kill(name, signal, home) for name in sandbox.stable_gateways() if sandbox.process(name) is not None]
    if not killed:
        raise ActionError(f"sandbox {sandbox.home}: no gateway replica is running")
    return {"killed": killed, "at": round(time.time(), 3)}


def stop(component: str, home: str | None = None) -> dict[str, Any]:
    """Freeze a component (SIGSTOP to its whole process group): it holds its sockets and answers nothing,
    as a process stuck in a long GC pause or on a dead disk does. `resume` undoes it."""
    sandbox, name = _running(component, home)
    record = _signalled(sandbox.signal(name, signals.SIGSTOP, group=True), name)
    return {"component": name, "pid": record.pid, "signal": "SIGSTOP", "at": round(time.time(), 3)}


def resume(component: str = "all", home: str | None = None) -> dict[str, Any]:
    """SIGCONT to a stopped component (or every stopped one, "all"). Idempotent: a running or absent
    component is left alone, so it is safe in rollbacks."""
    sandbox = _sandbox(home)
    names = sandbox.running() if component == "all" else [sandbox.known(component)]
    resumed = []
    for name in names:
        if sandbox.frozen(name) and sandbox.signal(name, signals.SIGCONT, group=True) is not None:
            resumed.append(name)
    return {"resumed": resumed, "at": round(time.time(), 3)}


def restart(component: str, home: str | None = None, timeout_s: float = 120.0) -> dict[str, Any]:
    """Stop one component the way `sandbox down` would (its stop signal, then SIGKILL after its timeout),
    then `sandbox up`: it starts again on its port and the call returns once it (and everything else) is
    healthy. A component that is already dead is simply started."""
    sandbox = _sandbox(home)
    name = sandbox.known(component)
    if sandbox.frozen(name):
        sandbox.signal(name, signals.SIGCONT, group=True)  # a frozen process cannot handle its stop signal
    stopped = sandbox.stop(name)
    started = time.monotonic()
    sandbox.up(timeout_s)
    return {"component": name, "was_running": stopped, "up_s": round(time.monotonic() - started, 3),
            "at": round(time.time(), 3)}


def network_fault(latency_ms: int = 0, partition: bool = False, home: str | None = None) -> dict[str, Any]:
    """Between the gateways and Kafka (the sandbox's fault proxy, `kafka-proxy`): hold every chunk back
    `latency_ms`, or cut the link (open connections closed, new ones refused) until `network_heal`."""
    import httpx

    url = f"http://127.0.0.1:{_sandbox(home).port('kafka-proxy-admin')}/v1/fault"
    try:
        answer = httpx.put(url, json={"latency_ms": int(latency_ms), "partition": bool(partition)}, timeout=5.0)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise ActionError(f"kafka-proxy: {url}: {exc}") from exc
    return dict(answer.json()) | {"at": round(time.time(), 3)}


def network_heal(home: str | None = None) -> dict[str, Any]:
    """No latency, no partition between the gateways and Kafka (idempotent; a proxy that is not running
    has no fault to heal: `heal` restarts it clean)."""
    import httpx

    url = f"http://127.0.0.1:{_sandbox(home).port('kafka-proxy-admin')}/v1/fault"
    try:
        answer = httpx.delete(url, timeout=5.0)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        return {"healed": False, "reason": f"kafka-proxy: {exc}", "at": round(time.time(), 3)}
    return {"healed": True, **dict(answer.json()), "at": round(time.time(), 3)}


def heal(home: str | None = None, timeout_s: float = 180.0) -> dict[str, Any]:
    """`sandbox up` semantics for the whole platform: resume whatever is frozen, lift any network fault,
    start whatever is not running, return once every component is healthy. The rollback every sandbox
    experiment ends with."""
    resumed = resume("all", home)["resumed"]
    with contextlib.suppress(OpenbellError):
        network_heal(home)
    started = time.monotonic()
    status = _sandbox(home).up(timeout_s)
    return {"resumed": resumed, "state": status, "up_s": round(time.monotonic() - started, 3),
            "at": round(time.time(), 3)}


def submit_orders(record: str, duration_s: float = 15.0, workers: int = 2, interval_s: float = 0.05,
                  retry_for_s: float = 30.0, home: str | None = None) -> dict[str, Any]:
    """A trading client for `duration_s`: `workers` threads submit orders through the platform's entry point,
    each with its own idempotency key, retrying the same key (after a transport error or a 5xx) until the
    ledger acknowledges it, as a real client must. What was acknowledged is written under the sandbox home
    for `probes.acked_orders_present(record=...)` to check against the ledger's data. Run it in the
    background of a method, across the fault."""
    import httpx

    from openbell.chaos.probes import orders_file

    if not 0 < duration_s <= 600 or not 1 <= workers <= 16:
        raise SpecError("submit_orders", "duration_s/workers", "expected 0 < duration_s <= 600, 1 <= workers <= 16")
    path = orders_file(record, home)
    path.unlink(missing_ok=True)  # the check after the method must read this run's orders, not the last run's
    url = Sandbox(home).endpoints()["market_url"] + "/v1/orders"
    acked: dict[str, int] = {}
    errors: list[str] = []
    retried = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    def one(client: httpx.Client, n: int) -> None:
        key = str(uuid.uuid4())
        body = {"account": f"chaos-{record}-{n}", "symbol": "OBL", "side": "buy", "qty": 1 + n, "price": 10.5}
        give_up = time.monotonic() + retry_for_s
        while time.monotonic() < give_up:
            try:
                answer = client.post(url, json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code in (200, 201):
                with lock:
                    acked[key] = int(answer.json()["id"])
                return
            if answer is not None and answer.status_code < 500:
                with lock:
                    errors.append(f"{answer.status_code} {answer.text[:160]}")
                return
            with lock:
                retried[0] += 1
            time.sleep(0.25)  # back off: a client hammering a dead database only burns the error budget
        with lock:
            errors.append(f"order {key} not acknowledged within {retry_for_s:g}s")

    def worker(n: int) -> None:
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < stop_at:
                one(client, n)
                time.sleep(interval_s)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + retry_for_s + 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock:
        done, failed, retries = dict(acked), list(errors), retried[0]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"record": record, "acked": done, "errors": failed, "retried": retries,
                               "finished_at": round(time.time(), 3)}))
    tmp.replace(path)
    return {"record": record, "acknowledged": len(done), "retried": retries, "errors": len(failed),
            "file": str(path)}


# --- helpers -----------------------------------------------------------------------------------------------


def parse_signal(text: str | int) -> int:
    """SIGKILL, KILL or 9 -> 9; anything else is a bad argument."""
    raw = str(text).strip().upper()
    if raw.isdigit():
        number = int(raw)
        if number in {s.value for s in signals.Signals}:
            return number
    else:
        name = raw if raw.startswith("SIG") else "SIG" + raw
        if name in signals.Signals.__members__:
            return int(signals.Signals[name])
    raise SpecError("signal", str(text), "expected a signal name or number, e.g. SIGKILL, SIGTERM, 9")


def _sandbox(home: str | None) -> Sandbox:
    """The sandbox at `home`; an ActionError when it was never started (nothing to act on)."""
    sandbox = Sandbox(home)
    try:
        sandbox.started()
    except UnreachableError as exc:
        raise ActionError(str(exc)) from None
    return sandbox


def _running(component: str, home: str | None) -> tuple[Sandbox, str]:
    sandbox = _sandbox(home)
    name = sandbox.known(component)
    if sandbox.process(name) is None:
        raise ActionError(f"sandbox component {name} is not running (nothing to inject a fault into)")
    return sandbox, name


def _signalled(record: ProcessRecord | None, name: str) -> ProcessRecord:
    if record is None:  # it exited between the check and the signal
        raise ActionError(f"sandbox component {name} is not running (nothing to inject a fault into)")
    return record
