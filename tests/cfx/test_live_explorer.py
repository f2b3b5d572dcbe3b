"""The live explorer against the real brokers: it records what passes and takes nothing from the listener."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import paho.mqtt.client as mqtt
from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto, require_rabbitmq
from paho.mqtt.enums import CallbackAPIVersion

from pywats_cfx.codec import CFXCodec
from pywats_cfx.explorer.live import LiveMessage, live_line
from pywats_events.transports.replay import iter_messages

N = 100


def envelopes() -> Iterator[bytes]:
    for i in range(N):
        yield json.dumps(
            {
                "MessageName": "CFX.Production.WorkCompleted",
                "Version": "2.1",
                "TimeStamp": "2024-05-01T10:00:00+00:00",
                "UniqueID": str(uuid.uuid4()),
                "Source": "line1.tester",
                "MessageBody": {
                    "TransactionID": str(uuid.uuid4()),
                    "Result": "Completed",
                    "PrimaryIdentifier": f"SN-{i:03d}",
                },
            }
        ).encode()


def start_explorer(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pywats_cfx.explorer", *args, "--count", str(N), "--duration", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    ready = proc.stderr.readline()  # the explorer says when its queue / subscription is in place
    assert ready.startswith("listening on"), ready + proc.stderr.read()
    return proc


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def assert_recorded(record: Path, sent: list[bytes], out: str) -> None:
    replayed = list(iter_messages([record]))
    assert [m.body for m in replayed] == sent
    lines = out.splitlines()
    assert len(lines) == N
    assert "line1.tester  CFX.Production.WorkCompleted  units=SN-000  result=Completed" in lines[0]
    # the recording is also what the explorer's --file reads
    proc = subprocess.run(
        [sys.executable, "-m", "pywats_cfx.explorer", "--file", str(record), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == N


def test_amqp_recording_leaves_the_listener_queue_untouched(tmp_path: Path) -> None:
    url = require_rabbitmq()
    exchange = f"test-explorer-{uuid.uuid4().hex[:8]}"
    listener = f"{exchange}.listener"
    sent = list(envelopes())

    async def setup() -> None:
        async with await aio_pika.connect(url) as conn:
            ch = await conn.channel()
            ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, auto_delete=False)
            q = await ch.declare_queue(listener, durable=True)
            await q.bind(ex, "#")

    async def publish_and_count() -> int:
        async with await aio_pika.connect(url) as conn:
            ch = await conn.channel(publisher_confirms=True)
            ex = await ch.get_exchange(exchange)
            for body in sent:
                await ex.publish(aio_pika.Message(body), routing_key="cfx.line1.tester")
            q = await ch.declare_queue(listener, durable=True, passive=True)
            return q.declaration_result.message_count or 0

    async def cleanup() -> None:
        async with await aio_pika.connect(url) as conn:
            ch = await conn.channel()
            await ch.queue_delete(listener)
            await ch.exchange_delete(exchange)

    asyncio.run(setup())
    try:
        record = tmp_path / "amqp.jsonl"
        proc = start_explorer("--amqp", url, "--exchange", exchange, "--record", str(record))
        in_listener = asyncio.run(publish_and_count())
        out = finish(proc)
        assert_recorded(record, sent, out)
        assert in_listener == N  # every message is still waiting for the listener
    finally:
        asyncio.run(cleanup())


def test_mqtt_recording(tmp_path: Path) -> None:
    require_mosquitto()
    topic = f"cfx/test-explorer/{uuid.uuid4().hex[:8]}"
    sent = list(envelopes())
    record = tmp_path / "mqtt.jsonl"
    proc = start_explorer(
        "--mqtt", f"mqtt://{MQTT_HOST}:{MQTT_PORT}", "--topic", f"{topic}/#", "--record", str(record)
    )
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    try:
        for body in sent:
            client.publish(f"{topic}/line1", body, qos=1).wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()
    out = finish(proc)
    assert_recorded(record, sent, out)
    assert {m.topic for m in iter_messages([record])} == {f"{topic}/line1"}


def test_filter_matches_message_name_or_source() -> None:
    line = live_line(LiveMessage(next(envelopes()), {}, "cfx.line1"), CFXCodec())
    assert (line.message_name, line.source, line.units, line.result) == (
        "CFX.Production.WorkCompleted",
        "line1.tester",
        ("SN-000",),
        "Completed",
    )
    assert line.matches("workcompleted") and line.matches("LINE1") and line.matches(None)
    assert not line.matches("UnitsTested")


def test_missing_exchange_is_a_clear_error() -> None:
    url = require_rabbitmq()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pywats_cfx.explorer",
            "--amqp",
            url,
            "--exchange",
            "no-such-exchange-explorer",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "not found" in proc.stderr
