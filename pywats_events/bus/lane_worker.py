"""The lane workers: each lane's run loop, and the bookkeeping after an event left a lane.

One worker task per lane takes the lane's events in order and runs each one's handlers (of the lane's
ordering group) one after the other. The happy path calls the handler inline; `Subscription.deliver`
steps in only when a policy needs attention. After an event, the worker gives its group's budget back,
marks the journal entry handled or complete, resolves the acceptance of a `submit` and lets in waiting
producers (admission) or the group's journal feeder.

`LaneWorkers` is the part of `AsyncEventBus` that does this: a role the engine is built from (as
`Publishing` is for the way in), so that the per-event path stays plain attribute access on one object.
"""

from __future__ import annotations

import asyncio
import logging

from .._event import Event
from .._log_context import Delivery, current_delivery
from ..journal._protocol import BufferedMarks, Journal
from ..tracing import enabled as tracing_enabled
from ..tracing import handler_span
from .admission import Ack, Line
from .journal_feeder import JournalFeeder
from .lanes import Item, Lane, OrderingGroup
from .subscription import DONE, DeliveryHost, Subscription, log_extra

__all__ = ["LaneWorkers"]

log = logging.getLogger("pywats_events.bus")


class LaneWorkers:
    """Runs the lanes of an `AsyncEventBus` (its state is set up by `AsyncEventBus.__init__`/`start`)."""

    journal: Journal | None
    _loop: asyncio.AbstractEventLoop
    #: what the subscriptions may ask of the bus
    _host: DeliveryHost
    _feeder: JournalFeeder | None
    #: every ordering group (lanes + budget); more than one: `_multi`
    _groups: list[OrderingGroup]
    _multi: bool
    #: lane workers may start (the bus is not stopping them)
    _lanes_open: bool
    #: with several ordering groups: accepted events not yet finished by every group that took them
    #: (with one, that group's own count is the same number: see `_unfinished`)
    _inflight: int
    _handled: int
    _line: Line
    #: set by `stop()` while it waits for the accepted events to finish
    _drain_future: asyncio.Future[None] | None
    #: finished events must wake someone (journal feeders, stop() waiting for the drain)
    _signal_finish: bool

    def _unfinished(self) -> int:
        """Accepted events not yet finished by every group that took them. With one ordering group that is
        the group's count, so the per-event path keeps one counter (the bus-wide one only with several)."""
        if self._multi:
            return self._inflight
        return self._groups[0].inflight if self._groups else 0

    def _push(self, lane: Lane, item: Item) -> None:
        """Into `lane`, waking its worker (or starting it on the lane's first event)."""
        lane.q.append(item)
        wakeup = lane.wakeup
        if wakeup is not None:
            lane.wakeup = None
            wakeup.set_result(None)
        elif lane.task is None:
            self._start_lane(lane)

    def _start_lane(self, lane: Lane) -> None:
        if self._lanes_open:
            lane.task = self._loop.create_task(self._run_lane(lane), name="pywats-lane")

    async def _run_lane(self, lane: Lane) -> None:
        q = lane.q
        group = lane.group
        loop = asyncio.get_running_loop()
        host = self._host
        feeder = self._feeder
        journal = self.journal
        marks = journal if isinstance(journal, BufferedMarks) else None
        multi = self._multi
        # log lines emitted while a handler runs carry its event's ids (see _log_context); this also
        # replaces what a lane started from inside another lane's handler call would inherit
        now = Delivery()
        current_delivery.set(now)
        # whether a tracer provider is configured is looked at when the lane starts and wakes up, not per
        # event; without one, the event itself is not even touched (its metadata may be cold in memory)
        tracing = tracing_enabled()
        while True:
            if not q:
                now.event = None
                lane.wakeup = fut = loop.create_future()
                await fut
                tracing = tracing_enabled()
                continue
            event, subs, ack, seq, split = q[0]
            # only an event that carries a trace context (from its message) is traced
            traced = event.metadata.trace_context if tracing else None
            for sub in subs:
                now.event = event
                now.handler = sub.name
                breaker = sub.breaker
                if traced:
                    with handler_span(event, sub.name) as span:
                        outcome = await _deliver(host, sub, event)
                        span.set_attribute("pywats.outcome", outcome)
                        if outcome != DONE:
                            span.fail(outcome)
                elif sub.fast and (breaker is None or breaker.idle):
                    # nothing to ask or time: call inline; policies step in only on failure
                    try:
                        if sub.is_async:
                            await sub.call(event)
                        else:
                            await sub.invoke(host, event)
                        outcome = DONE
                    except Exception as exc:
                        try:
                            outcome = await sub.deliver(host, event, exc)
                        except Exception as bug:
                            log.exception(
                                "recovery of %s in %s failed",
                                event.id,
                                sub.name,
                                extra=log_extra(event, sub.name),
                            )
                            outcome = await sub.give_up(host, event, bug)
                else:
                    try:
                        outcome = await sub.deliver(host, event)
                    except Exception as exc:  # a bug in a hook (e.g. breaker_key) must not kill the lane
                        log.exception(
                            "delivery of %s to %s failed outside the handler",
                            event.id,
                            sub.name,
                            extra=log_extra(event, sub.name),
                        )
                        outcome = await sub.give_up(host, event, exc)
                if seq and sub is not subs[-1]:
                    await _mark_handled(journal, marks, seq, event, sub.name, outcome)
            q.popleft()
            group.inflight -= 1
            if seq:
                assert feeder is not None
                elsewhere = False  # another group still has the entry in its lanes
                if multi:
                    group.seqs.discard(seq)
                    complete = feeder.done_elsewhere(event, seq, group)
                    elsewhere = not complete and any(seq in g.seqs for g in self._groups)
                else:
                    complete = True
                if complete:
                    # the last handler's progress is implied by mark_complete (both are buffered alike)
                    if marks is not None:  # no coroutine per event when the journal buffers its marks
                        try:
                            marks.mark_complete_nowait(seq)
                        except Exception:
                            _mark_failed("mark_complete", seq, event)
                    else:
                        await _mark_complete(journal, seq, event)
                    self._handled += 1
                else:
                    await _mark_handled(journal, marks, seq, event, subs[-1].name, outcome)
                if multi and not elsewhere:
                    self._inflight -= 1
                self._after(group, ack)
                continue
            if split is not None:
                split.remaining -= 1
                if split.remaining:
                    if group.waiting and group.inflight <= group.low_water:
                        self._after(group, None)
                    continue  # other ordering groups still have it
            self._handled += 1
            if multi:
                self._inflight -= 1
            # `_after` has nothing to do for waiting producers until the group is down to its low water
            if (
                ack is not None
                or self._signal_finish
                or (group.waiting and group.inflight <= group.low_water)
            ):
                self._after(group, ack)

    def _after(self, group: OrderingGroup, ack: Ack | None) -> None:
        """Bookkeeping after an event left `group`'s lane (counters already updated by the lane)."""
        if ack is not None:
            ack.done_one()
        if group.inflight <= group.low_water:
            if group.waiting:
                self._line.refill()
            feeder = self._feeder
            if feeder is not None and (group.from_journal or feeder.cache):  # else nothing to feed
                feeder.wake(group)
        # `_unfinished()` inlined: `group` is the one group when there is only one
        if (
            self._drain_future is not None
            and not (self._inflight if self._multi else group.inflight)
            and not self._line
        ):
            if not self._drain_future.done():
                self._drain_future.set_result(None)


async def _deliver(host: DeliveryHost, sub: Subscription, event: Event) -> str:
    """What the lane does inline for one handler (kept apart for the traced path only: the untraced one
    stays free of the extra call)."""
    breaker = sub.breaker
    if sub.fast and (breaker is None or breaker.idle):
        try:
            await sub.invoke(host, event)
            return DONE
        except Exception as exc:
            try:
                return await sub.deliver(host, event, exc)
            except Exception as bug:
                log.exception(
                    "recovery of %s in %s failed", event.id, sub.name, extra=log_extra(event, sub.name)
                )
                return await sub.give_up(host, event, bug)
    try:
        return await sub.deliver(host, event)
    except Exception as exc:  # a bug in a hook (e.g. breaker_key) must not kill the lane
        log.exception(
            "delivery of %s to %s failed outside the handler",
            event.id,
            sub.name,
            extra=log_extra(event, sub.name),
        )
        return await sub.give_up(host, event, exc)


async def _mark_handled(
    journal: Journal | None, marks: BufferedMarks | None, seq: int, event: Event, handler: str, outcome: str
) -> None:
    try:
        if marks is not None:
            marks.mark_handled_nowait(seq, handler, outcome)
        elif journal is not None:
            await journal.mark_handled(seq, handler, outcome)
    except Exception:
        log.exception("journal.mark_handled failed for seq %d", seq, extra=log_extra(event, handler, seq=seq))


async def _mark_complete(journal: Journal | None, seq: int, event: Event) -> None:
    try:
        if journal is not None:
            await journal.mark_complete(seq)
    except Exception:
        _mark_failed("mark_complete", seq, event)


def _mark_failed(what: str, seq: int, event: Event) -> None:
    log.exception("journal.%s failed for seq %d", what, seq, extra=log_extra(event, seq=seq))
