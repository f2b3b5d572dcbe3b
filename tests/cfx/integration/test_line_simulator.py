"""The line simulator's traffic is valid CFX that our codec maps, and it reaches a consumer over RabbitMQ and
over MQTT."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from brokers import MQTT_HOST, MQTT_PORT, RABBITMQ_HOST, require_mosquitto
from transport_doubles import RecordingContext

from pywats_cfx import CFXCodec
from pywats_cfx.amqp import AMQPConfig, CFXConfig, CFXTransport, EndpointConfig, encode_envelope
from pywats_events import EventType
from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport, Subscription


def _load_simulator() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "samples" / "line_simulator.py"
    spec = importlib.util.spec_from_file_location("line_simulator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["line_simulator"] = module
    spec.loader.exec_module(module)
    return module


sim = _load_simulator()


def test_every_generated_message_decodes_into_the_expected_events() -> None:
    line = sim.LineSimulator(
        [sim.Station("Acme.ICT.SN1"), sim.Station("Acme.ICT.SN2")],
        fault_rate=0.5,
        seed=7,
        panel_size=2,
        fail_rate=0.5,
    )
    codec = CFXCodec()
    kinds: Counter[str] = Counter()
    envelopes = list(line.announcements())
    for _ in range(20):
        envelopes.extend(line.unit())
    for envelope in envelopes:
        out = encode_envelope(envelope, compress=True)
        result = codec.decode(out.body, {"content-encoding": "gzip"}, out.routing_key)
        assert result.quarantined == [], result.quarantined[0].reason
        kinds.update(e.type_name for e in result.events)
    assert kinds[EventType.WORK_STARTED.value] == 40  # one per unit on the 2-up panel
    assert kinds[EventType.TEST_RESULT.value] == 40
    assert kinds[EventType.WORK_COMPLETED.value] == 40
    assert kinds[EventType.ASSET_FAULT.value] >= 1
    assert kinds[EventType.ASSET_STATE_CHANGED.value] >= 2
    assert kinds[EventType.ENDPOINT_CONNECTED.value] == 2


@pytest.mark.broker
@pytest.mark.timeout(30)
async def test_cli_publishes_to_rabbitmq(rabbitmq: str, names: dict[str, str]) -> None:
    config = CFXConfig(
        amqp=AMQPConfig(
            host=RABBITMQ_HOST,
            exchange=names["exchange"],
            queue=names["queue"],
            dead_letter_exchange=names["dlx"],
        ),
        endpoint=EndpointConfig(cfx_handle="//Test/WATS/Listener"),
    )
    context = RecordingContext()
    transport = CFXTransport(config, codec=CFXCodec())
    await transport.start(context)
    try:
        args = sim.parse_args(
            [
                "--url",
                rabbitmq,
                "--exchange",
                names["exchange"],
                "--count",
                "5",
                "--rate",
                "0",
                "--fault-rate",
                "0",
                "--seed",
                "1",
            ]
        )
        sent = await sim.publish(args)
        await context.wait_for(lambda: transport.stats.acked >= sent)
    finally:
        await transport.stop()
    assert sent == 2 + 5 * 3  # EndpointConnected per station, then 3 messages per unit
    serials = [e.payload["unit_serial"] for e in context.events if e.event_type is EventType.TEST_RESULT]
    assert len(serials) == 5 and len(set(serials)) == 5
    assert context.quarantined == []


@pytest.mark.broker
@pytest.mark.timeout(30)
async def test_cli_publishes_to_mqtt_as_a_gateway_would() -> None:
    """`--mqtt`: the same traffic over Mosquitto, one topic per station and message, read by MQTTTransport."""
    require_mosquitto()
    prefix = f"pywats-test/{uuid.uuid4().hex[:10]}"
    config = MQTTConfig(
        host=MQTT_HOST,
        port=MQTT_PORT,
        client_id=f"pywats-test-{uuid.uuid4().hex[:8]}",
        persistent_session=False,
        subscriptions=[Subscription(topic=f"{prefix}/#")],
    )
    context = RecordingContext()
    transport = MQTTTransport(config, codec=CFXCodec())
    await transport.start(context)
    try:
        quick = ["--count", "5", "--rate", "0", "--fault-rate", "0", "--seed", "1"]
        args = sim.parse_args(["--mqtt", f"mqtt://{MQTT_HOST}:{MQTT_PORT}", "--topic-prefix", prefix, *quick])
        sent = await sim.publish(args)
        await context.wait_for(lambda: transport.stats.acked >= sent)
    finally:
        await transport.stop()
    assert sent == 2 + 5 * 3
    serials = [e.payload["unit_serial"] for e in context.events if e.event_type is EventType.TEST_RESULT]
    assert len(serials) == 5 and len(set(serials)) == 5
    topics = {e.metadata.source_topic for e in context.events}
    assert f"{prefix}/Acme.ICT.SN1000/CFX.Production.WorkStarted" in topics
    assert context.quarantined == []
