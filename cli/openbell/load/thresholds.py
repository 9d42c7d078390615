"""k6 thresholds from the SLO specs: the same objectives the error budget is measured against, checked on
what the virtual traders saw. Pure: SLOs in, {k6 metric: [threshold expressions]} out."""

from __future__ import annotations

from openbell.slo.model import SLO, LatencySLI, RatioSLI

# Prometheus histogram (server side) -> the k6 metric that measures the same thing on the client side.
LATENCY_EQUIVALENTS = {
    "gateway_push_latency_seconds": "ws_push_latency_ms",
    "http_request_duration_seconds": "http_req_duration{kind:page}",
}
# Ratio SLIs over these counters -> the k6 rate metric of the same failures.
# Page and dashboard requests only: k6 also counts 4xx as failed, and the runner's own control calls and
# an order's first attempt that a client retries by design are not what the api error SLO is about.
RATIO_EQUIVALENTS = {
    "http_requests_total": "http_req_failed{kind:page}",
}


def _fmt(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def thresholds_for(slos: list[SLO]) -> dict[str, list[str]]:
    """One threshold per SLO that has a client-side equivalent (others are judged on Prometheus only):
    a latency SLI of objective p% under T becomes `p(p)<T ms`; a ratio SLI of objective o becomes
    `rate<1-o` on the failure rate."""
    out: dict[str, list[str]] = {}
    for slo in slos:
        sli = slo.sli
        if isinstance(sli, LatencySLI) and sli.histogram in LATENCY_EQUIVALENTS:
            metric = LATENCY_EQUIVALENTS[sli.histogram]
            expr = f"p({_fmt(slo.objective_percent)})<{_fmt(sli.threshold_s * 1000)}"
        elif isinstance(sli, RatioSLI) and any(c in (sli.bad or sli.total or "") for c in RATIO_EQUIVALENTS):
            counter = next(c for c in RATIO_EQUIVALENTS if c in (sli.bad or sli.total or ""))
            metric = RATIO_EQUIVALENTS[counter]
            expr = f"rate<{_fmt(slo.error_budget)}"
        else:
            continue
        if expr not in out.setdefault(metric, []):
            out[metric].append(expr)
    return out
