"""MQTT ingest: raw paho (QoS 1, auto-ack) vs MQTTTransport → codec → AsyncEventBus → no-op handler.

Both subscribers receive the very same burst: each first registers a persistent session (clean session off)
on the bench topic and disconnects; a publisher in a separate process then sends N QoS 1 sensor messages,
which the broker queues for both sessions. Each subscriber then connects and drains its queue; the clock
runs from its first message to its last acknowledgement (raw: paho's automatic PUBACK on receipt; ours: the
PUBACK after the bus ran the no-op handler). Prints both rates and the ratio.

By default the bench starts its own Mosquitto with the settings in ``samples/config/mosquitto.conf`` (the
defaults would drop everything beyond 1000 queued messages); ``--port`` uses a running broker instead.

    python bench/mqtt_ingest.py [--count 20000] [--rounds 3] [--codec template|event] [--protocol 3.1.1|5]
                               [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pywats_events import AsyncEventBus, Event
from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport, Subscription

ROOT = Path(__file__).resolve().parent.parent
RECOMMENDED = ROOT / "samples" / "config" / "mosquitto.conf"

PUBLISHER = r"""
import json, sys, time
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
host, port, prefix, count, codec = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{prefix.rsplit('/', 1)[-1]}")
client.max_inflight_messages_set(1000)
client.max_queued_messages_set(0)
client.connect(host, port)
client.loop_start()
infos = []
for i in range(count):
    station = f"ST-{i % 8:02d}"
    if codec == "event":
        body = json.dumps({"event_type": "asset.telemetry",
                           "payload": {"line": "L1", "station": station, "value": 20 + i % 50 / 10},
                           "metadata": {"event_id": f"{prefix}-{i}", "source": station}})
    else:
        body = json.dumps({"value": 20 + i % 50 / 10, "units": "degC", "seq": i})
    infos.append(client.publish(f"{prefix}/L1/{station}/temperature", body, qos=1))
for info in infos:
    info.wait_for_publish(60)
client.disconnect()
client.loop_stop()
"""


@contextlib.contextmanager
def private_broker() -> Iterator[int]:
    """A Mosquitto of our own on a free port, configured as the README recommends."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-") as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            + "\n".join(
                line
                for line in RECOMMENDED.read_text().splitlines()
                if not line.startswith(("persistence", "autosave"))
            )
            + "\n"
        )
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("private mosquitto did not start")
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def persistent_client(client_id: str, protocol: str) -> paho.Client:
    """A plain paho client that resumes its session (MQTT 3.1.1 clean session off, or MQTT 5)."""
    if protocol == "5":
        return paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    return paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)


def connect(client: paho.Client, host: str, port: int, protocol: str) -> None:
    if protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(host, port, clean_start=False, properties=props)
    else:
        client.connect(host, port)


def register_session(host: str, port: int, client_id: str, topic: str, protocol: str) -> None:
    """Subscribe once with a persistent session, then leave: the broker queues the burst for us."""
    done = threading.Event()
    client = persistent_client(client_id, protocol)
    client.on_subscribe = lambda *_: done.set()
    connect(client, host, port, protocol)
    client.loop_start()
    client.subscribe(topic, qos=1)
    if not done.wait(10):
        raise RuntimeError("subscription not confirmed")
    client.disconnect()
    client.loop_stop()


def drop_session(host: str, port: int, client_id: str) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(host, port)  # a 3.1.1 clean session also ends an MQTT 5 session
    client.disconnect()


def publish_burst(host: str, port: int, prefix: str, count: int, codec: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", PUBLISHER, host, str(port), prefix, str(count), codec],
        check=True,
    )
    return time.perf_counter() - started


def raw_paho(host: str, port: int, client_id: str, count: int, protocol: str) -> tuple[float, float]:
    """paho with automatic acknowledgement, counting messages in its callback."""
    received = 0
    first = 0.0
    done = threading.Event()

    def on_message(_client: object, _userdata: object, _message: paho.MQTTMessage) -> None:
        nonlocal received, first
        if received == 0:
            first = time.perf_counter()
        received += 1
        if received >= count:
            done.set()

    client = persistent_client(client_id, protocol)
    client.on_message = on_message
    cpu0 = time.process_time()
    connect(client, host, port, protocol)
    client.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"raw paho received {received} of {count}")
    elapsed = time.perf_counter() - first
    cpu_us = (time.process_time() - cpu0) / count * 1e6
    client.disconnect()
    client.loop_stop()
    return count / elapsed, cpu_us


async def transport_to_bus(
    host: str,
    port: int,
    client_id: str,
    prefix: str,
    count: int,
    codec: str,
    protocol: str,
    profile: cProfile.Profile | None,
) -> tuple[float, float, MQTTTransport]:
    handled = 0

    async def noop(event: Event) -> None:
        nonlocal handled
        handled += 1

    if codec == "event":
        subscription = Subscription(topic=f"{prefix}/#", codec="event")
    else:
        subscription = Subscription(template=prefix + "/{line}/{station}/temperature")
    config = MQTTConfig(
        host=host,
        port=port,
        client_id=client_id,
        protocol=protocol,
        subscriptions=[subscription],  # type: ignore[arg-type]
    )
    transport = MQTTTransport(config)
    bus = AsyncEventBus(max_in_flight=10_000, max_concurrency=64)
    bus.subscribe(noop, ["asset.telemetry"])
    bus.register_transport(transport)
    cpu0 = time.process_time()
    await bus.start()
    while transport.stats.received == 0:  # noqa: ASYNC110 - polling keeps the measured path untouched
        await asyncio.sleep(0.0005)
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    while transport.stats.acked < count:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu0) / count * 1e6
    if profile is not None:
        profile.disable()
    await bus.stop()
    assert handled == count, f"handled {handled} of {count}"
    return count / elapsed, cpu_us, transport


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="a running broker (default: start a private one)")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--codec", choices=["template", "event"], default="template")
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1")
    parser.add_argument("--rounds", type=int, default=3, help="bursts measured (the median ratio is printed)")
    parser.add_argument("--profile", action="store_true", help="cProfile our side")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        port = args.port or stack.enter_context(private_broker())
        ratios: list[float] = []
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}: {args.count} QoS 1 {args.codec} messages from a separate process")
            ratios.append(one_round(args, port))
        ratios.sort()
        print(f"median ratio over {len(ratios)} rounds: {ratios[len(ratios) // 2]:.2f}   (target >= 0.8)")


def one_round(args: argparse.Namespace, port: int) -> float:
    run = uuid.uuid4().hex[:8]
    prefix = f"bench/{run}"
    raw_id, ours_id = f"bench-raw-{run}", f"bench-ours-{run}"
    for client_id in (raw_id, ours_id):
        register_session(args.host, port, client_id, f"{prefix}/#", args.protocol)
    took = publish_burst(args.host, port, prefix, args.count, args.codec)
    print(f"  queued for both sessions in {took:.1f} s")
    try:
        raw_rate, raw_cpu = raw_paho(args.host, port, raw_id, args.count, args.protocol)
        print(f"  (a) raw paho, auto-ack            : {raw_rate:8.0f} msg/s  {raw_cpu:6.1f} us CPU/msg")
        profile = cProfile.Profile() if args.profile else None
        rate, cpu, transport = asyncio.run(
            transport_to_bus(args.host, port, ours_id, prefix, args.count, args.codec, args.protocol, profile)
        )
        print(f"  (b) MQTTTransport→bus→no-op + ack : {rate:8.0f} msg/s  {cpu:6.1f} us CPU/msg")
        print(f"  ratio (b)/(a) = {rate / raw_rate:.2f}   {transport.stats}")
        if profile is not None:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        return rate / raw_rate
    finally:
        for client_id in (raw_id, ours_id):
            with contextlib.suppress(OSError):
                drop_session(args.host, port, client_id)


if __name__ == "__main__":
    main()
