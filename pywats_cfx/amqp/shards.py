"""`ShardRunner`: several listeners share K shard queues; each unit's messages are handled by one at a time.

* **Re-publishing stage** (``shard_key = "unit"``): CFX routing keys name the endpoint and the message,
  never the unit, so the listeners compete for the intake queue with single-active-consumer; the active
  one decodes each message and re-publishes it (publisher confirms, then ack) to the consistent-hash
  exchange with the unit serial as routing key. One consumer in delivery order keeps each unit's order.
* **Shard ownership**: a listener owns a shard while its connection holds the shard's exclusive
  ``.owner`` queue, and only then consumes it. Every listener counts the others (consumers of
  ``Q.listeners``) and claims or releases shards toward an equal share. A release stops consuming,
  finishes and acknowledges what it holds, and only then gives up ownership, so the next owner never runs
  a unit's later message beside an earlier one. A dead listener's connection is gone at once (kill -9) or
  after the heartbeat (a lost machine): its exclusive queues vanish, its unacknowledged messages return
  to their shards, and the others claim them on their next look (`shard_rebalance_interval`).
* The shard queues are single-active-consumer as well, a second guard should two owners ever overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from .topology import HEADER_REDELIVERED, HEADER_ROUTING_KEY, DistributedTopology, plain_message
from .work_units import WorkUnitsLedger

#: where the intake puts a message: (hash key, headers to add, work-transaction record to keep or None)
Route = tuple[str, dict[str, Any], dict[str, Any] | None]

__all__ = ["ShardRunner"]

log = logging.getLogger("pywats_cfx.amqp")

#: how many intake messages the re-publishing stage hands to the broker before awaiting the confirms
_REPUBLISH_BATCH = 200


@dataclass
class _Owned:
    index: int
    lease: AbstractChannel
    channel: AbstractChannel
    consumer_tag: str
    queue: Any
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class ShardRunner:
    """Intake re-publishing, shard ownership and shard consumption on one connection of its own."""

    def __init__(
        self,
        names: DistributedTopology,
        connect: Callable[[], Awaitable[AbstractConnection]],
        deliver: Callable[[AbstractIncomingMessage, str, AbstractChannel], Awaitable[None]],
        route: Callable[[AbstractIncomingMessage], Route],
        *,
        drain_timeout: float,
        on_claim: Callable[[str], None] | None = None,
        work: WorkUnitsLedger | None = None,
    ) -> None:
        self.names = names
        self._connect = connect
        self._deliver = deliver
        self._route = route
        #: the units of work transactions, kept by the intake (see `work_units`)
        self._work = work
        self._drain_timeout = drain_timeout
        #: told the name of each shard queue this listener claims, before it consumes it
        self._on_claim = on_claim
        self._conn: AbstractConnection | None = None
        self._owned: dict[int, _Owned] = {}
        #: publisher-confirm channel for re-publishing, retries and dead letters
        self._publisher: AbstractChannel | None = None
        self._intake: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._intake_tag: tuple[Any, str] | None = None
        self._republisher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        #: shard indexes this listener owns now (for tests, logs and the run summary)
        self.owned: set[int] = set()
        #: intake messages this listener re-published (it was the intake's active consumer)
        self.republished = 0

    async def start(self) -> None:
        """Connect and start the ownership loop; returns once the first look at the shards was made."""
        self._task = asyncio.create_task(self._run(), name="amqp-shards")
        waiter = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    # -- the loop --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.names.amqp.shard_rebalance_interval
        first = True
        while not self._stopping.is_set():
            try:
                conn = await self._connect()
            except Exception as exc:
                if first:
                    raise
                log.warning("shards: cannot connect (%s); retrying", type(exc).__name__)
                await self._sleep(self.names.amqp.reconnect_interval)
                continue
            self._conn = conn
            try:
                await self._open(conn)
                while not self._stopping.is_set() and not conn.is_closed:
                    await self._balance(conn)
                    self._ready.set()
                    first = False
                    await self._sleep(interval)
            except Exception as exc:
                if first:
                    raise
                log.warning("shards: %s: %s; reconnecting", type(exc).__name__, exc)
            finally:
                await self._close(conn, graceful=self._stopping.is_set())
            if not self._stopping.is_set():
                await self._sleep(self.names.amqp.reconnect_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _open(self, conn: AbstractConnection) -> None:
        names = self.names
        presence = await (await conn.channel()).declare_queue(names.presence_queue, passive=True)
        await presence.consume(_never_called, no_ack=True)
        channel = await conn.channel(publisher_confirms=True)
        self._publisher = channel
        if names.has_intake:
            intake_channel = await conn.channel()
            await intake_channel.set_qos(prefetch_count=_REPUBLISH_BATCH * 2)
            intake = await intake_channel.declare_queue(names.queue, passive=True)
            tag = await intake.consume(self._intake.put)
            self._intake_tag = (intake, tag)
            if self._work is not None:
                self._work.reset()  # read again when this connection's consumer becomes the intake
            self._republisher = asyncio.create_task(self._republish(conn, channel), name="amqp-republish")

    async def _close(self, conn: AbstractConnection, *, graceful: bool) -> None:
        if graceful:
            if self._intake_tag is not None:
                queue, tag = self._intake_tag
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
            for index in sorted(self._owned):
                with contextlib.suppress(Exception):
                    await self._release(index)
        self._intake_tag = None
        self._owned.clear()
        self.owned.clear()
        with contextlib.suppress(Exception):
            await conn.close()

    # -- re-publishing stage ---------------------------------------------------------------------------

    async def _republish(self, conn: AbstractConnection, channel: AbstractChannel) -> None:
        """Intake → consistent-hash exchange keyed by unit, in delivery order; ack after the confirms
        (of the copies and of the work-transaction records they caused)."""
        exchange = await channel.get_exchange(self.names.hash_exchange, ensure=False)
        work = self._work
        while not channel.is_closed:
            try:
                first = await asyncio.wait_for(self._intake.get(), 0.5)
            except asyncio.TimeoutError:
                continue
            batch = [first]
            while len(batch) < _REPUBLISH_BATCH and not self._intake.empty():
                batch.append(self._intake.get_nowait())
            try:
                if work is not None and not work.loaded:  # this listener just became the intake
                    await work.load(conn)
                sends: list[asyncio.Future[Any]] = []
                for m in batch:
                    key, extra, record = self._route(m)
                    copy = plain_message(m.body, m, {**_republished_headers(m), **extra})
                    sends.append(asyncio.ensure_future(exchange.publish(copy, routing_key=key)))
                    if record is not None and work is not None:
                        sends.append(work.append_soon(channel, record))
                await asyncio.gather(*sends)
                await batch[-1].ack(multiple=True)
                self.republished += len(batch)
            except Exception as exc:  # unacked: the broker hands them to the next active intake consumer
                log.warning("re-publishing %d message(s) failed: %s", len(batch), type(exc).__name__)
                return

    # -- ownership -------------------------------------------------------------------------------------

    async def _balance(self, conn: AbstractConnection) -> None:
        names = self.names
        total = names.amqp.shards
        probe = await conn.channel()
        try:
            presence = await probe.declare_queue(names.presence_queue, passive=True)
            listeners = max(1, int(presence.declaration_result.consumer_count or 1))
        finally:
            with contextlib.suppress(Exception):
                await probe.close()
        share = math.ceil(total / listeners)
        if len(self._owned) > share:
            await self._release(max(self._owned))
            return
        if len(self._owned) >= share:
            return
        start = id(self) % total
        for step in range(total):
            index = (start + step) % total
            if index in self._owned:
                continue
            if await self._claim(conn, index) and len(self._owned) >= share:
                return

    async def _claim(self, conn: AbstractConnection, index: int) -> bool:
        names = self.names
        lease = await conn.channel()
        try:
            await lease.declare_queue(names.owner(index), exclusive=True, auto_delete=True)
        except (aiormq.exceptions.ChannelLockedResource, aiormq.exceptions.ChannelAccessRefused):
            with contextlib.suppress(Exception):
                await lease.close()
            return False
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=names.amqp.prefetch_count)
        queue = await channel.declare_queue(names.shard(index), passive=True)
        if self._on_claim is not None:
            self._on_claim(names.shard(index))
        owned = _Owned(index, lease, channel, "", queue)
        assert self._publisher is not None
        publisher = self._publisher
        shard = names.shard(index)

        async def on_message(message: AbstractIncomingMessage) -> None:
            if self._owned.get(index) is not owned:
                # delivered before the release but started after it: left unsettled, so it goes back to
                # the shard with the channel, for the next owner (handling it here would overlap with them)
                return
            task = asyncio.current_task()
            if task is not None:
                owned.tasks.add(task)
            try:
                await self._deliver(message, shard, publisher)
            finally:
                if task is not None:
                    owned.tasks.discard(task)

        self._owned[index] = owned  # before consuming: a delivery may start before consume() returns
        self.owned.add(index)
        owned.consumer_tag = await queue.consume(on_message)
        log.info("shard %s: claimed (%d owned)", shard, len(self._owned))
        return True

    async def _release(self, index: int) -> None:
        """Stop consuming, finish what this listener holds of the shard, then give up ownership."""
        owned = self._owned.pop(index)
        self.owned.discard(index)
        with contextlib.suppress(Exception):
            await owned.queue.cancel(owned.consumer_tag)
        if owned.tasks:
            _done, pending = await asyncio.wait(set(owned.tasks), timeout=self._drain_timeout)
            for task in pending:
                task.cancel()
        with contextlib.suppress(Exception):
            await owned.channel.close()
        with contextlib.suppress(Exception):
            await owned.lease.queue_delete(self.names.owner(index))
        with contextlib.suppress(Exception):
            await owned.lease.close()
        log.info("shard %s: released (%d owned)", self.names.shard(index), len(self._owned))


def _republished_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The intake message's headers, plus its CFX routing key and whether the broker redelivered it
    (then an earlier intake may have re-published it already: its handlers check WATS first)."""
    headers = {**(message.headers or {}), HEADER_ROUTING_KEY: message.routing_key or ""}
    if message.redelivered:
        headers[HEADER_REDELIVERED] = True
    return headers


async def _never_called(message: AbstractIncomingMessage) -> None:
    """Consumer on the presence queue: it only counts listeners; nothing is ever published there."""
