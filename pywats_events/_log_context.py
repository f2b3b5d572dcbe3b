"""Which event and handler the current code runs for, so every log line inside a handler call carries ids.

Each bus lane task sets `current_delivery` once to a `Delivery` it owns and updates that object's two
fields per handler call (plain attribute stores: the dispatch hot path stays cheap). Code running in the
lane's context sees it: the handler, tasks it awaits, and (through a copied context) a synchronous
handler's worker thread. The logging filter in `logging_setup` copies the fields into each record
emitted meanwhile, so lines from the handler's own loggers (and from the WATS sender it calls) join with
the event like the bus's own lines do.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["Delivery", "current_delivery", "delivery_fields"]


class Delivery:
    """The handler call a lane is running: `event` is None while the lane is idle."""

    __slots__ = ("event", "handler")

    def __init__(self) -> None:
        self.event: Event | None = None
        self.handler = ""


#: the `Delivery` of the lane this code runs in, else None
current_delivery: ContextVar[Delivery | None] = ContextVar("pywats_current_delivery", default=None)


def delivery_fields() -> dict[str, Any] | None:
    """event_id, correlation_id, event_type and handler of the running handler call (None outside one)."""
    current = current_delivery.get()
    if current is None:
        return None
    event = current.event
    if event is None:
        return None
    return {
        "event_id": event.id,
        "correlation_id": event.metadata.correlation_id,
        "event_type": event.type_name,
        "handler": current.handler,
    }
