"""With a journal: accepted = appended; handlers' progress recorded; a restart resumes without re-running."""

from __future__ import annotations

import asyncio

from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BaseHandler, Event, EventType
from pywats_events.journal import Journal
from pywats_events.testing import MemoryJournal


class Rec(BaseHandler):
    event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

    def __init__(self, name: str, gate: asyncio.Event | None = None) -> None:
        self._name = name
        self.gate = gate
        self.seen: list[int] = []

    @property
    def name(self) -> str:
        return self._name

    async def handle(self, event: Event) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.seen.append(event.payload["i"])


def test_memory_journal_fits_the_protocol():
    assert isinstance(MemoryJournal(), Journal)


async def test_accepted_means_appended_and_resume_skips_finished_handlers():
    journal = MemoryJournal()
    gate = asyncio.Event()
    a, b = Rec("a"), Rec("b", gate)
    bus = AsyncEventBus(journal=journal, max_in_flight=8, max_concurrency=2)
    bus.subscribe(a, ordering_group="g")  # one group: b holding an event holds a's later events too
    bus.subscribe(b, ordering_group="g")
    await bus.start()
    # submit returns once appended, even though handler b is stuck
    await asyncio.wait_for(bus.context.submit([make_event("U", i) for i in range(30)]), 1)
    assert len(journal.entries) == 30
    await wait_until(lambda: len(a.seen) == 1)  # one key: a did event 0, b holds the lane
    await asyncio.sleep(0.05)
    assert bus.in_flight == 8  # memory bounded: only max_in_flight read from the journal
    report = await bus.stop(timeout=0.05)
    assert report.timed_out and report.journal_pending == 30 and len(report.not_handled) == 8

    # "restart": same journal, fresh handlers; a already did event 0, b nothing
    a2, b2 = Rec("a"), Rec("b")
    bus2 = AsyncEventBus(journal=journal, max_in_flight=8, max_concurrency=2)
    bus2.subscribe(a2, ordering_group="g")
    bus2.subscribe(b2, ordering_group="g")
    await bus2.start()
    await wait_until(lambda: len(b2.seen) == 30)
    report2 = await bus2.stop()
    assert report2.clean and report2.journal_pending == 0
    assert a.seen == [0] and a2.seen == list(range(1, 30))  # no re-run of what a already finished
    assert b2.seen == list(range(30))  # in order per key


async def test_live_events_come_from_the_cache_not_the_journal():
    journal = MemoryJournal()
    h = Rec("h")
    bus = AsyncEventBus(journal=journal, max_in_flight=100)
    bus.subscribe(h)
    async with bus:
        await wait_until(lambda: bus._feeder is not None and bus._feeder.caught_up)
        reads = journal.reads
        for i in range(50):
            await bus.publish(make_event("U", i))
        await wait_until(lambda: len(h.seen) == 50)
        assert journal.reads == reads  # nothing read back
    assert h.seen == list(range(50)) and len(journal.completed) == 50


async def test_cache_overflow_falls_back_to_reading_the_journal():
    journal = MemoryJournal()
    gate = asyncio.Event()
    h = Rec("h", gate)
    bus = AsyncEventBus(journal=journal, max_in_flight=4, max_concurrency=1, journal_cache=5)
    bus.subscribe(h)
    async with bus:
        for i in range(40):
            await bus.publish(make_event("U", i))
        gate.set()
        await wait_until(lambda: len(h.seen) == 40)
    assert h.seen == list(range(40)) and journal.reads > 1


class OutOfOrderJournal(MemoryJournal):
    """Seqs assigned in call order, but the first caller resumes last (as a group commit may do)."""

    async def append(self, events):  # type: ignore[no-untyped-def]
        seqs = await super().append(events)
        await asyncio.sleep(0.02 if seqs[0] % 2 else 0)
        return seqs


async def test_out_of_order_append_completion_keeps_seq_order():
    journal = OutOfOrderJournal()
    h = Rec("h")
    bus = AsyncEventBus(journal=journal, max_concurrency=1)
    bus.subscribe(h)
    async with bus:
        await wait_until(lambda: bus._feeder is not None and bus._feeder.caught_up)
        await asyncio.gather(*(bus.context.submit([make_event("U", i)]) for i in range(20)))
        await wait_until(lambda: len(h.seen) == 20)
    assert h.seen == list(range(20)) and len(journal.completed) == 20


def test_sync_publish_with_a_journal_returns_once_appended():
    from pywats_events import EventBus

    journal = MemoryJournal(append_delay=0.01)
    bus = EventBus(journal=journal)
    bus.subscribe(lambda e: None, [EventType.TEST_RESULT], name="noop")
    bus.start()
    for i in range(5):
        bus.publish(make_event("U", i))
        assert len(journal.entries) == i + 1  # durable before publish returned
    report = bus.stop()
    assert report.clean and report.journal_pending == 0


class BufferedJournal(MemoryJournal):
    """A MemoryJournal with the optional no-wait marks, recording which marks the bus sends."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[str, int, str]] = []

    def mark_handled_nowait(self, seq: int, handler: str, outcome: str) -> None:
        self.marks.append(("handled", seq, handler))
        self.handled.setdefault(seq, {})[handler] = outcome

    def mark_complete_nowait(self, seq: int) -> None:
        self.marks.append(("complete", seq, ""))
        self.completed.add(seq)


def test_buffered_journal_fits_the_optional_protocol():
    from pywats_events.journal._protocol import BufferedMarks

    assert isinstance(BufferedJournal(), BufferedMarks)
    assert not isinstance(MemoryJournal(), BufferedMarks)


async def test_progress_is_marked_for_all_but_the_last_handler():
    journal = BufferedJournal()
    a, b = Rec("a"), Rec("b")
    bus = AsyncEventBus(journal=journal, max_concurrency=1)
    bus.subscribe(a, ordering_group="g")
    bus.subscribe(b, ordering_group="g")
    async with bus:
        await bus.context.submit([make_event("U", i) for i in range(3)])
        await wait_until(lambda: len(journal.completed) == 3)
    # "b handled" is implied by "complete"; "a handled" is what lets a restart skip a
    assert journal.marks == [m for seq in (1, 2, 3) for m in (("handled", seq, "a"), ("complete", seq, ""))]
    assert a.seen == b.seen == [0, 1, 2]


async def test_single_handler_needs_one_mark_per_event():
    journal = BufferedJournal()
    h = Rec("h")
    bus = AsyncEventBus(journal=journal)
    bus.subscribe(h)
    async with bus:
        await bus.context.submit([make_event("U", i) for i in range(5)])
        await wait_until(lambda: len(h.seen) == 5)
    assert [kind for kind, _, _ in journal.marks] == ["complete"] * 5


async def test_sqlite_journal_many_producers_each_event_once_in_order(tmp_path):
    """The live path (appended events go straight to the lanes when the feeder is caught up) with the
    real journal: every event handled exactly once, per-unit order kept, nothing left pending."""
    from pywats_events.journal import SqliteJournal

    seen: dict[str, list[int]] = {}

    async def record(event: Event) -> None:
        seen.setdefault(event.payload["unit_id"], []).append(event.payload["i"])

    journal = SqliteJournal(tmp_path / "j.db")
    bus = AsyncEventBus(journal=journal, max_in_flight=50, max_concurrency=4)
    bus.subscribe(record, [EventType.TEST_RESULT])
    await bus.start()

    async def producer(unit: str) -> None:
        for i in range(60):
            await bus.context.submit([make_event(unit, i)])

    await asyncio.wait_for(asyncio.gather(*(producer(f"U{p}") for p in range(12))), 15)
    await wait_until(lambda: sum(len(v) for v in seen.values()) >= 720)
    report = await bus.stop()
    assert report.clean and report.journal_pending == 0
    assert seen == {f"U{p}": list(range(60)) for p in range(12)}


class _ReadWhileAppending(MemoryJournal):
    """Holds the feeder's first read back until an append has stored its entries, and that append's return
    until the read has come back with them: a commit the feeder sees before its writer hears of it."""

    def __init__(self) -> None:
        super().__init__()
        self.stored = asyncio.Event()
        self.read_done = asyncio.Event()

    async def append(self, events):  # type: ignore[no-untyped-def]
        seqs = await super().append(events)
        self.stored.set()
        await self.read_done.wait()
        return seqs

    async def read_pending(self, after_seq, limit):  # type: ignore[no-untyped-def]
        if not self.read_done.is_set():
            await self.stored.wait()
            entries = await super().read_pending(after_seq, limit)
            self.read_done.set()
            return entries
        return await super().read_pending(after_seq, limit)


async def test_an_entry_the_feeder_read_before_its_append_returned_is_handled_once():
    journal = _ReadWhileAppending()
    rec = Rec("once")
    bus = AsyncEventBus(journal=journal, max_in_flight=8)
    bus.subscribe(rec)
    async with bus:
        await bus.context.submit([make_event(i=0), make_event(i=1)])
        await wait_until(lambda: journal.completed == {1, 2})
    assert rec.seen == [0, 1]
