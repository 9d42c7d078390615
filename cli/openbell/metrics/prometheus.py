"""A small client for Prometheus' HTTP API: instant and range queries, typed results.

Connection failures raise UnreachableError (exit 3). A query Prometheus rejects raises QueryError;
one that times out (on either side) raises QueryTimeout, which callers treat as "no answer".
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from openbell.errors import UnreachableError
from openbell.metrics.types import QueryError, QueryTimeout, Sample, Series

__all__ = ["PrometheusClient", "QueryError", "QueryTimeout", "Sample", "Series"]


class PrometheusClient:
    """Talks to one Prometheus at `base_url`. Pass `transport` to substitute the HTTP layer."""

    def __init__(self, base_url: str, timeout_s: float = 10.0, query_timeout_s: float | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        """`timeout_s` bounds each HTTP call; `query_timeout_s` (default the same) is Prometheus' own
        per-query evaluation limit."""
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.query_timeout_s = timeout_s if query_timeout_s is None else query_timeout_s
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            response = self._http.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise QueryTimeout(f"Prometheus at {self.base_url} did not answer within {self.timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise UnreachableError(f"Prometheus at {self.base_url} cannot be reached: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            raise UnreachableError(f"{self.base_url} answered HTTP {response.status_code} without JSON:"
                                   " is it a Prometheus?") from None
        if body.get("status") != "success":
            kind, message = body.get("errorType", "error"), body.get("error", "unknown error")
            if kind == "timeout" or "timeout" in str(message).lower():
                raise QueryTimeout(f"Prometheus query timed out: {message}")
            raise QueryError(f"Prometheus rejected the query ({kind}): {message}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Evaluate an instant query (at unix time `at`, default now); scalars come back as one sample."""
        params = {"query": promql, "timeout": f"{self.query_timeout_s:g}"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        kind, result = data["resultType"], data["result"]
        if kind == "vector":
            return [Sample(dict(r["metric"]), _float(r["value"][1])) for r in result]
        if kind == "scalar":
            return [Sample({}, _float(result[1]))]
        raise QueryError(f"expected an instant vector, got a {kind}")

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[Series]:
        data = self._get("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                  "step": f"{step_s:g}", "timeout": f"{self.query_timeout_s:g}"})
        return [Series(dict(r["metric"]), [(float(t), _float(v)) for t, v in r["values"]]) for r in data["result"]]

    def scrape_interval_s(self, job: str) -> float | None:
        """The longest scrape interval among the active targets of `job` (what a rate window must span);
        None when Prometheus scrapes no target of that job."""
        from openbell.durations import parse_duration_s

        data = self._get("/api/v1/targets", {"state": "active"})
        found = []
        for target in data.get("activeTargets") or []:
            if (target.get("labels") or {}).get("job") == job and target.get("scrapeInterval"):
                try:
                    found.append(parse_duration_s(str(target["scrapeInterval"])))
                except ValueError:
                    continue
        return max(found) if found else None

    def build_info(self) -> dict[str, str]:
        data = self._get("/api/v1/status/buildinfo", {})
        return {str(k): str(v) for k, v in data.items()}


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
