"""`AmqpDeadLetters`: the broker's dead-letter queue of distributed mode, for `pywats-events dlq`.

Reading never takes a message off the queue: one channel gets the messages with manual acknowledgement,
at most as many as the queue held when the command began, and hands back every one it did not settle by
closing the channel (the broker requeues unacknowledged messages in their order). A replay publishes a
copy to the queue the message came from, with publisher confirms and as mandatory, and acknowledges the
dead letter only once the broker confirmed that copy: a failure in between leaves a duplicate, never a loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from pywats_events import ConfigurationError
from pywats_events.broker_dead_letters import BrokerDeadLetter

from .config import AMQPConfig
from .topology import (
    HEADER_ATTEMPT,
    HEADER_DELAYED,
    HEADER_FOLLOW,
    HEADER_HANDLERS,
    HEADER_PARK,
    HEADER_QUEUE,
    HEADER_RETURN,
    HEADER_ROUTING_KEY,
    HEADER_SEQ,
    DistributedTopology,
    plain_message,
)

__all__ = ["AmqpDeadLetters"]

log = logging.getLogger("pywats_cfx.amqp")

#: the most messages one command reads; a larger dead-letter queue is worked on in parts
MAX_BROWSE = 10_000

#: headers of a failure that a replayed copy must not carry (it starts over with attempt 0)
_FAILURE_HEADERS = frozenset(
    {
        HEADER_ATTEMPT,
        HEADER_DELAYED,
        HEADER_FOLLOW,
        HEADER_PARK,
        HEADER_QUEUE,
        HEADER_RETURN,
        HEADER_SEQ,
        "x-pywats-reason",
        "x-pywats-error-type",
        "x-pywats-attempts",
        "x-pywats-failed-at",
        "x-pywats-last-error",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
    }
)


class AmqpDeadLetters:
    """`pywats_events.broker_dead_letters.BrokerDeadLetters` on RabbitMQ."""

    def __init__(self, amqp: AMQPConfig) -> None:
        queue = amqp.dead_letter_queue_name()
        if queue is None:
            raise ConfigurationError(
                "amqp.dead_letter_exchange",
                "distributed mode without a dead-letter exchange keeps no dead letters",
            )
        self.amqp = amqp
        self.names = DistributedTopology(amqp)
        self.queue = queue
        self.where = f"queue {queue!r}"

    async def browse(self) -> list[BrokerDeadLetter]:
        async with self._held() as (_conn, messages):
            return [self._entry(m) for m in messages]

    async def replay(self, ids: Collection[str]) -> int:
        wanted = set(ids)
        replayed = 0
        async with self._held() as (conn, messages):
            publisher = await conn.channel(publisher_confirms=True, on_return_raises=True)
            for message in messages:
                entry = self._entry(message)
                if entry.id not in wanted:
                    continue
                try:
                    await self._republish(publisher, message, entry)
                except Exception as exc:  # not confirmed: the dead letter stays
                    log.warning("dead letter %s not replayed: %s", entry.id, exc)
                    if publisher.is_closed:
                        publisher = await conn.channel(publisher_confirms=True, on_return_raises=True)
                    continue
                await message.ack()
                replayed += 1
        return replayed

    async def purge(self, ids: Collection[str]) -> int:
        wanted = set(ids)
        purged = 0
        async with self._held() as (_conn, messages):
            for message in messages:
                if self._entry(message).id in wanted:
                    await message.ack()
                    purged += 1
        return purged

    # -- helpers ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[tuple[AbstractConnection, list[AbstractIncomingMessage]]]:
        """The queue's messages, held unacknowledged on one channel; whatever is not acknowledged goes back
        to the queue when the channel closes."""
        conn = await self._connect()
        try:
            channel = await conn.channel(publisher_confirms=False)
            queue = await self._queue(channel)
            count = min(int(queue.declaration_result.message_count or 0), MAX_BROWSE)
            messages: list[AbstractIncomingMessage] = []
            for _ in range(count):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                messages.append(message)
            yield conn, messages
            await channel.close()
        finally:
            await conn.close()

    async def _queue(self, channel: AbstractChannel) -> AbstractQueue:
        import aiormq.exceptions

        try:
            return await channel.declare_queue(self.queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise ConfigurationError(
                "amqp.dead_letter_queue",
                f"the broker has no queue {self.queue!r} (a distributed listener declares it when it starts)",
            ) from None

    async def _connect(self) -> AbstractConnection:
        amqp = self.amqp
        try:
            return await aio_pika.connect(**amqp.connect_options("pywats-events dlq"))
        except Exception as exc:
            raise ConfigurationError("amqp.url", f"cannot reach {amqp.redacted_url()}: {exc}") from None

    async def _republish(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, entry: BrokerDeadLetter
    ) -> None:
        """A copy with the retry count reset, to the queue it came from (mandatory: an unroutable copy is
        an error); a queue that no longer exists (fewer shards now) is replaced by the plant's way in."""
        headers = {k: v for k, v in (message.headers or {}).items() if k not in _FAILURE_HEADERS}
        copy = plain_message(message.body, message, headers)
        known = entry.queue in self._known_queues() or entry.queue.startswith(self.names.writer_queue(""))
        target = entry.queue if known else None
        if target is not None:
            await channel.default_exchange.publish(copy, routing_key=target, mandatory=True)
        elif self.names.sharded and not self.names.has_intake:
            exchange = await channel.get_exchange(self.names.hash_exchange, ensure=False)
            await exchange.publish(copy, routing_key=entry.routing_key, mandatory=True)
        else:
            await channel.default_exchange.publish(copy, routing_key=self.amqp.queue, mandatory=True)

    def _known_queues(self) -> set[str]:
        return {self.amqp.queue, *self.names.consumed}

    def _entry(self, message: AbstractIncomingMessage) -> BrokerDeadLetter:
        headers: Mapping[str, Any] = message.headers or {}
        death = _first_death(headers.get("x-death"))
        reason = _text(headers.get("x-pywats-reason"))
        if not reason and death:
            why = _text(death.get("reason")) or "rejected"
            reason = f"{why} by the listener (undecodable: see `pywats-events quarantine`)"
        routing_keys = death.get("routing-keys") if death else None
        routing_key = _text(headers.get(HEADER_ROUTING_KEY)) or (
            _text(routing_keys[0]) if isinstance(routing_keys, Sequence) and routing_keys else ""
        )
        attempts = headers.get("x-pywats-attempts")
        return BrokerDeadLetter(
            id=_unique_id(message.body)
            or message.message_id
            or hashlib.sha256(message.body).hexdigest()[:32],
            handlers=_text(headers.get(HEADER_HANDLERS)),
            reason=reason,
            error_type=_text(headers.get("x-pywats-error-type")) or ("rejected" if death else ""),
            attempts=int(attempts) if isinstance(attempts, (int, str)) and str(attempts).isdigit() else 0,
            failed_at=_text(headers.get("x-pywats-failed-at")) or _death_time(death),
            queue=_text(headers.get(HEADER_QUEUE))
            or (_text(death.get("queue")) if death else "")
            or self.amqp.queue,
            routing_key=routing_key,
            body=message.body,
            headers=dict(headers),
        )


def _unique_id(body: bytes) -> str:
    """The CFX envelope's UniqueID: what the operator finds in the reports and logs."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return ""
    unique = envelope.get("UniqueID") if isinstance(envelope, dict) else None
    return unique if isinstance(unique, str) else ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _first_death(value: Any) -> Mapping[str, Any] | None:
    """The newest ``x-death`` record (the broker puts it first)."""
    if isinstance(value, Sequence) and value and isinstance(value[0], Mapping):
        return value[0]
    return None


def _death_time(death: Mapping[str, Any] | None) -> str:
    stamp = death.get("time") if death else None
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(stamp, datetime) else ""
