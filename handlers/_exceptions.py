"""Exceptions of the WATS side, mapped onto the bus's transient/permanent split.

WatsError
├── WatsTransientError (TransientError)   5xx, 429, timeout, connection refused: retried, then deferred
├── WatsPermanentError (PermanentError)   4xx: never succeeds; dead-lettered with the server's message
└── ResolutionError (PermanentError)      input cannot be mapped (unknown part number, process, asset)
"""

from __future__ import annotations

from pywats_events import PermanentError, TransientError

__all__ = ["ResolutionError", "WatsError", "WatsPermanentError", "WatsTransientError"]


class WatsError(Exception):
    """Root of the WATS handler errors."""


class WatsTransientError(WatsError, TransientError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        TransientError.__init__(self, message, retry_after=retry_after)
        self.status = status


class WatsPermanentError(WatsError, PermanentError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        PermanentError.__init__(self, message)
        self.status = status


class ResolutionError(WatsError, PermanentError):
    """A value WATS requires could not be resolved from the event and the configuration."""
