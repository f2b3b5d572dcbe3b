"""At-least-once over MQTT against real Mosquitto brokers, published by separate client processes.

- CFX envelopes, plain sensor JSON and native event JSON from `mosquitto_pub` arrive as events (MQTT 3.1.1,
  MQTT 5);
- a restarted listener with a persistent session gets every QoS 1 message published while it was down;
- a broker restart mid-stream loses nothing the broker acknowledged to the publisher;
- the broker-side burst limit: Mosquitto's defaults drop what a slow persistent subscriber cannot take beyond
  `max_queued_messages`; with `samples/config/mosquitto.conf` a 20,000-message burst arrives complete.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto, skip_or_fail
from mosquitto_instance import MosquittoInstance, recommended_config
from mqtt_publisher_process import read_acked, start_publisher
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from transport_doubles import RecordingContext

from pywats_cfx import CFXCodec
from pywats_events import EventType
from pywats_events.transports import ConnectionState
from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport, Subscription

pytestmark = [pytest.mark.broker]

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"
WORK_COMPLETED = "CFX.Production.WorkCompleted"
#: below the system broker's default max_queued_messages (1000); larger backlogs need the recommended config
COUNT_WHILE_DOWN = 900


def mosquitto_pub(port: int, topic: str, payload: bytes, tmp_path: Path, *extra: str) -> None:
    """Publish with the Mosquitto command-line client: a real, separate MQTT client."""
    binary = shutil.which("mosquitto_pub")
    if binary is None:
        skip_or_fail("mosquitto_pub is not installed")
    body = tmp_path / f"body-{uuid.uuid4().hex[:8]}"
    body.write_bytes(payload)
    subprocess.run(
        [binary, "-h", MQTT_HOST, "-p", str(port), "-q", "1", "-t", topic, "-f", str(body), *extra],
        check=True,
        timeout=10,
    )


def drop_session(port: int, client_id: str) -> None:
    """A clean-session connect makes the broker forget the persistent session of `client_id`."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(MQTT_HOST, port)
    client.disconnect()


@pytest.fixture
def client_id() -> Iterator[str]:
    ident = f"pywats-test-{uuid.uuid4().hex[:8]}"
    yield ident
    try:
        drop_session(MQTT_PORT, ident)
    except OSError:
        pass


@pytest.fixture
def prefix() -> str:
    return f"pywats-test/{uuid.uuid4().hex[:10]}"


def ict_envelope(serial: str) -> dict[str, Any]:
    from pywats_cfx.samples import load_sample_dict

    doc = load_sample_dict("units_tested_ict")
    doc["UniqueID"] = str(uuid.uuid4())
    for position, unit in enumerate(doc["MessageBody"]["TestedUnits"]):
        unit["UnitIdentifier"] = f"{serial}-{position}"
    return dict(doc)


# ------------------------------------------------------------------ what arrives


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_cfx_plain_json_and_event_json_from_another_client_arrive_as_events(
    protocol: str, client_id: str, prefix: str, tmp_path: Path
) -> None:
    require_mosquitto()
    config = MQTTConfig(
        host=MQTT_HOST,
        port=MQTT_PORT,
        protocol=protocol,  # type: ignore[arg-type]
        client_id=client_id,
        subscriptions=[
            # a wrong name on the topic: the envelope's own MessageName wins
            Subscription(topic=f"{prefix}/cfx/#", message_name=WORK_COMPLETED),
            Subscription(template=prefix + "/sensors/{line}/{station}/temperature", fields={"units": "degC"}),
            Subscription(topic=f"{prefix}/events", codec="event"),
        ],
    )
    context = RecordingContext()
    transport = MQTTTransport(config, codec=CFXCodec())
    await transport.start(context)
    try:
        envelope = ict_envelope(f"MQTT-{protocol}")
        native = {
            "event_type": "quality.alarm",
            "payload": {"station": "AOI-2"},
            "metadata": {"event_id": "e-1"},
        }
        await asyncio.to_thread(
            mosquitto_pub,
            MQTT_PORT,
            f"{prefix}/cfx/ict",
            gzip.compress(json.dumps(envelope).encode()),
            tmp_path,
        )
        await asyncio.to_thread(
            mosquitto_pub, MQTT_PORT, f"{prefix}/sensors/L1/ICT-01/temperature", b"23.5", tmp_path
        )
        await asyncio.to_thread(
            mosquitto_pub, MQTT_PORT, f"{prefix}/events", json.dumps(native).encode(), tmp_path
        )
        units = len(envelope["MessageBody"]["TestedUnits"])
        await context.wait_for(lambda: len(context.events) == units + 2, timeout=15)
        await context.wait_for(lambda: transport.pending_acks() == 0)
    finally:
        await transport.stop()

    tests = [e for e in context.events if e.event_type is EventType.TEST_RESULT]
    assert sorted(e.payload["unit_serial"] for e in tests) == [f"MQTT-{protocol}-{i}" for i in range(units)]
    assert all(e.metadata.source_topic == f"{prefix}/cfx/ict" for e in tests)
    [reading] = [e for e in context.events if e.event_type is EventType.ASSET_TELEMETRY]
    assert reading.payload == {"units": "degC", "value": 23.5, "line": "L1", "station": "ICT-01"}
    assert reading.source == "ICT-01"
    [alarm] = [e for e in context.events if e.event_type == "quality.alarm"]
    assert alarm.id == "e-1" and alarm.payload == {"station": "AOI-2"}
    assert not context.quarantined
    assert transport.stats.acked == 3


# ------------------------------------------------------------------ restarts


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_restarted_listener_gets_every_message_published_while_it_was_down(
    protocol: str, client_id: str, prefix: str, tmp_path: Path
) -> None:
    require_mosquitto()
    config = MQTTConfig(
        host=MQTT_HOST,
        port=MQTT_PORT,
        protocol=protocol,  # type: ignore[arg-type]
        client_id=client_id,
        subscriptions=[Subscription(template=prefix + "/{line}/{station}/temperature")],
    )
    first = RecordingContext()
    transport = MQTTTransport(config)
    await transport.start(first)
    await transport.stop()  # the session (subscription + queue) stays on the broker

    acked_file = tmp_path / "acked.txt"
    publisher = start_publisher(
        MQTT_HOST, MQTT_PORT, topic=f"{prefix}/L1/ICT-01/temperature", count=COUNT_WHILE_DOWN,
        acked_file=acked_file, client_id=f"{client_id}-pub", deadline=40,
    )  # fmt: skip
    out, _ = await asyncio.to_thread(publisher.communicate, timeout=60)
    assert publisher.returncode == 0, out
    published = read_acked(acked_file)
    assert len(published) == COUNT_WHILE_DOWN

    again = RecordingContext()
    transport = MQTTTransport(config)
    await transport.start(again)
    try:
        await again.wait_for(
            lambda: len({e.payload["i"] for e in again.events}) >= COUNT_WHILE_DOWN, timeout=30
        )
        await again.wait_for(lambda: transport.pending_acks() == 0)
    finally:
        await transport.stop()
    assert {e.payload["i"] for e in again.events} == published
    assert not first.events and not again.quarantined


@pytest.mark.timeout(120)
async def test_a_broker_restart_mid_stream_loses_nothing_the_broker_acknowledged(
    tmp_path: Path, client_id: str
) -> None:
    async with _private_broker(tmp_path / "broker", recommended_config()) as broker:
        config = MQTTConfig(
            host=broker.host,
            port=broker.port,
            client_id=client_id,
            reconnect_min_delay=1,
            reconnect_max_delay=2,
            subscriptions=[Subscription(topic="line1/cfx/#")],
        )
        context = RecordingContext()
        transport = MQTTTransport(config, codec=CFXCodec())
        await transport.start(context)
        acked_file = tmp_path / "acked.txt"
        publisher = start_publisher(
            broker.host, broker.port, topic="line1/cfx/ict", count=3000, acked_file=acked_file,
            payload="cfx-gzip", rate=600, client_id=f"{client_id}-pub", deadline=60,
        )  # fmt: skip
        try:
            await context.wait_for(lambda: len(context.events) >= 600, timeout=30)
            await asyncio.to_thread(broker.restart)  # SIGTERM: Mosquitto saves its store, then starts again
            out, _ = await asyncio.to_thread(publisher.communicate, timeout=90)
            assert publisher.returncode == 0, out
            kept = {f"SN-{i}" for i in read_acked(acked_file)}
            assert len(kept) == 3000

            def serials() -> set[str]:
                return {e.payload["unit_serial"] for e in context.events}

            await context.wait_for(lambda: serials() >= kept, timeout=30)
        finally:
            if publisher.poll() is None:
                publisher.kill()
            await transport.stop()
    assert not context.quarantined
    assert transport.stats.reconnects >= 1
    lost_at = context.states.index(ConnectionState.DISCONNECTED)
    assert ConnectionState.CONNECTED in context.states[lost_at:]


# ------------------------------------------------------------------ the broker's burst limit


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("broker_config", "complete"),
    [("", False), ("recommended", True)],
    ids=["mosquitto-defaults", "recommended-config"],
)
async def test_a_burst_beyond_the_brokers_queue_limit(
    tmp_path: Path, client_id: str, broker_config: str, complete: bool
) -> None:
    """A slow persistent subscriber (the bus holds every message) during a 20,000-message QoS 1 burst.

    Mosquitto acknowledges every message to the publisher either way; with its defaults
    (max_inflight_messages 20, max_queued_messages 1000) it then silently drops the rest for the subscriber.
    This is why the README asks for the settings in samples/config/mosquitto.conf.
    """
    extra = recommended_config() if broker_config == "recommended" else ""
    async with _private_broker(tmp_path / "broker", extra) as broker:
        config = MQTTConfig(
            host=broker.host,
            port=broker.port,
            client_id=client_id,
            subscriptions=[Subscription(template="burst/{line}/{station}/temperature")],
        )
        gate = asyncio.Event()
        context = RecordingContext(gate=gate)
        transport = MQTTTransport(config)
        await transport.start(context)
        acked_file = tmp_path / "acked.txt"
        publisher = start_publisher(
            broker.host, broker.port, topic="burst/L1/ICT-01/temperature", count=20_000,
            acked_file=acked_file, client_id=f"{client_id}-pub", max_inflight=1000, deadline=90,
        )  # fmt: skip
        try:
            out, _ = await asyncio.to_thread(publisher.communicate, timeout=120)
            assert publisher.returncode == 0, out
            assert len(read_acked(acked_file)) == 20_000  # the broker took every message
            gate.set()  # the subscriber catches up

            def received() -> set[int]:
                return {e.payload["i"] for e in context.events}

            if complete:
                await context.wait_for(lambda: len(received()) == 20_000, timeout=60)
            else:
                await _settle(context, quiet=2.0, timeout=30)
        finally:
            if publisher.poll() is None:
                publisher.kill()
            await transport.stop()
    if complete:
        assert received() == set(range(20_000))
    else:
        # in flight (20) + queued (1000): everything else was dropped by the broker
        assert 1000 <= len(received()) <= 1100, len(received())


class _private_broker:
    """A `MosquittoInstance` started and stopped off the event loop."""

    def __init__(self, directory: Path, extra: str) -> None:
        self.broker = MosquittoInstance(directory, extra)

    async def __aenter__(self) -> MosquittoInstance:
        await asyncio.to_thread(self.broker.start)
        return self.broker

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.to_thread(self.broker.stop)


async def _settle(context: RecordingContext, quiet: float, timeout: float) -> None:
    """Wait until no event arrived for `quiet` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen, since = -1, loop.time()
    while loop.time() < deadline:
        if len(context.events) != seen:
            seen, since = len(context.events), loop.time()
        elif loop.time() - since >= quiet:
            return
        await asyncio.sleep(0.1)
