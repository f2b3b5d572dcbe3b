"""Retry: backoff really waited, only the failing handler re-runs, outage → deferral, permanent → DLQ."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from _bus_helpers import make_event, wait_until

from pywats_events import AsyncEventBus, BaseHandler, Event, EventType, PermanentError, TransientError
from pywats_events.policies import DeadLetterQueue, ErrorPolicy, FailureKind, RetryPolicy
from pywats_events.testing import RecordingObserver


class Flaky(BaseHandler):
    event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

    def __init__(self, failures: int, exc: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls: list[tuple[float, int]] = []

    async def handle(self, event: Event) -> None:
        self.calls.append((time.monotonic(), event.metadata.attempt))
        if len(self.calls) <= self.failures:
            raise self.exc("boom")


class Counter(BaseHandler):
    event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, event: Event) -> None:
        self.calls += 1


async def test_backoff_is_waited_and_only_failing_handler_reruns():
    flaky = Flaky(failures=3)
    other = Counter()
    dlq = DeadLetterQueue()
    bus = AsyncEventBus(dead_letter_queue=dlq)
    bus.subscribe(
        flaky, retry_policy=RetryPolicy(max_retries=3, initial_delay=0.05, exponential_base=2, jitter=False)
    )
    bus.subscribe(other)
    async with bus:
        await bus.context.submit([make_event()])  # returns once every handler finished
    times = [t for t, _ in flaky.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(flaky.calls) == 4 and other.calls == 1 and len(dlq) == 0
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.19  # 0.05, 0.1, 0.2
    assert [a for _, a in flaky.calls] == [0, 1, 2, 3]  # metadata.attempt = earlier attempts


async def test_exhausted_retries_go_to_the_dlq_passed_in():
    flaky = Flaky(failures=100, exc=ValueError)
    dlq = DeadLetterQueue(max_size=10)
    obs = RecordingObserver()
    bus = AsyncEventBus()
    bus.add_observer(obs)
    bus.subscribe(
        flaky,
        retry_policy=RetryPolicy(max_retries=2, initial_delay=0.01, jitter=False),
        error_policy=ErrorPolicy(dead_letter_queue=dlq),
    )
    async with bus:
        ev = make_event()
        await bus.context.submit([ev])
    assert len(flaky.calls) == 3
    (entry,) = dlq.get_entries()
    assert entry.event.id == ev.id and entry.handler == "Flaky" and entry.attempts == 3
    assert entry.error == "boom" and entry.error_type == "builtins.ValueError"
    assert entry.first_failure <= entry.last_failure
    assert len(bus.dead_letter_queue) == 0  # the bus default DLQ was not used
    assert len(obs.named("on_retry")) == 2 and len(obs.named("on_dead_letter")) == 1


async def test_permanent_error_is_dead_lettered_at_once():
    flaky = Flaky(failures=100, exc=PermanentError)
    dlq = DeadLetterQueue()
    bus = AsyncEventBus(dead_letter_queue=dlq)
    bus.subscribe(flaky, retry_policy=RetryPolicy(max_retries=5, initial_delay=1.0))
    async with bus:
        await asyncio.wait_for(bus.context.submit([make_event()]), 1.0)
    assert len(flaky.calls) == 1 and len(dlq) == 1


async def test_no_retry_on_and_retry_on_filters():
    policy = RetryPolicy(max_retries=3).retry_on(KeyError).no_retry_on(LookupError)
    assert policy.classify(KeyError()) is FailureKind.PERMANENT  # no_retry_on wins
    assert RetryPolicy().retry_on(KeyError).classify(IndexError()) is FailureKind.PERMANENT
    assert RetryPolicy().retry_on(KeyError).classify(KeyError()) is FailureKind.RETRYABLE
    assert RetryPolicy().classify(TransientError("down")) is FailureKind.TRANSIENT
    assert RetryPolicy().classify(TimeoutError()) is FailureKind.TRANSIENT


async def test_transient_outage_defers_instead_of_dead_lettering():
    flaky = Flaky(failures=8, exc=TransientError)
    dlq = DeadLetterQueue()
    obs = RecordingObserver()
    bus = AsyncEventBus(dead_letter_queue=dlq)
    bus.add_observer(obs)
    bus.subscribe(
        flaky, retry_policy=RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02, jitter=False)
    )
    async with bus:
        await asyncio.wait_for(bus.context.submit([make_event()]), 5)
    assert len(flaky.calls) == 9 and len(dlq) == 0
    assert len(obs.named("on_deferred")) == 7
    assert all(d <= 0.02 for _, _, d, _ in obs.named("on_deferred"))  # capped at max_delay


async def test_deferred_event_is_not_accepted_yet():
    flaky = Flaky(failures=10**6, exc=TransientError)
    bus = AsyncEventBus()
    bus.subscribe(flaky, retry_policy=RetryPolicy(max_retries=0, initial_delay=0.01, max_delay=0.01))
    await bus.start()
    task = asyncio.create_task(bus.context.submit([make_event()]))
    await wait_until(lambda: len(flaky.calls) >= 3)
    assert not task.done()
    report = await bus.stop(timeout=0.1)
    assert report.timed_out and len(report.not_handled) == 1
    with pytest.raises(Exception, match="stopped"):
        await task  # the transport learns the event was not accepted, so it does not ack


async def test_retry_after_is_honoured():
    class Throttled(Flaky):
        async def handle(self, event: Event) -> None:
            self.calls.append((time.monotonic(), event.metadata.attempt))
            if len(self.calls) == 1:
                raise TransientError("429", retry_after=0.15)

    h = Throttled(0)
    bus = AsyncEventBus()
    bus.subscribe(h, retry_policy=RetryPolicy(max_retries=3, initial_delay=0.001, jitter=False))
    async with bus:
        await bus.context.submit([make_event()])
    assert h.calls[1][0] - h.calls[0][0] >= 0.14


async def test_sync_handler_failures_are_retried_too():
    calls = []

    def handle(event: Event) -> None:
        calls.append(event.metadata.attempt)
        if len(calls) < 3:
            raise ConnectionError("refused")

    bus = AsyncEventBus()
    bus.subscribe(
        handle, [EventType.TEST_RESULT], retry_policy=RetryPolicy(max_retries=5, initial_delay=0.01)
    )
    async with bus:
        await bus.context.submit([make_event()])
    assert calls == [0, 1, 2]


async def test_a_broken_breaker_key_dead_letters_instead_of_killing_the_lane():
    from pywats_events.policies import CircuitBreaker

    class BadKey(Counter):
        def breaker_key(self, event: Event) -> str:
            raise KeyError("no site")

    h = BadKey()
    dlq = DeadLetterQueue()
    cb = CircuitBreaker()
    cb.record_failure("another-site")  # a breaker with history: the bus consults it for every call
    bus = AsyncEventBus(max_concurrency=1)
    bus.subscribe(h, error_policy=ErrorPolicy(dead_letter_queue=dlq, circuit_breaker=cb))
    async with bus:
        await asyncio.wait_for(bus.context.submit([make_event("U", 1), make_event("U", 2)]), 2)
    assert len(dlq) == 2 and h.calls == 0  # both dead-lettered, the lane kept going


async def test_retries_keep_per_key_order():
    seen: list[tuple[str, int]] = []
    failed: set[int] = set()

    async def handle(event: Event) -> None:
        i = event.payload["i"]
        if i % 3 == 0 and i not in failed:
            failed.add(i)
            raise ConnectionError("blip")
        seen.append((event.payload["unit_id"], i))

    bus = AsyncEventBus(max_concurrency=4)
    bus.subscribe(
        handle, [EventType.TEST_RESULT], retry_policy=RetryPolicy(max_retries=2, initial_delay=0.005)
    )
    async with bus:
        for i in range(60):
            await bus.publish(make_event(f"U{i % 3}", i))
    for unit in ("U0", "U1", "U2"):
        assert [i for u, i in seen if u == unit] == [i for i in range(60) if f"U{i % 3}" == unit]
