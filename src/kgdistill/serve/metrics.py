"""Prometheus metrics in the plain text exposition format (version 0.0.4), written by hand (no dependency).

* ``kgdistill_requests_total{endpoint,method,status}``: requests answered, by route template and status;
* ``kgdistill_request_duration_seconds{endpoint}``: latency histogram (``_bucket{le}``, ``_sum``, ``_count``);
* ``kgdistill_batch_queries{run}``: query rows per model call (histogram), and
  ``kgdistill_batch_requests{run}``: requests per model call;
* ``kgdistill_runs_loaded``: runs being served.

:class:`MetricsMiddleware` (pure ASGI) times every HTTP request; the endpoint label is the route's template
(``/v1/runs/{run}/topk``), ``unmatched`` for paths no route serves, so labels stay few.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["CONTENT_TYPE", "Histogram", "Metrics", "MetricsMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: dict[str, str]) -> str:
    return ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items())


def _num(x: float) -> str:
    return (
        "+Inf"
        if x == float("inf")
        else repr(float(x))
        if not float(x).is_integer()
        else str(int(x))
    )


class Histogram:
    """Counts of observations per upper bound (not cumulative until :meth:`lines`), their sum and count."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = next((j for j, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        out, acc = [], 0
        for bound, c in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += c
            out.append(f"{name}_bucket{{{_labels({**labels, 'le': _num(bound)})}}} {acc}")
        tail = f"{{{_labels(labels)}}}" if labels else ""
        out.append(f"{name}_sum{tail} {self.sum!r}")
        out.append(f"{name}_count{tail} {self.count}")
        return out


class Metrics:
    """The service's counters and histograms; thread-safe, rendered by :meth:`render`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_queries: dict[str, Histogram] = {}
        self.batch_requests: dict[str, Histogram] = {}
        self.runs_loaded = 0

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (endpoint, method, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, run: str, queries: int, requests: int) -> None:
        with self._lock:
            self.batch_queries.setdefault(run, Histogram(BATCH_BUCKETS)).observe(queries)
            self.batch_requests.setdefault(run, Histogram(BATCH_BUCKETS)).observe(requests)

    def render(self) -> str:
        """Every metric in the text exposition format."""
        with self._lock:
            out = [
                "# HELP kgdistill_requests_total HTTP requests answered.",
                "# TYPE kgdistill_requests_total counter",
            ]
            for (endpoint, method, status), n in sorted(self.requests.items()):
                labels = {"endpoint": endpoint, "method": method, "status": status}
                out.append(f"kgdistill_requests_total{{{_labels(labels)}}} {n}")
            sections = (
                (
                    "kgdistill_request_duration_seconds",
                    "Request latency.",
                    "endpoint",
                    self.latency,
                ),
                (
                    "kgdistill_batch_queries",
                    "Query rows per model call.",
                    "run",
                    self.batch_queries,
                ),
                (
                    "kgdistill_batch_requests",
                    "Requests per model call.",
                    "run",
                    self.batch_requests,
                ),
            )
            for name, help_, key, hists in sections:
                out += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
                for value, h in sorted(hists.items()):
                    out += h.lines(name, {key: value})
            out += [
                "# HELP kgdistill_runs_loaded Runs being served.",
                "# TYPE kgdistill_runs_loaded gauge",
                f"kgdistill_runs_loaded {self.runs_loaded}",
            ]
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request's route, status and latency into ``metrics``."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                endpoint, scope.get("method", ""), status, time.perf_counter() - start
            )
