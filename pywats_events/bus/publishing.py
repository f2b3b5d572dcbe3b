"""The way in: `publish`, `publish_nowait`, `publish_threadsafe` and a transport's `submit`.

An event is routed to the subscriptions that want it, split by ordering group, and put into the lane of
its key in each group, once every group has room (`admission.py`); otherwise its producer waits in line.
With a journal it is appended instead, and the journal feeders take it from there (`journal_feeder.py`).

The hot path (running, no journal, one ordering group, a known route, room) is `publish` putting the event
straight into its lane, with no call in between: every call per event shows in the throughput. Every
`burst_size()` such events `publish` lets the lanes run once, so a producer that never waits for room
does not pile up its whole budget (see `burst_size`).

`Publishing` is the part of `AsyncEventBus` that does this, built on `LaneWorkers` (it starts a lane's
worker on the lane's first event); the engine sets up the state both use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
from collections.abc import Callable, Sequence
from typing import Any

from .._event import Event
from .._exceptions import BusOverloaded, BusStateError, ConfigurationError
from .._observer import call_hook
from .admission import Ack, Waiter, admits
from .lane_worker import LaneWorkers
from .lanes import OrderingGroup, Parts, Split
from .stop_report import BusState
from .subscription import Subscription

__all__ = ["Publishing"]

log = logging.getLogger("pywats_events.bus")

#: routes and splits are cached per event type / route; the caches stop growing at this size
_CACHE_LIMIT = 10_000


def burst_size() -> int:
    """How many events `publish` puts into the lanes before it lets them run: about what fills a tenth
    of the garbage collector's young generation (an event built the documented way is about seven
    tracked objects), so the collector finds few of them alive.

    A producer whose events are all admitted never suspends otherwise, so its whole budget
    (`max_in_flight`) piles up in the lanes: each young collection then finds thousands of live events
    and promotes them, the older generations fill up, and full collections scan every object of the
    process (measured: 40 % of a publishing loop's time). The bus does not change the process's
    collector settings; it follows them (a raised threshold allows longer bursts, and with the
    collector disabled `publish` does not yield at all)."""
    return max(16, gc.get_threshold()[0] // 10)


class Publishing(LaneWorkers):
    """Accepts events into the lanes of an `AsyncEventBus` (state set up by the engine)."""

    # the two counters written for every event (`_handled` is the lane workers'), as slots: a slot store
    # is measurably cheaper than one into the bus's instance dict (declared here, not in `LaneWorkers`,
    # so that the bus keeps its instance dict)
    __slots__ = ("_burst_left", "_handled")

    max_in_flight: int
    _state: BusState
    _subs: list[Subscription]
    #: event type → the subscriptions that want it
    _routes: dict[Any, tuple[Subscription, ...]]
    #: route → its subscriptions split by ordering group
    _parts: dict[tuple[Subscription, ...], Parts]
    #: lanes per ordering group
    _nlanes: int
    #: publish may go straight into a lane (running, no journal)
    _direct: bool
    #: ... and into the lanes of this, the one group, without splitting
    _fast: OrderingGroup | None
    _accepted_hooks: list[Callable[..., Any]]
    #: `publish_nowait` calls waiting for room
    _overflow_tasks: set[asyncio.Task[None]]
    #: events `publish` may still put into the lanes before it lets them run (counts down from
    #: `burst_size()`: one counter, tested and taken once per event)
    _burst_left: int

    # ------------------------------------------------------------------ routing
    def _route(self, event: Event) -> tuple[Subscription, ...]:
        key = event.event_type
        subs = self._routes.get(key)
        if subs is not None:
            return subs
        name = event.type_name
        system = name.startswith("system.")
        subs = tuple(s for s in self._subs if name in s.event_types or (not system and "*" in s.event_types))
        if len(self._routes) < _CACHE_LIMIT:
            self._routes[key] = subs
        return subs

    def _split(self, subs: tuple[Subscription, ...]) -> Parts:
        """`subs` by ordering group, in subscription order."""
        parts = self._parts.get(subs)
        if parts is None:
            groups: dict[OrderingGroup, list[Subscription]] = {}
            for s in subs:
                assert s.ordering is not None
                groups.setdefault(s.ordering, []).append(s)
            parts = tuple((g, tuple(group_subs)) for g, group_subs in groups.items())
            if len(self._parts) < _CACHE_LIMIT:
                self._parts[subs] = parts
        return parts

    def _parts_of(self, event: Event) -> Parts:
        """`event`'s subscriptions by ordering group (both lookups cached; inlined: every slow path and
        every journal entry comes through here)."""
        subs = self._routes.get(event.event_type)
        if subs is None:
            subs = self._route(event)
        if not subs:
            return ()
        parts = self._parts.get(subs)
        return parts if parts is not None else self._split(subs)

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

    # ------------------------------------------------------------------ publishing
    async def publish(
        self, event: Event, *, handler: str | None = None, timeout: float | None = None
    ) -> None:
        """Accept `event`; waits while the bus is full (backpressure). With a journal, returns once it is
        durable. `handler` delivers only to that handler (dead-letter replay; waits until it finished).
        `timeout` bounds the wait for room (then `BusOverloaded`). Lets the lanes run once every
        `burst_size()` events even when there is room (not with the garbage collector disabled)."""
        if self._burst_left <= 0:
            # one loop turn, so the lanes woken so far handle their events before the collector runs;
            # before taking the event, so that a cancellation here leaves it not accepted (inline: no
            # coroutine per burst when the collector is disabled and there is nothing to wait for)
            self._burst_left = burst_size()
            if gc.isenabled():
                await asyncio.sleep(0)
        # hot path: running, no journal, one ordering group, known route, admitted → straight into its
        # lane (the test is `admits()` and the append is `_push()`, both inlined for the one group; the
        # group's count is the bus's in-flight count: see `LaneWorkers._unfinished`)
        group = self._fast
        if group is not None and handler is None:
            subs = self._routes.get(event.event_type)
            if subs is not None and group.inflight < group.limit and not group.waiting:
                if subs:
                    group.inflight += 1
                    lane = group.lanes[hash(event.ordering_key()) % self._nlanes]
                    lane.q.append((event, subs, None, 0, None))
                    wakeup = lane.wakeup
                    if wakeup is not None:
                        lane.wakeup = None
                        wakeup.set_result(None)
                    elif lane.task is None:
                        self._start_lane(lane)
                    if self._accepted_hooks:
                        for hook in self._accepted_hooks:
                            call_hook(hook, event)
                    self._burst_left -= 1
                return
        if self._state is not BusState.RUNNING:
            self._check_open()
        if handler is not None:
            await self._deliver_now(event, self._targeted(event, handler))
            return
        if self._feeder is not None:
            await self._feeder.append((event,))
            if self._accepted_hooks:
                self._accepted((event,))
            return
        parts = self._parts_of(event)
        if not parts:
            return
        if admits(parts):
            self._enqueue(event, parts, None)
            self._burst_left -= 1
            return
        waiter = Waiter(event, parts, None, self._loop.create_future())
        self._line.join(waiter)
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
            self._line.withdraw(lambda w: w is waiter)
            if isinstance(exc, asyncio.TimeoutError):
                raise BusOverloaded(f"no room for event {event.id} within {timeout}s") from None
            raise

    def publish_nowait(self, event: Event) -> None:
        """Accept `event` without waiting; for code running on the bus loop that cannot await (a sync
        call from inside a handler). Without room the event waits in line in a task; raises
        `BusOverloaded` if more than `max_in_flight` such events are already waiting."""
        self._check_open()
        if self._feeder is None:
            parts = self._parts_of(event)
            if not parts:
                return
            if admits(parts):
                self._enqueue(event, parts, None)
                return
        if len(self._overflow_tasks) >= self.max_in_flight:
            raise BusOverloaded("bus full and too many events waiting for room")
        task = self._loop.create_task(self.publish(event))
        self._overflow_tasks.add(task)
        task.add_done_callback(self._overflow_done)

    def publish_threadsafe(self, event: Event) -> concurrent.futures.Future[None]:
        """`publish` from another thread than the bus loop's: the future resolves once `event` is
        accepted (with a journal: appended), or fails as `publish` would. Wait for it to get
        backpressure; a full bus without a journal accepts `event` as soon as there is room."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._publish_here, event, done)
        return done

    def _publish_here(self, event: Event, done: concurrent.futures.Future[None]) -> None:
        """Loop-side half of `publish_threadsafe`."""
        if not done.set_running_or_notify_cancel():
            return
        try:
            if self._direct:
                parts = self._parts_of(event)
                if not parts or admits(parts):
                    if parts:
                        self._enqueue(event, parts, None)
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
        ack = Ack(self._loop.create_future(), targeted=True)
        self._place(event, self._split(subs), ack)
        await ack.future

    # ------------------------------------------------------------------ submitting (transports)
    async def _submit(self, events: Sequence[Event]) -> None:
        """A transport's batch: accepted when every event is finished (without a journal; so the
        transport acknowledges the broker only then) or appended (with a journal)."""
        self._check_open()
        if not events:
            return
        if self._feeder is not None:
            await self._feeder.append(events)
            if self._accepted_hooks:
                self._accepted(events)
            return
        ack = Ack(self._loop.create_future())
        for event in events:
            parts = self._parts_of(event)
            if parts:
                self._place(event, parts, ack)
        if ack.remaining == 0:
            return
        try:
            await ack.future
        except asyncio.CancelledError:
            # not accepted: take our not-yet-placed events out of the line (placed ones still run)
            self._line.withdraw(lambda w: w.ack is ack)
            raise

    # ------------------------------------------------------------------ into the lanes
    def _place(self, event: Event, parts: Parts, ack: Ack | None) -> None:
        """Into its lanes if admitted, else at the end of the waiting line."""
        if ack is not None:
            ack.remaining += 1
        if admits(parts):
            self._enqueue(event, parts, ack)
        else:
            self._line.join(Waiter(event, parts, ack, None))

    def _admit_waiter(self, w: Waiter) -> None:
        self._enqueue(w.event, w.parts, w.ack)

    def _enqueue(self, event: Event, parts: Parts, ack: Ack | None) -> None:
        """Into the lane of the event's key in each ordering group of `parts` (takes each group's budget;
        counted in flight once). Not for journal entries (see `_hand`)."""
        index = hash(event.ordering_key()) % self._nlanes
        split = Split(len(parts)) if len(parts) > 1 else None
        if self._multi:
            self._inflight += 1
        for group, group_subs in parts:
            group.inflight += 1
            self._push(group.lanes[index], (event, group_subs, ack, 0, split))
        if self._accepted_hooks:
            self._accepted((event,))

    def _hand(self, group: OrderingGroup, event: Event, subs: tuple[Subscription, ...], seq: int) -> None:
        """Journal entry `seq` into `group`'s lane of its key (the journal feeder's way in)."""
        group.inflight += 1
        if self._multi:
            if not any(seq in g.seqs for g in self._groups):
                self._inflight += 1
            group.seqs.add(seq)
        self._push(group.lanes[hash(event.ordering_key()) % self._nlanes], (event, subs, None, seq, None))

    def _accepted(self, events: Sequence[Event]) -> None:
        hooks = self._accepted_hooks
        if hooks:
            for event in events:
                for hook in hooks:
                    call_hook(hook, event)


def _copy_outcome(task: asyncio.Task[None], done: concurrent.futures.Future[None]) -> None:
    if task.cancelled():
        done.set_exception(BusStateError("publish cancelled: bus stopping"))
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(None)
