"""MQTT sites in distributed mode: CFX over MQTT into RabbitMQ's MQTT plugin, sharded listeners behind it.

The plugin publishes what MQTT clients send to `amq.topic`, the topic as routing key with `/` turned into
`.`; the listeners consume it like any plant exchange (`[amqp] exchange = "amq.topic"`), so the shards keep
each unit's order. The broker's own exchange is used as it is: never declared, never deleted.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brokers import (
    MQTT_HOST,
    MQTT_PORT,
    RABBITMQ_HOST,
    RABBITMQ_URL,
    require_mosquitto,
    require_rabbitmq_mqtt,
)
from listener_support import (
    LISTENER_TOKEN,
    UNITS_TESTED,
    ListenerProcess,
    amqp_toml,
    clean_env,
    delete_topology,
    order_kept,
    queue_depth,
    reported_message_ids,
    stop_all,
    unit_messages,
    wait_until,
    wats_settings_toml,
    wats_toml,
)

from handlers.wats.fake import FakeWATS
from pywats_cfx.codec import CFXCodec

pytestmark = [pytest.mark.broker]

SHARDS = 6
EXCHANGE = "amq.topic"


@pytest.fixture
def site() -> Iterator[tuple[int, str, str, str]]:
    """(MQTT port, line name, queue, dead-letter exchange); the line name is this test's own, so nothing
    else published to amq.topic reaches its queues."""
    port = require_rabbitmq_mqtt()
    uid = uuid.uuid4().hex[:10]
    found = (port, f"line1-{uid}", f"test-mqtt-q-{uid}", f"test-mqtt-dlx-{uid}")
    yield found
    asyncio.run(delete_topology(None, found[2], found[3], shards=SHARDS))


def _sharded(line: str, queue: str, dlx: str, wats: FakeWATS) -> str:
    return "\n".join(
        [
            amqp_toml(
                EXCHANGE,
                queue,
                dlx,
                retry_delays=[1, 2],
                shards=SHARDS,
                shard_rebalance_interval=0.5,
                routing_keys=[f"{line}.#"],
            ),
            wats_toml(wats.url, distributed=True),
            wats_settings_toml(),
        ]
    )


def _start(tmp: Path, name: str, config: str) -> ListenerProcess:
    directory = tmp / name
    directory.mkdir()
    return ListenerProcess(directory, config, env=clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN)).start()


def _mqtt_publish(port: int, topic: str, bodies: list[bytes], client_id: str) -> None:
    """Publish `bodies` in order at QoS 1 over one MQTT connection; return when the broker acked each."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(RABBITMQ_HOST, port, keepalive=30)
    client.loop_start()
    try:
        assert connected.wait(10), f"no CONNACK from the MQTT plugin on {port}"
        sent = [client.publish(topic, body, qos=1) for body in bodies]
        deadline = time.monotonic() + 60
        for info in sent:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge every QoS 1 publish in 60 s"
    finally:
        client.disconnect()
        client.loop_stop()


async def _tap(line: str, port: int, body: bytes) -> Any:
    """What an AMQP consumer on amq.topic receives for one MQTT publish under `line`."""
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("", exclusive=True, auto_delete=True)
        await q.bind(EXCHANGE, routing_key=f"{line}.#")
        await asyncio.to_thread(_mqtt_publish, port, f"{line}/{UNITS_TESTED}", [body], f"tap-{line}")
        async with q.iterator(timeout=10) as messages:
            async for message in messages:
                await message.ack()
                await q.delete(if_unused=False, if_empty=False)
                return message
    raise AssertionError("nothing arrived on amq.topic")


@pytest.mark.timeout(60)
def test_an_mqtt_publish_reaches_amq_topic_with_a_routing_key_the_codec_reads(
    site: tuple[int, str, str, str],
) -> None:
    port, line, _queue, _dlx = site
    bodies, _ = unit_messages(1, 1, f"tap-{line}")
    message = asyncio.run(_tap(line, port, bodies[0]))
    assert message.routing_key == f"{line}.{UNITS_TESTED}"  # "/" became "."
    assert message.delivery_mode == 2  # QoS 1: persistent
    codec = CFXCodec()
    # the name comes from the envelope's MessageName, the source from its Source
    decoded = codec.decode(message.body, dict(message.headers or {}), message.routing_key)
    assert not decoded.quarantined and len(decoded.events) == 1
    event = decoded.events[0]
    assert event.payload["message_name"] == UNITS_TESTED and event.ordering_key() == f"UT-tap-{line}-000"
    assert event.metadata.source == json.loads(bodies[0])["Source"]
    # a bare MessageBody (no envelope): the routing key names the message and, before it, the source
    bare = json.dumps(json.loads(message.body)["MessageBody"]).encode()
    from_key = codec.decode(bare, {}, message.routing_key)
    assert not from_key.quarantined and len(from_key.events) == 1
    assert from_key.events[0].payload["message_name"] == UNITS_TESTED
    assert from_key.events[0].metadata.source == line


@pytest.mark.timeout(150)
def test_three_sharded_listeners_on_amq_topic_fed_over_mqtt_keep_unit_order(
    tmp_path: Path, site: tuple[int, str, str, str], wats: FakeWATS
) -> None:
    """400 QoS 1 publishes over 50 units from one MQTT client: each report once, each unit in order."""
    port, line, queue, dlx = site
    wats.latency = 0.005
    config = _sharded(line, queue, dlx, wats)
    listeners = [_start(tmp_path, n, config) for n in ("a", "b", "c")]
    try:
        wait_until(
            lambda: all(p.metric("pywats_amqp_shards_owned") == SHARDS // 3 for p in listeners),
            30,
            what="two shards per listener",
        )
        bodies, index = unit_messages(400, 50, f"mqtt-{line}")
        _mqtt_publish(port, f"{line}/{UNITS_TESTED}", bodies, f"pub-{line}")
        wait_until(lambda: len(reported_message_ids(wats)) >= len(bodies), 90, what="all 400 reports")
        assert all(p.metric("pywats_messages_received_total") > 0 for p in listeners)
    finally:
        stop_all(listeners)
    assert reported_message_ids(wats) == set(index)
    assert len(wats.reports) == len(bodies)  # each report once
    order_kept(wats, index)
    assert asyncio.run(queue_depth(f"{queue}.dead-letter")) == 0


@pytest.mark.timeout(60)
def test_the_plugin_runs_beside_mosquitto(site: tuple[int, str, str, str]) -> None:
    """Enabling it at run time took its own port: 1883 still answers as Mosquitto (which reports its version
    under `$SYS`; RabbitMQ has no `$SYS` topics)."""
    import paho.mqtt.client as mqtt

    require_mosquitto()
    versions: dict[int, str] = {}
    for port in (MQTT_PORT, site[0]):
        got = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sys-{site[1]}-{port}")

        def on_message(_c: Any, _u: Any, msg: Any, port: int = port, got: threading.Event = got) -> None:
            versions[port] = msg.payload.decode()
            got.set()

        client.on_message = on_message
        client.on_connect = lambda c, *_a: c.subscribe("$SYS/broker/version")
        client.connect(MQTT_HOST, port)
        client.loop_start()
        try:
            got.wait(3 if port == site[0] else 10)
        finally:
            client.disconnect()
            client.loop_stop()
    assert versions.get(MQTT_PORT, "").startswith("mosquitto"), versions
    assert site[0] not in versions, versions
