"""Ordering groups: handlers of one group wait for each other per event; different groups never do."""

from __future__ import annotations

import asyncio
import time

import pytest
from _bus_helpers import make_event, wait_until

from pywats_events import (
    AsyncEventBus,
    BaseHandler,
    BusOverloaded,
    Event,
    EventBus,
    EventType,
    TransientError,
)
from pywats_events.policies import RetryPolicy
from pywats_events.testing import MemoryJournal

FAST_RETRY = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02, jitter=False)


class Rec(BaseHandler):
    """Records the `i` of every event; waits on `gate` (if any) first; raises TransientError while `down`."""

    def __init__(
        self,
        name: str,
        types: list[EventType] | None = None,
        gate: asyncio.Event | None = None,
        down: bool = False,
    ) -> None:
        self._name = name
        self._types = types or [EventType.TEST_RESULT]
        self.gate = gate
        self.down = down
        self.seen: list[int] = []
        self.attempts = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def event_types(self) -> list[EventType]:
        return self._types

    async def handle(self, event: Event) -> None:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise TransientError(f"{self._name}: destination down")
        self.seen.append(event.payload["i"])


def six_events() -> list[Event]:
    return [make_event(f"SN-{i % 5}", i) for i in range(6)]


async def test_a_deferred_handler_does_not_hold_up_a_handler_of_another_group() -> None:
    failing = Rec("plugin", down=True)
    wats = Rec("wats")
    bus = AsyncEventBus(max_concurrency=4, retry_policy=FAST_RETRY)
    bus.subscribe(failing)
    bus.subscribe(wats)
    await bus.start()
    for event in six_events():
        await bus.publish(event)
    await wait_until(lambda: sorted(wats.seen) == list(range(6)), timeout=3)
    await wait_until(lambda: failing.attempts >= 6, timeout=3)  # every event reached the failing one
    assert failing.seen == [] and bus.in_flight == 6  # still deferred there, so not finished
    report = await bus.stop(timeout=0.1)
    assert report.timed_out and sorted(e.payload["i"] for e in report.not_handled) == list(range(6))


async def test_the_same_group_keeps_cross_handler_order_per_unit_under_an_outage() -> None:
    """WorkStarted creates the unit, the report needs it, WorkCompleted closes it: per unit in that
    order across two handlers of one group, even while the first one is deferred; a plugin of its own
    group meanwhile gets everything."""
    log: list[tuple[str, int]] = []
    created: set[str] = set()

    class Production(Rec):
        ordering_group = "wats-like"

        async def handle(self, event: Event) -> None:
            await super().handle(event)
            unit = event.payload["unit_id"]
            if event.event_type is EventType.WORK_STARTED:
                created.add(unit)
            log.append((unit, event.payload["i"]))

    class Report(Rec):
        ordering_group = "wats-like"

        async def handle(self, event: Event) -> None:
            await super().handle(event)
            unit = event.payload["unit_id"]
            assert unit in created, "report posted before its unit was created"
            log.append((unit, event.payload["i"]))

    production = Production("production", [EventType.WORK_STARTED, EventType.WORK_COMPLETED], down=True)
    report = Report("report", [EventType.TEST_RESULT])
    plugin = Rec("plugin", [EventType.WORK_STARTED, EventType.TEST_RESULT, EventType.WORK_COMPLETED])
    bus = AsyncEventBus(max_concurrency=4, retry_policy=FAST_RETRY)
    bus.subscribe(production)
    bus.subscribe(report)
    bus.subscribe(plugin)
    steps = (EventType.WORK_STARTED, EventType.TEST_RESULT, EventType.WORK_COMPLETED)
    events = [make_event(f"SN-{u}", 10 * u + k, etype) for u in range(5) for k, etype in enumerate(steps)]
    async with bus:
        for event in events:
            await bus.publish(event)
        await wait_until(lambda: len(plugin.seen) == 15, timeout=3)  # the outage holds up only its group
        assert report.seen == [] and log == []
        production.down = False
        await wait_until(lambda: len(log) == 15, timeout=3)
    for u in range(5):
        assert [i for unit, i in log if unit == f"SN-{u}"] == [10 * u, 10 * u + 1, 10 * u + 2]


def test_wats_handlers_share_one_ordering_group() -> None:
    from handlers.asset import AssetHandler
    from handlers.production import ProductionHandler
    from handlers.report import ReportHandler

    assert ProductionHandler.ordering_group == ReportHandler.ordering_group == AssetHandler.ordering_group
    assert ReportHandler.ordering_group == "wats"
    assert BaseHandler.ordering_group is None


async def test_subscribe_overrides_the_class_group() -> None:
    gate = asyncio.Event()
    slow, fast = Rec("slow", gate=gate), Rec("fast")
    bus = AsyncEventBus(max_concurrency=2)
    bus.subscribe(slow, ordering_group="g")
    bus.subscribe(fast, ordering_group="g")
    async with bus:
        await bus.publish(make_event("U", 0))
        await asyncio.sleep(0.05)
        assert fast.seen == []  # same group: waits for the earlier handler
        gate.set()
        await wait_until(lambda: fast.seen == [0])


async def test_a_group_with_a_full_budget_does_not_stall_another_group() -> None:
    """`held` keeps its `max_in_flight` events (a deferred handler); events it does not want still reach
    `free` (without a journal an event `held` wants must wait for room there: nothing else keeps it)."""
    gate = asyncio.Event()
    held = Rec("held", gate=gate)
    free = Rec("free", [EventType.TEST_RESULT, EventType.WORK_STARTED])
    bus = AsyncEventBus(max_in_flight=5, max_concurrency=4)
    bus.subscribe(held)
    bus.subscribe(free)
    async with bus:
        for i in range(5):
            await bus.publish(make_event(f"SN-{i}", i))
        await wait_until(lambda: len(free.seen) == 5 and bus.in_flight == 5)  # held: budget full
        for i in range(5, 25):  # four times the budget, only for `free`
            await asyncio.wait_for(bus.publish(make_event(f"SN-{i}", i, EventType.WORK_STARTED)), 2)
        await wait_until(lambda: len(free.seen) == 25)
        assert held.seen == [] and bus.in_flight == 5
        with pytest.raises(BusOverloaded):  # held's budget bounds what waits for it
            await bus.publish(make_event("SN-9", 99), timeout=0.05)
        gate.set()
        await wait_until(lambda: len(held.seen) == 5)
        assert bus.in_flight == 0


async def test_with_a_journal_a_group_with_a_full_budget_does_not_stall_another_group() -> None:
    """With a journal every event is accepted at once and each group reads on at its own pace: `free`
    handles all of them while `held` sits on a full budget; memory holds only `held`'s budget."""
    journal = MemoryJournal()
    gate = asyncio.Event()
    held, free = Rec("held", gate=gate), Rec("free")
    bus = AsyncEventBus(journal=journal, max_in_flight=5, max_concurrency=4, journal_cache=10)
    bus.subscribe(held)
    bus.subscribe(free)
    async with bus:
        for i in range(40):
            await asyncio.wait_for(bus.publish(make_event(f"SN-{i}", i)), 2)
        await wait_until(lambda: len(free.seen) == 40)
        assert held.seen == [] and journal.completed == set() and bus.in_flight <= 5
        assert await journal.depth() == 40
        gate.set()
        await wait_until(lambda: len(held.seen) == 40 and len(journal.completed) == 40)
    assert sorted(free.seen) == sorted(held.seen) == list(range(40))
    assert all(journal.handled.get(seq, {}).get("free") == "done" for seq in journal.entries)


async def test_journal_restart_resumes_the_group_left_behind_only() -> None:
    """`free` finished every entry while `held` was stuck; after a restart only `held` runs them."""
    journal = MemoryJournal()
    gate = asyncio.Event()
    held, free = Rec("held", gate=gate), Rec("free")
    bus = AsyncEventBus(journal=journal, max_in_flight=3, max_concurrency=2, journal_cache=4)
    bus.subscribe(held)
    bus.subscribe(free)
    await bus.start()
    for i in range(12):
        await bus.publish(make_event("U", i))
    await wait_until(lambda: free.seen == list(range(12)))
    await bus.stop(timeout=0.05)
    assert await journal.depth() == 12

    held2, free2 = Rec("held"), Rec("free")
    bus2 = AsyncEventBus(journal=journal, max_in_flight=3, max_concurrency=2)
    bus2.subscribe(held2)
    bus2.subscribe(free2)
    async with bus2:
        await wait_until(lambda: held2.seen == list(range(12)) and len(journal.completed) == 12)
    assert free2.seen == []
    assert await journal.depth() == 0


async def _publish_all(bus: AsyncEventBus, events: list[Event]) -> None:
    for event in events:
        await bus.publish(event)


async def test_submit_resolves_only_when_every_group_finished() -> None:
    gate = asyncio.Event()
    held, free = Rec("held", gate=gate), Rec("free")
    bus = AsyncEventBus(max_concurrency=4)
    bus.subscribe(held)
    bus.subscribe(free)
    async with bus:
        accepted = asyncio.create_task(bus.context.submit([make_event("A", 0), make_event("B", 1)]))
        await wait_until(lambda: sorted(free.seen) == [0, 1])
        await asyncio.sleep(0.05)
        assert not accepted.done()
        gate.set()
        await asyncio.wait_for(accepted, 2)
        assert sorted(held.seen) == [0, 1]


async def test_stop_reports_events_left_in_several_groups_once() -> None:
    """One group keeps all events deferred, the other finished some and is stuck on the rest: every
    unfinished event is reported exactly once, and the waiting acceptance fails."""
    gate = asyncio.Event()

    class StuckLater(Rec):
        async def handle(self, event: Event) -> None:
            if event.payload["i"] >= 3:
                await gate.wait()
            await super().handle(event)

    failing, partial = Rec("failing", down=True), StuckLater("partial")
    bus = AsyncEventBus(max_concurrency=4, retry_policy=FAST_RETRY)
    bus.subscribe(failing)
    bus.subscribe(partial)
    await bus.start()
    events = six_events()
    accepted = asyncio.create_task(bus.context.submit(events))
    await wait_until(lambda: failing.attempts >= 6 and len(partial.seen) >= 1, timeout=3)
    report = await bus.stop(timeout=0.1)
    assert report.timed_out
    assert sorted(e.payload["i"] for e in report.not_handled) == list(range(6))
    assert len({id(e) for e in report.not_handled}) == 6
    with pytest.raises(Exception, match="stopped"):
        await asyncio.wait_for(accepted, 1)
    assert bus.in_flight == 0


async def test_journal_resume_with_two_groups_runs_only_the_unfinished_group() -> None:
    journal = MemoryJournal()
    gate = asyncio.Event()
    done, stuck = Rec("done"), Rec("stuck", gate=gate)
    bus = AsyncEventBus(journal=journal, max_concurrency=2)
    bus.subscribe(done)
    bus.subscribe(stuck)
    await bus.start()
    await bus.context.submit([make_event("U", i) for i in range(5)])
    await wait_until(lambda: done.seen == list(range(5)))
    report = await bus.stop(timeout=0.05)
    assert report.journal_pending == 5 and len(report.not_handled) == 5
    assert all(journal.handled.get(seq, {}).get("done") == "done" for seq in journal.entries)

    done2, stuck2 = Rec("done"), Rec("stuck")
    bus2 = AsyncEventBus(journal=journal, max_concurrency=2)
    bus2.subscribe(done2)
    bus2.subscribe(stuck2)
    async with bus2:
        await wait_until(lambda: stuck2.seen == list(range(5)))
        await wait_until(lambda: len(journal.completed) == 5)
    assert done2.seen == []  # its group had finished every entry: not run again
    assert await journal.depth() == 0


async def test_replay_to_one_handler_runs_only_that_handler() -> None:
    a, b = Rec("a"), Rec("b")
    bus = AsyncEventBus()
    bus.subscribe(a)
    bus.subscribe(b)
    async with bus:
        await bus.publish(make_event("U", 7), handler="b")
        assert b.seen == [7] and a.seen == []


def test_sync_facade_takes_an_ordering_group() -> None:
    failing, ok = Rec("failing", down=True), Rec("ok")
    bus = EventBus(max_concurrency=2, retry_policy=FAST_RETRY)
    bus.subscribe(failing, ordering_group="plugin")
    bus.subscribe(ok, ordering_group="wats")
    bus.start()
    try:
        for event in six_events():
            bus.publish(event)
        deadline = time.monotonic() + 3
        while sorted(ok.seen) != list(range(6)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(ok.seen) == list(range(6))
    finally:
        report = bus.stop(timeout=0.1)
    assert len(report.not_handled) == 6
