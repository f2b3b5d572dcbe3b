"""`ErrorPolicy`: what happens to an event a handler could not process."""

from __future__ import annotations

from ._circuit_breaker import CircuitBreaker
from ._dead_letter import DeadLetterStore

__all__ = ["ErrorPolicy"]


class ErrorPolicy:
    """Where given-up events go and which circuit breaker guards the handler.

    >>> policy = ErrorPolicy(dead_letter_queue=DeadLetterQueue(max_size=1000),
    ...                      circuit_breaker=CircuitBreaker(failure_threshold=5, reset_timeout=30.0))

    Args:
        dead_letter_queue: used as given (not copied); None means the bus's own queue.
        circuit_breaker: optional; keyed by `handler.breaker_key(event)`.
    """

    def __init__(
        self,
        dead_letter_queue: DeadLetterStore | None = None,
        circuit_breaker: CircuitBreaker | None = None,
    ) -> None:
        self.dead_letter_queue = dead_letter_queue
        self.circuit_breaker = circuit_breaker

    def __repr__(self) -> str:
        return (
            f"ErrorPolicy(dead_letter_queue={self.dead_letter_queue!r}, "
            f"circuit_breaker={self.circuit_breaker!r})"
        )
