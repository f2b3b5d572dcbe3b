"""Structured logs: the bus's own lines about one event (retry, deferral, dead letter, handler error) carry
its event id and correlation id, so `--log-json` output can be joined with the message and the DLQ entry."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest
from json_log_support import json_lines
from json_log_support import json_log as capture_json_log

from pywats_events import (
    AsyncEventBus,
    BaseHandler,
    Event,
    EventMetadata,
    EventType,
    PermanentError,
    TransientError,
)
from pywats_events.policies import RetryPolicy


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with capture_json_log("pywats_events", delivery_context=False) as stream:
        yield stream


def _event(n: int) -> Event:
    return Event(
        event_type=EventType.TEST_RESULT,
        payload={"unit_serial": f"U-{n}"},
        metadata=EventMetadata(correlation_id=f"txn-{n}", source="test"),
    )


class _Flaky(BaseHandler):
    """Fails each event transiently once, then succeeds; `on_error` itself is broken."""

    event_types = [EventType.TEST_RESULT]

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    async def handle(self, event: Event) -> None:
        if event.id not in self.seen:
            self.seen.add(event.id)
            raise TransientError("WATS busy")

    def on_error(self, event: Event, error: Exception) -> None:
        raise RuntimeError("on_error is broken too")


async def test_bus_log_lines_carry_event_and_correlation_ids(json_log: io.StringIO) -> None:
    async def reject(event: Event) -> None:
        raise PermanentError("no such part number")

    fast = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02, jitter=False)
    flaky = _Flaky()
    bus = AsyncEventBus()
    bus.subscribe(flaky, retry_policy=fast)
    bus.subscribe(reject, [EventType.TEST_RESULT], retry_policy=fast)
    async with bus:
        bad, good = _event(1), _event(2)
        await bus.publish(bad)
        await bus.publish(good)
    lines = json_lines(json_log)
    about_bad = [line for line in lines if line.get("event_id") == bad.id]
    messages = " | ".join(line["message"] for line in about_bad)
    assert any("retrying" in line["message"] for line in about_bad), messages
    assert any("on_error raised" in line["message"] for line in about_bad), messages
    assert any("dead-lettered" in line["message"] for line in about_bad), messages
    for line in about_bad:
        assert line["correlation_id"] == "txn-1" and line["event_type"] == bad.type_name
        assert line["handler"]
    dead = [line for line in lines if "dead-lettered" in line["message"]]
    assert {line["event_id"] for line in dead} == {bad.id, good.id}
    assert {line["correlation_id"] for line in dead} == {"txn-1", "txn-2"}


async def test_deferral_log_line_carries_the_ids(json_log: io.StringIO) -> None:
    calls = 0

    async def outage(event: Event) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("WATS down")

    once = RetryPolicy(max_retries=0, initial_delay=0.01, max_delay=0.02, jitter=False)
    bus = AsyncEventBus()
    bus.subscribe(outage, [EventType.TEST_RESULT], retry_policy=once)
    async with bus:
        ev = _event(3)
        await bus.publish(ev)
    deferred = [line for line in json_lines(json_log) if "deferred" in line["message"]]
    assert deferred, "a transient failure past the retries is deferred, not dead-lettered"
    assert all(line["event_id"] == ev.id and line["correlation_id"] == "txn-3" for line in deferred)
    assert calls == 3


@pytest.fixture
def root_json_log() -> Iterator[io.StringIO]:
    """JSON lines of every logger, through the filter `configure_logging` installs."""
    with capture_json_log() as stream:
        yield stream


_plugin_log = logging.getLogger("handlers.test_plugin")
_sender_log = logging.getLogger("handlers.wats.sender")


class _Chatty(BaseHandler):
    """Logs through loggers of its own, as handlers and the WATS sender do."""

    event_types = [EventType.TEST_RESULT]

    async def handle(self, event: Event) -> None:
        _plugin_log.info("posting report for %s", event.payload["unit_serial"])
        await asyncio.sleep(0)
        _sender_log.info("POST /api/Report/WSJF -> 200")


class _ChattySync(BaseHandler):
    """A synchronous handler: it runs in a worker thread of the bus."""

    event_types = [EventType.TEST_RESULT]

    @property
    def name(self) -> str:
        return "chatty-sync"

    def handle(self, event: Event) -> None:
        _plugin_log.info("sync handler saw %s", event.payload["unit_serial"])


async def test_handler_and_sender_log_lines_carry_the_event_ids(root_json_log: io.StringIO) -> None:
    bus = AsyncEventBus(max_concurrency=4)
    bus.subscribe(_Chatty())
    bus.subscribe(_ChattySync())
    events = [_event(n) for n in range(10, 16)]
    async with bus:
        for ev in events:
            await bus.publish(ev)
    _plugin_log.info("outside any handler call")
    lines = json_lines(root_json_log)
    by_id = {ev.id: ev for ev in events}
    for logger, handler_name, text in (
        ("handlers.test_plugin", "_Chatty", "posting report"),
        ("handlers.wats.sender", "_Chatty", "POST"),
        ("handlers.test_plugin", "chatty-sync", "sync handler saw"),
    ):
        mine = [line for line in lines if line["logger"] == logger and line["message"].startswith(text)]
        assert len(mine) == len(events), (logger, text, lines)
        for line in mine:
            ev = by_id[line["event_id"]]
            assert line["message"].endswith(ev.payload["unit_serial"]) or text == "POST"
            assert line["correlation_id"] == ev.metadata.correlation_id
            assert line["event_type"] == ev.type_name
            assert line["handler"] == handler_name
    outside = [line for line in lines if line["message"] == "outside any handler call"]
    assert outside and "event_id" not in outside[0] and "handler" not in outside[0]
