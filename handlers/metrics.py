"""Metrics of the WATS handlers: measurement checks (process-wide) and WATS requests (per listener).

The measurement counters live in the core's `PLUGIN_METRICS`, which every listener serves on /metrics. The
requests are counted by `MeteredSink` around the sink the handlers send through, into the listener's own
registry (``PluginContext.registry``), and summed up for the run summary by `RequestMeter.summary_rows`.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from pywats_events.metrics import PLUGIN_METRICS

from .wats.sink import RequestSink, WatsRequest, WatsResponse

__all__ = [
    "LIMIT_CONTRADICTIONS",
    "UNIT_MISMATCHES",
    "MeteredSink",
    "RequestMeter",
    "endpoint_label",
    "status_label",
]

#: measurements sent to WATS with limits in units that cannot be converted to the value's
#: (reason: quantity, unknown_unit, ambiguous_unit)
UNIT_MISMATCHES = Counter(
    "pywats_wats_unit_mismatch",
    "Measurements reported with limit units not convertible to the value's unit",
    ["reason"],
    registry=PLUGIN_METRICS,
)

#: measurements sent to WATS whose value contradicts its limits and CFX result
#: (reason: outside_limits for a pass, within_limits for a fail)
LIMIT_CONTRADICTIONS = Counter(
    "pywats_wats_limit_contradiction",
    "Measurements reported whose value contradicts their limits and CFX result",
    ["reason"],
    registry=PLUGIN_METRICS,
)


def _is_identifier(segment: str) -> bool:
    """A path segment naming one thing (a serial number, a part number, an id), not an endpoint."""
    return any(c.isdigit() or c in "%.=" for c in segment)


def endpoint_label(method: str, path: str) -> str:
    """``METHOD /path`` with per-item segments as ``{id}``: one label per endpoint, not one per unit.

    ``GET /api/Production/Unit/SN-0001/PCB-4711`` → ``GET /api/Production/Unit/{id}/{id}``; a label per
    serial number would grow the metrics (and the summary table) without bound."""
    segments = path.split("?", 1)[0].split("/")
    keep = [s if i <= 3 and not _is_identifier(s) else "{id}" for i, s in enumerate(segments) if s or i == 0]
    return f"{method.upper()} {'/'.join(keep) or '/'}"


def status_label(outcome: Any) -> str:
    """HTTP status of a response or of a WATS error when it carries one, else the error's class name."""
    status = getattr(outcome, "status", None)
    if isinstance(status, int):
        return str(status)
    if isinstance(outcome, BaseException):
        return type(outcome).__name__
    return "ok"


class RequestMeter:
    """WATS requests by endpoint and by outcome status: ``pywats_wats_requests_total{endpoint,status}`` in
    `registry` (when given) and tallies for the run summary."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.by_endpoint: Tally[str] = Tally()
        self.by_status: Tally[str] = Tally()
        self.requests = (
            Counter(
                "pywats_wats_requests",
                "WATS requests by outcome status",
                ["status", "endpoint"],
                registry=registry,
            )
            if registry is not None
            else None
        )

    def request_sent(self, endpoint: str, status: str) -> None:
        self.by_endpoint[endpoint] += 1
        self.by_status[status] += 1
        if self.requests is not None:
            self.requests.labels(status=status, endpoint=endpoint).inc()

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
        endpoint = endpoint_label(request.method, request.path)
        try:
            response = await self.inner.send(request)
        except Exception as exc:
            self.meter.request_sent(endpoint, status_label(exc))
            raise
        self.meter.request_sent(endpoint, status_label(response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
