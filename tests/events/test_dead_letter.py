"""Dead-letter queues: memory bound, SQLite persistence across a process restart, replay to one handler."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BaseHandler, Event, EventBus, EventType
from pywats_events.policies import DeadLetterEntry, DeadLetterQueue, ErrorPolicy, SqliteDeadLetterQueue

WRITER = textwrap.dedent(
    """
    import sys
    from pywats_events import EventBus, Event, EventType, PermanentError
    from pywats_events.policies import ErrorPolicy, SqliteDeadLetterQueue

    dlq = SqliteDeadLetterQueue(sys.argv[1])

    def reports(event):
        raise PermanentError(f"rejected {event.payload['unit_id']}")

    def archive(event):
        pass

    bus = EventBus()
    policy = ErrorPolicy(dead_letter_queue=dlq)
    bus.subscribe(reports, [EventType.TEST_RESULT], name="reports", error_policy=policy)
    bus.subscribe(archive, [EventType.TEST_RESULT], name="archive")
    bus.start()
    for i in range(3):
        bus.publish(Event(event_type=EventType.TEST_RESULT, payload={"unit_id": f"SN-{i}"}))
    bus.stop()
    """
)


def test_sqlite_dlq_survives_restart_and_replays_to_that_handler_only(tmp_path: Path):
    db = tmp_path / "dlq.sqlite"
    subprocess.run([sys.executable, "-c", WRITER, str(db)], check=True, timeout=20)

    dlq = SqliteDeadLetterQueue(db)
    entries = sorted(dlq.get_entries(), key=lambda e: e.event.payload["unit_id"])  # 3 keys: any order
    assert [e.event.payload["unit_id"] for e in entries] == ["SN-0", "SN-1", "SN-2"]
    assert {e.handler for e in entries} == {"reports"} and entries[0].error == "rejected SN-0"
    assert entries[0].error_type == "pywats_events._exceptions.PermanentError" and entries[0].attempts == 1
    assert dlq.get(entries[1].id) == entries[1]
    assert len(dlq.get_entries(handler="reports", event_type="test.result")) == 3

    fixed: list[str] = []
    archived: list[str] = []
    bus = EventBus()
    bus.subscribe(lambda e: fixed.append(e.payload["unit_id"]), [EventType.TEST_RESULT], name="reports")
    bus.subscribe(lambda e: archived.append(e.payload["unit_id"]), [EventType.TEST_RESULT], name="archive")
    bus.start()
    assert dlq.replay(bus, ids=[entries[0].id]).replayed == 1
    assert fixed == ["SN-0"] and archived == []  # only the handler that failed sees it again
    assert dlq.replay(bus).replayed == 2
    bus.stop()
    assert sorted(fixed) == ["SN-0", "SN-1", "SN-2"] and archived == [] and len(dlq) == 0
    dlq.close()


async def test_async_replay_and_refailure_makes_a_new_entry(tmp_path: Path):
    dlq = SqliteDeadLetterQueue(tmp_path / "d.sqlite", max_size=2)
    for i in range(3):
        dlq.add(DeadLetterEntry(event=make_event(f"SN-{i}"), handler="h", error="x", error_type="E"))
    assert [e.event.payload["unit_id"] for e in dlq.get_entries()] == ["SN-1", "SN-2"]  # oldest evicted

    class Still(BaseHandler):
        event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

        async def handle(self, event: Event) -> None:
            raise ValueError("still broken")

    from pywats_events.policies import RetryPolicy

    bus = AsyncEventBus()
    bus.subscribe(
        Still(),
        name="h",
        retry_policy=RetryPolicy(max_retries=0),
        error_policy=ErrorPolicy(dead_letter_queue=dlq),
    )
    async with bus:
        assert (await dlq.areplay(bus)).replayed == 2
    again = dlq.get_entries()
    assert len(again) == 2 and all(e.error == "still broken" for e in again)
    assert dlq.purge() == 2 and len(dlq) == 0


def test_memory_dlq_is_bounded_and_filterable():
    dlq = DeadLetterQueue(max_size=3)
    for i in range(5):
        dlq.add(
            DeadLetterEntry(
                event=make_event(f"SN-{i}"), handler="a" if i % 2 else "b", error="e", error_type="E"
            )
        )
    assert len(dlq) == 3
    assert [e.event.payload["unit_id"] for e in dlq.get_entries(handler="b")] == ["SN-2", "SN-4"]
    first = dlq.get_entries()[0]
    assert dlq.remove(first.id) and not dlq.remove(first.id) and len(dlq) == 2


def _entries(dlq: DeadLetterQueue, *handlers: str) -> list[DeadLetterEntry]:
    made = [
        DeadLetterEntry(event=make_event(f"SN-{i}"), handler=h, error="x", error_type="E")
        for i, h in enumerate(handlers)
    ]
    for e in made:
        dlq.add(e)
    return made


async def test_replay_skips_entries_of_unsubscribed_handlers_and_goes_on(caplog):
    dlq = DeadLetterQueue()
    first, gone, last = _entries(dlq, "reports", "retired-handler", "reports")
    seen: list[str] = []
    bus = AsyncEventBus()
    bus.subscribe(lambda e: seen.append(e.payload["unit_id"]), [EventType.TEST_RESULT], name="reports")
    async with bus:
        report = await dlq.areplay(bus)
    assert seen == ["SN-0", "SN-2"]
    assert report.replayed == 2 and report.skipped == [gone.id] and not report.complete
    assert [e.id for e in dlq.get_entries()] == [gone.id]  # kept for a later replay
    warning = [r.getMessage() for r in caplog.records if gone.id in r.getMessage()]
    assert warning and "retired-handler" in warning[0] and "not subscribed" in warning[0]
    assert first.id not in {e.id for e in dlq.get_entries()} and last.id not in {
        e.id for e in dlq.get_entries()
    }


async def test_replay_timeout_stops_and_a_late_finish_still_leaves_the_queue():
    dlq = DeadLetterQueue()
    slow, rest1, rest2 = _entries(dlq, "wats", "wats", "wats")
    outage_over = asyncio.Event()
    seen: list[str] = []

    async def wats(event: Event) -> None:
        await outage_over.wait()
        seen.append(event.payload["unit_id"])

    bus = AsyncEventBus()
    bus.subscribe(wats, [EventType.TEST_RESULT], name="wats")
    async with bus:
        t0 = asyncio.get_running_loop().time()
        report = await dlq.areplay(bus, timeout=0.2)
        assert asyncio.get_running_loop().time() - t0 < 2.0
        assert report.timed_out == slow.id and report.not_replayed == 2 and report.replayed == 0
        assert len(dlq) == 3  # nothing removed that did not finish
        outage_over.set()
        await wait_until(lambda: len(dlq) == 2)
    assert seen == ["SN-0"] and {e.id for e in dlq.get_entries()} == {rest1.id, rest2.id}


def test_sync_replay_is_bounded_too():
    dlq = DeadLetterQueue()
    _entries(dlq, "stuck", "stuck")
    release = threading.Event()
    bus = EventBus()

    def stuck(event: Event) -> None:
        release.wait(10)

    bus.subscribe(stuck, [EventType.TEST_RESULT], name="stuck")
    bus.start()
    try:
        report = dlq.replay(bus, timeout=0.2)
        assert report.timed_out is not None and report.not_replayed == 1 and len(dlq) == 2
    finally:
        release.set()
        bus.stop()


def test_sqlite_page_filters_and_pages_newest_first(tmp_path: Path) -> None:
    """The console's listing: exact handler and event type, error text (LIKE wildcards taken literally),
    a time window, a total and pages newest first."""
    from datetime import datetime, timedelta, timezone

    dlq = SqliteDeadLetterQueue(tmp_path / "d.sqlite")
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(30):
        event = make_event(f"SN-{i}", etype=EventType.WORK_STARTED if i % 3 == 0 else EventType.TEST_RESULT)
        error = "HTTP 400: bad report" if i % 2 else "100% of 5_x failed"
        when = t0 + timedelta(minutes=i)
        dlq.add(
            DeadLetterEntry(
                event=event,
                handler="wats" if i < 20 else "archive",
                error=error,
                error_type="WatsPermanentError",
                first_failure=when,
                last_failure=when,
            )
        )
    total, page = dlq.page(limit=5)
    assert total == 30
    assert [e.event.payload["unit_id"] for e in page] == [f"SN-{i}" for i in (29, 28, 27, 26, 25)]
    total, page = dlq.page(offset=25, limit=10)
    assert [e.event.payload["unit_id"] for e in page] == [f"SN-{i}" for i in (4, 3, 2, 1, 0)]
    assert dlq.page(handler="archive")[0] == 10
    assert dlq.page(event_type=EventType.WORK_STARTED.value)[0] == 10
    assert dlq.page(text="http 400")[0] == 15  # case-insensitive
    assert dlq.page(text="100%")[0] == 15 and dlq.page(text="5_x")[0] == 15
    assert dlq.page(text="0%")[0] == 15 and dlq.page(text="%")[0] == 15  # a literal %, not "anything"
    assert dlq.page(text="permanent")[0] == 30  # the error type counts too
    window = dlq.page(since=t0 + timedelta(minutes=10), until=t0 + timedelta(minutes=14))
    assert window[0] == 5
    assert dlq.page(handler="wats", text="400", since=t0 + timedelta(minutes=10))[0] == 5
    assert dlq.facets() == {
        "handler": ["archive", "wats"],
        "event_type": ["production.work_started", "test.result"],
    }
    dlq.close()
