"""`AsyncEventBus`: the asyncio engine that accepts events and runs handlers under their policies.

Design (why it is fast and bounded):

* Work is spread over the lanes of each *ordering group* (`lanes.py`) by `hash(event.ordering_key())`: one
  worker per lane handles its events in order, so a key keeps its order and different keys run at once.
  Within a group an event's handlers run one after the other; an event wanted by several groups goes into
  one lane of each and finishes (resolves its acceptance, is marked complete in the journal) when the last
  group is done with it.
* Each group has its own `max_in_flight` budget (`admission.py`), so a group whose handler keeps events
  deferred fills only its own budget. Without a journal an event waits for room in every group that wants
  it (nothing else keeps it); events the full group does not want are still admitted.
* With a `journal` (`journal_feeder.py`), accepted means appended and each group reads the journal at its
  own pace: another group's deferred events never hold it up, memory stays bounded by the budgets, and
  per-handler progress in the journal lets a restart resume where it stopped.

`AsyncEventBus` here is lifecycle, subscription and configuration. It is built from two roles in their own
modules that share its state: `Publishing` (`publishing.py`: the way in) on `LaneWorkers`
(`lane_worker.py`: the lanes' run loops). Roles, not helper objects, because the per-event path must stay
plain attribute access on one object: a delegating call per event costs measurable throughput.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._event import Event, EventType
from .._exceptions import BusStateError, ConfigurationError
from .._handlers import BaseHandler, FunctionHandler, HandleResult
from .._observer import HOOK_NAMES, BusObserver, call_hook, overrides
from ..journal._protocol import Journal
from ..policies import DeadLetterQueue, ErrorPolicy, RetryPolicy
from ..policies._dead_letter import DeadLetterStore
from ..transports._base import BaseTransport, ConnectionState, QuarantineRecord
from .admission import Ack, Line
from .journal_feeder import JournalFeeder
from .lanes import OrderingGroup
from .publishing import Publishing, burst_size
from .stop_report import BusState, StopReport
from .subscription import Subscription
from .system_events import SYSTEM_SLACK, connection_event, failure_event

__all__ = ["DEFAULT_RETRY_POLICY", "AsyncEventBus", "BusState", "StopReport"]

log = logging.getLogger("pywats_events.bus")

#: used for handlers that bring no retry policy of their own
DEFAULT_RETRY_POLICY = RetryPolicy(max_retries=2, initial_delay=0.2, max_delay=30.0)


class _Context:
    """The `TransportContext` the bus hands to its transports (also usable directly: `bus.context`)."""

    def __init__(
        self,
        submit: Callable[[Sequence[Event]], Coroutine[Any, Any, None]],
        quarantine: Callable[[QuarantineRecord], Coroutine[Any, Any, None]],
        connection_changed: Callable[[BaseTransport, ConnectionState, str], None],
    ) -> None:
        self._submit = submit
        self._quarantine = quarantine
        self._connection_changed = connection_changed

    async def submit(self, events: Sequence[Event]) -> None:
        await self._submit(events)

    async def quarantine(self, record: QuarantineRecord) -> None:
        await self._quarantine(record)

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        self._connection_changed(transport, state, detail)


class AsyncEventBus(Publishing):
    """The asyncio event bus.

    >>> async with AsyncEventBus() as bus:          # doctest: +SKIP
    ...     bus.subscribe(MyHandler())                 # before start (async with starts on enter)
    ...     await bus.publish(Event(event_type=EventType.TEST_RESULT, payload={...}))

    Args:
        max_in_flight: accepted but unfinished events (backpressure above this).
        max_concurrency: number of ordering lanes per ordering group, i.e. how many keys each group
            handles at once (each group has its own lanes; their workers start on first use).
        journal: durable `Journal`; accepted then means "appended" and work resumes after a restart.
        dead_letter_queue: where handlers without their own `ErrorPolicy` queue give-ups
            (default: an in-memory `DeadLetterQueue(10_000)`).
        retry_policy: for handlers that bring none (default `DEFAULT_RETRY_POLICY`).
        quarantine_store: object with `async add(record)` for undecodable input (default: log only).
        executor_workers: threads for synchronous handlers (default: min(32, max_concurrency)).
        journal_cache: how many just-appended events are kept to avoid reading them back from the journal.
    """

    def __init__(
        self,
        *,
        max_in_flight: int = 10_000,
        max_concurrency: int = 64,
        journal: Journal | None = None,
        dead_letter_queue: DeadLetterStore | None = None,
        retry_policy: RetryPolicy | None = None,
        quarantine_store: Any | None = None,
        executor_workers: int | None = None,
        journal_cache: int | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight", "must be >= 1")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency", "must be >= 1")
        self.max_in_flight = max_in_flight
        self.max_concurrency = max_concurrency
        self.journal = journal
        self.dead_letter_queue: DeadLetterStore = (
            dead_letter_queue if dead_letter_queue is not None else DeadLetterQueue(10_000)
        )
        self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY
        self.quarantine_store = quarantine_store
        self._executor_workers = executor_workers or min(32, max_concurrency)

        self._state = BusState.NEW
        self._subs = []
        self._routes = {}
        self._transports: list[BaseTransport] = []
        self._observers: list[BusObserver] = []
        self._hooks: dict[str, list[Callable[..., Any]]] = {h: [] for h in HOOK_NAMES}
        self.context = _Context(self._submit, self._quarantine, self._connection_changed)

        # the state the roles share (`Publishing`, `LaneWorkers`: see their attribute notes)
        self._groups = []
        #: the ordering group when there is only one (the hot path's), else None
        self._only: OrderingGroup | None = None
        self._nlanes = max_concurrency
        self._multi = False
        self._parts = {}
        self._lanes_open = False
        self._inflight = 0
        self._line = Line(self._admit_waiter)
        self._handled = 0
        self._drain_future = None
        self._direct = False
        self._fast = None
        self._signal_finish = False
        self._accepted_hooks = self._hooks["on_accepted"]
        self._overflow_tasks = set()
        self._burst_left = burst_size()
        self._loop = None  # type: ignore[assignment]  # set by start()
        self._loop_thread: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._started_handlers: list[Subscription] = []
        self._host = _DeliveryHost(self)
        self._feeder = (
            JournalFeeder(journal, journal_cache or max_in_flight, parts_of=self._parts_of, hand=self._hand)
            if journal is not None
            else None
        )

    # ------------------------------------------------------------------ configuration
    @property
    def state(self) -> BusState:
        return self._state

    @property
    def in_flight(self) -> int:
        """Accepted events in the lanes, not yet finished by every handler that has them."""
        return self._unfinished()

    @property
    def handlers(self) -> list[BaseHandler]:
        return [s.handler for s in self._subs]

    @property
    def handler_names(self) -> list[str]:
        """Subscription names, as `publish(handler=...)`, the journal and dead letters know them."""
        return [s.name for s in self._subs]

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
        """Register a handler (a `BaseHandler`, an `@handler` function or a plain function plus
        `event_types`). Policies and `ordering_group` given here win over the handler's class attributes.
        Handlers of one ordering group run one after the other per event, in subscription order; other
        groups run independently (default: a group of the handler's own). Returns the handler."""
        if self._state not in (BusState.NEW, BusState.STOPPED):
            raise BusStateError("subscribe() before start()")
        h: BaseHandler
        if isinstance(handler_or_function, BaseHandler):
            h = handler_or_function
            if event_types is not None:
                if isinstance(h, FunctionHandler):
                    h = FunctionHandler(
                        h.func,
                        event_types,
                        name=name or h.name,
                        retry_policy=h.retry_policy,
                        error_policy=h.error_policy,
                        ordering_group=h.ordering_group,
                    )
                else:
                    raise ConfigurationError("event_types", "a BaseHandler declares its own event_types")
        elif callable(handler_or_function):
            if event_types is None:
                raise ConfigurationError("event_types", "a plain function needs event_types=[...]")
            h = FunctionHandler(handler_or_function, event_types, name=name)
        else:
            raise TypeError(f"not a handler: {handler_or_function!r}")
        retry = retry_policy or h.retry_policy or self.retry_policy
        ep = error_policy or h.error_policy
        dlq = (
            ep.dead_letter_queue
            if ep is not None and ep.dead_letter_queue is not None
            else self.dead_letter_queue
        )
        breaker = ep.circuit_breaker if ep is not None else None
        if breaker is not None:
            breaker.add_listener(self._breaker_changed)
        group = ordering_group or getattr(h, "ordering_group", None)
        sub = Subscription(h, self._unique_name(name or h.name), retry, dlq, breaker, group)
        if not sub.event_types:
            raise ConfigurationError("event_types", f"{sub.name} subscribes to no event type")
        self._subs.append(sub)
        self._routes.clear()
        return h

    def _unique_name(self, base: str) -> str:
        taken = {s.name for s in self._subs}
        if base not in taken:
            return base
        n = 2
        while f"{base}#{n}" in taken:
            n += 1
        return f"{base}#{n}"

    def register_transport(self, transport: BaseTransport) -> BaseTransport:
        """Started after the handlers' `on_start`, stopped first on `stop()`."""
        if self._state not in (BusState.NEW, BusState.STOPPED):
            raise BusStateError("register_transport() before start()")
        self._transports.append(transport)
        return transport

    def add_observer(self, observer: BusObserver) -> None:
        self._observers.append(observer)
        for hook in HOOK_NAMES:
            if overrides(observer, hook):
                self._hooks[hook].append(getattr(observer, hook))
        self._refresh_fast_paths()

    def _refresh_fast_paths(self) -> None:
        timed = bool(self._hooks["on_handled"])
        for s in self._subs:
            s.fast = not timed

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> AsyncEventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._state in (BusState.RUNNING, BusState.STARTING):
            await self.stop()

    async def start(self) -> None:
        """Open the journal, run handlers' `on_start`, start lanes, resume the journal, start transports."""
        if self._state not in (BusState.NEW, BusState.STOPPED):
            raise BusStateError(f"cannot start a bus that is {self._state.value}")
        self._state = BusState.STARTING
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._executor = ThreadPoolExecutor(self._executor_workers, thread_name_prefix="pywats-handler")
        self._routes.clear()
        self._refresh_fast_paths()
        self._burst_left = burst_size()
        self._inflight = 0
        self._handled = 0
        try:
            if self.journal is not None:
                await self.journal.open()
            self._started_handlers = []
            for sub in self._subs:
                await self._call_hook(sub, "on_start")
                self._started_handlers.append(sub)
            self._open_lanes()
            if self._feeder is not None:
                self._feeder.start(self._groups)
            self._state = BusState.RUNNING
            self._direct = self.journal is None
            self._fast = self._only if self._direct else None
            self._signal_finish = self.journal is not None
            for t in self._transports:
                await t.start(self.context)
        except BaseException:
            await self._shutdown(0.0, StopReport())
            raise

    async def stop(self, timeout: float = 10.0) -> StopReport:
        """Stop transports, let accepted work finish (up to `timeout` seconds), then run handlers' `on_stop`.

        Returns a `StopReport` listing what was accepted but not finished (kept in the journal if any)."""
        if self._state is BusState.NEW or self._state is BusState.STOPPED:
            return StopReport()
        if self._state is BusState.STOPPING:
            raise BusStateError("stop() already in progress")
        report = StopReport()
        return await self._shutdown(timeout, report)

    async def _shutdown(self, timeout: float, report: StopReport) -> StopReport:
        self._state = BusState.STOPPING
        self._direct = False
        self._fast = None
        self._signal_finish = True
        for t in reversed(self._transports):
            try:
                await t.stop()
            except Exception:
                log.exception("transport %s failed to stop", t.name)
        if self._feeder is not None:
            await self._feeder.stop()
        # drain
        if self._unfinished() or self._line:
            self._drain_future = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drain_future), timeout)
            except asyncio.TimeoutError:
                report.timed_out = True
            self._drain_future = None
        for task in list(self._overflow_tasks):
            task.cancel()
        if self._feeder is not None:
            await self._feeder.cancel_side_tasks()
        # stop the lanes; whatever is left was not handled
        self._lanes_open = False
        lanes = [lane for group in self._groups for lane in group.lanes]
        tasks = [lane.task for lane in lanes if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._overflow_tasks, return_exceptions=True)
        gone = BusStateError("bus stopped before the event was handled")
        reported: set[object] = set()  # an event left in the lanes of several groups is reported once
        for lane in lanes:
            for event, _subs, ack, seq, split in lane.q:
                mark: object = seq or (id(split) if split is not None else None)
                if mark is not None:
                    if mark in reported:
                        continue
                    reported.add(mark)
                _left_behind(report, event, ack, seq)
                if ack is not None:
                    ack.fail(gone)
            lane.q.clear()
        for w in self._line.clear():
            _left_behind(report, w.event, w.ack, 0)
            if w.ack is not None:
                w.ack.fail(gone)
            if w.future is not None and not w.future.done():
                w.future.set_exception(gone)
        self._inflight = 0
        for group in self._groups:
            group.inflight = 0
            group.seqs.clear()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            try:  # let sync handlers that are mid-call finish before their on_stop
                await asyncio.wait_for(
                    asyncio.to_thread(executor.shutdown, True, cancel_futures=True), max(timeout, 1.0)
                )
            except asyncio.TimeoutError:
                log.warning("a synchronous handler is still running after stop(); on_stop runs anyway")
        for sub in reversed(self._started_handlers):
            await self._call_hook(sub, "on_stop")
        self._started_handlers = []
        if self.journal is not None:
            try:
                report.journal_pending = await self.journal.depth()
            except Exception:
                log.exception("journal depth failed")
            try:
                await self.journal.close()
            except Exception:
                log.exception("journal close failed")
        report.handled = self._handled
        self._groups = []
        self._only = None
        self._parts.clear()
        self._state = BusState.STOPPED
        if report.not_handled:
            log.warning(
                "bus stopped with %d event(s) not handled: %s", len(report.not_handled), report.fates()
            )
        return report

    async def _call_hook(self, sub: Subscription, hook_name: str) -> None:
        """Run `on_start`/`on_stop`; a failure is logged at ERROR naming the handler and swallowed: the
        handler stays subscribed and keeps receiving events (see `BaseHandler`)."""
        try:
            result = getattr(sub.handler, hook_name)()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result
        except Exception as exc:
            log.error(
                "handler %s: %s failed: %s: %s%s",
                sub.name,
                hook_name,
                type(exc).__name__,
                exc,
                "; it stays subscribed and still receives events" if hook_name == "on_start" else "",
                exc_info=True,
                extra={"handler": sub.name},
            )

    def _open_lanes(self) -> None:
        """One ordering group (lanes + budget) per group name (workers start when a lane first gets an
        event)."""
        groups: dict[str, OrderingGroup] = {}
        for sub in self._subs:
            group = groups.get(sub.group)
            if group is None:
                group = groups[sub.group] = OrderingGroup(sub.group, self._nlanes, self.max_in_flight)
            sub.ordering = group
        self._groups = list(groups.values())
        self._multi = len(self._groups) > 1
        self._only = self._groups[0] if len(self._groups) == 1 else None
        self._parts.clear()
        self._lanes_open = True

    # ------------------------------------------------------------------ system events, observers
    def _notify(self, hook: str, *args: Any) -> None:
        for fn in self._hooks[hook]:
            call_hook(fn, *args)

    def _breaker_changed(self, key: str, state: Any) -> None:
        self._notify("on_breaker_change", key, state)

    def _emit_system(self, event: Event | None) -> None:
        """Queue a bus-generated event without ever waiting (a lane must not block on itself)."""
        if event is None:
            return
        if self._state is not BusState.RUNNING and self._state is not BusState.STOPPING:
            return
        parts = self._parts_of(event)
        if not parts:
            return
        if not all(g.inflight < g.limit + SYSTEM_SLACK for g, _ in parts):
            log.warning("bus overloaded: system event %s not delivered: %s", event.type_name, event.payload)
            return
        self._enqueue(event, parts, None)

    def _connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._connection_changed_here, transport, state, detail)
        else:
            self._connection_changed_here(transport, state, detail)

    def _connection_changed_here(self, transport: BaseTransport, state: ConnectionState, detail: str) -> None:
        event = connection_event(transport, state, detail)
        if event is not None:
            log.info("transport %s %s %s", transport.name, state.value, detail)
            self._emit_system(event)

    async def _quarantine(self, record: QuarantineRecord) -> None:
        store = self.quarantine_store
        if store is not None:
            await store.add(record)
        else:
            log.warning(
                "quarantined input from %s (topic %s): %s; %d bytes: %r",
                record.source,
                record.topic,
                record.reason,
                len(record.raw),
                record.raw[:200],
            )
        self._notify("on_quarantine", record)


class _DeliveryHost:
    """What the bus offers its subscriptions (`subscription.DeliveryHost`)."""

    __slots__ = ("_bus", "timing_hooks")

    def __init__(self, bus: AsyncEventBus) -> None:
        self._bus = bus
        #: the bus's own (live) list, read on every policy-path delivery: an attribute, not a property
        self.timing_hooks: Sequence[Callable[..., Any]] = bus._hooks["on_handled"]

    async def call_sync(self, fn: Callable[[Event], Any], event: Event) -> Any:
        ctx = contextvars.copy_context()
        return await self._bus._loop.run_in_executor(self._bus._executor, ctx.run, fn, event)

    def notify(self, hook: str, *args: Any) -> None:
        self._bus._notify(hook, *args)

    def emit_handler_error(self, event: Event, handler: str, error: BaseException, attempt: int) -> None:
        bus = self._bus
        if bus._routes.get(EventType.HANDLER_ERROR, True):
            bus._emit_system(failure_event(EventType.HANDLER_ERROR, event, handler, error, attempt=attempt))

    def emit_dead_letter(
        self, event: Event, handler: str, error: BaseException, attempts: int, entry_id: str
    ) -> None:
        self._bus._emit_system(
            failure_event(
                EventType.EVENT_DEAD_LETTER, event, handler, error, attempts=attempts, entry_id=entry_id
            )
        )


def _left_behind(report: StopReport, event: Event, ack: Ack | None, seq: int) -> None:
    report.left_behind(
        event,
        journaled=bool(seq),
        targeted=ack is not None and ack.targeted,
        submitted=ack is not None,
    )
