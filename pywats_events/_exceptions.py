"""Exceptions of the core.

EventsError
├── ConfigurationError (ValueError)    a setting is wrong; names the setting
├── BusStateError (RuntimeError)       start/stop/publish at the wrong time
├── BusOverloaded                       publish(timeout=...) found no room in time
└── HandlerFailure                      raised by handlers to tell the bus how to treat a failure
    ├── TransientError                  an outage (server down, timeout): retried, then deferred
    └── PermanentError                  the event can never succeed as is: dead-lettered at once, no retry
"""

from __future__ import annotations

__all__ = [
    "BusOverloaded",
    "BusStateError",
    "ConfigurationError",
    "EventsError",
    "HandlerFailure",
    "PermanentError",
    "TransientError",
]


class EventsError(Exception):
    """Root of every error raised by pywats_events."""


class ConfigurationError(EventsError, ValueError):
    """A configuration value is invalid. `setting` names it (e.g. ``amqp.url``)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class BusStateError(EventsError, RuntimeError):
    """The bus was used in a state that does not allow it (e.g. publish before start)."""


class BusOverloaded(EventsError):
    """No room for the event within the given timeout (backpressure)."""


class HandlerFailure(EventsError):
    """Base for failures whose treatment the handler wants to decide itself."""


class TransientError(HandlerFailure):
    """The far side is unavailable. The bus retries with backoff and, when the retry budget is spent,
    keeps the event waiting instead of dead-lettering it. `retry_after` (seconds) is honoured if set."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(HandlerFailure):
    """The event can never succeed as is (bad data, 4xx): dead-lettered at once with this message."""
