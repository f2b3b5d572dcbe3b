"""Dead-letter queues: memory bound, SQLite persistence across a process restart, replay to one handler."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from _bus_helpers import make_event

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
    assert dlq.replay(bus, ids=[entries[0].id]) == 1
    assert fixed == ["SN-0"] and archived == []  # only the handler that failed sees it again
    assert dlq.replay(bus) == 2
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
        assert await dlq.areplay(bus) == 2
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
