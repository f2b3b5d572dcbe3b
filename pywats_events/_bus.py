"""`AsyncEventBus`: the asyncio engine that accepts events and runs handlers under their policies.

Design (why it is fast and bounded):

* Work is spread over `max_concurrency` *lanes* by `hash(event.ordering_key())`. Each lane is a deque plus
  one worker task that handles its events strictly in order, so events with the same key keep their order and
  different keys run concurrently. No task per event; a worker drains its whole deque per wakeup.
* Each *ordering group* of handlers has its own set of lanes (workers start on first use). Within a group an
  event's handlers run one after the other; an event wanted by several groups is put into one lane of each
  and finishes (counts against `max_in_flight` once, resolves its acceptance, is marked complete in the
  journal) when the last group is done with it. So one group's outage never holds up another group.
* `max_in_flight` bounds accepted-but-unfinished events across all lanes. A producer that finds no room waits
  in one FIFO line; its event is put into its lane at the moment room frees (so FIFO holds even while
  waiting) and producers are woken in batches (below a low-water mark), not one per finished event.
* With a `journal`, accepted means appended: a feeder task reads pending entries back in sequence order,
  only as far as there is room, and records per-handler progress so a restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ._dispatch import DONE, Subscription, log_extra, system_event
from ._event import Event, EventType
from ._exceptions import BusOverloaded, BusStateError, ConfigurationError
from ._handlers import BaseHandler, FunctionHandler, HandleResult
from ._log_context import Delivery, current_delivery
from ._observer import HOOK_NAMES, BusObserver, overrides
from .journal._protocol import BufferedMarks, Journal
from .policies import DeadLetterQueue, ErrorPolicy, RetryPolicy
from .policies._dead_letter import DeadLetterStore
from .transports._base import BaseTransport, ConnectionState, QuarantineRecord

__all__ = ["DEFAULT_RETRY_POLICY", "AsyncEventBus", "BusState", "StopReport"]

log = logging.getLogger("pywats_events.bus")

#: used for handlers that bring no retry policy of their own
DEFAULT_RETRY_POLICY = RetryPolicy(max_retries=2, initial_delay=0.2, max_delay=30.0)

_SYSTEM_SLACK = 1024  # system events may exceed max_in_flight by this much (they must never block a lane)


class BusState(str, enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class StopReport:
    """What `stop()` left behind. `not_handled` events were accepted but not finished by every handler;
    with a journal they stay in it (`journal_pending` incomplete entries) and resume on the next start."""

    handled: int = 0
    not_handled: list[Event] = field(default_factory=list)
    timed_out: bool = False
    journal_pending: int | None = None
    #: how many of `not_handled` are journal entries (the rest are not kept anywhere by the bus)
    kept_in_journal: int = 0
    #: how many of `not_handled` were targeted deliveries (`publish(handler=...)`, e.g. dead-letter
    #: replay): never journaled; their `publish` raised, so the caller still has them
    targeted: int = 0
    #: how many of `not_handled` were submitted by a transport without a journal: `submit` raised, so
    #: the transport did not acknowledge them and the broker keeps them
    refused: int = 0

    @property
    def clean(self) -> bool:
        return not self.not_handled and not self.journal_pending


class _Ack:
    """Counts down the events of one `submit` call (or one targeted `publish`: `targeted`); the future
    resolves when all are finished."""

    __slots__ = ("future", "remaining", "targeted")

    def __init__(self, future: asyncio.Future[None], targeted: bool = False) -> None:
        self.future = future
        self.remaining = 0
        self.targeted = targeted

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Split:
    """An event handed to the lanes of several ordering groups: it finishes when the last group is done."""

    __slots__ = ("remaining",)

    def __init__(self, parts: int) -> None:
        self.remaining = parts


class _Waiter:
    __slots__ = ("ack", "cancelled", "event", "future", "subs")

    def __init__(
        self,
        event: Event,
        subs: tuple[Subscription, ...],
        ack: _Ack | None,
        future: asyncio.Future[None] | None,
    ) -> None:
        self.event = event
        self.subs = subs
        self.ack = ack
        self.future = future
        self.cancelled = False


# (event, subscriptions of one group still to run, submit-ack or None, journal seq or 0,
#  shared countdown when the event also went to other groups' lanes, else None)
_Item = tuple[Event, tuple[Subscription, ...], "_Ack | None", int, "_Split | None"]
# the subscriptions of one route split by ordering group: ((group lanes, group subscriptions), ...)
_Parts = tuple[tuple[list["_Lane"], tuple[Subscription, ...]], ...]


class _Lane:
    __slots__ = ("q", "task", "wakeup")

    def __init__(self) -> None:
        self.q: deque[_Item] = deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class _Context:
    """The `TransportContext` the bus hands to its transports (also usable directly: `bus.context`)."""

    def __init__(self, bus: AsyncEventBus) -> None:
        self._bus = bus

    async def submit(self, events: Sequence[Event]) -> None:
        await self._bus._submit(events)

    async def quarantine(self, record: QuarantineRecord) -> None:
        await self._bus._quarantine(record)

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        self._bus._connection_changed(transport, state, detail)


class AsyncEventBus:
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
        self._journal_cache_size = journal_cache or max_in_flight

        self._state = BusState.NEW
        self._subs: list[Subscription] = []
        self._routes: dict[Any, tuple[Subscription, ...]] = {}
        self._transports: list[BaseTransport] = []
        self._observers: list[BusObserver] = []
        self._hooks: dict[str, list[Callable[..., Any]]] = {h: [] for h in HOOK_NAMES}
        self.context = _Context(self)

        #: the lanes of every ordering group; `_lanes` is the only group's (hot path) or empty
        self._lane_sets: dict[str, list[_Lane]] = {}
        self._lanes: list[_Lane] = []
        self._nlanes = max_concurrency
        #: more than one ordering group: events are split across the groups' lanes
        self._multi = False
        self._parts: dict[tuple[Subscription, ...], _Parts] = {}
        self._lanes_open = False
        self._inflight = 0
        self._low_water = max(0, max_in_flight - max(1, max_in_flight // 4))
        self._waiters: deque[_Waiter] = deque()
        self._handled = 0
        self._drain_future: asyncio.Future[None] | None = None
        #: publish may go straight into a lane (running, no journal)
        self._direct = False
        #: ... and into the one group's lanes without splitting
        self._fast = False
        #: finished events must wake someone (journal feeder, stop() waiting for the drain)
        self._signal_finish = False
        self._accepted_hooks: list[Callable[..., Any]] = self._hooks["on_accepted"]
        self._overflow_tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._loop_thread: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._started_handlers: list[Subscription] = []

        # journal feeding
        self._feeder: asyncio.Task[None] | None = None
        self._feed_signal: asyncio.Event | None = None
        self._cache: deque[tuple[int, Event]] = deque()
        self._cache_overflow = True
        self._cache_drops = 0
        self._next_ticket = 0
        self._released_ticket = 0
        self._appended: dict[int, list[tuple[int, Event]]] = {}
        #: highest seq handed to a lane (by the feeder or straight from `_submit`)
        self._fed_seq = 0

    # ------------------------------------------------------------------ configuration
    @property
    def state(self) -> BusState:
        return self._state

    @property
    def in_flight(self) -> int:
        """Accepted events not yet finished by every handler."""
        return self._inflight

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
                        h._func,
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
            if self.journal is not None:
                self._feed_signal = asyncio.Event()
                self._cache.clear()
                self._appended.clear()
                self._next_ticket = self._released_ticket = 0
                self._fed_seq = 0
                self._cache_overflow = True  # resume: read what the journal holds first
                self._feeder = asyncio.create_task(self._feed(), name="pywats-journal-feeder")
            self._state = BusState.RUNNING
            self._direct = self.journal is None
            self._fast = self._direct and not self._multi
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
        self._fast = False
        self._signal_finish = True
        for t in reversed(self._transports):
            try:
                await t.stop()
            except Exception:
                log.exception("transport %s failed to stop", t.name)
        if self._feeder is not None:
            self._feeder.cancel()
            await asyncio.gather(self._feeder, return_exceptions=True)
            self._feeder = None
        # drain
        if self._inflight or self._waiters:
            self._drain_future = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drain_future), timeout)
            except asyncio.TimeoutError:
                report.timed_out = True
            self._drain_future = None
        for task in list(self._overflow_tasks):
            task.cancel()
        # stop the lanes; whatever is left was not handled
        self._lanes_open = False
        lanes = [lane for group in self._lane_sets.values() for lane in group]
        tasks = [lane.task for lane in lanes if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._overflow_tasks, return_exceptions=True)
        gone = BusStateError("bus stopped before the event was handled")
        reported: set[int] = set()  # an event left in the lanes of several groups is reported once
        for lane in lanes:
            for event, _subs, ack, seq, split in lane.q:
                if split is not None:
                    if id(split) in reported:
                        continue
                    reported.add(id(split))
                _left_behind(report, event, ack, seq)
                if ack is not None:
                    ack.fail(gone)
            lane.q.clear()
        while self._waiters:
            w = self._waiters.popleft()
            if not w.cancelled:
                _left_behind(report, w.event, w.ack, 0)
                if w.ack is not None:
                    w.ack.fail(gone)
                if w.future is not None and not w.future.done():
                    w.future.set_exception(gone)
        self._inflight = 0
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
        self._lanes = []
        self._lane_sets = {}
        self._parts.clear()
        self._state = BusState.STOPPED
        if report.not_handled:
            log.warning(
                "bus stopped with %d event(s) not handled: %s", len(report.not_handled), _fates(report)
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
        """One set of lanes per ordering group (workers start when a lane first gets an event)."""
        self._lane_sets = {}
        for sub in self._subs:
            lanes = self._lane_sets.get(sub.group)
            if lanes is None:
                lanes = self._lane_sets[sub.group] = [_Lane() for _ in range(self._nlanes)]
            sub.lanes = lanes
        self._multi = len(self._lane_sets) > 1
        self._lanes = next(iter(self._lane_sets.values())) if len(self._lane_sets) == 1 else []
        self._parts.clear()
        self._lanes_open = True

    def _start_lane(self, lane: _Lane) -> None:
        if self._lanes_open:
            lane.task = self._loop.create_task(self._run_lane(lane), name="pywats-lane")

    def _split(self, subs: tuple[Subscription, ...]) -> _Parts:
        parts = self._parts.get(subs)
        if parts is None:
            groups: dict[str, list[Subscription]] = {}
            for s in subs:
                groups.setdefault(s.group, []).append(s)
            parts = tuple((g[0].lanes, tuple(g)) for g in groups.values())
            if len(self._parts) < 10_000:
                self._parts[subs] = parts
        return parts

    # ------------------------------------------------------------------ publishing
    def _route(self, event: Event) -> tuple[Subscription, ...]:
        key = event.event_type
        subs = self._routes.get(key)
        if subs is not None:
            return subs
        name = event.type_name
        system = name.startswith("system.")
        subs = tuple(s for s in self._subs if name in s.event_types or (not system and "*" in s.event_types))
        if len(self._routes) < 10_000:
            self._routes[key] = subs
        return subs

    def _targeted(self, event: Event, handler: str | None) -> tuple[Subscription, ...]:
        if handler is None:
            return self._route(event)
        for s in self._subs:
            if s.name == handler:
                return (s,)
        names = ", ".join(s.name for s in self._subs) or "none"
        raise ConfigurationError("handler", f"no subscribed handler named {handler!r} (subscribed: {names})")

    def _check_open(self) -> None:
        if self._state is not BusState.RUNNING and self._state is not BusState.STOPPING:
            raise BusStateError(f"bus is {self._state.value}; call start() first")

    async def publish(
        self, event: Event, *, handler: str | None = None, timeout: float | None = None
    ) -> None:
        """Accept `event`; waits while the bus is full (backpressure). With a journal, returns once it is
        durable. `handler` delivers only to that handler (dead-letter replay; waits until it finished).
        `timeout` bounds the wait for room (then `BusOverloaded`)."""
        # hot path: running, no journal, one ordering group, known route, room and nobody waiting →
        # straight into its lane
        if handler is None and self._fast:
            subs = self._routes.get(event.event_type)
            if subs is not None and self._inflight < self.max_in_flight and not self._waiters:
                if subs:
                    self._inflight += 1
                    lane = self._lanes[hash(event.ordering_key()) % self._nlanes]
                    lane.q.append((event, subs, None, 0, None))
                    wakeup = lane.wakeup
                    if wakeup is not None:
                        lane.wakeup = None
                        wakeup.set_result(None)
                    elif lane.task is None:
                        self._start_lane(lane)
                    if self._accepted_hooks:
                        for hook in self._accepted_hooks:
                            _safe(hook, event)
                return
        if self._state is not BusState.RUNNING:
            self._check_open()
        if handler is not None:
            await self._deliver_now(event, self._targeted(event, handler))
            return
        if self.journal is not None:
            await self._submit((event,))
            return
        subs = self._route(event)
        if not subs:
            return
        if self._inflight < self.max_in_flight and not self._waiters:
            self._inflight += 1
            self._enqueue(event, subs, None, 0)
            return
        waiter = _Waiter(event, subs, None, self._loop.create_future())
        self._waiters.append(waiter)
        try:
            if timeout is None:
                await waiter.future  # type: ignore[misc]
            else:
                await asyncio.wait_for(asyncio.shield(waiter.future), timeout)  # type: ignore[arg-type]
        except (asyncio.CancelledError, asyncio.TimeoutError) as exc:
            if (
                waiter.future is not None
                and waiter.future.done()
                and not waiter.future.cancelled()
                and waiter.future.exception() is None
            ):
                return  # it made it into a lane after all: accepted
            self._withdraw(lambda w: w is waiter)
            if isinstance(exc, asyncio.TimeoutError):
                raise BusOverloaded(f"no room for event {event.id} within {timeout}s") from None
            raise

    def publish_nowait(self, event: Event) -> None:
        """Accept `event` without waiting; for code running on the bus loop that cannot await (a sync
        call from inside a handler). Without room the event waits in line in a task; raises
        `BusOverloaded` if more than `max_in_flight` such events are already waiting."""
        self._check_open()
        if self.journal is None and self._inflight < self.max_in_flight and not self._waiters:
            subs = self._route(event)
            if subs:
                self._inflight += 1
                self._enqueue(event, subs, None, 0)
            return
        if len(self._overflow_tasks) >= self.max_in_flight:
            raise BusOverloaded("bus full and too many events waiting for room")
        task = self._loop.create_task(self.publish(event))
        self._overflow_tasks.add(task)
        task.add_done_callback(self._overflow_done)

    def _publish_from_thread(self, event: Event, done: concurrent.futures.Future[None]) -> None:
        """Loop-side half of a blocking publish from another thread: resolves `done` once accepted."""
        if not done.set_running_or_notify_cancel():
            return
        try:
            if self._direct:
                subs = self._route(event)
                if self._inflight < self.max_in_flight and not self._waiters:
                    if subs:
                        self._inflight += 1
                        self._enqueue(event, subs, None, 0)
                    done.set_result(None)
                    return
            task = self._loop.create_task(self.publish(event))
        except BaseException as exc:
            done.set_exception(exc)
            return
        task.add_done_callback(lambda t: _copy_outcome(t, done))

    def _overflow_done(self, task: asyncio.Task[None]) -> None:
        self._overflow_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("queued publish failed: %r", task.exception())

    async def _deliver_now(self, event: Event, subs: tuple[Subscription, ...]) -> None:
        ack = _Ack(self._loop.create_future(), targeted=True)
        self._place(event, subs, ack)
        await ack.future

    def _place(self, event: Event, subs: tuple[Subscription, ...], ack: _Ack | None) -> None:
        """Into a lane if there is room and nobody waits, else at the end of the waiting line."""
        if ack is not None:
            ack.remaining += 1
        if self._inflight < self.max_in_flight and not self._waiters:
            self._inflight += 1
            self._enqueue(event, subs, ack, 0)
        else:
            self._waiters.append(_Waiter(event, subs, ack, None))

    def _enqueue(self, event: Event, subs: tuple[Subscription, ...], ack: _Ack | None, seq: int) -> None:
        """Into the lane of the event's key in each ordering group of `subs` (counted in flight once)."""
        index = hash(event.ordering_key()) % self._nlanes
        parts = self._split(subs) if self._multi else ((subs[0].lanes, subs),)
        split = _Split(len(parts)) if len(parts) > 1 else None
        for lanes, group_subs in parts:
            lane = lanes[index]
            lane.q.append((event, group_subs, ack, seq, split))
            wakeup = lane.wakeup
            if wakeup is not None:
                lane.wakeup = None
                wakeup.set_result(None)
            elif lane.task is None:
                self._start_lane(lane)
        hooks = self._hooks["on_accepted"]
        if hooks and seq == 0:
            for hook in hooks:
                _safe(hook, event)

    async def _submit(self, events: Sequence[Event]) -> None:
        self._check_open()
        if not events:
            return
        journal = self.journal
        if journal is not None:
            # appends may resume out of call order (group commit); the cache must stay in seq order,
            # so results are released to it in the order the calls were made
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                seqs = await journal.append(events)
            except BaseException:
                self._appended[ticket] = []
                self._release_appended()
                raise
            if (
                ticket == self._released_ticket
                and not self._cache
                and not self._cache_overflow
                and self._feeder is not None
                and self._inflight + len(seqs) <= self.max_in_flight
            ):
                # the feeder is caught up and there is room: straight into the lanes (same order, no cache)
                self._released_ticket += 1
                self._place_appended(seqs, events, journal)
                cached = bool(self._appended)
                if cached:
                    self._release_appended()
            else:
                self._appended[ticket] = list(zip(seqs, events, strict=True))
                self._release_appended()
                cached = True
            hooks = self._accepted_hooks
            if hooks:
                for event in events:
                    for hook in hooks:
                        _safe(hook, event)
            if cached and self._feed_signal is not None:
                self._feed_signal.set()
            return
        ack = _Ack(self._loop.create_future())
        for event in events:
            subs = self._route(event)
            if subs:
                self._place(event, subs, ack)
        if ack.remaining == 0:
            return
        try:
            await ack.future
        except asyncio.CancelledError:
            # not accepted: take our not-yet-placed events out of the line (placed ones still run)
            self._withdraw(lambda w: w.ack is ack)
            raise

    def _withdraw(self, which: Callable[[_Waiter], bool]) -> None:
        """Take waiters out of the line (their producer gave up) and let the ones behind them move up."""
        for w in self._waiters:
            if which(w):
                w.cancelled = True
        self._waiters = deque(w for w in self._waiters if not w.cancelled)
        if self._waiters and self._inflight < self.max_in_flight:
            self._refill()

    def _place_appended(self, seqs: Sequence[int], events: Sequence[Event], journal: Journal) -> None:
        for seq, event in zip(seqs, events, strict=True):
            if seq <= self._fed_seq:
                continue  # the feeder already read it back from the journal
            subs = self._route(event)
            if subs:
                self._inflight += 1
                self._enqueue(event, subs, None, seq)
            else:
                self._complete_later(journal, seq)
        self._fed_seq = max(self._fed_seq, seqs[-1])

    def _complete_later(self, journal: Journal, seq: int) -> None:
        """An entry no handler wants is complete at once."""
        if isinstance(journal, BufferedMarks):
            try:
                journal.mark_complete_nowait(seq)
            except Exception:
                log.exception("journal.mark_complete failed for seq %d", seq)
        else:
            task = self._loop.create_task(journal.mark_complete(seq))
            self._overflow_tasks.add(task)
            task.add_done_callback(self._overflow_done)

    def _release_appended(self) -> None:
        cache = self._cache
        while self._released_ticket in self._appended:
            for item in self._appended.pop(self._released_ticket):
                if len(cache) < self._journal_cache_size:
                    cache.append(item)
                else:
                    self._cache_overflow = True
                    self._cache_drops += 1
            self._released_ticket += 1

    # ------------------------------------------------------------------ running
    async def _run_lane(self, lane: _Lane) -> None:
        q = lane.q
        loop = asyncio.get_running_loop()
        finished = self._finished
        journal = self.journal
        marks = journal if isinstance(journal, BufferedMarks) else None
        # log lines emitted while a handler runs carry its event's ids (see _log_context); this also
        # replaces what a lane started from inside another lane's handler call would inherit
        now = Delivery()
        current_delivery.set(now)
        while True:
            if not q:
                now.event = None
                lane.wakeup = fut = loop.create_future()
                await fut
                continue
            event, subs, ack, seq, split = q[0]
            for sub in subs:
                now.event = event
                now.handler = sub.name
                breaker = sub.breaker
                if sub.fast and (breaker is None or not breaker._circuits):
                    # nothing to ask or time: call inline; policies step in only on failure
                    try:
                        if sub.is_async:
                            await sub.call(event)
                        else:
                            await sub.invoke(self, event)
                        outcome = DONE
                    except Exception as exc:
                        try:
                            outcome = await sub.deliver(self, event, exc)
                        except Exception as bug:
                            log.exception(
                                "recovery of %s in %s failed",
                                event.id,
                                sub.name,
                                extra=log_extra(event, sub.name),
                            )
                            outcome = await sub.give_up(self, event, bug)
                else:
                    try:
                        outcome = await sub.deliver(self, event)
                    except Exception as exc:  # a bug in a hook (e.g. breaker_key) must not kill the lane
                        log.exception(
                            "delivery of %s to %s failed outside the handler",
                            event.id,
                            sub.name,
                            extra=log_extra(event, sub.name),
                        )
                        outcome = await sub.give_up(self, event, exc)
                # the last handler's progress is implied by mark_complete (both are buffered alike)
                if (
                    seq
                    and journal is not None
                    and (sub is not subs[-1] or (split is not None and split.remaining > 1))
                ):
                    try:
                        if marks is not None:
                            marks.mark_handled_nowait(seq, sub.name, outcome)
                        else:
                            await journal.mark_handled(seq, sub.name, outcome)
                    except Exception:
                        log.exception(
                            "journal.mark_handled failed for seq %d",
                            seq,
                            extra=log_extra(event, sub.name, seq=seq),
                        )
            q.popleft()
            if split is not None:
                split.remaining -= 1
                if split.remaining:
                    continue  # other ordering groups still have it
            if seq and journal is not None:
                try:
                    if marks is not None:
                        marks.mark_complete_nowait(seq)
                    else:
                        await journal.mark_complete(seq)
                except Exception:
                    log.exception(
                        "journal.mark_complete failed for seq %d", seq, extra=log_extra(event, seq=seq)
                    )
            self._handled += 1
            self._inflight -= 1
            if ack is not None or self._waiters or self._signal_finish:
                finished(ack)

    def _finished(self, ack: _Ack | None) -> None:
        """Bookkeeping after an event left its lane (counters already updated by the lane)."""
        if ack is not None:
            ack.remaining -= 1
            if ack.remaining == 0 and not ack.future.done():
                ack.future.set_result(None)
        if self._inflight <= self._low_water:
            if self._waiters:
                self._refill()
            if self._feed_signal is not None and (self._cache or self._cache_overflow):
                self._feed_signal.set()  # only when the feeder has something to feed
        if self._drain_future is not None and self._inflight == 0 and not self._waiters:
            if not self._drain_future.done():
                self._drain_future.set_result(None)

    def _refill(self) -> None:
        waiters = self._waiters
        while waiters and self._inflight < self.max_in_flight:
            w = waiters.popleft()
            if w.cancelled:
                continue
            self._inflight += 1
            self._enqueue(w.event, w.subs, w.ack, 0)
            if w.future is not None and not w.future.done():
                w.future.set_result(None)

    async def _feed(self) -> None:
        """Journal → lanes, in seq order, never more than there is room for."""
        journal = self.journal
        signal = self._feed_signal
        assert journal is not None and signal is not None
        while True:
            signal.clear()
            room = self.max_in_flight - self._inflight
            if room <= 0:
                await signal.wait()
                continue
            batch: list[tuple[int, Event, frozenset[str]]] = []
            if self._cache_overflow:
                drops = self._cache_drops
                try:
                    entries = await journal.read_pending(self._fed_seq, room)
                except Exception:
                    log.exception("journal.read_pending failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                batch = [(e.seq, e.event, e.handled) for e in entries]
                if len(entries) < room and drops == self._cache_drops:
                    self._cache_overflow = False
            else:
                cache = self._cache
                while cache and len(batch) < room:
                    seq, event = cache.popleft()
                    if seq > self._fed_seq:
                        batch.append((seq, event, frozenset()))
            if not batch:
                if self._cache_overflow or self._cache:
                    continue
                await signal.wait()
                continue
            # no await from here on: `_submit` may place later entries itself once the feeder caught up
            for seq, event, handled in batch:
                if seq <= self._fed_seq:
                    continue
                self._fed_seq = seq
                subs = self._route(event)
                if handled:
                    subs = tuple(s for s in subs if s.name not in handled)
                if not subs:
                    self._complete_later(journal, seq)
                    continue
                self._inflight += 1
                self._enqueue(event, subs, None, seq)
            # drop cached copies we have now fed from the journal
            last = self._fed_seq
            while self._cache and self._cache[0][0] <= last:
                self._cache.popleft()

    # ------------------------------------------------------------------ system events, observers
    def _notify(self, hook: str, *args: Any) -> None:
        for fn in self._hooks[hook]:
            _safe(fn, *args)

    def _breaker_changed(self, key: str, state: Any) -> None:
        self._notify("on_breaker_change", key, state)

    def _emit_system(self, event: Event) -> None:
        """Queue a bus-generated event without ever waiting (a lane must not block on itself)."""
        if self._state is not BusState.RUNNING and self._state is not BusState.STOPPING:
            return
        subs = self._route(event)
        if not subs:
            return
        if self._inflight >= self.max_in_flight + _SYSTEM_SLACK:
            log.warning("bus overloaded: system event %s not delivered: %s", event.type_name, event.payload)
            return
        self._inflight += 1
        self._enqueue(event, subs, None, 0)

    def _emit_handler_error(self, event: Event, handler: str, error: BaseException, attempt: int) -> None:
        if not self._routes.get(EventType.HANDLER_ERROR, True):
            return
        self._emit_failure(EventType.HANDLER_ERROR, event, handler, error, attempt=attempt)

    def _emit_dead_letter(
        self, event: Event, handler: str, error: BaseException, attempts: int, entry_id: str
    ) -> None:
        self._emit_failure(
            EventType.EVENT_DEAD_LETTER, event, handler, error, attempts=attempts, entry_id=entry_id
        )

    def _emit_failure(
        self, kind: EventType, event: Event, handler: str, error: BaseException, **details: Any
    ) -> None:
        """A HANDLER_ERROR / EVENT_DEAD_LETTER system event describing `error` of `handler` on `event`.
        Failures of system-event handlers are never reported as new system events."""
        if event.type_name.startswith("system."):
            return
        payload = {
            "handler": handler,
            "event_id": event.id,
            "event_type": event.type_name,
            "error": str(error) or repr(error),
            "error_type": type(error).__qualname__,
            **details,
        }
        self._emit_system(system_event(kind, payload, event, f"system:{event.ordering_key()}"))

    def _connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._connection_changed_here, transport, state, detail)
        else:
            self._connection_changed_here(transport, state, detail)

    def _connection_changed_here(self, transport: BaseTransport, state: ConnectionState, detail: str) -> None:
        if state is ConnectionState.CONNECTED:
            etype = EventType.TRANSPORT_CONNECTED
        elif state in (ConnectionState.DISCONNECTED, ConnectionState.CLOSED):
            etype = EventType.TRANSPORT_DISCONNECTED
        else:
            return
        log.info("transport %s %s %s", transport.name, state.value, detail)
        self._emit_system(
            system_event(
                etype,
                {"transport": transport.name, "state": state.value, "detail": detail},
                None,
                f"transport:{transport.name}",
            )
        )

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


def _left_behind(report: StopReport, event: Event, ack: _Ack | None, seq: int) -> None:
    report.not_handled.append(event)
    if seq:
        report.kept_in_journal += 1
    elif ack is not None and ack.targeted:
        report.targeted += 1
    elif ack is not None:
        report.refused += 1


def _fates(report: StopReport) -> str:
    """What becomes of the unfinished events, kind by kind (only the kinds present)."""
    lost = len(report.not_handled) - report.kept_in_journal - report.targeted - report.refused
    parts = []
    if report.kept_in_journal:
        parts.append(f"{report.kept_in_journal} kept in the journal (they resume on the next start)")
    if report.targeted:
        parts.append(
            f"{report.targeted} targeted deliveries (publish(handler=...), e.g. dead-letter replay): not"
            " journaled, their publish() failed (a replayed dead letter stays in the DLQ)"
        )
    if report.refused:
        parts.append(f"{report.refused} refused to their transport (not acknowledged: the broker keeps them)")
    if lost:
        parts.append(f"{lost} lost (accepted without a journal, or bus-generated system events)")
    return "; ".join(parts)


def _copy_outcome(task: asyncio.Task[None], done: concurrent.futures.Future[None]) -> None:
    if task.cancelled():
        done.set_exception(BusStateError("publish cancelled: bus stopping"))
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(None)


def _safe(hook: Callable[..., Any], *args: Any) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("observer hook %r raised", hook)
