"""`CircuitBreaker`: stop hammering a destination that is down, and let events wait instead of failing.

One breaker object keeps an independent circuit per key (the handler name, or whatever
`handler.breaker_key(event)` returns, e.g. one per WATS server)::

    CLOSED ──(failure_threshold consecutive failures, or failure rate ≥ threshold in window)──▶ OPEN
    OPEN ──(reset_timeout elapsed)──▶ HALF_OPEN (at most half_open_max_calls trial calls at once)
    HALF_OPEN ──(trial succeeds)──▶ CLOSED          HALF_OPEN ──(trial fails)──▶ OPEN

The bus asks `acquire(key)` before each call: 0.0 means "go", a positive number is how long to wait.
While open, events are *deferred* (they wait), never failed.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

__all__ = ["CircuitBreaker", "CircuitState"]

_HALF_OPEN_POLL = 0.05


class CircuitState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Circuit:
    __slots__ = ("calls", "failures", "opened_at", "state", "trials")

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.trials = 0
        self.calls: deque[tuple[float, bool]] = deque()


class CircuitBreaker:
    """Per-key circuit breaker.

    >>> cb = CircuitBreaker(failure_threshold=5, reset_timeout=30.0)

    Args:
        failure_threshold: consecutive failures that open the circuit.
        reset_timeout: seconds the circuit stays open before trial calls are let through.
        half_open_max_calls: trial calls allowed at once while half-open.
        failure_rate_threshold: optional 0..1; also open when this share of calls in `window` failed
            (evaluated once at least `failure_threshold` calls were seen in the window).
        window: length of the failure-rate window in seconds.
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        failure_rate_threshold: float | None = None,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if half_open_max_calls < 1:
            raise ValueError("half_open_max_calls must be >= 1")
        if failure_rate_threshold is not None and not 0 < failure_rate_threshold <= 1:
            raise ValueError("failure_rate_threshold must be in (0, 1]")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_max_calls = half_open_max_calls
        self.failure_rate_threshold = failure_rate_threshold
        self.window = window
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        #: True while no call has been recorded for any key: every circuit is closed and nothing needs
        #: counting, so a caller may skip `acquire`/`record_*` until the first failure (a plain
        #: attribute: the bus reads it per event)
        self.idle = True
        self._listeners: list[Callable[[str, CircuitState], None]] = []

    # -- inspection -------------------------------------------------------------------------------
    def state(self, key: str) -> CircuitState:
        """Current state of `key`'s circuit (an OPEN circuit whose timeout elapsed reports HALF_OPEN)."""
        c = self._circuits.get(key)
        if c is None:
            return CircuitState.CLOSED
        if c.state is CircuitState.OPEN and self._clock() - c.opened_at >= self.reset_timeout:
            return CircuitState.HALF_OPEN
        return c.state

    def states(self) -> dict[str, CircuitState]:
        return {k: self.state(k) for k in self._circuits}

    def add_listener(self, listener: Callable[[str, CircuitState], None]) -> None:
        """`listener(key, state)` is called on every state change."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    # -- used by the bus --------------------------------------------------------------------------
    def acquire(self, key: str) -> float:
        """0.0 if a call for `key` may start now (takes a half-open trial slot), else seconds to wait."""
        c = self._circuits.get(key)
        if c is None or c.state is CircuitState.CLOSED:
            return 0.0
        if c.state is CircuitState.OPEN:
            remaining = self.reset_timeout - (self._clock() - c.opened_at)
            if remaining > 0:
                return remaining
            self._set(key, c, CircuitState.HALF_OPEN)
        if c.trials < self.half_open_max_calls:
            c.trials += 1
            return 0.0
        return _HALF_OPEN_POLL

    def record_success(self, key: str) -> None:
        c = self._circuits.get(key)
        if c is None:
            if self.failure_rate_threshold is None:
                return
            c = self._circuits[key] = _Circuit()
            self.idle = False
        if c.state is CircuitState.HALF_OPEN:
            c.trials = max(0, c.trials - 1)
            c.failures = 0
            c.calls.clear()
            self._set(key, c, CircuitState.CLOSED)
            return
        c.failures = 0
        if self.failure_rate_threshold is not None:
            self._note(c, True)

    def record_failure(self, key: str) -> None:
        c = self._circuits.get(key)
        if c is None:
            c = self._circuits[key] = _Circuit()
            self.idle = False
        if c.state is CircuitState.HALF_OPEN:
            c.trials = max(0, c.trials - 1)
            self._open(key, c)
            return
        if c.state is CircuitState.OPEN:
            return
        c.failures += 1
        if c.failures >= self.failure_threshold:
            self._open(key, c)
            return
        if self.failure_rate_threshold is not None:
            self._note(c, False)
            n = len(c.calls)
            if n >= self.failure_threshold:
                failed = sum(1 for _, ok in c.calls if not ok)
                if failed / n >= self.failure_rate_threshold:
                    self._open(key, c)

    def release(self, key: str) -> None:
        """Give back a half-open trial slot taken by `acquire` without a verdict (call cancelled)."""
        c = self._circuits.get(key)
        if c is not None and c.state is CircuitState.HALF_OPEN:
            c.trials = max(0, c.trials - 1)

    def reset(self, key: str | None = None) -> None:
        """Close one circuit (or all)."""
        keys = [key] if key is not None else list(self._circuits)
        for k in keys:
            c = self._circuits.get(k)
            if c is not None:
                c.failures = c.trials = 0
                c.calls.clear()
                self._set(k, c, CircuitState.CLOSED)

    # -- internals --------------------------------------------------------------------------------
    def _note(self, c: _Circuit, ok: bool) -> None:
        now = self._clock()
        c.calls.append((now, ok))
        horizon = now - self.window
        while c.calls and c.calls[0][0] < horizon:
            c.calls.popleft()
        # the window is time-based; cap its length so a flood of calls cannot grow it without bound
        while len(c.calls) > 10_000:
            c.calls.popleft()

    def _open(self, key: str, c: _Circuit) -> None:
        c.opened_at = self._clock()
        c.failures = 0
        c.calls.clear()
        self._set(key, c, CircuitState.OPEN)

    def _set(self, key: str, c: _Circuit, state: CircuitState) -> None:
        if c.state is state:
            return
        c.state = state
        if state is not CircuitState.HALF_OPEN:
            c.trials = 0
        for listener in self._listeners:
            listener(key, state)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(failure_threshold={self.failure_threshold}, reset_timeout={self.reset_timeout}, "
            f"half_open_max_calls={self.half_open_max_calls}, "
            f"failure_rate_threshold={self.failure_rate_threshold}, window={self.window})"
        )
