"""Circuit breaker: closed → open → half-open → closed, and open breakers defer instead of failing."""

from __future__ import annotations

import asyncio

from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BaseHandler, Event, EventType, TransientError
from pywats_events.policies import CircuitBreaker, CircuitState, DeadLetterQueue, ErrorPolicy, RetryPolicy
from pywats_events.testing import RecordingObserver


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_transitions_with_fake_clock():
    clock = FakeClock()
    changes = []
    cb = CircuitBreaker(failure_threshold=3, reset_timeout=10.0, half_open_max_calls=1, clock=clock)
    cb.add_listener(lambda k, s: changes.append((k, s)))
    for _ in range(2):
        assert cb.acquire("wats") == 0.0
        cb.record_failure("wats")
    assert cb.state("wats") is CircuitState.CLOSED
    cb.record_success("wats")  # resets the consecutive count
    for _ in range(3):
        cb.record_failure("wats")
    assert cb.state("wats") is CircuitState.OPEN
    assert cb.acquire("wats") == 10.0
    assert cb.state("other") is CircuitState.CLOSED and cb.acquire("other") == 0.0  # independent keys
    clock.now += 10
    assert cb.acquire("wats") == 0.0  # one trial
    assert cb.state("wats") is CircuitState.HALF_OPEN
    assert cb.acquire("wats") > 0  # no second trial while the first runs
    cb.record_failure("wats")
    assert cb.state("wats") is CircuitState.OPEN
    clock.now += 10
    assert cb.acquire("wats") == 0.0
    cb.record_success("wats")
    assert cb.state("wats") is CircuitState.CLOSED
    assert [s for _, s in changes] == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]


def test_failure_rate_window():
    clock = FakeClock()
    cb = CircuitBreaker(
        failure_threshold=4, reset_timeout=5, failure_rate_threshold=0.5, window=60, clock=clock
    )
    for ok in (True, False, True, False):  # never 4 in a row, but 50 % of 4 calls
        cb.record_success("k") if ok else cb.record_failure("k")
    assert cb.state("k") is CircuitState.OPEN


class Wats(BaseHandler):
    """A destination that is down until `up` is set."""

    event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        self.done: list[int] = []

    async def handle(self, event: Event) -> None:
        self.calls += 1
        if not self.up:
            raise TransientError("WATS down")
        self.done.append(event.payload["i"])


async def test_open_breaker_defers_then_recovers_in_order():
    wats = Wats()
    dlq = DeadLetterQueue()
    obs = RecordingObserver()
    cb = CircuitBreaker(failure_threshold=3, reset_timeout=0.2)
    bus = AsyncEventBus(dead_letter_queue=dlq)
    bus.add_observer(obs)
    bus.subscribe(
        wats,
        retry_policy=RetryPolicy(max_retries=10, initial_delay=0.01, max_delay=0.02, jitter=False),
        error_policy=ErrorPolicy(circuit_breaker=cb),
    )
    async with bus:
        tasks = [asyncio.create_task(bus.context.submit([make_event("U", i)])) for i in range(5)]
        await wait_until(lambda: cb.state("Wats") is CircuitState.OPEN)
        calls_when_open = wats.calls
        await asyncio.sleep(0.1)
        assert wats.calls == calls_when_open  # open: nobody hammers the server
        assert obs.named("on_deferred")[-1][3] == "circuit open"
        await wait_until(lambda: wats.calls > calls_when_open, 2)  # half-open trial after reset_timeout
        assert not any(t.done() for t in tasks)  # deferred events are not accepted
        wats.up = True
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert wats.done == [0, 1, 2, 3, 4] and len(dlq) == 0
    states = [s for _, s in obs.named("on_breaker_change")]
    assert (
        states[0] is CircuitState.OPEN
        and CircuitState.HALF_OPEN in states
        and states[-1] is CircuitState.CLOSED
    )


async def test_breaker_key_per_destination():
    class PerSite(Wats):
        def breaker_key(self, event: Event) -> str:
            return event.payload["unit_id"]

    h = PerSite()
    h.up = True
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=60)
    cb.record_failure("down-site")
    bus = AsyncEventBus()
    bus.subscribe(h, error_policy=ErrorPolicy(circuit_breaker=cb))
    async with bus:
        await asyncio.wait_for(bus.context.submit([make_event("up-site", 7)]), 2)
        blocked = asyncio.create_task(bus.context.submit([make_event("down-site", 8)]))
        await asyncio.sleep(0.1)
        assert h.done == [7] and not blocked.done()
        report = await bus.stop(timeout=0.05)
    assert [e.payload["i"] for e in report.not_handled] == [8]
