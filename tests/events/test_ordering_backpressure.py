"""Per-key ordering under concurrency, bounded concurrency and backpressure."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest
from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BusOverloaded, Event, EventType


async def test_same_key_in_order_different_keys_concurrently():
    seen: dict[str, list[int]] = defaultdict(list)
    active: dict[str, int] = defaultdict(int)
    overlap_per_key = 0
    running = 0
    peak = 0

    async def handle(event: Event) -> None:
        nonlocal overlap_per_key, running, peak
        unit = event.payload["unit_id"]
        active[unit] += 1
        running += 1
        peak = max(peak, running)
        if active[unit] > 1:
            overlap_per_key += 1
        await asyncio.sleep(random.random() * 0.002)
        seen[unit].append(event.payload["i"])
        active[unit] -= 1
        running -= 1

    bus = AsyncEventBus(max_in_flight=200, max_concurrency=8)
    bus.subscribe(handle, [EventType.TEST_RESULT])
    async with bus:
        for i in range(100):
            for u in range(20):
                await bus.publish(make_event(f"U{u}", i))
    assert overlap_per_key == 0
    assert all(seen[f"U{u}"] == list(range(100)) for u in range(20))
    assert 1 < peak <= 8  # different keys ran at once, never more than max_concurrency


async def test_slow_handler_bounds_in_flight_and_blocks_producer():
    release = asyncio.Event()
    handled = 0

    async def slow(event: Event) -> None:
        nonlocal handled
        await release.wait()
        handled += 1

    bus = AsyncEventBus(max_in_flight=50, max_concurrency=4)
    bus.subscribe(slow, [EventType.TEST_RESULT])
    await bus.start()
    published = 0

    async def producer() -> None:
        nonlocal published
        for i in range(1000):
            await bus.publish(make_event(f"U{i % 10}", i))
            published += 1

    task = asyncio.create_task(producer())
    await asyncio.sleep(0.1)
    assert published == 50 and bus.in_flight == 50  # producer is held back, nothing queues beyond the bound
    assert sum(len(lane.q) for group in bus._groups for lane in group.lanes) <= 50
    with pytest.raises(BusOverloaded):
        await bus.publish(make_event("X"), timeout=0.05)
    release.set()
    await asyncio.wait_for(task, 10)
    await bus.stop()
    assert handled == 1000


async def test_submit_is_fifo_while_waiting_for_room():
    order: list[int] = []
    gate = asyncio.Event()

    async def handle(event: Event) -> None:
        await gate.wait()
        order.append(event.payload["i"])

    bus = AsyncEventBus(max_in_flight=2, max_concurrency=4)
    bus.subscribe(handle, [EventType.TEST_RESULT])
    await bus.start()
    # one task per delivery, started in delivery order, all for one unit
    tasks = [asyncio.create_task(bus.context.submit([make_event("U", i)])) for i in range(20)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in tasks)  # without a journal: accepted = handled
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == list(range(20))
    await bus.stop()


async def test_memory_stays_flat_with_a_slow_consumer():
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()

    async def handle(event: Event) -> None:
        await asyncio.sleep(0)

    bus = AsyncEventBus(max_in_flight=1000, max_concurrency=16)
    bus.subscribe(handle, [EventType.TEST_RESULT])
    async with bus:
        for i in range(20_000):
            await bus.publish(
                Event(event_type=EventType.TEST_RESULT, payload={"unit_id": f"U{i % 50}", "x": "y" * 200})
            )
        rss_mid = proc.memory_info().rss
        for i in range(60_000):
            await bus.publish(
                Event(event_type=EventType.TEST_RESULT, payload={"unit_id": f"U{i % 50}", "x": "y" * 200})
            )
            assert bus.in_flight <= 1000
        rss_end = proc.memory_info().rss
    # 60k more events of ~300 bytes each would be > 18 MB if anything kept them
    assert rss_end - rss_mid < 8 * 1024 * 1024


async def test_publish_from_handler_does_not_deadlock_when_full():
    done = asyncio.Event()
    count = 0

    async def fan_out(event: Event) -> None:
        if event.payload["i"] < 30:
            await bus.publish(make_event(f"U{event.payload['i'] + 1}", event.payload["i"] + 1))

    async def last(event: Event) -> None:
        nonlocal count
        count += 1
        if count == 31:
            done.set()

    bus = AsyncEventBus(max_in_flight=4, max_concurrency=2)
    bus.subscribe(fan_out, [EventType.TEST_RESULT])
    bus.subscribe(last, [EventType.TEST_RESULT])
    async with bus:
        await bus.publish(make_event("U0", 0))
        await wait_until(done.is_set, 5)


async def test_a_producer_that_gives_up_does_not_block_the_line():
    gate = asyncio.Event()
    handled: list[int] = []

    async def handle(event: Event) -> None:
        await gate.wait()
        handled.append(event.payload["i"])

    bus = AsyncEventBus(max_in_flight=1, max_concurrency=1)
    bus.subscribe(handle, [EventType.TEST_RESULT])
    async with bus:
        await bus.publish(make_event("U", 0))
        with pytest.raises(BusOverloaded):
            await bus.publish(make_event("U", 1), timeout=0.02)
        cancelled = asyncio.create_task(bus.context.submit([make_event("U", 2)]))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        gate.set()
        await wait_until(lambda: handled == [0])
        await asyncio.wait_for(bus.publish(make_event("U", 3)), 1)  # the line is free again
        await wait_until(lambda: handled == [0, 3])


async def test_a_publishing_loop_lets_quick_handlers_keep_up():
    """A producer whose events are all admitted still hands over to the lanes every burst: quick handlers
    run while it publishes, so events wait a burst, not the whole `max_in_flight` budget."""
    from pywats_events.bus.publishing import burst_size

    handled = 0
    peak = 0

    async def quick(event: Event) -> None:
        nonlocal handled
        handled += 1

    bus = AsyncEventBus(max_in_flight=10_000, max_concurrency=8)
    bus.subscribe(quick, [EventType.TEST_RESULT])
    async with bus:
        for i in range(5_000):
            await bus.publish(make_event(f"U{i % 50}", i))
            peak = max(peak, bus.in_flight)
        assert handled > 5_000 - burst_size()
    assert handled == 5_000
    assert peak <= burst_size()


async def test_a_publish_cancelled_while_letting_the_lanes_run_did_not_accept_its_event():
    from pywats_events.bus.publishing import burst_size

    seen: list[int] = []

    async def record(event: Event) -> None:
        seen.append(event.payload["i"])

    bus = AsyncEventBus()
    bus.subscribe(record, [EventType.TEST_RESULT])
    async with bus:
        for i in range(burst_size()):
            await bus.publish(make_event("U1", i))
        late = asyncio.create_task(bus.publish(make_event("U1", -1)))
        await asyncio.sleep(0)  # it started and is letting the lanes run
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
    assert seen == list(range(burst_size()))
