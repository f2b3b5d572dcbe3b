"""MQTTTransport against the real Mosquitto: topic mapping, ack-after-accept, poison input, reconnects."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from brokers import MQTT_HOST, MQTT_PORT, TcpProxy, require_mosquitto
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tracing_support import PARENT
from transport_doubles import RecordingContext

from pywats_events import ConfigurationError
from pywats_events.transports import ConnectionState
from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport

from ._support import EnvelopeCodec

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"


class Publisher:
    """A plain paho publisher (QoS 1, waits for the broker's PUBACK)."""

    def __init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.connect(MQTT_HOST, MQTT_PORT)
        self.client.loop_start()

    async def send(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        await asyncio.to_thread(info.wait_for_publish, 5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def publisher() -> AsyncIterator[Publisher]:
    require_mosquitto()
    pub = Publisher()
    yield pub
    await asyncio.to_thread(pub.close)


@pytest.fixture
def prefix() -> str:
    return f"test/{uuid.uuid4().hex[:10]}"


def envelope(name: str = UNITS_TESTED, *, compress: bool = True) -> tuple[str, bytes]:
    unique_id = str(uuid.uuid4())
    doc = {"MessageName": name, "UniqueID": unique_id, "MessageBody": {"$type": f"{name}, CFX"}}
    raw = json.dumps(doc).encode()
    return unique_id, gzip.compress(raw) if compress else raw


async def test_receives_envelopes_and_bare_bodies_on_configured_topics(
    publisher: Publisher, prefix: str
) -> None:
    codec = EnvelopeCodec()
    config = MQTTConfig(
        host=MQTT_HOST,
        port=MQTT_PORT,
        client_id=f"pywats-test-{uuid.uuid4().hex[:8]}",
        persistent_session=False,
        topics={f"{prefix}/+/cfx": None, f"{prefix}/+/units_tested": UNITS_TESTED},
    )
    context = RecordingContext()
    transport = MQTTTransport(config, codec)
    await transport.start(context)
    try:
        assert transport.state is ConnectionState.CONNECTED
        await asyncio.sleep(0.2)  # subscription active
        gz_id, gz = envelope(compress=True)
        plain_id, plain = envelope("CFX.Production.WorkCompleted", compress=False)
        await publisher.send(f"{prefix}/ict1/cfx", gz)
        await publisher.send(f"{prefix}/ict1/cfx", plain)
        await publisher.send(f"{prefix}/ict1/units_tested", json.dumps({"Id": "bare-1"}).encode())
        await publisher.send(f"{prefix}/ict1/other", b"not subscribed")
        await context.wait_for(lambda: len(context.events) == 3)
        await asyncio.sleep(0.2)
        assert context.ids() == [gz_id, plain_id, "bare-1"]
        assert context.events[2].payload["name"] == UNITS_TESTED
        headers, topic = codec.seen[2]
        assert topic == f"{prefix}/ict1/units_tested" and headers["cfx-message"] == UNITS_TESTED
        assert "cfx-message" not in codec.seen[0][0]
        assert transport.stats.acked == 3 and transport.pending_acks() == 0
    finally:
        await transport.stop()
    assert transport.state is ConnectionState.CLOSED


async def test_undecodable_message_is_quarantined_and_the_next_one_processed(
    publisher: Publisher, prefix: str
) -> None:
    context = RecordingContext()
    transport = MQTTTransport(
        MQTTConfig(
            host=MQTT_HOST,
            port=MQTT_PORT,
            client_id=f"pywats-test-{uuid.uuid4().hex[:8]}",
            persistent_session=False,
            topics={f"{prefix}/#": None},
        ),
        EnvelopeCodec(),
    )
    await transport.start(context)
    try:
        await asyncio.sleep(0.2)
        await publisher.send(f"{prefix}/a", b"\x1f\x8bgarbage")
        good_id, good = envelope()
        await publisher.send(f"{prefix}/a", good)
        await context.wait_for(lambda: len(context.events) == 1 and len(context.quarantined) == 1)
    finally:
        await transport.stop()
    assert context.ids() == [good_id]
    assert context.quarantined[0].raw == b"\x1f\x8bgarbage"
    assert context.quarantined[0].topic == f"{prefix}/a"


async def test_unaccepted_message_is_not_acked_and_comes_back(publisher: Publisher, prefix: str) -> None:
    client_id = f"pywats-test-{uuid.uuid4().hex[:8]}"
    config = MQTTConfig(
        host=MQTT_HOST,
        port=MQTT_PORT,
        client_id=client_id,
        persistent_session=True,
        topics={f"{prefix}/#": None},
        drain_timeout=0.3,
    )
    gate = asyncio.Event()
    blocked = RecordingContext(gate=gate)
    transport = MQTTTransport(config, EnvelopeCodec())
    await transport.start(blocked)
    await asyncio.sleep(0.2)
    unique_id, body = envelope()
    await publisher.send(f"{prefix}/a", body)
    await asyncio.wait_for(blocked.submitting.wait(), 5)
    assert transport.pending_acks() == 1 and transport.stats.acked == 0
    await transport.stop()  # the bus never accepted it: no PUBACK
    assert transport.stats.acked == 0

    again = RecordingContext()
    transport = MQTTTransport(config, EnvelopeCodec())
    await transport.start(again)  # same client id, persistent session: the broker redelivers
    try:
        await again.wait_for(lambda: len(again.events) == 1)
        await asyncio.sleep(0.2)
        assert again.ids() == [unique_id]
        assert transport.stats.acked == 1
    finally:
        await transport.stop()
    await _drop_session(client_id)


async def test_reconnects_after_a_cut_connection_and_loses_nothing(publisher: Publisher, prefix: str) -> None:
    proxy = TcpProxy(MQTT_HOST, MQTT_PORT)
    await proxy.start()
    client_id = f"pywats-test-{uuid.uuid4().hex[:8]}"
    config = MQTTConfig(
        host="127.0.0.1",
        port=proxy.port,
        client_id=client_id,
        persistent_session=True,
        topics={f"{prefix}/#": None},
        reconnect_min_delay=1,
        reconnect_max_delay=1,
        keepalive=5,
    )
    context = RecordingContext()
    transport = MQTTTransport(config, EnvelopeCodec())
    await transport.start(context)
    sent: list[str] = []
    try:
        await asyncio.sleep(0.2)
        for _ in range(20):
            unique_id, body = envelope()
            sent.append(unique_id)
            await publisher.send(f"{prefix}/line", body)
        await context.wait_for(lambda: len(context.events) >= 20)
        proxy.accepting = False
        proxy.cut()
        await context.wait_for(lambda: ConnectionState.DISCONNECTED in context.states, timeout=5)
        for _ in range(20):  # queued by the broker for our persistent session
            unique_id, body = envelope()
            sent.append(unique_id)
            await publisher.send(f"{prefix}/line", body)
        proxy.accepting = True
        await context.wait_for(lambda: set(context.ids()) >= set(sent), timeout=15)
    finally:
        await transport.stop()
        await proxy.close()
    assert set(context.ids()) == set(sent)
    after = context.states.index(ConnectionState.DISCONNECTED)
    assert ConnectionState.CONNECTED in context.states[after:]
    assert transport.stats.reconnects >= 1
    await _drop_session(client_id)


async def test_mqtt5_reconnect_does_not_replay_retained_messages(publisher: Publisher, prefix: str) -> None:
    """A retained message is delivered with the subscription that finds it, not again on every reconnect of
    the same session (MQTT 5 retain handling; MQTT 3.1.1 brokers resend it with each SUBSCRIBE)."""
    proxy = TcpProxy(MQTT_HOST, MQTT_PORT)
    await proxy.start()
    client_id = f"pywats-test-{uuid.uuid4().hex[:8]}"
    retained_topic = f"{prefix}/retained"
    config = MQTTConfig(
        host="127.0.0.1",
        port=proxy.port,
        protocol="5",
        client_id=client_id,
        topics={f"{prefix}/#": None},
        reconnect_min_delay=1,
        reconnect_max_delay=1,
    )
    unique_id, body = envelope()
    info = publisher.client.publish(retained_topic, body, qos=1, retain=True)
    await asyncio.to_thread(info.wait_for_publish, 5)
    context = RecordingContext()
    transport = MQTTTransport(config, EnvelopeCodec())
    await transport.start(context)
    try:
        await context.wait_for(lambda: len(context.events) == 1 and transport.pending_acks() == 0)
        await asyncio.sleep(0.3)  # the PUBACK reached the broker: no redelivery is due
        proxy.cut()
        await context.wait_for(lambda: context.states.count(ConnectionState.CONNECTED) >= 2, timeout=10)
        live_id, live = envelope()
        await publisher.send(f"{prefix}/live", live)
        await context.wait_for(lambda: len(context.events) >= 2)
        await asyncio.sleep(0.5)
    finally:
        await transport.stop()
        await proxy.close()
        cleared = publisher.client.publish(retained_topic, b"", qos=1, retain=True)
        await asyncio.to_thread(cleared.wait_for_publish, 5)
    assert context.ids() == [unique_id, live_id]
    await _drop_session(client_id)


async def test_mqtt5_user_properties_reach_the_codec_as_headers(prefix: str) -> None:
    require_mosquitto()
    codec = EnvelopeCodec()
    config = MQTTConfig(
        host=MQTT_HOST,
        port=MQTT_PORT,
        protocol="5",
        client_id=f"pywats-test-{uuid.uuid4().hex[:8]}",
        persistent_session=False,
        topics={f"{prefix}/#": None},
    )
    context = RecordingContext()
    transport = MQTTTransport(config, codec)
    await transport.start(context)
    sender = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    try:
        await asyncio.to_thread(sender.connect, MQTT_HOST, MQTT_PORT)
        sender.loop_start()
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("line", "L1"), ("mqtt-topic", "spoofed"), ("traceparent", PARENT)]
        unique_id, body = envelope()
        info = sender.publish(f"{prefix}/a", body, qos=1, properties=props)
        await asyncio.to_thread(info.wait_for_publish, 5)
        await context.wait_for(lambda: len(context.events) == 1)
    finally:
        sender.disconnect()
        sender.loop_stop()
        await transport.stop()
    headers, topic = codec.seen[0]
    assert context.ids() == [unique_id]
    assert headers["line"] == "L1"
    assert headers["mqtt-topic"] == topic == f"{prefix}/a", "a user property cannot override our own headers"
    # the W3C trace context travels with the event (tests/events/test_tracing_bus.py: the spans)
    assert context.events[0].metadata.trace_context == {"traceparent": PARENT}


async def test_a_qos0_flood_into_a_stuck_bus_is_bounded_and_counted(
    publisher: Publisher, prefix: str
) -> None:
    """QoS 0 has no flow control: while the bus holds everything, the transport keeps at most its backlog
    (plus the batches handed to the bus), drops and counts the rest, and delivers what it kept in order."""
    config = MQTTConfig(
        host=MQTT_HOST,
        port=MQTT_PORT,
        client_id=f"pywats-test-{uuid.uuid4().hex[:8]}",
        persistent_session=False,
        qos=0,
        batch_size=10,
        qos0_backlog=100,
        topics={f"{prefix}/#": None},
    )
    gate = asyncio.Event()
    context = RecordingContext(gate=gate)
    transport = MQTTTransport(config, EnvelopeCodec())
    await transport.start(context)
    sent: list[str] = []
    try:
        await asyncio.sleep(0.2)
        for _ in range(1000):
            unique_id, body = envelope(compress=False)
            sent.append(unique_id)
            publisher.client.publish(f"{prefix}/sensor", body, qos=0)

        def arrived() -> int:
            return transport.stats.received + len(transport._arrivals) + transport.stats.dropped_qos0

        await context.wait_for(lambda: arrived() >= 1000, timeout=15)
        assert transport.stats.dropped_qos0 >= 1000 - 100 - 16 * 10
        kept = 1000 - transport.stats.dropped_qos0
        gate.set()
        await context.wait_for(lambda: len(context.events) == kept, timeout=15)
    finally:
        await transport.stop()
    ids = context.ids()
    assert ids == [i for i in sent if i in set(ids)], "what was kept arrives in publish order"


async def test_unreachable_broker_fails_start_clearly() -> None:
    config = MQTTConfig(host="127.0.0.1", port=1, connect_timeout=2)
    transport = MQTTTransport(config, EnvelopeCodec())
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1"):
        await transport.start(RecordingContext())
    assert transport.state is ConnectionState.DISCONNECTED


def test_at_least_once_by_default_under_a_stable_client_id() -> None:
    """A restarted listener must find its session again: same client id, clean session off, QoS 1."""
    first, second = MQTTConfig(), MQTTConfig()
    assert first.client_id == second.client_id and first.client_id.startswith("pywats-events-")
    assert first.persistent_session and first.qos == 1


def test_a_subscription_without_any_codec_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        MQTTTransport(MQTTConfig(topics={"plant/#": None}))
    assert info.value.setting == "mqtt.subscriptions[plant/#].codec"


def test_topic_mapping_uses_mqtt_wildcards() -> None:
    config = MQTTConfig(topics={"plant/+/ict/#": UNITS_TESTED, "plant/#": None})
    ict = config.subscription_for("plant/l1/ict/station/7")
    aoi = config.subscription_for("plant/l1/aoi")
    assert ict is not None and ict.message_name == UNITS_TESTED
    assert aoi is not None and aoi.message_name is None
    assert config.subscription_for("elsewhere/l1") is None


def test_password_is_not_in_repr() -> None:
    config = MQTTConfig(username="u", password="hunter2-secret")
    assert "hunter2-secret" not in repr(config) and "hunter2-secret" not in config.model_dump_json()


async def _drop_session(client_id: str) -> None:
    """Connect once with a clean session to make the broker forget the persistent one."""

    def _clean() -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        client.connect(MQTT_HOST, MQTT_PORT)
        client.loop_start()
        client.disconnect()
        client.loop_stop()

    await asyncio.to_thread(_clean)
