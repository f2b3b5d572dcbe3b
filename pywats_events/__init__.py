"""pywats-events: a protocol-agnostic event bus between factory messaging and WATS."""

from ._codec import Codec, DecodeResult
from ._event import Event, EventMetadata, EventType
from ._exceptions import (
    BusOverloaded,
    BusStateError,
    ConfigurationError,
    EventsError,
    HandlerFailure,
    PermanentError,
    TransientError,
)
from ._handlers import BaseHandler, FunctionHandler, handler

__version__ = "0.1.0"

__all__ = [
    "BaseHandler",
    "BusOverloaded",
    "BusStateError",
    "Codec",
    "ConfigurationError",
    "DecodeResult",
    "Event",
    "EventMetadata",
    "EventType",
    "EventsError",
    "FunctionHandler",
    "HandlerFailure",
    "PermanentError",
    "TransientError",
    "handler",
]
