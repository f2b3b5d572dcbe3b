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
a delay queue (sent there by this process), its later messages follow them into the same delay queue,
so they come back, and reach WATS, in their original order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from pywats_events import Event

from .topology import (
    HEADER_ATTEMPT,
    HEADER_DELAYED,
    HEADER_HANDLERS,
    HEADER_QUEUE,
    DistributedTopology,
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
class _Parked:
    """Messages of one key this process put in a delay queue that have not come back yet."""

    count: int
    delay: float


class BrokerSettlement:
    """Runs a decoded message through the handlers and settles it with the broker."""

    def __init__(self, names: DistributedTopology) -> None:
        self.names = names
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._parked: dict[str, _Parked] = {}
        self.retried = 0
        self.dead_lettered = 0

    async def handle(
        self,
        context: SettlingContext,
        message: AbstractIncomingMessage,
        events: Sequence[Event],
        queue: str,
        channel: AbstractChannel,
    ) -> str:
        """Settle `message` (delivered from `queue`); returns "ack", "retry", "dead-letter" or "requeue"
        (the broker copy could not be published: hand the original back)."""
        key = events[0].ordering_key()
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        try:
            if previous is not None:
                await previous
            return await self._settle(context, message, events, key, queue, channel)
        finally:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]

    async def _settle(
        self,
        context: SettlingContext,
        message: AbstractIncomingMessage,
        events: Sequence[Event],
        key: str,
        queue: str,
        channel: AbstractChannel,
    ) -> str:
        headers = dict(message.headers or {})
        attempt = int(str(headers.get(HEADER_ATTEMPT) or 0))
        parked = self._parked.get(key)
        if parked is not None and headers.get(HEADER_DELAYED):
            parked.count -= 1
        if parked is not None and parked.count <= 0:
            del self._parked[key]
            parked = None
        if parked is not None:  # an earlier message of this key waits in a delay queue: follow it
            if not await self._delay(message, headers, queue, channel, parked.delay, attempt, key):
                return "requeue"
            await message.ack()
            return "retry"
        only = _handlers(headers.get(HEADER_HANDLERS))
        failures: list[_Failure] = list(await context.submit_settled(events, only))
        if not failures:
            await message.ack()
            return "ack"
        permanent = [f for f in failures if f.permanent]
        transient = [f for f in failures if not f.permanent]
        if permanent and not await self._dead_letter(message, headers, queue, channel, permanent):
            return "requeue"
        if transient:
            delay = self.names.delay_for(attempt + 1)
            copy = {**headers, HEADER_HANDLERS: ",".join(sorted({f.handler for f in transient}))}
            copy["x-pywats-last-error"] = transient[0].error[:500]
            if not await self._delay(message, copy, queue, channel, delay, attempt + 1, key):
                return "requeue"
        await message.ack()
        return "retry" if transient else "dead-letter"

    async def _delay(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        queue: str,
        channel: AbstractChannel,
        delay: float,
        attempt: int,
        key: str,
    ) -> bool:
        copy = {**headers, HEADER_ATTEMPT: attempt, HEADER_QUEUE: queue, HEADER_DELAYED: True}
        try:
            await channel.default_exchange.publish(
                plain_message(message.body, message, copy, expiration=delay),
                routing_key=self.names.delay_queue(delay),
            )
        except Exception as exc:
            log.warning("could not hand delivery %s to a delay queue: %s", message.message_id, exc)
            return False
        parked = self._parked.setdefault(key, _Parked(0, delay))
        parked.count += 1
        parked.delay = delay
        self.retried += 1
        return True

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        headers: Mapping[str, Any],
        queue: str,
        channel: AbstractChannel,
        failures: Sequence[_Failure],
    ) -> bool:
        amqp = self.names.amqp
        if amqp.dead_letter_exchange is None:
            log.error("permanent failure of %s but no dead_letter_exchange: dropped", message.message_id)
            return True
        first = failures[0]
        copy = {
            **{k: v for k, v in headers.items() if k not in (HEADER_DELAYED, HEADER_ATTEMPT)},
            HEADER_HANDLERS: ",".join(sorted({f.handler for f in failures})),
            HEADER_QUEUE: queue,
            "x-pywats-reason": first.error[:1000],
            "x-pywats-error-type": first.error_type,
            "x-pywats-attempts": first.attempts,
            "x-pywats-failed-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            exchange = await channel.get_exchange(amqp.dead_letter_exchange, ensure=False)
            await exchange.publish(plain_message(message.body, message, copy), routing_key=amqp.queue)
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


def _handlers(value: Any) -> list[str] | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return [name for name in text.split(",") if name]
