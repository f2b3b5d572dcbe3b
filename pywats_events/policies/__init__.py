"""Failure policies: retry with backoff, circuit breaker, dead-letter queues and the `ErrorPolicy` bundle."""

from ._circuit_breaker import CircuitBreaker, CircuitState
from ._dead_letter import DeadLetterEntry, DeadLetterQueue, ReplayReport, SqliteDeadLetterQueue
from ._error import ErrorPolicy
from ._retry import DEFAULT_TRANSIENT_ERRORS, FailureKind, RetryPolicy

__all__ = [
    "DEFAULT_TRANSIENT_ERRORS",
    "CircuitBreaker",
    "CircuitState",
    "DeadLetterEntry",
    "DeadLetterQueue",
    "ErrorPolicy",
    "FailureKind",
    "ReplayReport",
    "RetryPolicy",
    "SqliteDeadLetterQueue",
]
