"""`BrokerSettlement`: in distributed mode, what becomes of a message once its handlers finished.

* every handler succeeded → acknowledged;
* a handler failed transiently → a copy goes to the delay queue of its attempt (per-message TTL; when it
  expires the broker dead-letters it back to the queue it came from), with the attempt count and the
  handlers that still owe it work in headers; then the original is acknowledged;
* a handler failed permanently → a copy goes to the broker's dead-letter queue with the reason, handler,
  error type and attempts in headers; then the original is acknowledged.

Copies are published with publisher confirms before the ack, so the broker always holds the message: a
process that dies in between leaves a duplicate, never a loss (the WATS side is idempotent by report id).

Order per unit: messages of one key are settled one after the other. While a key has messages waiting in
a delay queue, its later messages follow them: each copy carries a park id, and the process keeps each
key's parked ids in their original order (its lane); a copy that comes back before an older one of its
key goes round once more. Copies parked by another listener (which died or gave up the shard) come back
unknown: they are older than anything this process parked for the key. A process that starts consuming a
queue another process left with unsettled work (delay queues hold messages, or the queue hands back
messages the previous consumer held) first puts everything in its keys' lanes until it has seen what was
parked before (`BrokerSettlement.claimed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from pywats_events import Event

from .topology import (
    HEADER_ATTEMPT,
    HEADER_DELAYED,
    HEADER_FOLLOW,
    HEADER_HANDLERS,
    HEADER_PARK,
    HEADER_QUEUE,
    HEADER_REDELIVERED,
    HEADER_RETURN,
    HEADER_SEQ,
    DistributedTopology,
    dead_letter_copy,
    plain_message,
)

__all__ = ["BrokerSettlement", "SettlingContext"]

log = logging.getLogger("pywats_cfx.amqp")


class _Failure(Protocol):
    handler: str
    permanent: bool
    error: str
    error_type: str
    attempts: int


class SettlingContext(Protocol):
    """The listener context in distributed mode (`pywats_events.listener.ListenerContext`)."""

    async def submit_settled(self, events: Sequence[Event], only: Collection[str] | None = None) -> Any: ...


@dataclass
class _Entry:
    park: str
    #: came back from a delay queue without being parked by this process (another listener parked it
    #: before it died or gave up the queue): older than anything this process parked for the key
    inherited: bool
    #: when the message was first parked (`HEADER_SEQ`): orders inherited entries among themselves
    seq: int


@dataclass
class _Lane:
    """Messages of one key this process knows in delay queues, in their original order."""

    order: list[_Entry] = field(default_factory=list)
    delay: float = 0.0

    def index(self, park: str) -> int | None:
        for i, entry in enumerate(self.order):
            if entry.park == park:
                return i
        return None

    def inherited_ahead(self) -> int:
        n = 0
        for entry in self.order:
            if not entry.inherited:
                break
            n += 1
        return n

    def inherited_place(self, seq: int) -> int:
        """Where an inherited entry first parked at `seq` belongs: among the inherited, by `seq`."""
        n = 0
        for entry in self.order:
            if not entry.inherited or entry.seq > seq:
                break
            n += 1
        return n


class BrokerSettlement:
    """Runs a decoded message through the handlers and settles it with the broker."""

    def __init__(self, names: DistributedTopology) -> None:
        self.names = names
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._lanes: dict[str, _Lane] = {}
        #: queues whose first message has not been looked at since this process began consuming them
        self._unchecked: set[str] = set()
        self._checking: dict[str, asyncio.Future[None]] = {}
        #: queue → token of follow mode (see `claimed`)
        self._follow: dict[str, str] = {}
        #: queue → the delay queue follow mode parks new keys in
        self._follow_delay: dict[str, float] = {}
        #: queue → deliveries so far (messages and markers, numbered in the order the broker sent them)
        self._arrivals: dict[str, int] = {}
        #: queue → the number of the delivery that brought follow mode's marker back: the deliveries
        #: before it still follow, even those whose turn comes after the marker was seen
        self._follow_end: dict[str, int] = {}
        self.retried = 0
        self.dead_lettered = 0

    def claimed(self, queue: str) -> None:
        """This process starts consuming `queue` (a shard it claimed, or the standby queue it took over).

        Another listener may have parked messages of some keys; their later messages may now be ahead of
        them. Two places to look, when the first message arrives:

        * any delay queue holds messages: every new message of `queue` follows them through the longest
          delay queue (follow mode) until a marker sent behind them comes back: by then all that was
          parked before has come back, and this process knows each key's order again;
        * the first message is a redelivery (the previous consumer died or gave up holding it): the
          broker hands such messages back at the head of the queue, while copies that came back from a
          delay queue meanwhile sit behind them. Follow mode again, its marker sent straight to the tail
          of `queue` and new keys parked in the shortest delay queue: once the marker is back, every copy
          that was in the queue has been seen and put before the later messages of its key."""
        self._unchecked.add(queue)
        self._follow.pop(queue, None)
        self._follow_delay.pop(queue, None)
        self._follow_end.pop(queue, None)

    def _arrival(self, queue: str) -> int:
        """The number of this delivery on `queue`. Taken before the first await of its task: tasks start
        in the order the broker delivered, so the numbers keep that order whatever each one waits for."""
        n = self._arrivals[queue] = self._arrivals.get(queue, 0) + 1
        return n

    def _following(self, queue: str, arrival: int) -> bool:
        end = self._follow_end.get(queue)
        return queue in self._follow and (end is None or arrival < end)

    async def handle(
        self,
        context: SettlingContext,
        message: AbstractIncomingMessage,
        events: Sequence[Event],
        queue: str,
        channel: AbstractChannel,
        before_settling: Awaitable[None] | None = None,
    ) -> str:
        """Settle `message` (delivered from `queue`); returns "ack", "retry", "dead-letter" or "requeue"
        (the broker copy could not be published: hand the original back). `before_settling` (a ledger
        record the message caused) must succeed before the message is acknowledged in any way."""
        # the delivery's number and its place behind the previous message of its key are taken before
        # the first await: tasks start in delivery order, but resume from awaits in any order
        arrival = self._arrival(queue)
        key = events[0].ordering_key()
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        try:
            await self._check_follow(queue, channel, bool(message.redelivered))
            if previous is not None:
                await previous
            return await self._settle(context, message, events, key, queue, channel, arrival, before_settling)
        finally:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]

    async def _check_follow(self, queue: str, channel: AbstractChannel, redelivered: bool) -> None:
        if queue not in self._unchecked:
            pending = self._checking.get(queue)
            if pending is not None:
                await pending
            return
        self._unchecked.discard(queue)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._checking[queue] = done
        try:
            waiting = 0
            for seconds in sorted(set(self.names.amqp.retry_delays)):
                q = await channel.declare_queue(self.names.delay_queue(seconds), passive=True)
                waiting += int(q.declaration_result.message_count or 0)
            if waiting:
                await self._follow_mode(queue, channel)
                log.info("%s: %d message(s) wait in delay queues; new messages follow them", queue, waiting)
            elif redelivered:
                await self._follow_mode(queue, channel, through_delay=False)
                log.info("%s: the previous consumer left messages unsettled; new messages follow them", queue)
        except Exception as exc:
            log.warning("%s: cannot look at the delay queues (%s); new messages follow them", queue, exc)
            with contextlib.suppress(Exception):
                await self._follow_mode(queue, channel)
        finally:
            done.set_result(None)
            del self._checking[queue]

    async def _follow_mode(self, queue: str, channel: AbstractChannel, *, through_delay: bool = True) -> None:
        """Until a marker sent now comes back (`marker`), everything that arrives on `queue` is parked in
        its key's lane; copies parked by others are ordered by when they were first parked, new messages
        after them. The marker goes through the longest delay queue (`through_delay`: behind every copy
        parked so far), or else straight to the tail of `queue` (behind everything in it)."""
        token = uuid.uuid4().hex
        delays = self.names.amqp.retry_delays
        headers: dict[str, Any] = {HEADER_FOLLOW: token, HEADER_QUEUE: queue, HEADER_RETURN: queue}
        delay = max(delays) if through_delay else min(delays)
        # before the marker is sent: it may be back before the publish returns
        self._follow[queue] = token
        self._follow_delay[queue] = delay
        self._follow_end.pop(queue, None)
        if through_delay:
            marker = aio_pika.Message(
                b"", headers=headers, expiration=delay, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            await channel.default_exchange.publish(marker, routing_key=self.names.delay_queue(delay))
        else:
            marker = aio_pika.Message(b"", headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(marker, routing_key=queue)

    async def marker(self, message: AbstractIncomingMessage, queue: str) -> None:
        """A follow-mode marker came back (see `claimed`): everything parked before it came back too.
        Follow mode ends for the deliveries after it; those before it (some may not have had their turn
        yet) still follow."""
        arrival = self._arrival(queue)
        token = _text((message.headers or {}).get(HEADER_FOLLOW))
        if token == self._follow.get(queue) and queue not in self._follow_end:
            self._follow_end[queue] = arrival
            log.info("%s: what was parked before the takeover has come back; follow mode ends", queue)
        await message.ack()

    async def _settle(
        self,
        context: SettlingContext,
        message: AbstractIncomingMessage,
        events: Sequence[Event],
        key: str,
        queue: str,
        channel: AbstractChannel,
        arrival: int,
        before_settling: Awaitable[None] | None = None,
    ) -> str:
        if before_settling is not None:
            try:
                await before_settling
            except Exception as exc:
                log.warning("delivery %s: its ledger record was not confirmed (%s)", message.message_id, exc)
                return "requeue"
        headers = dict(message.headers or {})
        attempt = int(str(headers.get(HEADER_ATTEMPT) or 0))
        returned = bool(headers.get(HEADER_DELAYED))
        park = _text(headers.get(HEADER_PARK))
        following = self._following(queue, arrival)
        lane = self._lanes.get(key)
        known = lane.index(park) if lane is not None and returned and park else None
        inherited = False
        if lane is not None and lane.order:
            delay = lane.delay
        else:
            delay = self._follow_delay.get(queue) or max(self.names.amqp.retry_delays)
        if known is not None:
            assert lane is not None
            if known > 0:  # back before an older message of its key: once more behind it
                return await self._park(
                    message, headers, queue, channel, delay, attempt, key, "replace", known
                )
            inherited = lane.order.pop(0).inherited
        elif returned and following:  # parked by another listener; older ones may still be on their way
            return await self._park(message, headers, queue, channel, delay, attempt, key, "inherited")
        elif returned and lane is not None and lane.order:  # parked by another listener: older than ours
            inherited = True
            if lane.inherited_ahead():
                return await self._park(message, headers, queue, channel, delay, attempt, key, "inherited")
        elif not returned and (following or (lane is not None and lane.order)):
            # an earlier message of this key may wait in a delay queue: follow it
            return await self._park(message, headers, queue, channel, delay, attempt, key, "end")
        if lane is not None and not lane.order:
            del self._lanes[key]
        only = _handlers(headers.get(HEADER_HANDLERS))
        failures: list[_Failure] = list(await context.submit_settled(events, only))
        if not failures:
            await message.ack()
            return "ack"
        permanent = [f for f in failures if f.permanent]
        transient = [f for f in failures if not f.permanent]
        if permanent and not await self._dead_letter(message, queue, channel, permanent):
            return "requeue"
        if transient:
            delay = self.names.delay_for(attempt + 1)
            copy = {**headers, HEADER_HANDLERS: ",".join(sorted({f.handler for f in transient}))}
            copy["x-pywats-last-error"] = transient[0].error[:500]
            place = "inherited-head" if inherited else "head"
            return await self._park(message, copy, queue, channel, delay, attempt + 1, key, place)
        await message.ack()
        return "dead-letter"

    async def _park(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        queue: str,
        channel: AbstractChannel,
        delay: float,
        attempt: int,
        key: str,
        place: str,
        at: int = 0,
    ) -> str:
        """A copy into the delay queue of `delay`, entered in the key's lane (`place`: "end", "head",
        "inherited-head", "inherited" (by first-parked time) or "replace" the entry at `at`), then the
        original acknowledged."""
        new = uuid.uuid4().hex
        seq = _seq(headers.get(HEADER_SEQ))
        copy = {
            **headers,
            HEADER_ATTEMPT: attempt,
            HEADER_QUEUE: queue,
            HEADER_RETURN: queue,
            HEADER_DELAYED: True,
            HEADER_PARK: new,
            HEADER_SEQ: seq,
        }
        if message.redelivered:  # its handlers may have run before: the copy still says so
            copy[HEADER_REDELIVERED] = True
        try:
            await channel.default_exchange.publish(
                plain_message(message.body, message, copy, expiration=delay),
                routing_key=self.names.delay_queue(delay),
            )
        except Exception as exc:
            log.warning("could not hand delivery %s to a delay queue: %s", message.message_id, exc)
            return "requeue"
        lane = self._lanes.setdefault(key, _Lane())
        lane.delay = delay
        if place == "replace":
            lane.order[at] = _Entry(new, lane.order[at].inherited, lane.order[at].seq)
        elif place == "end":
            lane.order.append(_Entry(new, False, seq))
        elif place == "inherited":
            lane.order.insert(lane.inherited_place(seq), _Entry(new, True, seq))
        else:
            lane.order.insert(0, _Entry(new, place == "inherited-head", seq))
        self.retried += 1
        await message.ack()
        return "retry"

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        queue: str,
        channel: AbstractChannel,
        failures: Sequence[_Failure],
    ) -> bool:
        amqp = self.names.amqp
        if amqp.dead_letter_exchange is None:
            log.error("permanent failure of %s but no dead_letter_exchange: dropped", message.message_id)
            return True
        first = failures[0]
        copy = dead_letter_copy(
            message,
            queue=queue,
            handlers=",".join(sorted({f.handler for f in failures})),
            reason=first.error,
            error_type=first.error_type,
            attempts=first.attempts,
        )
        try:
            exchange = await channel.get_exchange(amqp.dead_letter_exchange, ensure=False)
            await exchange.publish(copy, routing_key=amqp.queue)
        except Exception as exc:
            log.warning("could not dead-letter delivery %s: %s", message.message_id, exc)
            return False
        self.dead_lettered += 1
        log.warning(
            "%s failed delivery %s permanently: %s; dead-lettered on the broker",
            first.handler,
            message.message_id,
            first.error[:300],
        )
        return True


def _seq(value: Any) -> int:
    """The first-parked time of a copy (nanoseconds), or now for a message parked the first time."""
    try:
        return int(str(value)) if value is not None else time.time_ns()
    except ValueError:
        return time.time_ns()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _handlers(value: Any) -> list[str] | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return [name for name in text.split(",") if name]
