"""The broker topology of distributed mode: names, and one idempotent declaration of all of it.

For a configured queue ``Q`` on the plant's topic exchange ``E``::

    E (topic) --bindings--> Q (quorum, single-active-consumer)          hot standby: listeners consume Q
    E (topic) --bindings--> Q (intake) --re-publish, key = unit--> Q.shards (x-consistent-hash)
    E (topic) ==exchange-to-exchange, key = routing key==========> Q.shards      (shard_key = "endpoint")
    Q.shards --weight 1--> Q.shard-000 ... Q.shard-<K-1> (quorum, single-active-consumer each)
    single writers (asset usage counts): Q.writer-<name> (quorum, single-active-consumer) and its ledger
            Q.writer-<name>.ledger (quorum, the newest records)
    work transactions' units (for WorkCompleted naming none): the ledger Q.work-transactions

    retry:  handler failed transiently -> Q.retry-<d>s (per-message TTL d) --dead-letter-->
            Q.retry-return (headers, pywats-return-to = the queue it came from) --> back to that queue
    failed: permanent failure or poison message -> the dead-letter exchange --Q--> Q.dead-letter

Shard ownership: ``Q.shard-NNN.owner`` is an exclusive queue of the owning listener's connection (gone
when the process is), and every listener holds a consumer on ``Q.listeners`` so each can count the others.
Declaring is idempotent; without configure permission each part is checked instead, and what is missing
is named in one `ConfigurationError`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection

from pywats_events import ConfigurationError

from .config import AMQPConfig
from .ledger import ledger_arguments

__all__ = [
    "HEADER_ATTEMPT",
    "HEADER_DELAYED",
    "HEADER_FOLLOW",
    "HEADER_HANDLERS",
    "HEADER_PARK",
    "HEADER_QUEUE",
    "HEADER_REDELIVERED",
    "HEADER_RETURN",
    "HEADER_ROUTING_KEY",
    "HEADER_SEQ",
    "DistributedTopology",
    "dead_letter_copy",
    "declare_distributed",
]

log = logging.getLogger("pywats_cfx.amqp")

#: how many times the message's handlers failed transiently so far
HEADER_ATTEMPT = "x-pywats-attempt"
#: the handlers that still owe the message work (comma-separated); absent: all of them
HEADER_HANDLERS = "x-pywats-handlers"
#: the queue a delayed message returns to (informational: routing uses `HEADER_RETURN`)
HEADER_QUEUE = "x-pywats-queue"
#: the queue a delayed message returns to, as the retry-return headers exchange matches it (a headers
#: exchange ignores headers whose name begins with "x-", so this one must not)
HEADER_RETURN = "pywats-return-to"
#: the message went through a delay queue (retried, or held behind an earlier message of its unit)
HEADER_DELAYED = "x-pywats-delayed"
#: the intake re-published a message the broker had redelivered (handlers may have seen it before)
HEADER_REDELIVERED = "x-pywats-redelivered"
#: identifies one copy in a delay queue, so the process that parked it knows it when it comes back
HEADER_PARK = "x-pywats-park"
#: a follow-mode marker (no message: only this token), sent through the longest delay queue by a
#: listener that took over a queue while delay queues held messages
HEADER_FOLLOW = "x-pywats-follow"
#: when a message was first parked in a delay queue (ns): orders copies parked by another listener
HEADER_SEQ = "x-pywats-seq"
#: the routing key the message had on the plant's exchange (re-published messages carry the unit instead)
HEADER_ROUTING_KEY = "x-pywats-routing-key"


@dataclass(frozen=True)
class DistributedTopology:
    """Names of everything distributed mode uses, derived from `[amqp] queue`."""

    amqp: AMQPConfig

    @property
    def queue(self) -> str:
        return self.amqp.queue

    @property
    def sharded(self) -> bool:
        return self.amqp.shards > 0

    @property
    def hash_exchange(self) -> str:
        return f"{self.queue}.shards"

    @property
    def presence_queue(self) -> str:
        return f"{self.queue}.listeners"

    @property
    def return_exchange(self) -> str:
        return f"{self.queue}.retry-return"

    def shard(self, index: int) -> str:
        return f"{self.queue}.shard-{index:03d}"

    def owner(self, index: int) -> str:
        return f"{self.shard(index)}.owner"

    @property
    def shards(self) -> list[str]:
        return [self.shard(i) for i in range(self.amqp.shards)]

    @property
    def consumed(self) -> list[str]:
        """The queues whose messages reach the handlers (and to which retries return)."""
        return self.shards if self.sharded else [self.queue]

    @property
    def has_intake(self) -> bool:
        """A re-publishing stage reads `queue` and puts each message on the hash exchange by unit."""
        return self.sharded and self.amqp.shard_key == "unit"

    @property
    def work_ledger(self) -> str:
        """The ledger of work transactions' units (see `work_units`)."""
        return f"{self.queue}.work-transactions"

    @property
    def keeps_work_units(self) -> bool:
        """One stage sees every message in order (the intake, or the hot-standby queue's consumer) and
        keeps the units of work transactions for unit-less WorkCompleted messages."""
        return self.has_intake or not self.sharded

    def writer_queue(self, name: str) -> str:
        """The work queue of single writer `name` (see `writers`)."""
        return f"{self.queue}.writer-{name}"

    def writer_ledger(self, name: str) -> str:
        return f"{self.writer_queue(name)}.ledger"

    def delay_queue(self, seconds: float) -> str:
        return f"{self.queue}.retry-{seconds:g}s"

    def delay_for(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based); the last configured delay repeats."""
        delays = self.amqp.retry_delays
        return delays[min(attempt, len(delays)) - 1]

    def queue_arguments(self, *, single_active: bool = True) -> dict[str, Any]:
        amqp = self.amqp
        arguments: dict[str, Any] = {"x-queue-type": "quorum" if self.sharded else amqp.queue_type}
        if single_active or amqp.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        if amqp.dead_letter_exchange is not None:
            arguments["x-dead-letter-exchange"] = amqp.dead_letter_exchange
            arguments["x-dead-letter-routing-key"] = amqp.queue
        return arguments


@dataclass
class _Declarer:
    """Runs declarations on a channel that is reopened after a refusal; collects what could not be made."""

    connection: AbstractConnection
    channel: AbstractChannel
    missing: list[str] = field(default_factory=list)

    async def run(
        self, what: str, declare: Callable[[AbstractChannel], Awaitable[Any]], check: bool = True
    ) -> Any:
        try:
            return await declare(self.channel)
        except aiormq.exceptions.ChannelAccessRefused:
            await self._reopen()
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await self._reopen()
            raise ConfigurationError(
                "amqp.queue", f"{what} exists on the broker unlike configured: {exc}"
            ) from None
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            await self._reopen()
            self.missing.append(f"{what} ({exc})")
            return None
        except aiormq.exceptions.ConnectionCommandInvalid as exc:
            raise ConfigurationError("amqp.shards", f"{what}: the broker refused it: {exc}") from None
        if check:
            self.missing.append(f"{what} (no permission to declare it)")
        return None

    async def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()
        self.channel = await self.connection.channel(publisher_confirms=False)


async def declare_distributed(
    connection: AbstractConnection, names: DistributedTopology, writers: Sequence[str] = ()
) -> None:
    """Declare (or, without permission, check) the whole distributed topology, with the queues of the
    single `writers` the handlers declared; idempotent."""
    amqp = names.amqp
    d = _Declarer(connection, await connection.channel(publisher_confirms=False))

    async def exchange(ch: AbstractChannel, name: str, kind: str) -> Any:
        return await ch.declare_exchange(name, kind, durable=True)

    async def queue(ch: AbstractChannel, name: str, arguments: dict[str, Any]) -> Any:
        return await ch.declare_queue(name, durable=True, arguments=arguments)

    def queue_check(name: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
        async def passive(ch: AbstractChannel) -> Any:
            return await ch.declare_queue(name, passive=True)

        return passive

    async def declared_queue(what: str, name: str, arguments: dict[str, Any]) -> None:
        made = await d.run(what, lambda ch: queue(ch, name, arguments), check=False)
        if made is None:
            await d.run(f"{what} {name!r}", queue_check(name))

    if amqp.dead_letter_exchange is not None:
        dlq = amqp.dead_letter_queue_name()
        await d.run(
            f"dead-letter exchange {amqp.dead_letter_exchange!r}",
            lambda ch: exchange(ch, amqp.dead_letter_exchange or "", "direct"),
        )
        await declared_queue(
            "dead-letter queue", dlq or "", {"x-queue-type": "quorum" if names.sharded else amqp.queue_type}
        )

        async def bind_dlq(ch: AbstractChannel) -> Any:
            q = await ch.declare_queue(dlq or "", passive=True)
            return await q.bind(amqp.dead_letter_exchange or "", routing_key=amqp.queue)

        await d.run(f"binding {amqp.dead_letter_exchange!r} -> {dlq!r}", bind_dlq)

    plant = amqp.exchange
    if names.sharded:
        try:
            await d.channel.declare_exchange(names.hash_exchange, "x-consistent-hash", durable=True)
        except aiormq.exceptions.ConnectionCommandInvalid:
            raise ConfigurationError(
                "amqp.shards",
                "the broker does not know the exchange type 'x-consistent-hash': enable the plugin"
                " (rabbitmq-plugins enable rabbitmq_consistent_hash_exchange)",
            ) from None
        except aiormq.exceptions.ChannelAccessRefused:
            await d._reopen()
            d.missing.append(
                f"exchange {names.hash_exchange!r} of type x-consistent-hash (no permission to declare it)"
            )
        for shard in names.shards:
            await declared_queue(
                "shard queue (quorum, single-active-consumer)", shard, names.queue_arguments()
            )

            async def bind_shard(ch: AbstractChannel, shard: str = shard) -> Any:
                q = await ch.declare_queue(shard, passive=True)
                return await q.bind(names.hash_exchange, routing_key="1")  # weight 1: an equal share

            await d.run(f"binding {names.hash_exchange!r} -> {shard!r}", bind_shard)
        await declared_queue("listener presence queue", names.presence_queue, {})
    if names.has_intake or not names.sharded:
        await declared_queue(
            "queue (intake)" if names.sharded else "queue",
            amqp.queue,
            names.queue_arguments(single_active=names.sharded),
        )
        for pattern in amqp.bindings():

            async def bind_intake(ch: AbstractChannel, pattern: str = pattern) -> Any:
                q = await ch.declare_queue(amqp.queue, passive=True)
                return await q.bind(plant, routing_key=pattern)

            await d.run(f"binding {plant!r} -> {amqp.queue!r} ({pattern})", bind_intake)
    else:  # shard by endpoint: the plant's routing key is the hash key, no re-publishing
        for pattern in amqp.bindings():

            async def bind_e2e(ch: AbstractChannel, pattern: str = pattern) -> Any:
                target = await ch.get_exchange(names.hash_exchange, ensure=True)
                return await target.bind(plant, routing_key=pattern)

            await d.run(f"binding {plant!r} -> exchange {names.hash_exchange!r} ({pattern})", bind_e2e)

    if names.keeps_work_units:
        await declared_queue("work-transactions ledger", names.work_ledger, ledger_arguments())
    for writer in writers:
        await declared_queue(
            f"single-writer queue (quorum, single-active-consumer) of {writer!r}",
            names.writer_queue(writer),
            {"x-queue-type": "quorum", "x-single-active-consumer": True},
        )
        await declared_queue(
            f"single-writer ledger of {writer!r}",
            names.writer_ledger(writer),
            ledger_arguments(),
        )
    await d.run(
        f"retry exchange {names.return_exchange!r} (headers)",
        lambda ch: exchange(ch, names.return_exchange, "headers"),
    )
    for seconds in sorted(set(amqp.retry_delays)):
        await declared_queue(
            f"delay queue ({seconds:g} s)",
            names.delay_queue(seconds),
            {"x-dead-letter-exchange": names.return_exchange},
        )
    for target in [*names.consumed, *(names.writer_queue(w) for w in writers)]:

        async def bind_return(ch: AbstractChannel, target: str = target) -> Any:
            q = await ch.declare_queue(target, passive=True)
            # a binding on an "x-" header matches every message (the broker ignores such headers when
            # matching): an earlier version bound so, and sent each retry to every shard
            await q.unbind(
                names.return_exchange, routing_key="", arguments={"x-match": "all", HEADER_QUEUE: target}
            )
            return await q.bind(
                names.return_exchange, routing_key="", arguments={"x-match": "all", HEADER_RETURN: target}
            )

        await d.run(f"binding {names.return_exchange!r} -> {target!r}", bind_return)
    with contextlib.suppress(Exception):
        await d.channel.close()
    if d.missing:
        raise ConfigurationError(
            "amqp.queue",
            "the distributed topology is incomplete and this user may not create it; missing: "
            + "; ".join(d.missing),
        )
    log.info(
        "distributed topology ready: %s",
        f"{amqp.shards} shards by {amqp.shard_key}" if names.sharded else f"queue {amqp.queue!r}",
    )


def plain_message(
    body: bytes, source: Any, headers: dict[str, Any], *, expiration: float | None = None
) -> aio_pika.Message:
    """A persistent copy of incoming message `source` with `headers` (and a per-message TTL)."""
    return aio_pika.Message(
        body,
        headers=headers,
        content_type=source.content_type,
        content_encoding=source.content_encoding,
        message_id=source.message_id,
        correlation_id=source.correlation_id,
        type=source.type,
        app_id=source.app_id,
        timestamp=source.timestamp,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        expiration=expiration,
    )


def dead_letter_copy(
    message: Any, *, queue: str, handlers: str, reason: str, error_type: str, attempts: int
) -> aio_pika.Message:
    """A copy of incoming `message` for the dead-letter exchange: its headers without the retry state, and
    the failure (what `pywats-events dlq` shows; `queue` is where a replay puts it back)."""
    retry_state = (HEADER_DELAYED, HEADER_ATTEMPT, HEADER_RETURN)
    headers = {k: v for k, v in (message.headers or {}).items() if k not in retry_state}
    headers.update(
        {
            HEADER_HANDLERS: handlers,
            HEADER_QUEUE: queue,
            "x-pywats-reason": reason[:1000],
            "x-pywats-error-type": error_type,
            "x-pywats-attempts": attempts,
            "x-pywats-failed-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    return plain_message(message.body, message, headers)
