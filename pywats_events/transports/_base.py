"""The transport interface: how bytes or events from the outside reach the bus.

A transport is started by the bus with a `TransportContext`. For every inbound message it calls
`await context.submit(events, ...)`, which returns only once the bus has *accepted* the events (written
to the journal, or — without a journal — handled or parked by every handler). Only then may the transport
acknowledge the message to its broker. Undecodable input goes to `context.quarantine(...)`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._event import Event

__all__ = ["BaseTransport", "ConnectionState", "QuarantineRecord", "TransportContext"]


class ConnectionState(str, enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True)
class QuarantineRecord:
    """Input that could not be turned into events: kept with its raw bytes and the reason."""

    raw: bytes
    reason: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    topic: str | None = None


class TransportContext(Protocol):
    """What the bus offers a running transport."""

    async def submit(self, events: Sequence[Event]) -> None:
        """Returns once every event is accepted (the point where a broker message may be acked)."""

    async def quarantine(self, record: QuarantineRecord) -> None:
        """Stores undecodable input durably (or logs it when no store is configured)."""

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        """Reports a connection change; the bus turns it into a TRANSPORT_CONNECTED/DISCONNECTED event."""


class BaseTransport(abc.ABC):
    """Subclass and implement `start` / `stop`. `name` identifies the transport in logs and metrics."""

    name: str = "transport"

    def __init__(self) -> None:
        self._state = ConnectionState.DISCONNECTED
        self._context: TransportContext | None = None

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def is_connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def _set_state(self, state: ConnectionState, detail: str = "") -> None:
        if state is self._state:
            return
        self._state = state
        if self._context is not None:
            self._context.connection_changed(self, state, detail)

    @abc.abstractmethod
    async def start(self, context: TransportContext) -> None:
        """Connect and begin delivering into `context`. Must return once consuming has begun."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop receiving; unacknowledged messages stay with the broker. Idempotent."""

    async def publish(self, events: Sequence[Event]) -> None:
        """Outbound direction, for transports that can send (optional)."""
        raise NotImplementedError(f"{self.name} cannot publish")
