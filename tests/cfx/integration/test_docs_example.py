"""The pyWATS docs' CFX adapter example, run as written against the real RabbitMQ (host filled in)."""

from __future__ import annotations

import asyncio
import gzip
import threading

import aio_pika
from brokers import RABBITMQ_HOST, RABBITMQ_URL, require_rabbitmq

from pywats_cfx import AMQPConfig, EndpointConfig
from pywats_cfx.samples import load_sample
from pywats_events import BaseHandler, EventType

# The example declares no queue or exchange: it uses the defaults, which this test removes afterwards.
DEFAULT_EXCHANGE = "cfx"
DEFAULT_QUEUES = ("pywats-events", "pywats-events.dead-letter")


async def _publish_sample(routing_key: str) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(DEFAULT_EXCHANGE)
        body = gzip.compress(load_sample("work_started"))
        await exchange.publish(
            aio_pika.Message(body, content_encoding="gzip", content_type="application/json"),
            routing_key=routing_key,
        )


async def _delete_defaults() -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for queue in DEFAULT_QUEUES:
            await channel.queue_delete(queue)


def test_docs_cfx_example_receives_cfx_messages() -> None:
    require_rabbitmq()
    received: list[str] = []
    arrived = threading.Event()

    class Collect(BaseHandler):
        event_types = [EventType.WORK_STARTED]

        def handle(self, event):
            received.append(event.payload["unit_serial"])
            arrived.set()

    try:
        # --- the example, as documented ---
        from pywats_cfx import CFXConfig, CFXTransport
        from pywats_events import EventBus

        # Configure CFX connection
        config = CFXConfig(
            amqp=AMQPConfig(host=RABBITMQ_HOST),
            endpoint=EndpointConfig(cfx_handle="//Company/WATS/Station1"),
        )

        # Create transport and connect to event bus
        transport = CFXTransport(config)
        bus = EventBus()
        bus.register_transport(transport)

        # CFX messages automatically converted to domain events
        bus.subscribe(Collect())  # (not in the docs: something to observe)
        bus.start()  # Starts receiving CFX messages
        # --- end of the example ---

        try:
            assert transport.is_connected
            asyncio.run(_publish_sample("Acme.Line1.Station1.CFX.Production.WorkStarted"))
            assert arrived.wait(10), "the WorkStarted sample never reached the handler"
            assert received and all(received)
        finally:
            report = bus.stop()
        assert report.clean
    finally:
        asyncio.run(_delete_defaults())
