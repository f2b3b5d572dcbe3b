"""`WriterService`: the single writers of `pywats_events.single_writer` on RabbitMQ.

For a writer named ``N`` and the configured queue ``Q``:

* ``Q.writer-N`` (quorum, single-active-consumer) holds the submitted work. Every listener consumes it;
  the broker delivers to one at a time and moves to the next when that one's connection is gone.
  A submission is published with publisher confirms, so it is on the broker before the submitting
  handler returns (and before the message that caused it is acknowledged).
* ``Q.writer-N.ledger`` (a ledger queue, `pywats_cfx.amqp.ledger`) holds the writer's ledger. The
  listener that receives the first work reads all of it before it serves.
* Work the writer failed transiently goes through the delay queues of distributed mode and returns to
  ``Q.writer-N`` (no process holds it meanwhile); a permanent failure is dead-lettered with its reason,
  like a message the handlers failed, and `pywats-events dlq replay` returns it to ``Q.writer-N``.

A listener that stops finishes its batch before it cancels its consumer, and returns what it was given
beyond that batch, so two writers never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from pywats_events import TransientError
from pywats_events.single_writer import SingleWriters, WorkItem, Writer

from .ledger import LedgerAppender, read_ledger
from .topology import (
    HEADER_ATTEMPT,
    HEADER_DELAYED,
    HEADER_QUEUE,
    HEADER_REDELIVERED,
    HEADER_RETURN,
    DistributedTopology,
    dead_letter_copy,
    plain_message,
)

__all__ = ["WriterService", "writer_queues"]

log = logging.getLogger("pywats_cfx.amqp")

#: work items a writer is given at once
_PREFETCH = 500
#: seconds between attempts to reconnect the writers' connection
_RECONNECT_DELAY = 2.0


class _BrokerLedger:
    """`WriterLedger` on the writer's ledger queue."""

    def __init__(self, channel: AbstractChannel, appender: LedgerAppender) -> None:
        self._channel = channel
        self._appender = appender

    async def append(self, record: Mapping[str, Any]) -> None:
        await self._appender.append(self._channel, record)


class _Served:
    """One writer on this listener: its consumer, the deliveries waiting for it and its serving loop."""

    def __init__(self, name: str, writer: Writer, queue: str, ledger: str) -> None:
        self.name = name
        self.writer = writer
        self.queue = queue
        self.ledger_queue = ledger
        self.inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.consumer: tuple[Any, str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.ledger: _BrokerLedger | None = None  # set once this listener took over
        self.stopping = False

    async def deliver(self, message: AbstractIncomingMessage) -> None:
        self.inbox.put_nowait(message)


class WriterService:
    """Serves the declared writers on a connection of its own and publishes submissions to them."""

    def __init__(
        self,
        names: DistributedTopology,
        writers: SingleWriters,
        connect: Callable[[], Awaitable[AbstractConnection]],
    ) -> None:
        self.names = names
        self._writers = writers
        self._connect = connect
        self._conn: AbstractConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._served: dict[str, _Served] = {}
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        #: counters for /metrics and tests
        self.served = 0
        self.retried = 0
        self.dead_lettered = 0
        self.takeovers = 0

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and consume every writer queue (raises if the broker cannot be reached now)."""
        await self._open()
        self._writers.bind(self.submit)
        self._supervisor = asyncio.create_task(self._supervise(), name="pywats-writers")

    async def stop(self) -> None:
        """Finish each writer's batch, then cancel its consumer and return what it was given beyond."""
        self._stopping = True
        self._writers.unbind()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self._close(finish=True)

    async def _open(self) -> None:
        conn = self._conn = await self._connect()
        self._publisher = await conn.channel(publisher_confirms=True)
        for name, writer in self._writers.writers.items():
            served = _Served(name, writer, self.names.writer_queue(name), self.names.writer_ledger(name))
            channel = await conn.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=_PREFETCH)
            queue = await channel.declare_queue(served.queue, passive=True)
            served.consumer = (queue, await queue.consume(served.deliver))
            served.task = asyncio.create_task(self._serve(served, channel), name=f"pywats-writer-{name}")
            self._served[name] = served

    async def _close(self, *, finish: bool) -> None:
        served_all, self._served = list(self._served.values()), {}
        for served in served_all:
            if served.task is not None:
                if finish:
                    # the loop ends after its batch: a batch is never cut off by the stop
                    served.stopping = True
                    served.inbox.put_nowait(_STOP)
                    await asyncio.gather(served.task, return_exceptions=True)
                else:
                    served.task.cancel()
                    await asyncio.gather(served.task, return_exceptions=True)
            if served.consumer is not None:
                queue, tag = served.consumer
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(queue.cancel(tag), timeout=5)
            while not served.inbox.empty():  # given to us, not served: back to the queue for the next writer
                message = served.inbox.get_nowait()
                if message is not _STOP:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
        conn, self._conn, self._publisher = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _supervise(self) -> None:
        """Reconnect when the connection is lost: a new connection is a new consumer, so the ledger is read
        again before the next batch (another listener may have written meanwhile)."""
        while not self._stopping:
            conn = self._conn
            if conn is not None and not conn.is_closed:
                await asyncio.sleep(0.5)
                continue
            log.warning("single-writer connection lost; reconnecting")
            await self._close(finish=False)
            try:
                await self._open()
            except Exception as exc:
                log.warning("single-writer connection failed: %s", exc)
                await self._close(finish=False)
                await asyncio.sleep(_RECONNECT_DELAY)

    # -- submitting -------------------------------------------------------------------------------------

    async def submit(self, name: str, item: WorkItem) -> None:
        """Put `item` on writer `name`'s queue; returns once the broker confirmed it."""
        publisher = self._publisher
        if publisher is None or publisher.is_closed:
            raise TransientError(f"single writer {name!r}: no connection to the broker")
        headers: dict[str, Any] = {HEADER_REDELIVERED: True} if item.possible_repeat else {}
        try:
            await publisher.default_exchange.publish(
                aio_pika.Message(
                    json.dumps(dict(item.data), separators=(",", ":")).encode(),
                    headers=headers,
                    message_id=item.key,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=self.names.writer_queue(name),
            )
        except Exception as exc:
            raise TransientError(f"single writer {name!r}: not confirmed by the broker: {exc}") from exc

    # -- serving ----------------------------------------------------------------------------------------

    async def _serve(self, served: _Served, channel: AbstractChannel) -> None:
        while True:
            first = await served.inbox.get()
            if served.stopping or first is _STOP:
                if first is not _STOP:
                    served.inbox.put_nowait(first)  # returned to the queue by `_close`
                return
            batch = [first]
            while not served.inbox.empty() and len(batch) < _PREFETCH:
                message = served.inbox.get_nowait()
                if message is not _STOP:
                    batch.append(message)
            try:
                await self._serve_batch(served, channel, batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # reading the ledger or settling failed (the channel may be gone): hand the batch back
                # after a pause, and read the ledger again before the next one
                log.exception("single writer %s: batch of %d not settled", served.name, len(batch))
                served.ledger = None
                await asyncio.sleep(_RECONNECT_DELAY)
                for message in batch:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)

    async def _serve_batch(
        self, served: _Served, channel: AbstractChannel, batch: list[AbstractIncomingMessage]
    ) -> None:
        if served.ledger is None:
            assert self._conn is not None
            records = await read_ledger(self._conn, served.ledger_queue)
            await served.writer.take_over(records)
            served.ledger = _BrokerLedger(channel, LedgerAppender(served.ledger_queue, records))
            self.takeovers += 1
            log.info(
                "single writer %s: this listener writes now (%d ledger records read)",
                served.name,
                len(records),
            )
        items: list[tuple[AbstractIncomingMessage, WorkItem]] = []
        for message in batch:
            try:
                data = json.loads(message.body)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                await self._dead_letter(
                    served, channel, message, f"unreadable work item: {exc}", "ValueError"
                )
                continue
            headers = message.headers or {}
            repeat = bool(
                message.redelivered or headers.get(HEADER_REDELIVERED) or headers.get(HEADER_ATTEMPT)
            )
            key = message.message_id or hashlib.sha256(message.body).hexdigest()
            items.append((message, WorkItem(key, data, repeat)))
        if not items:
            return
        try:
            failures = await served.writer.serve([item for _m, item in items], served.ledger)
        except Exception as exc:  # the writer failed as a whole: each item fails alike
            log.exception("single writer %s failed a batch", served.name)
            failures = {item.key: exc for _m, item in items}
        for message, item in items:
            error = failures.get(item.key)
            if error is None:
                await message.ack()
                self.served += 1
            elif isinstance(error, TransientError):
                await self._retry(served, channel, message, error)
            else:
                await self._dead_letter(served, channel, message, str(error), type(error).__name__)

    async def _retry(
        self,
        served: _Served,
        channel: AbstractChannel,
        message: AbstractIncomingMessage,
        error: BaseException,
    ) -> None:
        headers = dict(message.headers or {})
        attempt = int(str(headers.get(HEADER_ATTEMPT) or 0)) + 1
        delay = self.names.delay_for(attempt)
        headers.update(
            {
                HEADER_ATTEMPT: attempt,
                HEADER_QUEUE: served.queue,
                HEADER_RETURN: served.queue,
                HEADER_DELAYED: True,
                HEADER_REDELIVERED: True,  # it may have been done: the writer checks before doing it again
                "x-pywats-last-error": str(error)[:500],
            }
        )
        try:
            await channel.default_exchange.publish(
                plain_message(message.body, message, headers, expiration=delay),
                routing_key=self.names.delay_queue(delay),
            )
        except Exception as exc:
            log.warning("single writer %s: could not delay item %s: %s", served.name, message.message_id, exc)
            await message.nack(requeue=True)
            return
        self.retried += 1
        await message.ack()

    async def _dead_letter(
        self,
        served: _Served,
        channel: AbstractChannel,
        message: AbstractIncomingMessage,
        reason: str,
        kind: str,
    ) -> None:
        amqp = self.names.amqp
        if amqp.dead_letter_exchange is None:
            log.error(
                "single writer %s: item %s failed (%s) and there is no dead_letter_exchange: dropped",
                served.name,
                message.message_id,
                reason,
            )
            await message.ack()
            return
        copy = dead_letter_copy(
            message,
            queue=served.queue,
            handlers=f"writer-{served.name}",
            reason=reason,
            error_type=kind,
            attempts=int(str((message.headers or {}).get(HEADER_ATTEMPT) or 0)) + 1,
        )
        try:
            exchange = await channel.get_exchange(amqp.dead_letter_exchange, ensure=False)
            await exchange.publish(copy, routing_key=amqp.queue)
        except Exception as exc:
            log.warning(
                "single writer %s: could not dead-letter %s: %s", served.name, message.message_id, exc
            )
            await message.nack(requeue=True)
            return
        self.dead_lettered += 1
        log.warning(
            "single writer %s failed item %s permanently: %s", served.name, message.message_id, reason[:300]
        )
        await message.ack()


#: tells a serving loop to end after its batch
_STOP: Any = object()


def writer_queues(names: DistributedTopology, writers: Sequence[str]) -> list[str]:
    """The work queues of `writers` (for the delay queues' return bindings and dead-letter replay)."""
    return [names.writer_queue(name) for name in writers]
