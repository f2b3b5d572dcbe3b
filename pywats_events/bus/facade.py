"""`EventBus`: the synchronous facade over `AsyncEventBus`.

One background thread runs the engine's event loop; every blocking call is handed to that loop through a
portal (`asyncio.run_coroutine_threadsafe`) and waited for, the way Starlette's `TestClient` drives an async
app. So `publish` works from plain scripts, from many threads at once, and from code that is itself inside
a running event loop (no "loop already running"). Called from the bus loop itself (a handler calling the
sync API), `publish` never blocks: it queues through `AsyncEventBus.publish_nowait`.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from .._event import Event, EventType
from .._exceptions import BusStateError
from .._handlers import BaseHandler, HandleResult
from .._observer import BusObserver
from ..policies import ErrorPolicy, RetryPolicy
from ..policies._dead_letter import DeadLetterStore
from ..transports._base import BaseTransport
from .engine import AsyncEventBus
from .stop_report import BusState, StopReport

__all__ = ["EventBus"]

T = TypeVar("T")

log = logging.getLogger("pywats_events.bus")


class EventBus:
    """Synchronous event bus (same verbs as `AsyncEventBus`, as plain calls).

    >>> bus = EventBus()
    >>> bus.subscribe(MyHandler())        # doctest: +SKIP
    >>> bus.start()
    >>> bus.publish(event)                # doctest: +SKIP
    >>> report = bus.stop()

    Keyword arguments are passed to `AsyncEventBus`.
    """

    def __init__(self, **options: Any) -> None:
        self._engine = AsyncEventBus(**options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # hand-off from producer threads to the loop: bounded by a semaphore, drained by one task
        capacity = min(self._engine.max_in_flight, 4096)
        self._slots = threading.BoundedSemaphore(capacity)
        self._handoff: deque[Event] = deque()
        self._handoff_lock = threading.Lock()
        self._drainer_active = False
        self._drainer: asyncio.Task[None] | None = None

    # -- pass-through configuration -----------------------------------------------------------------
    @property
    def engine(self) -> AsyncEventBus:
        """The asyncio engine (for `await`-style use from its own loop)."""
        return self._engine

    @property
    def context(self) -> Any:
        return self._engine.context

    @property
    def state(self) -> BusState:
        return self._engine.state

    @property
    def dead_letter_queue(self) -> DeadLetterStore:
        return self._engine.dead_letter_queue

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def subscribe(
        self,
        handler_or_function: BaseHandler | Callable[[Event], HandleResult],
        event_types: Iterable[EventType | str] | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        error_policy: ErrorPolicy | None = None,
        name: str | None = None,
        ordering_group: str | None = None,
    ) -> BaseHandler:
        return self._engine.subscribe(
            handler_or_function,
            event_types,
            retry_policy=retry_policy,
            error_policy=error_policy,
            name=name,
            ordering_group=ordering_group,
        )

    def register_transport(self, transport: BaseTransport) -> BaseTransport:
        return self._engine.register_transport(transport)

    def add_observer(self, observer: BusObserver) -> None:
        self._engine.add_observer(observer)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop thread, then the engine (handlers' on_start, lanes, transports)."""
        with self._lock:
            if self._thread is not None:
                raise BusStateError("bus already started")
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                ready.set()
                try:
                    loop.run_forever()
                finally:
                    try:
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    finally:
                        loop.close()

            thread = threading.Thread(target=run, name="pywats-events-bus", daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
        try:
            self._call(self._engine.start())
        except BaseException:
            self._halt_loop()
            raise
        atexit.register(self._atexit)

    def stop(self, timeout: float = 10.0) -> StopReport:
        """Drain (up to `timeout` s), stop the engine and the loop thread; returns the `StopReport`."""
        if self._thread is None:
            return StopReport()
        try:
            report = self._call(self._stop_async(timeout))
        finally:
            self._halt_loop()
            atexit.unregister(self._atexit)
        # after the loop is gone no producer can add more: whatever is left was accepted, not handled
        with self._handoff_lock:
            leftover = list(self._handoff)
            self._handoff.clear()
            self._drainer_active = False
        for _ in leftover:
            self._slots.release()
        if leftover:
            report.not_handled.extend(leftover)
            log.warning("%d published event(s) never reached the bus before stop", len(leftover))
        return report

    def _halt_loop(self) -> None:
        with self._handoff_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _atexit(self) -> None:
        if self._thread is not None and self._engine.state is BusState.RUNNING:
            try:
                self.stop(timeout=2.0)
            except Exception:  # interpreter shutdown: best effort
                pass

    def __enter__(self) -> EventBus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- work ----------------------------------------------------------------------------------------------
    def publish(self, event: Event, *, handler: str | None = None, timeout: float | None = None) -> None:
        """Accept `event` (blocks while the bus is full). Thread-safe. From the bus loop it never blocks."""
        loop = self._loop
        if loop is None:
            raise BusStateError("bus is not started; call start() first")
        if self._on_loop():
            if handler is not None:
                raise BusStateError("targeted publish from the bus loop: use `await bus.engine.publish(...)`")
            self._engine.publish_nowait(event)
            return
        if handler is None and timeout is None:
            if self._engine.journal is None:
                self._handoff_publish(event, loop)
                return
            # with a journal, accepted means durable: wait for the append
            self._engine.publish_threadsafe(event).result()
            return
        self._call(self._engine.publish(event, handler=handler, timeout=timeout))

    # -- thread → loop hand-off -------------------------------------------------------------------------
    def _handoff_publish(self, event: Event, loop: asyncio.AbstractEventLoop) -> None:
        """Accept into the bounded hand-off (blocks while it is full); the loop moves events into lanes in
        order. No loop round trip per event: a producer thread wakes the loop only when the drainer sleeps."""
        self._slots.acquire()
        with self._handoff_lock:
            self._handoff.append(event)
            wake = not self._drainer_active
            self._drainer_active = True
        if wake:
            try:
                loop.call_soon_threadsafe(self._start_drainer)
            except RuntimeError:  # loop closed under us: not accepted
                with self._handoff_lock:
                    self._handoff.remove(event)
                    self._drainer_active = False
                self._slots.release()
                raise BusStateError("bus is stopping") from None

    def _start_drainer(self) -> None:
        self._drainer = asyncio.get_running_loop().create_task(self._drain_handoff())

    async def _drain_handoff(self) -> None:
        engine = self._engine
        handoff = self._handoff
        while True:
            with self._handoff_lock:
                if not handoff:
                    self._drainer_active = False
                    return
                batch = list(handoff)
                handoff.clear()
            for i, event in enumerate(batch):
                try:
                    await engine.publish(event)
                except (asyncio.CancelledError, BusStateError):
                    with self._handoff_lock:  # not accepted: keep them (and their slots) for the stop report
                        handoff.extendleft(reversed(batch[i:]))
                        self._drainer_active = False
                    raise
                except Exception:
                    log.exception("event %s not accepted by the bus: %s", event.id, event.to_json())
                self._slots.release()

    async def _stop_async(self, timeout: float) -> StopReport:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            try:
                await asyncio.wait_for(asyncio.shield(drainer), timeout)
            except asyncio.TimeoutError:
                drainer.cancel()
                await asyncio.gather(drainer, return_exceptions=True)
        return await self._engine.stop(max(0.0, deadline - loop.time()))

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None) -> T:
        """Run `await fn()` on the bus loop and return its result (the portal, for anything else async)."""
        return self._call(fn(), timeout)

    def _on_loop(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise BusStateError("bus is not started; call start() first")
        if self._on_loop():
            coro.close()
            raise BusStateError("blocking call from the bus loop would deadlock; await the engine instead")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
