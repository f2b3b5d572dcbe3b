"""Transport rigs: one per transport, each starting its transport against its real source and feeding it raw
messages, so that `test_transport_contract.py` runs the same cases against every transport.

A rig may start several transports one after another on the same source (the same AMQP queue, the same MQTT
persistent session): that is how a case checks what the source holds for the next consumer. The AMQP and MQTT
rigs connect the transport through a `TcpProxy`, so a case can cut the connection without touching the broker.
"""

from __future__ import annotations

import abc
import asyncio
import json
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from brokers import MQTT_HOST, MQTT_PORT, RABBITMQ_HOST, RABBITMQ_PORT, TcpProxy
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from pywats_cfx import AMQPConfig, CFXConfig, CFXTransport, EndpointConfig
from pywats_events import BusStateError, DecodeResult, Event, EventMetadata, EventType
from pywats_events.transports import BaseTransport, MockTransport, QuarantineRecord, TransportContext
from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport
from pywats_events.transports.replay import ReplayMessage, ReplayTransport
from pywats_events.transports.webhook import Hook, HookAuth, WebhookSettings, WebhookTransport

#: bounded waits: generous, because the CI machine is loaded; a passing case never waits this long
WAIT = 15.0
#: how long `stop()` waits for a blocked submit before handing the message back to the broker
DRAIN_TIMEOUT = 0.5
#: undecodable input, the same bytes for every transport
BAD_BODY = b"\xff\xfe\x00 not json"


def good_body(message_id: str) -> bytes:
    return json.dumps({"id": message_id}).encode()


class ContractCodec:
    """`{"id": ...}` → one passthrough event carrying that id; anything else → quarantine with the reason."""

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        try:
            message_id = json.loads(body)["id"]
        except Exception as exc:
            record = QuarantineRecord(
                raw=body, reason=f"not a contract message: {exc!r}", headers=dict(headers or {}), topic=topic
            )
            return DecodeResult(quarantined=[record])
        event = Event(
            event_type=EventType.PASSTHROUGH,
            payload={"id": message_id},
            metadata=EventMetadata(causation_id=message_id, source_topic=topic),
        )
        return DecodeResult(events=[event])


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT) -> None:
    """Polls `check` until it holds; fails with `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


class TransportRig(abc.ABC):
    """Starts transports of one kind on one source and feeds that source."""

    name: str
    #: why the source cannot hold an unacknowledged message for the next consumer (None: it can)
    no_redelivery: str | None = None
    #: why a message sent after stop cannot be offered to this transport (None: it can)
    no_input_after_stop: str | None = None
    #: why the transport's connection cannot be cut (None: `cut_connection` works)
    no_connection_cut: str | None = None

    def __init__(self) -> None:
        self.transports: list[BaseTransport] = []

    @abc.abstractmethod
    async def start(self, context: TransportContext, bodies: Sequence[bytes] = ()) -> BaseTransport:
        """Starts a new transport on the rig's source and sends it `bodies` in order."""

    @abc.abstractmethod
    async def send(self, body: bytes) -> None:
        """Offers one more message to the source (without waiting for the transport to take it)."""

    async def held_at_source(self, count: int) -> None:
        """Waits until the last `count` messages sent wait at the source, taken by no transport."""
        raise NotImplementedError(self.no_redelivery or self.no_input_after_stop)

    async def cut_connection(self) -> None:
        """Kills the live broker connection the way a crash or a pulled cable would."""
        raise NotImplementedError(self.no_connection_cut)

    async def close(self) -> None:
        for transport in self.transports:
            await transport.stop()


class MockRig(TransportRig):
    """`MockTransport`: the test is the source; `ainject_event` returning is what a broker ack would be."""

    name = "mock"
    no_redelivery = "MockTransport has no broker: the injecting caller keeps a message until submit returned"

    def __init__(self) -> None:
        super().__init__()
        self.transport: MockTransport | None = None
        self.injections: list[asyncio.Task[None]] = []

    async def start(self, context: TransportContext, bodies: Sequence[bytes] = ()) -> BaseTransport:
        self.transport = MockTransport()
        self.transports.append(self.transport)
        await self.transport.start(context)
        for body in bodies:
            await self.send(body)
        return self.transport

    async def send(self, body: bytes) -> None:
        # The mock takes events, not bytes: decode here, as a broker transport's codec would.
        assert self.transport is not None
        result = ContractCodec().decode(body)
        if result.events:
            task = asyncio.create_task(self.transport.ainject_event(result.events))
        else:
            task = asyncio.create_task(self.transport.ainject_raw(body, result.quarantined[0].reason))
        self.injections.append(task)
        await asyncio.sleep(0)  # the injection has begun: sends reach the bus in send order

    async def held_at_source(self, count: int) -> None:
        for task in self.injections[-count:]:
            with pytest.raises(BusStateError):
                await task  # refused: the caller still has the message

    async def cut_connection(self) -> None:
        assert self.transport is not None
        self.transport.simulate_disconnect("cut by the contract test")
        self.transport.simulate_connect("back")

    async def close(self) -> None:
        for task in self.injections:
            task.cancel()
        await asyncio.gather(*self.injections, return_exceptions=True)
        await super().close()


class ReplayRig(TransportRig):
    """`ReplayTransport`: the source is a capture, fixed when the transport starts."""

    name = "replay"
    no_redelivery = "a replay has no broker ack: its input stays in the capture whatever happens"
    no_input_after_stop = "a replay's input is fixed when it starts: nothing can be offered to it later"
    no_connection_cut = "a replay reads a capture: it has no connection to lose"

    async def start(self, context: TransportContext, bodies: Sequence[bytes] = ()) -> BaseTransport:
        messages = [
            ReplayMessage(body, {}, "contract/replay", f"capture:{n}") for n, body in enumerate(bodies)
        ]
        transport = ReplayTransport(ContractCodec(), messages=messages)
        self.transports.append(transport)
        await transport.start(context)
        return transport

    async def send(self, body: bytes) -> None:
        raise NotImplementedError(self.no_input_after_stop)


class WebhookRig(TransportRig):
    """`WebhookTransport` on a fixed loopback port, fed by a caller that behaves like a webhook sender: it
    posts its messages one after another and retries each until it is answered 202 (not after a 4xx)."""

    name = "webhook"
    no_connection_cut = "an HTTP server holds no connection of its own: every request is a new one"

    def __init__(self) -> None:
        super().__init__()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.data = Path(tempfile.mkdtemp(prefix="webhook-rig-"))
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=WAIT)
        self.outbox: asyncio.Queue[int] = asyncio.Queue()
        self.bodies: list[bytes] = []
        #: per message sent: refused attempts, and the final status (202 or a 4xx) once answered
        self.refused: list[int] = []
        self.answered: list[int | None] = []
        self.worker: asyncio.Task[None] | None = None

    async def start(self, context: TransportContext, bodies: Sequence[bytes] = ()) -> BaseTransport:
        hook = Hook("contract", ContractCodec(), HookAuth("none", None))
        transport = WebhookTransport(
            WebhookSettings(port=self.port),
            {"contract": hook},
            keys_path=self.data / "keys.db",
            drain_timeout=DRAIN_TIMEOUT,
        )
        self.transports.append(transport)
        await transport.start(context)
        if self.worker is None:
            self.worker = asyncio.create_task(self._post_in_order())
        for body in bodies:
            await self.send(body)
        return transport

    async def send(self, body: bytes) -> None:
        self.bodies.append(body)
        self.refused.append(0)
        self.answered.append(None)
        await self.outbox.put(len(self.bodies) - 1)

    async def _post_in_order(self) -> None:
        while True:
            index = await self.outbox.get()
            while True:
                try:
                    answer = await self.client.post("/hooks/contract", content=self.bodies[index])
                except httpx.TransportError:
                    status = 0
                else:
                    status = answer.status_code
                if status == 202 or (400 <= status < 500 and status != 429):
                    self.answered[index] = status
                    break
                self.refused[index] += 1
                await asyncio.sleep(0.05)

    async def held_at_source(self, count: int) -> None:
        async def held() -> bool:
            last = range(len(self.bodies) - count, len(self.bodies))
            return all(self.refused[i] > 0 and self.answered[i] is None for i in last)

        await eventually(held, f"the caller still holding its last {count} message(s), refused")

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
        try:
            await super().close()
        finally:
            await self.client.aclose()
            shutil.rmtree(self.data, ignore_errors=True)


class AmqpRig(TransportRig):
    """`CFXTransport` on its own exchange and queue of the real RabbitMQ, reached through a `TcpProxy`."""

    name = "amqp"

    def __init__(self, admin: AbstractRobustConnection, proxy: TcpProxy) -> None:
        super().__init__()
        self.admin = admin
        self.proxy = proxy
        tag = uuid.uuid4().hex[:10]
        self.exchange = f"test.contract.{tag}"
        self.queue = f"test.contract.q.{tag}"
        self.dlx = f"test.contract.dlx.{tag}"
        self.config = CFXConfig(
            amqp=AMQPConfig(
                host=RABBITMQ_HOST,
                port=proxy.port,
                exchange=self.exchange,
                queue=self.queue,
                dead_letter_exchange=self.dlx,
                reconnect_interval=0.2,
                connect_timeout=5,
            ),
            endpoint=EndpointConfig(cfx_handle="//Test/Contract/Listener"),
            drain_timeout=DRAIN_TIMEOUT,
        )

    @classmethod
    async def open(cls, url: str) -> AmqpRig:
        proxy = TcpProxy(RABBITMQ_HOST, RABBITMQ_PORT)
        await proxy.start()
        admin = await aio_pika.connect_robust(url, client_properties={"connection_name": "contract-admin"})
        return cls(admin, proxy)

    async def start(self, context: TransportContext, bodies: Sequence[bytes] = ()) -> BaseTransport:
        transport = CFXTransport(self.config, codec=ContractCodec())
        self.transports.append(transport)
        await transport.start(context)  # returns once the queue is bound and consumed
        for body in bodies:
            await self.send(body)
        return transport

    async def send(self, body: bytes) -> None:
        channel = await self.admin.channel()
        exchange = await channel.get_exchange(self.exchange, ensure=False)
        await exchange.publish(aio_pika.Message(body=body), routing_key="Test.Contract.CFX.Message")
        await channel.close()

    async def ready_count(self) -> int:
        """Messages waiting in the queue, neither delivered nor delivered-and-unacknowledged."""
        channel = await self.admin.channel()
        declared = await channel.declare_queue(self.queue, passive=True)
        await channel.close()
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def held_at_source(self, count: int) -> None:
        async def held() -> bool:
            return await self.ready_count() == count

        await eventually(held, f"{count} message(s) ready in queue {self.queue}")

    async def cut_connection(self) -> None:
        self.proxy.cut()

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            channel = await self.admin.channel()
            for queue in (self.queue, f"{self.queue}.dead-letter"):
                await channel.queue_delete(queue)
            for exchange in (self.exchange, self.dlx):
                await channel.exchange_delete(exchange)
            await channel.close()
            await self.admin.close()
            await self.proxy.close()


class _PahoClient:
    """A plain paho client straight to the broker, driven from the test through thread-safe events."""

    def __init__(self, client_id: str, *, clean_session: bool, manual_ack: bool = False) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            manual_ack=manual_ack,
        )
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.messages: list[bytes] = []
        self.received = threading.Event()
        self.client.on_connect = lambda *_args: self.connected.set()
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        self.messages.append(bytes(message.payload))
        self.received.set()

    async def connect(self) -> None:
        self.client.connect(MQTT_HOST, MQTT_PORT)
        self.client.loop_start()
        assert await asyncio.to_thread(self.connected.wait, WAIT), "no CONNACK from Mosquitto"

    async def close(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


class MqttRig(TransportRig):
    """`MQTTTransport` with a persistent session (QoS 1) on the real Mosquitto, reached through a `TcpProxy`.

    The session and its subscription are created before the first transport starts (waiting for the SUBACK),
    so every message published from then on is held for the session: no guessed wait for the subscription.
    """

    name = "mqtt"

    def __init__(self, proxy: TcpProxy, publisher: _PahoClient) -> None:
        super().__init__()
        self.proxy = proxy
        self.publisher = publisher
        tag = uuid.uuid4().hex[:10]
        self.client_id = f"pywats-contract-{tag}"
        self.topic = f"test/contract/{tag}/station"
        self.config = MQTTConfig(
            host=MQTT_HOST,
            port=proxy.port,
            client_id=self.client_id,
            persistent_session=True,
            topics={f"test/contract/{tag}/#": None},
            reconnect_min_delay=1,
            reconnect_max_delay=1,
            connect_timeout=5,
            drain_timeout=DRAIN_TIMEOUT,
        )

    @classmethod
    async def open(cls) -> MqttRig:
        proxy = TcpProxy(MQTT_HOST, MQTT_PORT)
        await proxy.start()
        publisher = _PahoClient(f"pywats-contract-pub-{uuid.uuid4().hex[:8]}", clean_session=True)
        await publisher.connect()
        rig = cls(proxy, publisher)
        session = _PahoClient(rig.client_id, clean_session=False)
        await session.connect()
        session.client.subscribe(rig.config.all_subscriptions[0].topic, qos=1)
        assert await asyncio.to_thread(session.subscribed.wait, WAIT), "no SUBACK from Mosquitto"
        await session.close()
        return rig

    async def start(self, context: TransportContext, bodies: Sequence[bytes] = ()) -> BaseTransport:
        transport = MQTTTransport(self.config, ContractCodec())
        self.transports.append(transport)
        await transport.start(context)
        for body in bodies:
            await self.send(body)
        return transport

    async def send(self, body: bytes) -> None:
        info = self.publisher.client.publish(self.topic, body, qos=1)
        await asyncio.to_thread(info.wait_for_publish, WAIT)
        assert info.is_published(), "no PUBACK from Mosquitto"

    async def held_at_source(self, count: int) -> None:
        # Resume the session with a client that never acknowledges: the broker redelivers the messages
        # later to the next transport on this session.
        resumed = _PahoClient(self.client_id, clean_session=False, manual_ack=True)
        await resumed.connect()
        try:
            deadline = asyncio.get_running_loop().time() + WAIT
            while True:
                resumed.received.clear()
                if len(resumed.messages) >= count:
                    break
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0 or not await asyncio.to_thread(resumed.received.wait, left):
                    pytest.fail(f"the session held {len(resumed.messages)} of {count} message(s)")
        finally:
            await resumed.close()

    async def cut_connection(self) -> None:
        self.proxy.cut()

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            forget = _PahoClient(self.client_id, clean_session=True)  # drops the persistent session
            await forget.connect()
            await forget.close()
            await self.publisher.close()
            await self.proxy.close()
