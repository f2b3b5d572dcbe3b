"""Events the bus generates about itself (handler errors, dead letters, transport connection changes)."""

from __future__ import annotations

from typing import Any

from .._event import Event, EventMetadata, EventType
from ..transports._base import BaseTransport, ConnectionState

__all__ = ["SYSTEM_SLACK", "connection_event", "failure_event", "system_event"]

#: system events may exceed a group's in-flight budget by this much (they must never block a lane)
SYSTEM_SLACK = 1024


def system_event(event_type: EventType, payload: dict[str, Any], cause: Event | None, key: str) -> Event:
    """A bus-generated event; `cause` (if any) links it to the event it is about; `key` orders it."""
    meta = EventMetadata(
        source="pywats_events.bus",
        ordering_key=key,
        causation_id=cause.id if cause is not None else None,
        correlation_id=cause.metadata.correlation_id if cause is not None else None,
    )
    return Event(event_type=event_type, payload=payload, metadata=meta)


def failure_event(
    kind: EventType, event: Event, handler: str, error: BaseException, **details: Any
) -> Event | None:
    """A HANDLER_ERROR / EVENT_DEAD_LETTER event describing `error` of `handler` on `event`; None for a
    failure of a system-event handler (never reported as a new system event, or it could loop)."""
    if event.type_name.startswith("system."):
        return None
    payload = {
        "handler": handler,
        "event_id": event.id,
        "event_type": event.type_name,
        "error": str(error) or repr(error),
        "error_type": type(error).__qualname__,
        **details,
    }
    return system_event(kind, payload, event, f"system:{event.ordering_key()}")


def connection_event(transport: BaseTransport, state: ConnectionState, detail: str) -> Event | None:
    """TRANSPORT_CONNECTED / TRANSPORT_DISCONNECTED for a transport's state change (None for other states)."""
    if state is ConnectionState.CONNECTED:
        etype = EventType.TRANSPORT_CONNECTED
    elif state in (ConnectionState.DISCONNECTED, ConnectionState.CLOSED):
        etype = EventType.TRANSPORT_DISCONNECTED
    else:
        return None
    return system_event(
        etype,
        {"transport": transport.name, "state": state.value, "detail": detail},
        None,
        f"transport:{transport.name}",
    )
