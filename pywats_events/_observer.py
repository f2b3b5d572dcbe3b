"""`BusObserver`: hooks the bus calls as work flows through it (metrics, tracing, tests).

Every method is a no-op; override only what you need. The bus looks at which methods a subclass
overrides and skips the rest entirely, so an observer that only counts dead letters costs nothing on
the hot path. Hooks run on the bus loop and must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._event import Event
    from .policies import CircuitState
    from .transports import QuarantineRecord

__all__ = ["HOOK_NAMES", "BusObserver", "call_hook", "overrides"]

log = logging.getLogger("pywats_events.bus")

HOOK_NAMES = (
    "on_accepted",
    "on_handled",
    "on_retry",
    "on_deferred",
    "on_dead_letter",
    "on_breaker_change",
    "on_quarantine",
)


class BusObserver:
    """Subclass and override the hooks you care about; register with `bus.add_observer(obs)`."""

    def on_accepted(self, event: Event) -> None:
        """The bus took responsibility for `event` (queued, or journaled)."""

    def on_handled(self, event: Event, handler_name: str, seconds: float) -> None:
        """`handler_name` finished `event` successfully; `seconds` is the duration of the last attempt."""

    def on_retry(
        self, event: Event, handler_name: str, attempt: int, delay: float, error: BaseException
    ) -> None:
        """Attempt `attempt` failed; the next one starts after `delay` seconds."""

    def on_deferred(self, event: Event, handler_name: str, delay: float, reason: str) -> None:
        """The event waits (outage or open breaker) `delay` seconds before it is tried again."""

    def on_dead_letter(self, event: Event, handler_name: str, error: BaseException) -> None:
        """`handler_name` gave up on `event`; it is in the dead-letter queue."""

    def on_breaker_change(self, key: str, state: CircuitState) -> None:
        """The circuit breaker for `key` changed state."""

    def on_quarantine(self, record: QuarantineRecord) -> None:
        """A transport handed over input it could not decode."""


def overrides(observer: BusObserver, hook: str) -> bool:
    """True if `observer` does something in `hook` (so the bus must call it)."""
    return getattr(type(observer), hook, None) is not getattr(BusObserver, hook)


def call_hook(hook: Callable[..., Any], *args: Any) -> None:
    """Call one observer hook; a failing observer is logged, never passed on to the bus's work."""
    try:
        hook(*args)
    except Exception:
        log.exception("observer hook %r raised", hook)
