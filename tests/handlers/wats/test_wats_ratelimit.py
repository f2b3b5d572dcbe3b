"""RateLimiter: the budget per minute holds, a burst is allowed, and waiters are served in order."""

from __future__ import annotations

import asyncio
import time

import pytest

from handlers.wats.ratelimit import RateLimiter
from pywats_events import ConfigurationError


async def test_burst_then_steady_rate() -> None:
    limiter = RateLimiter(1200, burst=3)  # 20/s
    started = time.monotonic()
    stamps = []
    for _ in range(9):
        await limiter.acquire()
        stamps.append(time.monotonic() - started)
    assert stamps[2] < 0.1  # the burst passes at once
    assert 0.28 <= stamps[-1] < 0.8  # the other 6 at 20/s: 0.3 s


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = RateLimiter(3000, burst=1)
    order: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire()
        order.append(n)

    tasks = []
    for n in range(10):
        tasks.append(asyncio.create_task(take(n)))
        await asyncio.sleep(0)  # make arrival order well defined
    await asyncio.gather(*tasks)
    assert order == list(range(10))


def test_default_burst_is_about_one_second_of_budget() -> None:
    assert RateLimiter(500).burst == 8
    assert RateLimiter(30).burst == 1


@pytest.mark.parametrize("rate", [0, -5])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit_per_minute"):
        RateLimiter(rate)
