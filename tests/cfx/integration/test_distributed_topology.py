"""The distributed topology on the real RabbitMQ: a retried message returns to its own queue only."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from pywats_cfx.amqp.config import AMQPConfig
from pywats_cfx.amqp.topology import HEADER_QUEUE, HEADER_RETURN, DistributedTopology, declare_distributed

from ._support import unique

pytestmark = [pytest.mark.broker]

SHARDS = 3


@pytest.fixture
async def topology(rabbitmq: str, admin: AbstractRobustConnection) -> AsyncIterator[DistributedTopology]:
    queue, dlx = unique("q"), unique("dlx")
    names = DistributedTopology(
        AMQPConfig(url=rabbitmq, exchange=unique("cfx"), queue=queue, dead_letter_exchange=dlx, shards=SHARDS)
    )
    yield names
    for name in [*names.shards, queue, f"{queue}.dead-letter", names.presence_queue]:
        with contextlib.suppress(Exception):
            await (await admin.channel()).queue_delete(name)
    for seconds in names.amqp.retry_delays:
        with contextlib.suppress(Exception):
            await (await admin.channel()).queue_delete(names.delay_queue(seconds))
    for name in (names.amqp.exchange, dlx, names.hash_exchange, names.return_exchange):
        with contextlib.suppress(Exception):
            await (await admin.channel()).exchange_delete(name)


async def _depths(admin: AbstractRobustConnection, queues: list[str]) -> list[int]:
    channel = await admin.channel()
    found = []
    for name in queues:
        q = await channel.declare_queue(name, passive=True)
        found.append(int(q.declaration_result.message_count or 0))
    await channel.close()
    return found


async def test_a_message_from_a_delay_queue_returns_to_its_shard_only(
    admin: AbstractRobustConnection, topology: DistributedTopology
) -> None:
    names = topology
    connection = await aio_pika.connect(names.amqp.url.get_secret_value() if names.amqp.url else "")
    async with connection:
        plant = await connection.channel()
        await plant.declare_exchange(names.amqp.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await declare_distributed(connection, names)
        await declare_distributed(connection, names)  # idempotent
    target = names.shard(1)
    channel = await admin.channel()
    delay = min(names.amqp.retry_delays)
    headers = {HEADER_QUEUE: target, HEADER_RETURN: target}
    await channel.default_exchange.publish(
        aio_pika.Message(b"{}", headers=headers, expiration=0.05), routing_key=names.delay_queue(delay)
    )
    assert await _returned(admin, names.shards, timeout=20) == [0, 1, 0]


async def _returned(admin: AbstractRobustConnection, shards: list[str], *, timeout: float) -> list[int]:
    """The shards' depths once the expired message arrived somewhere (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    depths = await _depths(admin, shards)
    for _ in range(int(timeout * 10)):
        if sum(depths) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
        depths = await _depths(admin, shards)
    return await _depths(admin, shards)
