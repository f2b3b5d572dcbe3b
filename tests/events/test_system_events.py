"""System events, quarantine and observers."""

from __future__ import annotations

import asyncio

from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BusObserver, Event, EventType, PermanentError
from pywats_events.policies import RetryPolicy
from pywats_events.testing import RecordingObserver
from pywats_events.transports import MockTransport, QuarantineRecord


async def test_connection_handler_error_and_dead_letter_events():
    system: list[Event] = []
    t = MockTransport()

    def bad(event: Event) -> None:
        raise PermanentError("nope")

    async def failing_listener(event: Event) -> None:
        system.append(event)
        raise RuntimeError("listener broken")  # must not trigger new system events about itself

    bus = AsyncEventBus()
    bus.subscribe(bad, [EventType.TEST_RESULT], name="bad")
    bus.subscribe(
        failing_listener,
        [
            EventType.TRANSPORT_CONNECTED,
            EventType.TRANSPORT_DISCONNECTED,
            EventType.HANDLER_ERROR,
            EventType.EVENT_DEAD_LETTER,
        ],
        retry_policy=RetryPolicy(max_retries=0),
    )
    bus.register_transport(t)
    async with bus:
        await t.ainject_event(make_event())
        t.simulate_disconnect("broker gone")
        await wait_until(lambda: len(system) == 4)
        await asyncio.sleep(0.05)
    # ordered per transport and per unit (their ordering keys); the two streams may interleave
    conn = [e for e in system if e.metadata.ordering_key == "transport:mock"]
    errors = [e for e in system if e.metadata.ordering_key == "system:SN-1"]
    assert [e.event_type for e in conn] == [
        EventType.TRANSPORT_CONNECTED,
        EventType.TRANSPORT_DISCONNECTED,
        EventType.TRANSPORT_DISCONNECTED,  # closed by stop(), still delivered while draining
    ]
    assert conn[1].payload["detail"] == "broker gone"
    assert [e.event_type for e in errors] == [EventType.HANDLER_ERROR, EventType.EVENT_DEAD_LETTER]
    assert errors[1].payload["handler"] == "bad" and errors[1].payload["error"] == "nope"
    assert len(system) == 5  # nothing about the listener's own failures
    # the listener's own failures are dead-lettered, but never announced as new system events
    assert len(bus.dead_letter_queue.get_entries(handler="bad")) == 1


async def test_quarantine_goes_to_the_store_and_observers():
    class Store:
        def __init__(self) -> None:
            self.records: list[QuarantineRecord] = []

        async def add(self, record: QuarantineRecord) -> None:
            self.records.append(record)

    store = Store()
    obs = RecordingObserver()
    t = MockTransport()
    bus = AsyncEventBus(quarantine_store=store)
    bus.add_observer(obs)
    bus.register_transport(t)
    async with bus:
        await t.ainject_raw(b"\x00garbage", "not JSON", topic="cfx/x")
    assert store.records[0].raw == b"\x00garbage" and store.records[0].topic == "cfx/x"
    assert obs.named("on_quarantine")[0][0] is store.records[0]


async def test_observer_hooks_only_cost_when_overridden():
    class Handled(BusObserver):
        def __init__(self) -> None:
            self.items: list[tuple[str, float]] = []

        def on_handled(self, event: Event, handler_name: str, seconds: float) -> None:
            self.items.append((handler_name, seconds))

    obs = Handled()
    bus = AsyncEventBus()
    bus.add_observer(obs)

    async def h(event: Event) -> None:
        await asyncio.sleep(0.01)

    bus.subscribe(h, [EventType.TEST_RESULT], name="h")
    assert bus._hooks["on_accepted"] == [] and len(bus._hooks["on_handled"]) == 1
    async with bus:
        await bus.context.submit([make_event()])
    assert obs.items[0][0] == "h" and obs.items[0][1] >= 0.009


async def test_wildcard_gets_domain_events_but_not_system_events():
    got: list[str] = []
    t = MockTransport()
    bus = AsyncEventBus()
    bus.subscribe(lambda e: got.append(e.type_name), ["*"])
    bus.register_transport(t)
    async with bus:
        await t.ainject_event(
            [
                make_event(),
                make_event(etype=EventType.ASSET_FAULT),
                Event(event_type="plugin.custom", payload={}),
            ]
        )
    assert sorted(got) == ["asset.fault", "plugin.custom", "test.result"]
