"""Metrics of the WATS handlers: measurement checks (process-wide) and WATS requests (per listener).

The measurement counters live in the core's `PLUGIN_METRICS`, which every listener serves on /metrics. The
requests are counted by `MeteredSink` around the sink the handlers send through, into the listener's own
registry (``PluginContext.registry``), and summed up for the run summary by `RequestMeter.summary_rows`.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pywats_events.metrics import PLUGIN_METRICS

from .wats.sink import RequestSink, WatsRequest, WatsResponse

__all__ = [
    "LIMIT_CONTRADICTIONS",
    "UNIT_MISMATCHES",
    "MeteredSink",
    "RequestMeter",
    "endpoint_label",
    "outcome_labels",
    "route_label",
    "status_label",
]

#: measurements sent to WATS with limits in units that cannot be converted to the value's
#: (reason: quantity, unknown_unit, ambiguous_unit)
UNIT_MISMATCHES = Counter(
    "pywats_wats_unit_mismatches",
    "Measurements reported with limit units not convertible to the value's unit",
    ["reason"],
    registry=PLUGIN_METRICS,
)

#: measurements sent to WATS whose value contradicts its limits and CFX result
#: (reason: outside_limits for a pass, within_limits for a fail)
LIMIT_CONTRADICTIONS = Counter(
    "pywats_wats_limit_contradictions",
    "Measurements reported whose value contradicts their limits and CFX result",
    ["reason"],
    registry=PLUGIN_METRICS,
)


def _is_identifier(segment: str) -> bool:
    """A path segment naming one thing (a serial number, a part number, an id), not an endpoint."""
    return any(c.isdigit() or c in "%.=" for c in segment)


def route_label(path: str) -> str:
    """The route of a request path, per-item segments as ``{id}``: one label per endpoint, not one per unit.

    ``/api/Production/Unit/SN-0001/PCB-4711`` → ``/api/Production/Unit/{id}/{id}``; a label per serial
    number would grow the metrics (and the summary table) without bound."""
    segments = path.split("?", 1)[0].split("/")
    keep = [s if i <= 3 and not _is_identifier(s) else "{id}" for i, s in enumerate(segments) if s or i == 0]
    return "/".join(keep) or "/"


def endpoint_label(method: str, path: str) -> str:
    """``METHOD /route`` (see `route_label`), as the run summary shows it."""
    return f"{method.upper()} {route_label(path)}"


def outcome_labels(outcome: Any) -> tuple[str, str]:
    """(code, error) of a request's outcome: the HTTP status when there is one (a response, or a WATS error
    that carries it), else ``""``; the error's class name for a failure, else ``""``."""
    status = getattr(outcome, "status", None)
    code = str(status) if isinstance(status, int) else ""
    error = type(outcome).__name__ if isinstance(outcome, BaseException) else ""
    return code, error


def status_label(outcome: Any) -> str:
    """HTTP status of a response or of a WATS error when it carries one, else the error's class name (the
    run summary's ``WATS status`` rows)."""
    code, error = outcome_labels(outcome)
    return code or error or "ok"


#: request durations: WATS answers in tens of milliseconds to a few seconds, timeouts are 30 s by default
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RequestMeter:
    """WATS requests: ``pywats_wats_requests_total{method,route,code,error}`` and
    ``pywats_wats_request_duration_seconds{method,route}`` in `registry` (when given), and tallies for
    the run summary."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.by_endpoint: Tally[str] = Tally()
        self.by_status: Tally[str] = Tally()
        self.requests: Counter | None = None
        self.latency: Histogram | None = None
        if registry is not None:
            self.requests = Counter(
                "pywats_wats_requests",
                "WATS requests by route and outcome (code: HTTP status, error: exception class)",
                ["method", "route", "code", "error"],
                registry=registry,
            )
            self.latency = Histogram(
                "pywats_wats_request_duration_seconds",
                "Duration of WATS requests, failed ones included",
                ["method", "route"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            )

    def request_sent(self, method: str, path: str, outcome: Any, seconds: float | None = None) -> None:
        method, route = method.upper(), route_label(path)
        self.by_endpoint[f"{method} {route}"] += 1
        self.by_status[status_label(outcome)] += 1
        if self.requests is not None:
            code, error = outcome_labels(outcome)
            self.requests.labels(method=method, route=route, code=code, error=error).inc()
        if self.latency is not None and seconds is not None:
            self.latency.labels(method=method, route=route).observe(seconds)

    def summary_rows(self) -> Iterable[tuple[str, str]]:
        """``WATS <endpoint>`` and ``WATS status <status>`` rows of the run summary."""
        for endpoint, n in sorted(self.by_endpoint.items()):
            yield f"  WATS {endpoint}", str(n)
        for status, n in sorted(self.by_status.items()):
            yield f"  WATS status {status}", str(n)


class MeteredSink:
    """Counts the requests sent through any `RequestSink` in a `RequestMeter`."""

    def __init__(self, inner: RequestSink, meter: RequestMeter) -> None:
        self.inner = inner
        self.meter = meter

    async def send(self, request: WatsRequest) -> WatsResponse:
        started = time.perf_counter()
        try:
            response = await self.inner.send(request)
        except Exception as exc:
            self.meter.request_sent(request.method, request.path, exc, time.perf_counter() - started)
            raise
        self.meter.request_sent(request.method, request.path, response, time.perf_counter() - started)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
