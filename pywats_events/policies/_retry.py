"""`RetryPolicy`: which failures are retried and how long to wait between attempts.

Backoff comes from tenacity's `wait_exponential` (plus `wait_random` jitter) and the attempt budget from
`stop_after_attempt`; the bus awaits the delay itself, per handler, so a retry never re-runs other handlers.

Classification of a failure (`classify`):

* `PermanentError` or a type given to `no_retry_on` → `FailureKind.PERMANENT` (dead-lettered at once)
* `TransientError`, `ConnectionError`, `TimeoutError`, `OSError` (`transient_errors`) → TRANSIENT
  (retried, then *deferred*: the event keeps waiting with capped backoff, it is never dead-lettered)
* anything else → `FailureKind.RETRYABLE` if it matches `retry_on` (or `retry_on` was never called), else
  `FailureKind.PERMANENT`; retryable failures are dead-lettered once `max_retries` is spent.
"""

from __future__ import annotations

import enum
from typing import Any

import tenacity

from .._exceptions import PermanentError, TransientError

__all__ = ["DEFAULT_TRANSIENT_ERRORS", "FailureKind", "RetryPolicy"]

DEFAULT_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class FailureKind(str, enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    RETRYABLE = "retryable"


class _AttemptState(tenacity.RetryCallState):
    """A RetryCallState with only the attempt number set: enough for tenacity wait/stop strategies."""

    def __init__(self, attempt_number: int) -> None:
        super().__init__(None, None, (), {})  # type: ignore[arg-type]
        self.attempt_number = attempt_number


class RetryPolicy:
    """Retry budget and backoff for one handler.

    >>> policy = RetryPolicy(max_retries=3, initial_delay=1.0, max_delay=60.0)
    >>> policy.retry_on(ConnectionError).no_retry_on(ValueError)  # chainable, mutates in place

    Args:
        max_retries: retries after the first attempt (0 = try once).
        initial_delay: delay before the first retry, seconds.
        max_delay: cap for any single delay (also the cap while an outage keeps an event deferred).
        exponential_base: growth factor per attempt.
        jitter: add a random extra of up to a quarter of `initial_delay` so handlers do not retry in lockstep.
        transient_errors: failures meaning "the far side is down" (retried, then deferred, never
            dead-lettered).
    """

    def __init__(
        self,
        max_retries: int = 3,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        exponential_base: float = 2.0,
        jitter: bool = True,
        *,
        transient_errors: tuple[type[BaseException], ...] = DEFAULT_TRANSIENT_ERRORS,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if initial_delay < 0 or max_delay < 0:
            raise ValueError("delays must be >= 0")
        self.max_retries = max_retries
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.exponential_base = exponential_base
        self.jitter = jitter
        self.transient_errors = tuple(transient_errors)
        self._retry_on: tuple[type[BaseException], ...] = ()
        self._no_retry_on: tuple[type[BaseException], ...] = ()
        self._build()

    def _build(self) -> None:
        wait: Any = tenacity.wait_exponential(
            multiplier=self.initial_delay, max=self.max_delay, exp_base=self.exponential_base
        )
        if self.jitter and self.initial_delay > 0:
            wait = wait + tenacity.wait_random(0, self.initial_delay * 0.25)
        self._wait = wait
        self._stop = tenacity.stop_after_attempt(self.max_retries + 1)

    def retry_on(self, *exc_types: type[BaseException]) -> RetryPolicy:
        """Retry only these exception types (plus the transient ones). Returns self for chaining."""
        self._retry_on = self._retry_on + tuple(exc_types)
        return self

    def no_retry_on(self, *exc_types: type[BaseException]) -> RetryPolicy:
        """Never retry these: they go to the dead-letter queue at once. Returns self for chaining."""
        self._no_retry_on = self._no_retry_on + tuple(exc_types)
        return self

    def classify(self, error: BaseException) -> FailureKind:
        if isinstance(error, PermanentError) or (self._no_retry_on and isinstance(error, self._no_retry_on)):
            return FailureKind.PERMANENT
        if isinstance(error, self.transient_errors):
            return FailureKind.TRANSIENT
        if not self._retry_on or isinstance(error, self._retry_on):
            return FailureKind.RETRYABLE
        return FailureKind.PERMANENT

    def should_stop(self, attempt: int) -> bool:
        """True once `attempt` (1-based, the one that just failed) used up the retry budget."""
        return bool(self._stop(_AttemptState(attempt)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based). `retry_after` (from the
        server) wins when given, capped at max(max_delay, retry_after) so it is never ignored."""
        if retry_after is not None and retry_after >= 0:
            return float(retry_after)
        return min(float(self._wait(_AttemptState(attempt))), self.max_delay * 1.25)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RetryPolicy):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (
            self.max_retries,
            self.initial_delay,
            self.max_delay,
            self.exponential_base,
            self.jitter,
            self.transient_errors,
            self._retry_on,
            self._no_retry_on,
        )

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_retries={self.max_retries}, initial_delay={self.initial_delay}, "
            f"max_delay={self.max_delay}, exponential_base={self.exponential_base}, jitter={self.jitter})"
        )
