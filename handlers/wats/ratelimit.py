"""Client-side rate limit for WATS calls (the vendor client keeps under 500 requests per minute).

A token bucket: `rate_per_minute` tokens refill evenly over a minute, at most `burst` are saved up.
Waiters are served first come, first served (an `asyncio.Lock` queues them in order), so a burst of
handlers cannot starve an earlier caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pywats_events import ConfigurationError

__all__ = ["RateLimiter"]


class RateLimiter:
    """Async token bucket. `await acquire()` returns when one request may be sent."""

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_per_minute > 0:
            raise ConfigurationError("rate_limit_per_minute", f"must be > 0, got {rate_per_minute!r}")
        self.rate_per_minute = float(rate_per_minute)
        self._per_second = self.rate_per_minute / 60.0
        # a default burst of about one second's worth keeps latency low without exceeding the minute budget
        self.burst = max(1, int(burst if burst is not None else self._per_second))
        self._clock = clock
        self._tokens = float(self.burst)
        self._updated = clock()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self._per_second)
        self._updated = now

    async def acquire(self) -> None:
        """Wait for a token. Callers are served in the order they called."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._refill()
            while self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) / self._per_second)
                self._refill()
            self._tokens -= 1.0

    def __repr__(self) -> str:
        return f"RateLimiter(rate_per_minute={self.rate_per_minute:g}, burst={self.burst})"
