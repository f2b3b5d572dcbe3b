"""Single writers on the real RabbitMQ: one listener at a time does the work, and the next one knows from
the ledger on the broker what the previous one did, even the increment it was sending when it died.

Two `WriterService`s stand for two listeners; FakeWATS over HTTP counts. "Dying" is the writer's
connection closing after its increment reached WATS and before its acks: what the broker sees of a
kill -9 at the worst moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from handlers.usage_writer import WRITER_NAME, UsageCountWriter
from handlers.wats.fake import FakeWATS
from handlers.wats.sender import HttpSender
from pywats_cfx.amqp.config import AMQPConfig
from pywats_cfx.amqp.dead_letters import AmqpDeadLetters
from pywats_cfx.amqp.topology import DistributedTopology, declare_distributed
from pywats_cfx.amqp.writers import WriterService
from pywats_events import TransientError
from pywats_events.single_writer import SingleWriters, WorkItem, WriterLedger

from ._support import unique

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

ASSET = "FX-7"
TOKEN = "writer-test-token"


@pytest.fixture
async def names(rabbitmq: str, admin: AbstractRobustConnection) -> AsyncIterator[DistributedTopology]:
    queue = unique("q")
    topology = DistributedTopology(
        AMQPConfig(
            url=rabbitmq,
            exchange=unique("cfx"),
            queue=queue,
            dead_letter_exchange=unique("dlx"),
            retry_delays=[1],
        )
    )
    connection = await aio_pika.connect(rabbitmq)
    async with connection:
        plant = await connection.channel()
        await plant.declare_exchange(topology.amqp.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await declare_distributed(connection, topology, [WRITER_NAME])
    yield topology
    work, ledger = topology.writer_queue(WRITER_NAME), topology.writer_ledger(WRITER_NAME)
    for name in (queue, f"{queue}.dead-letter", work, ledger, topology.delay_queue(1)):
        with contextlib.suppress(Exception):
            await (await admin.channel()).queue_delete(name)
    for name in (topology.amqp.exchange, topology.amqp.dead_letter_exchange or "", topology.return_exchange):
        with contextlib.suppress(Exception):
            await (await admin.channel()).exchange_delete(name)


class Listener:
    """One listener's part: its writer (which can be made to die after its next increment) and service."""

    def __init__(self, names: DistributedTopology, wats: FakeWATS) -> None:
        self.sender = HttpSender(wats.url, TOKEN, rate_limit_per_minute=1_000_000, max_attempts=1, timeout=5)
        self.inner = UsageCountWriter(self.sender.send)
        self.die_after_next = False
        self.writers = SingleWriters()
        self.submit = self.writers.declare(WRITER_NAME, self)
        url = names.amqp.url.get_secret_value() if names.amqp.url else ""

        async def connect() -> AbstractConnection:
            return await aio_pika.connect(url)

        self.service = WriterService(names, self.writers, connect)
        self.service_queue = names.writer_queue(WRITER_NAME)

    async def take_over(self, records: Sequence[Mapping[str, Any]]) -> None:
        await self.inner.take_over(records)

    async def serve(self, items: Sequence[WorkItem], ledger: WriterLedger) -> Mapping[str, BaseException]:
        failures = await self.inner.serve(items, ledger)
        if self.die_after_next:
            self.die_after_next = False
            self.service._stopping = True  # no reconnect: this listener is gone
            assert self.service._conn is not None
            await self.service._conn.close()  # increment sent, nothing acknowledged
        return failures

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.service.stop()
        await self.sender.aclose()


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def items(start: int, stop: int, *, repeat: bool = False) -> list[WorkItem]:
    return [WorkItem(f"unit-{i}", {"serial": ASSET, "increment": 1}, repeat) for i in range(start, stop)]


async def test_the_next_writer_counts_exactly_after_the_writer_died_between_increment_and_ack(
    names: DistributedTopology,
) -> None:
    with FakeWATS(token=TOKEN) as wats:
        wats.add_asset(ASSET)
        a, b = Listener(names, wats), Listener(names, wats)
        try:
            await a.service.start()
            await b.service.start()  # registered second: a standby while `a` lives
            for item in items(0, 50):
                await a.submit(item)
            await wait_for(lambda: wats.assets[ASSET]["totalCount"] == 50, "the first 50 counted")
            assert (a.service.served, b.service.served) == (50, 0)

            a.die_after_next = True
            for item in items(50, 60):
                await b.submit(item)  # any listener submits; the writer counts
            await wait_for(lambda: b.service.takeovers == 1, "the standby to take over")
            # copies from listeners whose acks were lost in the same crash, and new units
            for item in [*items(0, 10, repeat=True), *items(55, 60, repeat=True), *items(60, 70)]:
                await b.submit(item)
            # every item settled once: `a` acknowledged its first 50, `b` the 10 `a` died holding and 25 more
            await wait_for(lambda: (a.service.served, b.service.served) == (50, 35), "every item settled")
            assert wats.assets[ASSET]["totalCount"] == 70
        finally:
            await a.close()
            await b.close()
        assert a.service.dead_lettered == b.service.dead_lettered == 0


async def test_an_outage_sends_the_work_back_to_the_broker_instead_of_holding_it(
    names: DistributedTopology, admin: AbstractRobustConnection
) -> None:
    with FakeWATS(token=TOKEN) as wats:
        wats.add_asset(ASSET)
        a = Listener(names, wats)
        try:
            await a.service.start()
            wats.inject("error", status=503)
            for item in items(0, 5):
                await a.submit(item)
            await wait_for(lambda: a.service.retried >= 5, "the items delayed on the broker")
            assert a.service.served == 0
            wats.clear_faults()
            await wait_for(lambda: a.service.served == 5, "the items back and counted")
            assert wats.assets[ASSET]["totalCount"] == 5
        finally:
            await a.close()


async def test_an_item_that_cannot_succeed_is_a_dead_letter_that_dlq_replay_returns_to_the_writer(
    names: DistributedTopology,
) -> None:
    with FakeWATS(token=TOKEN) as wats:
        wats.add_asset(ASSET)
        a = Listener(names, wats)
        dead_letters = AmqpDeadLetters(names.amqp)
        try:
            await a.service.start()
            await a.submit(WorkItem("unit-x", {"increment": 1}))  # names no asset
            await wait_for(lambda: a.service.dead_lettered == 1, "the dead letter")
            (entry,) = await dead_letters.browse()
            assert (entry.id, entry.handlers) == ("unit-x", "writer-asset-usage")
            assert entry.queue == a.service_queue
            assert "not a usage count" in entry.reason
            assert await dead_letters.replay(["unit-x"]) == 1
            await wait_for(lambda: a.service.dead_lettered == 2, "the replayed item back at the writer")
        finally:
            await a.close()


async def test_submitting_without_a_serving_transport_is_a_transient_failure() -> None:
    writers = SingleWriters()
    submit = writers.declare("asset-usage", UsageCountWriter(_never))
    with pytest.raises(TransientError):
        await submit(WorkItem("k", {"serial": ASSET}))
    with pytest.raises(ValueError):
        writers.declare("asset-usage", UsageCountWriter(_never))
    with pytest.raises(ValueError):
        writers.declare("no spaces", UsageCountWriter(_never))


async def _never(request: Any) -> Any:
    raise AssertionError("not called")
