"""Tracing in the bus (`pywats_events.tracing`): a span per handler delivery in the event's trace, trace and
span ids in JSON log lines, the context carried from message headers into events, and no-ops without
tracing (no provider, the switch off, or the ``otel`` extra not installed at all)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from json_log_support import json_lines
from json_log_support import json_log as capture_json_log
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tracing_support import PARENT, PARENT_SPAN_ID, TRACE_ID, ids, memory_spans, parent_id

from pywats_events import (
    AsyncEventBus,
    DecodeResult,
    Event,
    EventMetadata,
    EventType,
    PermanentError,
    tracing,
)
from pywats_events.policies import RetryPolicy

pytestmark = [pytest.mark.timeout(30)]

_plugin_log = logging.getLogger("handlers.traced_plugin")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with memory_spans() as exporter:
        yield exporter


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """JSON lines of every logger, through the filter `configure_logging` installs."""
    with capture_json_log() as stream:
        yield stream


def _traced(n: int) -> Event:
    return Event(
        event_type=EventType.TEST_RESULT,
        payload={"unit_serial": f"U-{n}"},
        metadata=EventMetadata(correlation_id=f"txn-{n}", trace_context={"traceparent": PARENT}),
    )


async def _run(*events: Event) -> list[str]:
    """Two handlers (one async, one sync in a worker thread), each logging once per event."""
    seen: list[str] = []

    async def report(event: Event) -> None:
        _plugin_log.info("reporting %s", event.id)
        seen.append(f"report {event.id}")

    def count(event: Event) -> None:
        _plugin_log.info("counting %s", event.id)
        seen.append(f"count {event.id}")

    bus = AsyncEventBus()
    bus.subscribe(report, [EventType.TEST_RESULT])
    bus.subscribe(count, [EventType.TEST_RESULT])
    async with bus:
        for event in events:
            await bus.publish(event)
    return seen


async def test_each_handler_delivery_is_a_span_in_the_events_trace_and_its_log_lines_say_so(
    spans: InMemorySpanExporter, json_log: io.StringIO
) -> None:
    traced, plain = _traced(1), Event(event_type=EventType.TEST_RESULT, payload={"unit_serial": "U-2"})
    seen = await _run(traced, plain)
    assert len(seen) == 4

    handled = spans.get_finished_spans()
    names = sorted(s.name.rsplit(".", 1)[-1] for s in handled)  # "handle <qualified name>"
    assert names == ["count", "report"], "the plain event has no span"
    assert all(s.name.startswith("handle ") for s in handled)
    for span in handled:
        assert ids(span)[0] == TRACE_ID and parent_id(span) == PARENT_SPAN_ID
        assert span.attributes is not None and span.attributes["pywats.event_id"] == traced.id
    span_of = {s.attributes["pywats.handler"]: ids(s)[1] for s in handled if s.attributes}

    lines = [line for line in json_lines(json_log) if line["logger"] == "handlers.traced_plugin"]
    assert len(lines) == 4
    for line in lines:
        if line["event_id"] == traced.id:  # the sync handler's line too (its worker thread has the context)
            assert line["trace_id"] == TRACE_ID
            assert line["span_id"] == span_of[line["handler"]]
        else:
            assert "trace_id" not in line and "span_id" not in line


async def test_a_failed_delivery_marks_its_span(spans: InMemorySpanExporter) -> None:
    async def reject(event: Event) -> None:
        raise PermanentError("no such part number")

    bus = AsyncEventBus()
    bus.subscribe(reject, [EventType.TEST_RESULT], retry_policy=RetryPolicy(max_retries=0))
    async with bus:
        await bus.publish(_traced(3))
    (span,) = spans.get_finished_spans()
    assert span.name.endswith(".reject") and parent_id(span) == PARENT_SPAN_ID
    assert span.status.status_code is StatusCode.ERROR, "a dead-lettered delivery is an error"


async def test_with_the_switch_off_nothing_is_traced_and_everything_runs(
    spans: InMemorySpanExporter, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "AVAILABLE", False)  # as if the extra were not installed
    assert not tracing.enabled()
    event = _traced(4)
    assert len(await _run(event)) == 2
    assert spans.get_finished_spans() == ()
    lines = [line for line in json_lines(json_log) if line.get("event_id") == event.id]
    assert lines and all("trace_id" not in line for line in lines)
    with tracing.client_span("WATS x") as span:
        headers: dict[str, str] = {}
        span.inject(headers)
        span.set_attribute("k", 1)
    assert headers == {} and tracing.log_ids() is None


def test_without_a_tracer_provider_tracing_is_off() -> None:
    assert tracing.AVAILABLE  # the test environment has the extra
    assert not tracing.enabled()
    assert tracing.log_ids() is None


class _Codec:
    """Two events per message; the second brings its own trace context."""

    def decode(self, body: bytes, headers: Any = None, topic: str | None = None) -> DecodeResult:
        own = EventMetadata(trace_context={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
        return DecodeResult([Event(event_type="a", payload={}), Event(event_type="b", metadata=own)])


def test_decode_carries_the_message_context_into_its_events_even_when_not_tracing() -> None:
    result = tracing.decode(
        _Codec(), b"", {"traceparent": PARENT.encode(), "tracestate": "v=1"}, "t", transport="amqp"
    )
    first, second = result.events
    assert first.metadata.trace_context == {"traceparent": PARENT, "tracestate": "v=1"}
    assert second.metadata.trace_context["traceparent"].startswith("00-111"), "an event's own context wins"
    assert tracing.trace_context_from({"other": "x"}) is None
    assert tracing.trace_context_from(None) is None


def test_decode_is_a_span_under_the_message_context(spans: InMemorySpanExporter) -> None:
    result = tracing.decode(_Codec(), b"", {"traceparent": PARENT}, "line1/x", transport="mqtt")
    (span,) = spans.get_finished_spans()
    assert span.name == "mqtt decode" and ids(span)[0] == TRACE_ID and parent_id(span) == PARENT_SPAN_ID
    assert span.attributes is not None and span.attributes["pywats.events"] == 2
    assert result.events[0].metadata.trace_context == {"traceparent": PARENT}


def test_without_the_extra_installed_the_bus_runs_and_logs_without_trace_ids() -> None:
    """A fresh interpreter in which ``import opentelemetry`` fails, as after a plain install."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # importing it now raises ImportError
        import asyncio, io, json, logging
        from pywats_events import AsyncEventBus, Event, EventMetadata, tracing
        from pywats_events.logging_setup import configure_logging

        stream = io.StringIO()
        configure_logging(json_lines=True, stream=stream)
        seen = []

        async def handler(event):
            logging.getLogger("plugin").info("handled")
            seen.append(event.metadata.trace_context)

        async def main():
            bus = AsyncEventBus()
            bus.subscribe(handler, ["test.result"])
            async with bus:
                meta = EventMetadata(trace_context={"traceparent": sys.argv[1]})
                await bus.publish(Event(event_type="test.result", metadata=meta))

        asyncio.run(main())
        line = [json.loads(x) for x in stream.getvalue().splitlines() if '"plugin"' in x][0]
        with tracing.client_span("x") as span:
            headers = {}
            span.inject(headers)
        print(json.dumps({"available": tracing.AVAILABLE, "enabled": tracing.enabled(), "seen": seen,
                          "line": line, "headers": headers,
                          "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, PARENT], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    assert result["available"] is False and result["enabled"] is False
    assert result["seen"] == [{"traceparent": PARENT}], "the context still travels with the event"
    assert "trace_id" not in result["line"] and result["line"]["message"] == "handled"
    assert result["headers"] == {} and result["loaded"] == ["opentelemetry"]
