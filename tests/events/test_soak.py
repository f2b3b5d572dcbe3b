"""A short randomized soak: journal with jittery appends, flaky handlers, many concurrent submitters.

Every event must be handled by every handler exactly once (failures are retried inside one delivery), in
submission order per key, and the journal must end empty."""

from __future__ import annotations

import asyncio
import os
import random
from collections import defaultdict

import pytest

from pywats_events import AsyncEventBus, BaseHandler, Event, EventType, TransientError
from pywats_events.policies import CircuitBreaker, ErrorPolicy, RetryPolicy
from pywats_events.testing import MemoryJournal


class JitteryJournal(MemoryJournal):
    async def append(self, events):  # type: ignore[no-untyped-def]
        seqs = await super().append(events)
        await asyncio.sleep(random.random() * 0.002)
        return seqs


class Flaky(BaseHandler):
    event_types = [EventType.TEST_RESULT]  # type: ignore[assignment]

    def __init__(self, name: str, failure_rate: float) -> None:
        self._name = name
        self.rate = failure_rate
        self.seen: dict[str, list[int]] = defaultdict(list)

    @property
    def name(self) -> str:
        return self._name

    async def handle(self, event: Event) -> None:
        await asyncio.sleep(0)
        if random.random() < self.rate:
            raise TransientError("flap")
        self.seen[event.payload["unit_id"]].append(event.payload["i"])


@pytest.mark.parametrize("with_journal", [False, True])
async def test_soak(with_journal: bool):
    random.seed(int(os.environ.get("SOAK_SEED", "7")))
    handlers = [Flaky("a", 0.0), Flaky("b", 0.2), Flaky("c", 0.05)]
    bus = AsyncEventBus(
        journal=JitteryJournal() if with_journal else None,
        max_in_flight=64,
        max_concurrency=8,
        journal_cache=32,
    )
    retry = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.003)
    for h in handlers:
        cb = CircuitBreaker(failure_threshold=20, reset_timeout=0.01)
        bus.subscribe(h, retry_policy=retry, error_policy=ErrorPolicy(circuit_breaker=cb))
    units = [f"U{u}" for u in range(12)]
    counters = dict.fromkeys(units, 0)
    expected: dict[str, list[int]] = defaultdict(list)

    async def submitter(k: int) -> None:
        # each submitter owns its units, so per-unit submission order is well defined
        mine = units[k::4]
        for _ in range(150):
            u = random.choice(mine)
            batch = []
            for _ in range(random.randint(1, 3)):
                expected[u].append(counters[u])
                batch.append(
                    Event(event_type=EventType.TEST_RESULT, payload={"unit_id": u, "i": counters[u]})
                )
                counters[u] += 1
            await bus.context.submit(batch)

    async with bus:
        await asyncio.wait_for(asyncio.gather(*(submitter(k) for k in range(4))), 20)
        if with_journal:
            for _ in range(2000):
                if sum(len(v) for v in handlers[1].seen.values()) == sum(counters.values()):
                    break
                await asyncio.sleep(0.005)
    for h in handlers:
        assert dict(h.seen) == dict(expected), h.name
    if with_journal:
        assert await bus.journal.depth() == 0  # type: ignore[union-attr]
