"""A global SDK tracer provider exporting to memory, for one test (the ``otel`` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

#: a producer's span, as a CFX publisher would send it in ``traceparent``
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
PARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


def _reset_global_provider() -> None:
    # what opentelemetry's own test utilities do (opentelemetry.test.globals_test.reset_trace_globals)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()


@contextmanager
def memory_spans() -> Iterator[InMemorySpanExporter]:
    """A global SDK tracer provider whose finished spans collect in the exporter, until the block ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset_global_provider()


def ids(span: ReadableSpan) -> tuple[str, str]:
    """(trace id, span id) of `span` in hex."""
    ctx = span.get_span_context()
    assert ctx is not None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


def parent_id(span: ReadableSpan) -> str | None:
    """The span id of `span`'s parent in hex (None for a root span)."""
    return None if span.parent is None else trace.format_span_id(span.parent.span_id)
