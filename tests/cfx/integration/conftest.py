from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from brokers import require_rabbitmq

from ._support import unique


@pytest.fixture
def rabbitmq() -> str:
    return require_rabbitmq()


@pytest.fixture
async def admin(rabbitmq: str) -> AsyncIterator[AbstractRobustConnection]:
    """A direct connection for publishing, inspecting and cleaning up."""
    connection = await aio_pika.connect_robust(
        rabbitmq, client_properties={"connection_name": "cfx-test-admin"}
    )
    yield connection
    await connection.close()


@pytest.fixture
async def names(admin: AbstractRobustConnection) -> AsyncIterator[dict[str, str]]:
    """Unique exchange / queue / DLX names per test, deleted afterwards."""
    created = {
        "exchange": unique("cfx"),
        "queue": unique("q"),
        "dlx": unique("dlx"),
    }
    created["dlq"] = f"{created['queue']}.dead-letter"
    yield created
    channel = await admin.channel()
    for queue in (created["queue"], created["dlq"], created.get("extra_queue", "")):
        if queue:
            try:
                await channel.queue_delete(queue)
            except Exception:
                channel = await admin.channel()
    for exchange in (created["exchange"], created["dlx"]):
        try:
            await channel.exchange_delete(exchange)
        except Exception:
            channel = await admin.channel()
    await channel.close()
