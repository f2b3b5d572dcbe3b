"""The live explorer against the real brokers: it records what passes and takes nothing from the listener."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aio_pika
import paho.mqtt.client as mqtt
from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto, require_rabbitmq
from paho.mqtt.enums import CallbackAPIVersion

from pywats_cfx.codec import CFXCodec
from pywats_cfx.explorer.live import LiveHistory, LiveMessage, live_line
from pywats_events.plugins import preview_factories
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


# ---------------------------------------------------------------- detail of one message


class Exchange:
    """A topic exchange of the test's own on the real RabbitMQ, to publish to while the explorer watches."""

    def __init__(self) -> None:
        self.url = require_rabbitmq()
        self.name = f"test-explorer-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Exchange:
        asyncio.run(self._run(lambda ch: ch.declare_exchange(self.name, aio_pika.ExchangeType.TOPIC)))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._run(lambda ch: ch.exchange_delete(self.name)))

    def publish(self, bodies: list[bytes]) -> None:
        async def send(ch: aio_pika.abc.AbstractChannel) -> None:
            ex = await ch.get_exchange(self.name)
            for body in bodies:
                await ex.publish(aio_pika.Message(body), routing_key="cfx.line1.tester")

        asyncio.run(self._run(send))

    async def _run(self, action: Callable[[aio_pika.abc.AbstractChannel], Awaitable[object]]) -> None:
        async with await aio_pika.connect(self.url) as conn:
            await action(await conn.channel(publisher_confirms=True))


class Output:
    """The explorer's stdout, line by line, read by a thread so every wait has a bound."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self._lines.put(line.rstrip("\n"))
            self._lines.put(None)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def until(self, done: Callable[[str], bool], timeout: float = 60) -> list[str]:
        """The lines up to and including the first for which `done` is true."""
        seen: list[str] = []
        while True:
            line = self._lines.get(timeout=timeout)
            assert line is not None, "the explorer ended first; it wrote:\n" + "\n".join(seen)
            seen.append(line)
            if done(line):
                return seen

    def rest(self) -> list[str]:
        """The lines after the last `until`, once the explorer has ended."""
        self._thread.join(timeout=60)
        lines: list[str] = []
        while (line := self._lines.get_nowait()) is not None:
            lines.append(line)
        return lines


def start_explorer_for(exchange: Exchange, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    where = ("--amqp", exchange.url, "--exchange", exchange.name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pywats_cfx.explorer", *where, *args, "--duration", "120"],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    ready = proc.stderr.readline()  # the explorer says when its queue is in place
    assert ready.startswith("listening on"), ready + proc.stderr.read()
    return proc


def test_a_number_typed_on_stdin_shows_that_messages_detail() -> None:
    sent = list(itertools.islice(envelopes(), 6))
    with Exchange() as exchange:
        proc = start_explorer_for(exchange, "--count", "6", stdin=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        try:
            output = Output(proc)
            exchange.publish(sent[:5])
            lines = output.until(lambda line: line.startswith("#5 "))
            assert [line.split()[0] for line in lines] == ["#1", "#2", "#3", "#4", "#5"]

            proc.stdin.write("3\n99\n")
            proc.stdin.flush()
            answer = output.until(lambda line: "#99" in line)
            detail, unknown = "\n".join(answer[:-1]), answer[-1]
            assert answer[0].startswith("#3 received") and "on cfx.line1.tester" in answer[0]
            assert json.loads(sent[2])["UniqueID"] in detail  # the raw message
            assert "decoded CFX.Production.WorkCompleted" in detail
            assert "domain events from CFX.Production.WorkCompleted: 1" in detail
            assert "unit_serial=SN-002" in detail
            assert "SN-001" not in detail and "SN-003" not in detail
            if "wats" in preview_factories():
                assert "what WATS would receive" in detail and "preview failed" not in detail
            assert unknown == "no message #99: messages shown so far #1 to #5"

            exchange.publish(sent[5:])  # the live view went on: the sixth line ends it (--count 6)
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
            assert [line.split()[0] for line in output.rest()] == ["#6"]
        finally:
            proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)


def test_detail_flag_shows_every_message_in_full() -> None:
    sent = list(itertools.islice(envelopes(), 2))
    with Exchange() as exchange:
        proc = start_explorer_for(exchange, "--detail", "--json", "--count", "2")
        exchange.publish(sent)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["number"] for d in docs] == [1, 1, 2, 2]
    line, detail = docs[0], docs[1]["detail"]
    assert line["units"] == ["SN-000"] and "detail" not in line
    assert detail["input"].startswith("#1 received")
    assert detail["messages"][0]["envelope"]["UniqueID"] == json.loads(sent[0])["UniqueID"]
    assert [e["event_type"] for e in detail["messages"][0]["events"]] == ["production.work_completed"]
    if "wats" in preview_factories():
        assert "wats_error" not in detail and detail["wats_per_event"][0]["handlers"]


def test_history_keeps_the_last_messages_and_says_why_one_is_missing() -> None:
    history = LiveHistory(keep=3)
    assert history.get(1) is None
    assert history.why_missing(1) == "no message #1: messages shown so far none yet"
    messages = [LiveMessage(body) for body in itertools.islice(envelopes(), 5)]
    assert [history.add(m) for m in messages] == [1, 2, 3, 4, 5]
    assert [history.get(n) for n in (3, 4, 5)] == messages[2:]
    assert history.get(2) is None and history.get(6) is None and history.get(0) is None
    assert history.why_missing(2) == "message #2 is no longer kept: only the last 3 are (#3 on)"
    assert history.why_missing(6) == "no message #6: messages shown so far #1 to #5"
