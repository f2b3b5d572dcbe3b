"""CFXTransport against the real RabbitMQ: routing, ack-after-accept, poison messages, reconnects."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import shutil
import subprocess
import uuid
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from brokers import RABBITMQ_HOST, RABBITMQ_PORT, TcpProxy
from transport_doubles import RecordingContext

from pywats_cfx.amqp import (
    AMQPConfig,
    CFXConfig,
    CFXTransport,
    EndpointConfig,
    build_envelope,
    encode_envelope,
)
from pywats_events import BusStateError
from pywats_events.transports import ConnectionState

from ._support import JsonEnvelopeCodec

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"
WORK_COMPLETED = "CFX.Production.WorkCompleted"
FAULT = "CFX.ResourcePerformance.FaultOccurred"
HANDLE = "Vendor.ICT.SN1001"


def make_config(names: dict[str, str], *, port: int = RABBITMQ_PORT, **amqp: Any) -> CFXConfig:
    settings: dict[str, Any] = {
        "host": RABBITMQ_HOST,
        "port": port,
        "exchange": names["exchange"],
        "queue": names["queue"],
        "dead_letter_exchange": names["dlx"],
        "reconnect_interval": 0.2,
        "connect_timeout": 3,
    }
    settings.update(amqp)
    return CFXConfig(
        amqp=AMQPConfig(**settings),
        endpoint=EndpointConfig(cfx_handle="//Test/WATS/Listener"),
        drain_timeout=1,
    )


async def publish(
    admin: AbstractRobustConnection, exchange: str, name: str, *, compress: bool = True, serial: str = "SN1"
) -> str:
    envelope = build_envelope(name, {"TransactionId": "t-1", "Serial": serial}, HANDLE)
    outgoing = encode_envelope(envelope, compress=compress)
    channel = await admin.channel()
    target = await channel.get_exchange(exchange, ensure=False)
    await target.publish(aio_pika.Message(**outgoing.message_kwargs()), routing_key=outgoing.routing_key)
    await channel.close()
    return str(envelope["UniqueID"])


async def ready_count(admin: AbstractRobustConnection, queue: str) -> int:
    channel = await admin.channel()
    declared = await channel.declare_queue(queue, passive=True)
    await channel.close()
    count = declared.declaration_result.message_count
    assert count is not None
    return count


async def test_gzipped_and_plain_envelopes_arrive_in_order_and_are_acked(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    config = make_config(names, message_types=[UNITS_TESTED, WORK_COMPLETED])
    context = RecordingContext()
    transport = CFXTransport(config, codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        assert transport.state is ConnectionState.CONNECTED
        first = await publish(admin, names["exchange"], UNITS_TESTED, compress=True)
        await publish(admin, names["exchange"], FAULT)  # not bound: must not arrive
        second = await publish(admin, names["exchange"], WORK_COMPLETED, compress=False)
        await context.wait_for(lambda: len(context.events) >= 2)
        await asyncio.sleep(0.3)
        assert context.ids("unique_id") == [first, second]
        assert context.events[0].metadata.source_topic == f"{HANDLE}.{UNITS_TESTED}"
        assert context.quarantined == []
        await asyncio.sleep(0.2)
        assert transport.stats.acked == 2
    finally:
        await transport.stop()
    assert transport.state is ConnectionState.CLOSED
    assert await ready_count(admin, names["queue"]) == 0  # acked, nothing handed back


async def test_codec_sees_transport_headers(admin: AbstractRobustConnection, names: dict[str, str]) -> None:
    seen: list[tuple[dict[str, Any], str | None]] = []

    class SpyCodec(JsonEnvelopeCodec):
        def decode(self, body: bytes, headers: Any = None, topic: str | None = None) -> Any:
            seen.append((dict(headers or {}), topic))
            return super().decode(body, headers, topic)

    context = RecordingContext()
    transport = CFXTransport(make_config(names), codec=SpyCodec())
    await transport.start(context)
    try:
        unique_id = await publish(admin, names["exchange"], UNITS_TESTED)
        await context.wait_for(lambda: len(context.events) == 1)
    finally:
        await transport.stop()
    headers, topic = seen[0]
    assert topic == f"{HANDLE}.{UNITS_TESTED}"
    assert headers["content-encoding"] == "gzip"
    assert headers["message-id"] == unique_id
    assert headers["cfx-message"] == UNITS_TESTED
    assert headers["cfx-handle"] == HANDLE


async def test_poison_message_is_quarantined_dead_lettered_and_does_not_block(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    context = RecordingContext()
    transport = CFXTransport(make_config(names), codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        channel = await admin.channel()
        exchange = await channel.get_exchange(names["exchange"], ensure=False)
        poison = gzip.compress(b'{"MessageName": "CFX.Production.WorkCompleted", broken')
        await exchange.publish(
            aio_pika.Message(body=poison, content_encoding="gzip"), routing_key=f"{HANDLE}.{WORK_COMPLETED}"
        )
        await channel.close()
        good = await publish(admin, names["exchange"], WORK_COMPLETED)
        await context.wait_for(lambda: len(context.events) == 1 and len(context.quarantined) == 1)
    finally:
        await transport.stop()
    assert context.ids("unique_id") == [good]
    record = context.quarantined[0]
    assert record.raw == poison and "not a CFX envelope" in record.reason
    assert record.topic == f"{HANDLE}.{WORK_COMPLETED}"
    # The broker's dead-letter exchange kept the original bytes.
    channel = await admin.channel()
    dlq = await channel.declare_queue(names["dlq"], passive=True)
    dead = await dlq.get(timeout=5)
    assert dead.body == poison
    await dead.ack()
    await channel.close()
    assert await ready_count(admin, names["queue"]) == 0


async def test_message_stays_unacked_until_the_bus_accepts_it(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    gate = asyncio.Event()
    context = RecordingContext(gate=gate)
    transport = CFXTransport(make_config(names), codec=JsonEnvelopeCodec())
    await transport.start(context)
    unique_id = await publish(admin, names["exchange"], UNITS_TESTED)
    await asyncio.wait_for(context.submitting.wait(), 5)
    assert transport.stats.acked == 0
    # The handler never accepts: stopping hands the message back to the broker instead of acking it.
    await transport.stop()
    assert transport.stats.acked == 0
    assert await ready_count(admin, names["queue"]) == 1

    # A fresh consumer gets it again, and acks once accepted.
    again = RecordingContext()
    transport = CFXTransport(make_config(names), codec=JsonEnvelopeCodec())
    await transport.start(again)
    try:
        await again.wait_for(lambda: len(again.events) == 1)
        await asyncio.sleep(0.2)
    finally:
        await transport.stop()
    assert again.ids("unique_id") == [unique_id]
    assert await ready_count(admin, names["queue"]) == 0


async def test_connection_cut_mid_stream_loses_nothing(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    proxy = TcpProxy(RABBITMQ_HOST, RABBITMQ_PORT)
    await proxy.start()
    context = RecordingContext(submit_delay=0.002)
    transport = CFXTransport(
        make_config(names, port=proxy.port, prefetch_count=20), codec=JsonEnvelopeCodec()
    )
    await transport.start(context)
    sent: list[str] = []
    try:
        for i in range(150):
            sent.append(await publish(admin, names["exchange"], UNITS_TESTED, serial=f"SN{i}"))
        await context.wait_for(lambda: len(context.events) >= 40)
        proxy.accepting = False
        proxy.cut()  # the broker connection dies with deliveries in flight
        await context.wait_for(lambda: ConnectionState.DISCONNECTED in context.states, timeout=5)
        for i in range(150, 200):  # traffic keeps arriving while we are away
            sent.append(await publish(admin, names["exchange"], UNITS_TESTED, serial=f"SN{i}"))
        await asyncio.sleep(0.5)
        proxy.accepting = True
        await context.wait_for(lambda: set(context.ids("unique_id")) >= set(sent), timeout=15)
        await asyncio.sleep(0.3)
    finally:
        await transport.stop()
        await proxy.close()
    assert set(context.ids("unique_id")) == set(
        sent
    )  # nothing lost; duplicates allowed (de-duplicated downstream)
    disconnected = context.states.index(ConnectionState.DISCONNECTED)
    assert ConnectionState.CONNECTED in context.states[disconnected:]
    assert await ready_count(admin, names["queue"]) == 0


async def test_credentials_never_appear_in_logs_errors_or_reprs(
    rabbitmq: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-Pa55word-7731"
    env = {"CFX_AMQP_URL": f"amqp://guest:{secret}@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"}
    config = CFXConfig(
        amqp=AMQPConfig(exchange=names["exchange"], queue=names["queue"], connect_timeout=3),
        endpoint=EndpointConfig(cfx_handle="//Test/WATS/Listener"),
    )
    transport = CFXTransport(config, codec=JsonEnvelopeCodec(), environ=env)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectionError) as info:
        await transport.start(RecordingContext())
    texts = [str(info.value), repr(info.value), repr(transport), repr(config), str(config), caplog.text]
    texts.append(repr(config.amqp.connection_parameters(env)))
    texts.append(repr(CFXConfig(amqp=AMQPConfig(url=env["CFX_AMQP_URL"]), endpoint=config.endpoint)))
    for text in texts:
        assert secret not in text
    assert f"guest:******@{RABBITMQ_HOST}" in str(info.value)
    assert transport.state is ConnectionState.DISCONNECTED


async def test_quorum_queue_with_dead_lettering(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    context = RecordingContext()
    transport = CFXTransport(make_config(names, queue_type="quorum"), codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        unique_id = await publish(admin, names["exchange"], UNITS_TESTED)
        await context.wait_for(lambda: len(context.events) == 1)
    finally:
        await transport.stop()
    assert context.ids("unique_id") == [unique_id]
    channel = await admin.channel()
    declared = await channel.declare_queue(
        names["queue"],
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": names["dlx"],
            "x-dead-letter-routing-key": names["queue"],
        },
    )  # an equivalent re-declare succeeds only if the type and arguments match
    assert declared.name == names["queue"]
    await channel.close()


async def test_consumes_an_existing_queue_passively(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    channel = await admin.channel()
    exchange = await channel.declare_exchange(names["exchange"], aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(names["queue"], durable=True)
    await queue.bind(exchange, routing_key=f"#.{UNITS_TESTED}")
    await channel.close()
    unique_id = await publish(admin, names["exchange"], UNITS_TESTED)
    context = RecordingContext()
    transport = CFXTransport(make_config(names, passive_queue=True), codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        await context.wait_for(lambda: len(context.events) == 1)
    finally:
        await transport.stop()
    assert context.ids("unique_id") == [unique_id]


async def test_missing_passive_queue_is_a_clear_start_error(names: dict[str, str]) -> None:
    transport = CFXTransport(make_config(names, passive_queue=True), codec=JsonEnvelopeCodec())
    with pytest.raises(ConnectionError, match=names["queue"]):
        await transport.start(RecordingContext())
    assert transport.state is ConnectionState.DISCONNECTED


async def test_announces_itself_and_sends_heartbeats(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    handle = "//Company/WATS/Station1"
    channel = await admin.channel()
    exchange = await channel.declare_exchange(names["exchange"], aio_pika.ExchangeType.TOPIC, durable=True)
    names["extra_queue"] = f"{names['queue']}.watch"
    watch = await channel.declare_queue(names["extra_queue"], durable=True)
    await watch.bind(exchange, routing_key="#.CFX.EndpointConnected")
    await watch.bind(exchange, routing_key="#.CFX.Heartbeat")
    base = make_config(names)
    config = base.model_copy(
        update={"endpoint": EndpointConfig(cfx_handle=handle, announce=True, heartbeat_interval=1.0)}
    )
    context = RecordingContext()
    transport = CFXTransport(config, codec=JsonEnvelopeCodec())
    await transport.start(context)
    received: list[tuple[str, dict[str, Any]]] = []
    try:
        while len(received) < 3:
            message = await watch.get(timeout=5, fail=False)
            if message is None:
                await asyncio.sleep(0.2)
                continue
            await message.ack()
            assert message.content_encoding == "gzip"
            received.append((message.routing_key or "", json.loads(gzip.decompress(message.body))))
    finally:
        await transport.stop()
        await channel.close()
    keys = [key for key, _ in received]
    assert keys[0] == f"{handle}.CFX.EndpointConnected"
    assert f"{handle}.CFX.Heartbeat" in keys
    heartbeat = next(env for key, env in received if key.endswith("Heartbeat"))
    assert heartbeat["Source"] == handle
    assert heartbeat["MessageBody"]["$type"] == "CFX.Heartbeat, CFX"
    assert heartbeat["MessageBody"]["HeartbeatFrequency"] == "00:00:01"
    assert context.events == []  # our own announcements are not fed back into the bus


async def test_refused_submit_requeues_instead_of_dropping_or_dead_lettering(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    class RefusingOnce(RecordingContext):
        refused = 0

        async def submit(self, events: Any) -> None:
            if not self.refused:
                self.refused += 1
                raise BusStateError("bus is not running")
            await super().submit(events)

    context = RefusingOnce()
    transport = CFXTransport(make_config(names), codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        unique_id = await publish(admin, names["exchange"], UNITS_TESTED)
        await context.wait_for(lambda: len(context.events) == 1)
        await asyncio.sleep(0.2)
    finally:
        await transport.stop()
    assert context.ids("unique_id") == [unique_id]
    assert transport.stats.requeued == 1 and transport.stats.dead_lettered == 0
    assert context.quarantined == []
    assert await ready_count(admin, names["queue"]) == 0
    assert await ready_count(admin, names["dlq"]) == 0


def _rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.skip("rabbitmqctl not available")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=15)
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl not usable here: {done.stderr.strip()[:200]}")
    return done.stdout


@pytest.mark.slow
async def test_broker_forced_close_of_our_connection_is_survived(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    """What a broker shutdown does (CONNECTION_FORCED), closing only this test's own connection."""
    connection_name = f"pywats-test-{uuid.uuid4().hex[:10]}"
    context = RecordingContext()
    transport = CFXTransport(make_config(names, connection_name=connection_name), codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        first = await publish(admin, names["exchange"], UNITS_TESTED)
        await context.wait_for(lambda: len(context.events) == 1)
        listing = await asyncio.to_thread(_rabbitmqctl, "list_connections", "-q", "pid", "client_properties")
        ours = [line.split("\t")[0] for line in listing.splitlines() if connection_name in line]
        assert len(ours) == 1, listing
        await asyncio.to_thread(_rabbitmqctl, "close_connection", ours[0], "pywats transport test")
        await context.wait_for(lambda: ConnectionState.DISCONNECTED in context.states, timeout=10)
        second = await publish(admin, names["exchange"], UNITS_TESTED)
        await context.wait_for(lambda: second in context.ids("unique_id"), timeout=10)
    finally:
        await transport.stop()
    assert context.ids("unique_id")[0] == first
    assert ConnectionState.CONNECTED in context.states[context.states.index(ConnectionState.DISCONNECTED) :]


async def test_partial_batch_and_a_raising_codec_lose_nothing(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    """A batch with one broken envelope: good events are accepted, the message still goes to the DLX for
    forensics. A codec that breaks its never-raise contract costs no message either."""

    class Flaky(JsonEnvelopeCodec):
        def decode(self, body: bytes, headers: Any = None, topic: str | None = None) -> Any:
            if body == b"boom":
                raise RuntimeError("codec bug")
            if body == b"half":
                good = super().decode(encode_envelope(build_envelope(WORK_COMPLETED, {}, HANDLE)).body)
                bad = super().decode(b"{", headers, topic)
                good.quarantined = bad.quarantined
                return good
            return super().decode(body, headers, topic)

    context = RecordingContext()
    transport = CFXTransport(make_config(names), codec=Flaky())
    await transport.start(context)
    try:
        channel = await admin.channel()
        exchange = await channel.get_exchange(names["exchange"], ensure=False)
        for body in (b"boom", b"half"):
            await exchange.publish(aio_pika.Message(body=body), routing_key=f"{HANDLE}.{WORK_COMPLETED}")
        await channel.close()
        await context.wait_for(lambda: len(context.quarantined) == 2 and len(context.events) == 1)
        await asyncio.sleep(0.2)
    finally:
        await transport.stop()
    assert "codec raised RuntimeError: codec bug" in context.quarantined[0].reason
    assert context.quarantined[0].raw == b"boom"
    assert transport.stats.dead_lettered == 2 and transport.stats.acked == 0
    assert await ready_count(admin, names["dlq"]) == 2
    assert await ready_count(admin, names["queue"]) == 0
