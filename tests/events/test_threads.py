"""Publishing from other threads: 8 threads at once through the sync facade (nothing lost, no concurrent
handling per key), and the engine's own `publish_threadsafe` (backpressure and errors reach the thread)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict

import pytest
from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BusStateError, Event, EventBus, EventType
from pywats_events.testing import MemoryJournal

THREADS = 8
PER_THREAD = 500


def test_publish_from_8_threads():
    lock = threading.Lock()
    seen: dict[str, list[int]] = defaultdict(list)
    active: dict[str, int] = defaultdict(int)
    overlaps = 0

    def handle(event: Event) -> None:  # sync: runs in the handler thread pool, really concurrent
        nonlocal overlaps
        unit = event.payload["unit_id"]
        with lock:
            active[unit] += 1
            if active[unit] > 1:
                overlaps += 1
        time.sleep(0.0001)
        with lock:
            seen[unit].append(event.payload["i"])
            active[unit] -= 1

    bus = EventBus(max_in_flight=64, max_concurrency=8)
    bus.subscribe(handle, [EventType.TEST_RESULT])
    bus.start()
    barrier = threading.Barrier(THREADS)

    def producer(t: int) -> None:
        barrier.wait()
        for i in range(PER_THREAD):
            # each thread owns two units, and all threads also share one hot unit
            unit = f"T{t}-{i % 2}" if i % 5 else "HOT"
            bus.publish(make_event(unit, t * PER_THREAD + i))

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    report = bus.stop()
    assert report.clean
    total = sum(len(v) for v in seen.values())
    assert total == THREADS * PER_THREAD and overlaps == 0
    for unit, values in seen.items():
        if unit != "HOT":  # one producer per unit: its publish order is the handling order
            assert values == sorted(values), unit
    hot_by_thread: dict[int, list[int]] = defaultdict(list)
    for v in seen["HOT"]:
        hot_by_thread[v // PER_THREAD].append(v)
    assert all(vals == sorted(vals) for vals in hot_by_thread.values())


async def test_publish_threadsafe_resolves_once_there_is_room_and_reports_a_stopped_bus() -> None:
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(event: Event) -> None:
        await release.wait()
        handled.append(event.payload["i"])

    bus = AsyncEventBus(max_in_flight=1, max_concurrency=1)
    bus.subscribe(handle, [EventType.TEST_RESULT], name="slow")
    await bus.start()
    await bus.publish(make_event("U", 0))  # takes the only slot
    second = await asyncio.to_thread(bus.publish_threadsafe, make_event("U", 1))
    await wait_until(second.running)  # the loop has taken the call: no room, so it waits in line
    assert not second.done()
    release.set()
    await asyncio.wrap_future(second)
    await wait_until(lambda: handled == [0, 1])
    assert (await bus.stop()).clean

    late = await asyncio.to_thread(bus.publish_threadsafe, make_event("U", 2))
    with pytest.raises(BusStateError):
        await asyncio.wrap_future(late)


async def test_publish_threadsafe_with_a_journal_resolves_once_the_event_is_appended() -> None:
    journal = MemoryJournal()
    bus = AsyncEventBus(journal=journal)
    bus.subscribe(lambda e: None, [EventType.TEST_RESULT], name="noop")
    await bus.start()
    for i in range(3):
        await asyncio.wrap_future(await asyncio.to_thread(bus.publish_threadsafe, make_event("U", i)))
        assert len(journal.entries) == i + 1
    assert (await bus.stop()).clean
