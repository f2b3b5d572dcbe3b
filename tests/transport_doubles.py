"""A TransportContext double for transport tests: records what a transport hands over to the bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pywats_events import Event
from pywats_events.transports import BaseTransport, ConnectionState, QuarantineRecord


@dataclass
class RecordingContext:
    """Records submitted events, quarantined records and connection states; `gate` lets a test hold
    `submit` (to test ack-after-accept), `submit_delay` slows every accept down."""

    gate: asyncio.Event | None = None
    submit_delay: float = 0.0
    events: list[Event] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    states: list[ConnectionState] = field(default_factory=list)
    submitting: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, events: Sequence[Event]) -> None:
        self.submitting.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.submit_delay:
            await asyncio.sleep(self.submit_delay)
        self.events.extend(events)
        self.changed.set()

    async def quarantine(self, record: QuarantineRecord) -> None:
        self.quarantined.append(record)
        self.changed.set()

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        self.states.append(state)
        self.changed.set()

    def ids(self, key: str = "id") -> list[str]:
        """The `key` payload field of every accepted event, in order."""
        return [e.payload[key] for e in self.events]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def _loop() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.1)

        await asyncio.wait_for(_loop(), timeout)
