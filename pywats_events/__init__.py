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
from ._handlers import BaseHandler, FunctionHandler, handler, resolve_event_types
from ._observer import BusObserver
from .bus import DEFAULT_RETRY_POLICY, AsyncEventBus, BusState, EventBus, StopReport

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "AsyncEventBus",
    "BaseHandler",
    "BusObserver",
    "BusOverloaded",
    "BusState",
    "BusStateError",
    "Codec",
    "ConfigurationError",
    "DecodeResult",
    "Event",
    "EventBus",
    "EventMetadata",
    "EventType",
    "EventsError",
    "FunctionHandler",
    "HandlerFailure",
    "PermanentError",
    "StopReport",
    "TransientError",
    "handler",
    "resolve_event_types",
]
