"""CFX over MQTT with the real parts: Mosquitto → MQTTTransport → CFXCodec → AsyncEventBus."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from pywats_cfx import CFXCodec
from pywats_cfx.amqp import encode_envelope
from pywats_events import AsyncEventBus, Event, EventType
from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport

from .test_end_to_end import BODY, UNITS_TESTED, envelope_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]


@pytest.fixture
async def mqtt_publisher() -> AsyncIterator[paho.Client]:
    require_mosquitto()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cfx-pub-{uuid.uuid4().hex[:8]}")
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    yield client
    client.disconnect()
    await asyncio.to_thread(client.loop_stop)


async def test_envelopes_and_bare_bodies_over_mqtt_become_test_results(mqtt_publisher: paho.Client) -> None:
    prefix = f"test/{uuid.uuid4().hex[:10]}"
    received: list[Event] = []
    bus = AsyncEventBus(max_concurrency=4)
    bus.subscribe(received.append, [EventType.TEST_RESULT])
    config = MQTTConfig(
        host=MQTT_HOST, port=MQTT_PORT, topics={f"{prefix}/+/cfx": None, f"{prefix}/+/tested": UNITS_TESTED}
    )
    bus.register_transport(MQTTTransport(config, CFXCodec()))
    await bus.start()
    try:
        await asyncio.sleep(0.2)
        gz = encode_envelope(envelope_for("MQTT-0001"), compress=True).body
        bare = copy.deepcopy(BODY)
        bare["TestedUnits"][0]["UnitIdentifier"] = "MQTT-0002"
        for topic, payload in (
            (f"{prefix}/ict1/cfx", gz),
            (f"{prefix}/ict1/tested", json.dumps(bare).encode()),
        ):
            info = mqtt_publisher.publish(topic, payload, qos=1)
            await asyncio.to_thread(info.wait_for_publish, 5)
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await bus.stop()
    assert [e.payload["unit_serial"] for e in received] == ["MQTT-0001", "MQTT-0002"]
    assert received[1].metadata.source_topic == f"{prefix}/ict1/tested"
