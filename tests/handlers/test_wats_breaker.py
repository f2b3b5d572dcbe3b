"""The circuit breaker the WATS handlers share: one circuit for the one server, visible to observers (status,
metrics), deferring events while open, recovering after, and leaving give-ups to the bus's own DLQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sample_plant import TOKEN, fast_sender, plant_config, seed
from test_bus_fakewats import unit_story

from handlers import RecordingSink, WatsHandlersConfig, create_handlers
from handlers.wats.fake import FakeWATS
from pywats_events import AsyncEventBus, BusObserver, Event
from pywats_events.metrics import MetricsObserver
from pywats_events.policies import CircuitState, DeadLetterQueue, RetryPolicy


class Recorder(BusObserver):
    def __init__(self) -> None:
        self.breaker: list[tuple[str, CircuitState]] = []
        self.deferred: list[str] = []
        self.opened = asyncio.Event()

    def on_breaker_change(self, key: str, state: CircuitState) -> None:
        self.breaker.append((key, CircuitState(state)))
        if state is CircuitState.OPEN:
            self.opened.set()

    def on_deferred(self, event: Event, handler_name: str, delay: float, reason: str) -> None:
        self.deferred.append(reason)


@asynccontextmanager
async def running(
    wats: FakeWATS, config: WatsHandlersConfig, *observers: BusObserver
) -> AsyncIterator[tuple[AsyncEventBus, DeadLetterQueue]]:
    sender = fast_sender(wats, max_attempts=1)
    dlq = DeadLetterQueue(1000)
    bus = AsyncEventBus(
        max_concurrency=16,
        dead_letter_queue=dlq,
        retry_policy=RetryPolicy(max_retries=1, initial_delay=0.05, max_delay=0.1),
    )
    for observer in observers:
        bus.add_observer(observer)
    for h in create_handlers(config, sender):
        bus.subscribe(h)
    await bus.start()
    try:
        yield bus, dlq
    finally:
        report = await bus.stop(timeout=15.0)
        await sender.aclose()
        assert report.clean, report


def test_all_wats_handlers_share_one_breaker_keyed_wats_and_no_dlq_of_their_own() -> None:
    handlers: list[Any] = create_handlers(WatsHandlersConfig(), RecordingSink())
    assert len(handlers) == 3
    policies = {id(h.error_policy) for h in handlers}
    assert len(policies) == 1
    policy = handlers[0].error_policy
    assert policy.dead_letter_queue is None  # give-ups go to the bus's queue
    breaker = policy.circuit_breaker
    assert (breaker.failure_threshold, breaker.reset_timeout) == (5, 15.0)
    event = unit_story("SN-1")[0]
    assert {h.breaker_key(event) for h in handlers} == {"wats"}


def test_breaker_thresholds_come_from_the_settings() -> None:
    config = WatsHandlersConfig.model_validate({"breaker": {"failure_threshold": 2, "reset_timeout": 3}})
    [handler, *_] = create_handlers(config, RecordingSink())
    breaker = handler.error_policy.circuit_breaker  # type: ignore[union-attr]
    assert breaker is not None
    assert (breaker.failure_threshold, breaker.reset_timeout) == (2, 3.0)


async def test_outage_opens_the_shared_breaker_defers_events_and_recovers() -> None:
    config = plant_config(breaker={"failure_threshold": 3, "reset_timeout": 0.4})
    recorder, metrics = Recorder(), MetricsObserver()
    with FakeWATS(token=TOKEN) as wats:
        seed(wats, units=False)
        async with running(wats, config, recorder, metrics) as (bus, dlq):
            wats.clear_requests()
            started = time.monotonic()
            wats.inject("error", status=503, retry_after=None, duration=1.5)
            for i in range(4):
                for ev in unit_story(f"BRK-{i}"):
                    await bus.publish(ev)
        assert time.monotonic() - started >= 1.5
        assert len(dlq) == 0
        assert len(wats.reports) == 4  # everything delivered after recovery
        assert ("wats", CircuitState.OPEN) in recorder.breaker
        assert recorder.breaker[-1] == ("wats", CircuitState.CLOSED)
        assert {key for key, _ in recorder.breaker} == {"wats"}  # one circuit for all three handlers
        assert "circuit open" in recorder.deferred
        # what `pywats-events status` and the pywats_breaker_state gauge show
        assert metrics.stats.breakers == {"wats": "closed"}
        state = {"key": "wats", "pywats_breaker_state": "closed"}
        assert metrics.registry.get_sample_value("pywats_breaker_state", state) == 1
        # while open, the server is not hammered: at most one trial per reset interval gets through
        refused = [r for r in wats.requests if r.status == 503]
        assert len(refused) <= 3 + 2 * (1.5 / 0.4 + 1), len(refused)


async def test_a_wrong_token_defers_events_behind_the_breaker_instead_of_dead_lettering() -> None:
    config = plant_config(breaker={"failure_threshold": 2, "reset_timeout": 0.3})
    recorder = Recorder()
    with FakeWATS(token=FakeWATS.make_token("someone", "else")) as wats:
        seed(wats, units=False)
        async with running(wats, config, recorder) as (bus, dlq):
            for ev in unit_story("AUTH-1"):
                await bus.publish(ev)
            await asyncio.wait_for(recorder.opened.wait(), 5)
            assert ("wats", CircuitState.OPEN) in recorder.breaker
            assert len(dlq) == 0
            wats.token = TOKEN  # the administrator fixes the token
        assert len(dlq) == 0
        assert [r["sn"] for r in wats.reports.values()] == ["AUTH-1"]
        assert recorder.breaker[-1] == ("wats", CircuitState.CLOSED)


async def test_a_refused_event_goes_to_the_bus_dlq_and_does_not_open_the_breaker() -> None:
    config = plant_config(breaker={"failure_threshold": 1, "reset_timeout": 30})
    recorder = Recorder()
    with FakeWATS(token=TOKEN) as wats:
        seed(wats, units=False)
        async with running(wats, config, recorder) as (bus, dlq):
            wats.inject("error", status=422, count=1, path="/api/Report/WSJF")
            for ev in unit_story("REF-1")[1:2] + unit_story("REF-2")[1:2]:
                await bus.publish(ev)
        [entry] = dlq.get_entries()
        assert "422" in entry.error
        assert len(wats.reports) == 1
        assert ("wats", CircuitState.OPEN) not in recorder.breaker
