"""Start/stop: on_start before the first event, drain with a backlog, nothing after on_stop, stop report."""

from __future__ import annotations

import asyncio

import pytest
from _bus_helpers import make_event

from pywats_events import AsyncEventBus, BaseHandler, BusStateError, Event, EventBus, EventType
from pywats_events.transports import MockTransport


class Lifecycle(BaseHandler):
    event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

    def __init__(self, delay: float = 0.0) -> None:
        self.log: list[str] = []
        self.delay = delay
        self.stopped = False
        self.after_stop = 0

    async def on_start(self) -> None:
        self.log.append("start")

    async def handle(self, event: Event) -> None:
        if self.stopped:
            self.after_stop += 1
        await asyncio.sleep(self.delay)
        self.log.append(f"e{event.payload['i']}")

    def on_stop(self) -> None:
        self.stopped = True
        self.log.append("stop")


async def test_drain_on_stop_with_a_backlog():
    h = Lifecycle(delay=0.001)
    bus = AsyncEventBus(max_in_flight=500, max_concurrency=4)
    bus.subscribe(h)
    await bus.start()
    for i in range(400):
        await bus.publish(make_event(f"U{i % 4}", i))
    assert bus.in_flight > 100  # a real backlog
    report = await bus.stop(timeout=10)
    assert report.clean and not report.timed_out and report.handled == 400
    assert h.log[0] == "start" and h.log[-1] == "stop" and len(h.log) == 402 and h.after_stop == 0


async def test_stop_timeout_reports_what_was_not_handled():
    h = Lifecycle(delay=0.05)
    bus = AsyncEventBus(max_in_flight=100, max_concurrency=1)
    bus.subscribe(h)
    await bus.start()
    events = [make_event("U", i) for i in range(20)]
    for e in events:
        await bus.publish(e)
    report = await bus.stop(timeout=0.12)
    assert report.timed_out
    done = {int(x[1:]) for x in h.log if x.startswith("e")}
    assert {e.payload["i"] for e in report.not_handled} | done == set(range(20))  # nothing silently dropped
    assert len(report.not_handled) >= 15
    assert h.log[-1] == "stop" and h.after_stop == 0
    with pytest.raises(BusStateError):
        await bus.publish(make_event())


async def test_transports_start_after_on_start_and_stop_first():
    order: list[str] = []

    class T(MockTransport):
        async def start(self, context):  # type: ignore[no-untyped-def]
            order.append("transport.start")
            await super().start(context)

        async def stop(self) -> None:
            order.append("transport.stop")
            await super().stop()

    class H(BaseHandler):
        event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

        def on_start(self) -> None:
            order.append("handler.start")

        async def handle(self, event: Event) -> None:
            order.append("handle")

        def on_stop(self) -> None:
            order.append("handler.stop")

    t = T()
    bus = AsyncEventBus()
    bus.subscribe(H())
    bus.register_transport(t)
    async with bus:
        await t.ainject_event(make_event())
    assert order == ["handler.start", "transport.start", "handle", "transport.stop", "handler.stop"]
    assert t.injected_count == 1


def test_sync_facade_publish_inside_a_running_loop_and_mock_history_is_bounded():
    received = []
    bus = EventBus()
    t = MockTransport(history=10)
    bus.register_transport(t)
    bus.subscribe(lambda e: received.append(e), [EventType.TEST_RESULT])
    bus.start()

    async def caller() -> None:  # sync API used from async code: no "loop already running"
        bus.publish(make_event("A"))
        for i in range(50):
            t.inject_event(make_event("B", i))

    asyncio.run(caller())
    report = bus.stop()
    assert len(received) == 51 and report.clean
    assert len(t.injected) == 10 and t.injected_count == 50


def test_sync_publish_from_a_handler_on_the_bus_loop():
    got: list[int] = []
    bus = EventBus(max_in_flight=2)

    async def chain(event: Event) -> None:
        i = event.payload["i"]
        got.append(i)
        if i < 20:
            bus.publish(make_event("U", i + 1))  # sync call on the bus loop: must not deadlock

    bus.subscribe(chain, [EventType.TEST_RESULT])
    with bus:
        bus.publish(make_event("U", 0))
        for _ in range(200):
            if len(got) == 21:
                break
            import time

            time.sleep(0.01)
    assert got == list(range(21))


def test_facade_stop_accounts_for_every_published_event():
    import threading
    import time

    from pywats_events import BusStateError

    gate = threading.Event()
    handled: list[int] = []

    def slow(event: Event) -> None:
        gate.wait(2)
        handled.append(event.payload["i"])

    bus = EventBus(max_in_flight=2, max_concurrency=1)
    bus.subscribe(slow, [EventType.TEST_RESULT])
    bus.start()
    accepted: list[int] = []

    def producer() -> None:
        for i in range(10):
            try:
                bus.publish(make_event("U", i))
            except BusStateError:
                return
            accepted.append(i)

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.2)
    assert len(accepted) == 4  # 2 in flight + 2 in the hand-off: the producer is held back
    report = bus.stop(timeout=0.2)
    gate.set()
    t.join(5)
    not_handled = {e.payload["i"] for e in report.not_handled}
    assert report.timed_out and set(accepted) <= set(handled) | not_handled  # nothing silently dropped
    assert len(not_handled) >= 3
