"""OpenTelemetry tracing, when the ``otel`` extra is installed and a tracer provider is configured.

What is traced, all in the trace of the incoming message:

- ``<transport> decode``: the codec turning one delivery into events (`decode`). Its parent is the W3C
  context the producer sent (AMQP headers or MQTT 5 user properties ``traceparent``/``tracestate``); the
  events carry that context in `EventMetadata.trace_context` (through the journal and the DLQ). A message
  without one starts a trace at its decode span, and its events carry that.
- ``handle <handler>``: one handler's delivery of one event (its attempts, retries and deferrals), a child
  of the event's context (`handler_span`); it is the current span while the handler runs.
- client calls a handler makes (the WATS sender's ``WATS <operation>``, `client_span`), children of the
  running handler span, with ``traceparent`` injected into the outgoing headers.

This module never sets up a tracer provider: with none configured (or without the extra) every function
is a no-op that costs one check, and the bus adds no work per event. `AVAILABLE` is the switch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._codec import Codec, DecodeResult
    from ._event import Event

__all__ = [
    "AVAILABLE",
    "TRACE_HEADERS",
    "Span",
    "client_span",
    "decode",
    "enabled",
    "handler_span",
    "log_ids",
    "trace_context_from",
]


def _installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


#: the ``otel`` extra is installed; False makes every function here a no-op
AVAILABLE: bool = _installed()

#: the W3C trace context headers carried from a message into its events
TRACE_HEADERS = ("traceparent", "tracestate")

_TRACER_NAME = "pywats_events"


def _trace_api() -> Any:
    """The ``opentelemetry.trace`` module when a real tracer provider is set, else None. Imports nothing:
    whoever configured a provider has imported the API already."""
    if not AVAILABLE:
        return None
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return trace


def enabled() -> bool:
    """Spans are recorded: the extra is installed and a tracer provider is configured."""
    return _trace_api() is not None


def trace_context_from(headers: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The W3C trace context in a message's headers (lower-case names, as W3C writes them), else None."""
    if not headers:
        return None
    parent = headers.get("traceparent")
    if not parent:
        return None
    carried = {"traceparent": _text(parent)}
    state = headers.get("tracestate")
    if state:
        carried["tracestate"] = _text(state)
    return carried


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _parent(carrier: Mapping[str, str] | None) -> Any:
    """An OpenTelemetry context holding the remote span of `carrier` (None: no parent)."""
    if not carrier:
        return None
    return _w3c().extract(carrier)


def _carrier_of(span: Any) -> dict[str, str]:
    from opentelemetry import trace

    carrier: dict[str, str] = {}
    _w3c().inject(carrier, context=trace.set_span_in_context(span))
    return carrier


_propagator: Any = None


def _w3c() -> Any:
    """The W3C propagator itself (not the global one: what goes on the wire and into events is W3C)."""
    global _propagator
    if _propagator is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _propagator = TraceContextTextMapPropagator()
    return _propagator


def decode(
    codec: Codec,
    body: bytes,
    headers: Mapping[str, Any] | None,
    topic: str | None,
    *,
    transport: str,
) -> DecodeResult:
    """``codec.decode(body, headers, topic)``, with the message's trace context put on its events (an
    event that brings its own keeps it) and, when tracing, in a ``<transport> decode`` span."""
    carried = trace_context_from(headers)
    trace = _trace_api()
    if trace is None:
        result = codec.decode(body, headers, topic)
        if carried is not None:
            _carry(result.events, carried)
        return result
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        f"{transport} decode", context=_parent(carried), kind=trace.SpanKind.CONSUMER
    ) as span:
        span.set_attribute("messaging.system", transport)
        if topic is not None:
            span.set_attribute("messaging.destination.name", topic)
        result = codec.decode(body, headers, topic)
        span.set_attribute("pywats.events", len(result.events))
        if result.quarantined:
            span.set_attribute("pywats.quarantined", len(result.quarantined))
        if carried is None and result.events:
            carried = _carrier_of(span)  # no context came with it: its events join the decode's trace
    if carried is not None:
        _carry(result.events, carried)
    return result


def _carry(events: list[Event], carried: dict[str, str]) -> None:
    for event in events:
        metadata = event.metadata
        if not metadata.trace_context:  # a new dict: a codec's events may share one with something else
            metadata.trace_context = dict(carried)


class Span:
    """A span opened by `handler_span` or `client_span`; a no-op one when not tracing."""

    __slots__ = ("_span",)

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def inject(self, headers: dict[str, str]) -> None:
        """Adds ``traceparent`` (and ``tracestate``) naming this span to the request's `headers`."""
        if self._span is not None:
            headers.update(_carrier_of(self._span))

    def set_attribute(self, name: str, value: str | int | float | bool) -> None:
        """Sets one attribute (an outcome, a status code) on the span."""
        if self._span is not None:
            self._span.set_attribute(name, value)

    def fail(self, description: str) -> None:
        """Marks the span as failed without an exception leaving it (a delivery that dead-lettered)."""
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, description))


_NO_SPAN = Span()


@contextlib.contextmanager
def handler_span(event: Event, handler: str) -> Iterator[Span]:
    """The current span while `handler` delivers `event`: a child of the event's trace context. A no-op
    when not tracing; the bus enters it only for events that carry a context."""
    trace = _trace_api()
    if trace is None:
        yield _NO_SPAN
        return
    metadata = event.metadata
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        f"handle {handler}", context=_parent(metadata.trace_context), kind=trace.SpanKind.INTERNAL
    ) as span:
        span.set_attribute("pywats.handler", handler)
        span.set_attribute("pywats.event_id", metadata.event_id)
        span.set_attribute("pywats.event_type", event.type_name)
        if metadata.correlation_id is not None:
            span.set_attribute("pywats.correlation_id", metadata.correlation_id)
        yield Span(span)


@contextlib.contextmanager
def client_span(
    name: str, attributes: Mapping[str, str | int | float | bool] | None = None
) -> Iterator[Span]:
    """A client span named `name`, a child of the current span (a handler's); an exception leaving it marks
    the span as failed."""
    trace = _trace_api()
    if trace is None:
        yield _NO_SPAN
        return
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
        yield Span(span)


def log_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as lower-case hex, as OpenTelemetry writes them; None
    outside a recorded span."""
    trace = _trace_api()
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
