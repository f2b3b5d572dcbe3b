"""What stop() says about unfinished work, kind by kind, and how a failing on_start is reported."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BaseHandler, BusStateError, Event, EventType
from pywats_events.testing import MemoryJournal


class _Stuck(BaseHandler):
    """Never finishes an event (until the bus cancels it on stop)."""

    event_types = [EventType.TEST_RESULT]

    def __init__(self) -> None:
        self.started = 0

    async def handle(self, event: Event) -> None:
        self.started += 1
        await asyncio.sleep(3600)


def _stop_line(caplog: pytest.LogCaptureFixture) -> str:
    lines = [r.getMessage() for r in caplog.records if "bus stopped with" in r.getMessage()]
    assert len(lines) == 1, lines
    return lines[0]


async def test_stop_tells_journaled_from_targeted_events(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pywats_events.bus")
    stuck = _Stuck()
    bus = AsyncEventBus(journal=MemoryJournal(), max_concurrency=1)
    bus.subscribe(stuck)
    await bus.start()
    await bus.publish(make_event("SN-1"))
    await wait_until(lambda: stuck.started == 1)
    replay = asyncio.create_task(bus.publish(make_event("SN-2"), handler="_Stuck"))  # as DLQ replay does
    await wait_until(lambda: bus.in_flight == 2)
    report = await bus.stop(timeout=0.1)
    with pytest.raises(BusStateError):
        await replay
    assert len(report.not_handled) == 2
    assert report.kept_in_journal == 1 and report.targeted == 1
    line = _stop_line(caplog)
    assert "1 kept in the journal" in line
    assert "1 targeted deliveries" in line and "not journaled" in line
    assert "2" not in line.split(":", 1)[1], line  # nothing claims both are in the journal


async def test_stop_without_journal_does_not_claim_a_journal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pywats_events.bus")
    stuck = _Stuck()
    bus = AsyncEventBus(max_concurrency=1)
    bus.subscribe(stuck)
    await bus.start()
    await bus.publish(make_event("SN-1"))
    await bus.publish(make_event("SN-2"))
    submitted = asyncio.create_task(bus.context.submit([make_event("SN-3")]))
    await wait_until(lambda: bus.in_flight == 3)
    report = await bus.stop(timeout=0.1)
    with pytest.raises(BusStateError):
        await submitted
    assert (report.kept_in_journal, report.targeted, report.refused) == (0, 0, 1)
    line = _stop_line(caplog)
    assert "journal" not in line.replace("without a journal", "")
    assert "2 lost" in line and "1 refused" in line


class _BadStart(BaseHandler):
    event_types = [EventType.TEST_RESULT]

    def __init__(self) -> None:
        self.seen: list[str] = []

    @property
    def name(self) -> str:
        return "wats-report"

    async def on_start(self) -> None:
        raise ConnectionError("WATS unreachable at start-up")

    async def handle(self, event: Event) -> None:
        self.seen.append(event.id)


async def test_failing_on_start_names_the_handler_and_it_keeps_receiving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="pywats_events.bus")
    handler = _BadStart()
    bus = AsyncEventBus()
    bus.subscribe(handler)
    async with bus:
        ev = make_event()
        await bus.publish(ev)
        await wait_until(lambda: handler.seen == [ev.id])
    failures = [r for r in caplog.records if "on_start" in r.getMessage()]
    assert len(failures) == 1
    record = failures[0]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "wats-report" in message and "WATS unreachable at start-up" in message, message
    assert "ConnectionError" in message and "bound method" not in message
    assert record.exc_info is not None
