"""OpenTelemetry tracing (the ``otel`` extra): one CFX message over AMQP with a ``traceparent`` header,
through a listener run in-process against RabbitMQ and FakeWATS, yields spans for decode, each handler and
each WATS request, all in the message's trace; FakeWATS sees the request span as the parent. Without tracing
(`tracing.AVAILABLE` off) the same run works and records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from brokers import RABBITMQ_URL
from listener_support import LISTENER_TOKEN, UNITS_TESTED, amqp_toml, units_tested, wats_settings_toml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tracing_support import PARENT, PARENT_SPAN_ID, TRACE_ID, ids, memory_spans, parent_id

from handlers.wats.fake import FakeWATS, RequestRecord
from pywats_events import tracing
from pywats_events.config import load_settings
from pywats_events.listener import Listener

pytestmark = [pytest.mark.broker]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with memory_spans() as exporter:
        yield exporter


def _listener(tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS) -> Listener:
    cfg = tmp_path / "listener.toml"
    token = tmp_path / "token"
    token.write_text(LISTENER_TOKEN)
    cfg.write_text(
        "\n".join(
            [
                amqp_toml(*topology),
                "[wats]",
                f'url = "{wats.url}"',
                f'token_file = "{token.as_posix()}"',
                "rate_limit_per_minute = 600000",
                "timeout = 5",
                "[listener]",
                f'data_dir = "{(tmp_path / "data").as_posix()}"',
                "drain_timeout = 10",
                wats_settings_toml(),
            ]
        )
    )
    return Listener(load_settings(cfg, environ={}))


async def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _run_one_message(
    tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS, headers: dict[str, str]
) -> None:
    """Start a listener, publish one UnitsTested message with `headers`, wait for its report in WATS, stop."""
    listener = _listener(tmp_path, topology, wats)
    run = asyncio.create_task(listener.run())
    try:
        await _wait_for(lambda: listener.ready()[0] or run.done(), 30, "the listener to connect")
        assert not run.done(), run.result()
        _, body = units_tested(0, "UT-TRACE-1", tmp_path.name)
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology[0], ensure=False)
            await exchange.publish(aio_pika.Message(body, headers=dict(headers)), f"line1.{UNITS_TESTED}")
        await _wait_for(lambda: _reports(wats), 30, "the report in WATS")
    finally:
        listener.request_stop("test done")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(run, 30)


def _reports(wats: FakeWATS) -> list[RequestRecord]:
    return [
        r for r in wats.requests if r.method == "POST" and r.path == "/api/Report/WSJF" and r.status == 200
    ]


@pytest.mark.timeout(90)
async def test_one_message_is_one_trace_from_decode_through_handlers_to_wats(
    tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS, spans: InMemorySpanExporter
) -> None:
    await _run_one_message(tmp_path, topology, wats, {"traceparent": PARENT, "tracestate": "vendor=1"})

    finished = spans.get_finished_spans()
    ours = [s for s in finished if ids(s)[0] == TRACE_ID]
    names = sorted(s.name for s in ours)
    decode = [s for s in ours if s.name.endswith(" decode")]
    handlers = [s for s in ours if s.name.startswith("handle ")]
    requests = [s for s in ours if s.name.startswith("WATS ")]
    assert len(decode) == 1, names
    assert handlers, names
    assert requests, names
    # nothing of this message fell out of its trace
    assert len(ours) == len([s for s in finished if s.name in names]), [s.name for s in finished]

    # decode and every handler continue the producer's span; every WATS request is a child of a handler
    assert parent_id(decode[0]) == PARENT_SPAN_ID
    for span in handlers:
        assert parent_id(span) == PARENT_SPAN_ID
        assert (
            span.attributes is not None and span.attributes["pywats.handler"] == span.name[len("handle ") :]
        )
    handler_ids = {ids(s)[1] for s in handlers}
    for span in requests:
        assert parent_id(span) in handler_ids
    submit = [
        s for s in requests if s.attributes and s.attributes.get("pywats.wats.operation") == "submit_report"
    ]
    assert len(submit) == 1, [s.name for s in requests]
    assert submit[0].attributes is not None and submit[0].attributes["http.response.status_code"] == 200

    # WATS saw each request span as the parent of its request
    sent = {r.traceparent for r in wats.requests}
    for span in requests:
        trace_id, span_id = ids(span)
        assert f"00-{trace_id}-{span_id}-01" in sent
    report = _reports(wats)[0]
    assert report.traceparent is not None and report.traceparent.startswith(f"00-{TRACE_ID}-")


@pytest.mark.timeout(90)
async def test_a_message_without_context_starts_a_trace_at_its_decode(
    tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS, spans: InMemorySpanExporter
) -> None:
    await _run_one_message(tmp_path, topology, wats, {})

    finished = spans.get_finished_spans()
    decode = [s for s in finished if s.name.endswith(" decode")]
    assert len(decode) == 1 and decode[0].parent is None
    trace_id = ids(decode[0])[0]
    handlers = [s for s in finished if s.name.startswith("handle ")]
    requests = [s for s in finished if s.name.startswith("WATS ")]
    assert handlers and requests
    assert {ids(s)[0] for s in handlers + requests} == {trace_id}


@pytest.mark.timeout(90)
async def test_without_tracing_the_message_flows_and_nothing_is_recorded(
    tmp_path: Path,
    topology: tuple[str, str, str],
    wats: FakeWATS,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "AVAILABLE", False)  # as if the extra were not installed
    await _run_one_message(tmp_path, topology, wats, {"traceparent": PARENT})

    assert spans.get_finished_spans() == ()
    assert all(r.traceparent is None for r in wats.requests)
    assert len(_reports(wats)) == 1
