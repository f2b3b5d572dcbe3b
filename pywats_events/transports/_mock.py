"""`MockTransport`: feed events into a bus from tests, no broker needed.

`inject_event` (sync) returns once the bus *accepted* the event — without a journal that means every
handler has finished with it, so a test can assert right after the call. `ainject_event` is the async twin.
Only the last `history` injected/published events are kept, so a long soak test does not grow memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Sequence

from .._event import Event
from .._exceptions import BusStateError
from ._base import BaseTransport, ConnectionState, QuarantineRecord, TransportContext

__all__ = ["MockTransport"]


class MockTransport(BaseTransport):
    """In-process transport for tests.

    >>> transport = MockTransport()
    >>> bus.register_transport(transport)   # doctest: +SKIP
    >>> transport.inject_event(event)       # doctest: +SKIP
    """

    name = "mock"

    def __init__(self, history: int = 1000, *, name: str | None = None) -> None:
        super().__init__()
        if name is not None:
            self.name = name
        #: the last `history` events handed to the bus
        self.injected: deque[Event] = deque(maxlen=history)
        #: the last `history` events sent out through `publish`
        self.published: deque[Event] = deque(maxlen=history)
        self.injected_count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def start(self, context: TransportContext) -> None:
        self._context = context
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._set_state(ConnectionState.CONNECTED)

    async def stop(self) -> None:
        self._set_state(ConnectionState.CLOSED)
        self._context = None

    async def ainject_event(self, event: Event | Sequence[Event]) -> None:
        """Hand one event (or several, as one message) to the bus; returns once accepted."""
        context = self._context
        if context is None:
            raise BusStateError("MockTransport is not started (register it and start the bus)")
        events = [event] if isinstance(event, Event) else list(event)
        await context.submit(events)
        self.injected.extend(events)
        self.injected_count += len(events)

    def inject_event(self, event: Event | Sequence[Event], timeout: float | None = 30.0) -> None:
        """Blocking twin of `ainject_event`, for synchronous tests driving an `EventBus`."""
        loop = self._loop
        if loop is None or self._context is None:
            raise BusStateError("MockTransport is not started (register it and start the bus)")
        if threading.get_ident() == self._loop_thread:
            raise BusStateError(
                "inject_event() would block the bus loop; use `await transport.ainject_event(...)`"
            )
        asyncio.run_coroutine_threadsafe(self.ainject_event(event), loop).result(timeout)

    async def ainject_raw(self, raw: bytes, reason: str, topic: str | None = None) -> None:
        """Simulate undecodable input: goes to the bus's quarantine."""
        if self._context is None:
            raise BusStateError("MockTransport is not started")
        await self._context.quarantine(
            QuarantineRecord(raw=raw, reason=reason, source=self.name, topic=topic)
        )

    def simulate_disconnect(self, detail: str = "simulated") -> None:
        self._set_state(ConnectionState.DISCONNECTED, detail)

    def simulate_connect(self, detail: str = "simulated") -> None:
        self._set_state(ConnectionState.CONNECTED, detail)

    async def publish(self, events: Sequence[Event]) -> None:
        self.published.extend(events)
