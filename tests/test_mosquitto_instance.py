"""The private-broker and publisher-process helpers do what broker-restart tests rely on: a restart keeps the
port and the persisted sessions, a crash does not save, and the publisher's acked file is exactly what the
broker holds, even across a restart in mid-stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mosquitto_instance import MosquittoInstance, free_port, recommended_config
from mqtt_publisher_process import read_acked, start_publisher
from paho.mqtt.enums import CallbackAPIVersion

from pywats_cfx import CFXCodec

pytestmark = pytest.mark.broker


class Collector:
    """A QoS 1 subscriber that reconnects by itself and records every message it gets."""

    def __init__(self, broker: MosquittoInstance, client_id: str, *, persistent: bool = True) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.session_present: bool | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]  # floats work
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(5), "subscriber did not connect"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.session_present = flags.session_present
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5), "no SUBACK"

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes]]], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if predicate(self.messages):
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_qos1(broker: MosquittoInstance, topic: str, payload: bytes) -> None:
    """Publish and return once the broker's PUBACK arrived."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="one-shot")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published(), "broker did not acknowledge the publish"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.timeout(30)
def test_restart_keeps_port_and_persistent_session_queue(tmp_path: Path) -> None:
    with MosquittoInstance(tmp_path) as broker:
        port, pid = broker.port, broker.pid
        sub = Collector(broker, "sub-restart")
        sub.subscribe("t/queued")
        sub.close()  # offline persistent session: the broker queues for it

        publish_qos1(broker, "t/queued", b"kept")
        broker.restart()

        assert (broker.port, broker.running) == (port, True)
        assert broker.pid != pid
        assert (tmp_path / "mosquitto.db").exists()
        sub = Collector(broker, "sub-restart")
        try:
            assert sub.session_present is True
            assert sub.wait_for(lambda msgs: ("t/queued", b"kept") in msgs, 5), broker.log_tail()
        finally:
            sub.close()


@pytest.mark.timeout(30)
def test_kill_loses_what_was_not_saved(tmp_path: Path) -> None:
    """`kill()` is a crash, not a restart: with no autosave since, the queued message is gone."""
    with MosquittoInstance(tmp_path, "autosave_interval 3600\n") as broker:
        sub = Collector(broker, "sub-kill")
        sub.subscribe("t/lost")
        sub.close()
        publish_qos1(broker, "t/lost", b"unsaved")
        broker.kill()
        assert not broker.running
        broker.start()

        sub = Collector(broker, "sub-kill")
        try:
            assert sub.session_present is False  # the session itself was never saved
            assert not sub.wait_for(lambda msgs: bool(msgs), 1.0)
        finally:
            sub.close()


def test_extra_config_cannot_add_a_listener(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="listener"):
        MosquittoInstance(tmp_path, "listener 1883\n")


def test_listener_options_and_refusing_anonymous_clients(tmp_path: Path) -> None:
    """TLS options land on the instance's listener; a test's `allow_anonymous false` is not overridden by
    the default (Mosquitto keeps the last value)."""
    broker = MosquittoInstance(
        tmp_path / "auth",
        "allow_anonymous false\n",
        port=free_port(),
        listener_options="require_certificate true\n",
    )
    lines = broker.config_text().splitlines()
    assert lines[:2] == [f"listener {broker.port} {broker.host}", "require_certificate true"]
    assert "allow_anonymous false" in lines and "allow_anonymous true" not in lines
    assert "allow_anonymous true" in MosquittoInstance(tmp_path / "open", port=free_port()).config_text()
    with pytest.raises(ValueError, match="port"):
        MosquittoInstance(tmp_path, listener_options="port 1883\n")


@pytest.mark.timeout(60)
def test_publisher_process_acks_every_message(tmp_path: Path) -> None:
    acked_file = tmp_path / "acked.txt"
    with MosquittoInstance(tmp_path / "broker") as broker:
        sub = Collector(broker, "sub-cfx")
        try:
            sub.subscribe("cfx/#")
            proc = start_publisher(
                broker.host,
                broker.port,
                topic="cfx/{i}",
                count=200,
                payload="cfx-gzip",
                acked_file=acked_file,
            )
            out, _ = proc.communicate(timeout=40)
            assert proc.returncode == 0, out
            assert "acked=200/200" in out
            assert read_acked(acked_file) == set(range(200))
            assert sub.wait_for(lambda msgs: len({t for t, _ in msgs}) == 200, 10)
            with sub.lock:
                messages = list(sub.messages)
        finally:
            sub.close()

    codec = CFXCodec()
    serials: set[str] = set()
    for topic, body in messages:
        result = codec.decode(body, {}, topic)
        assert result.quarantined == []
        serials.update(event.payload["unit_serial"] for event in result.events)
    assert serials == {f"SN-{i}" for i in range(200)}


@pytest.mark.timeout(60)
def test_publisher_survives_broker_restart_mid_stream(tmp_path: Path) -> None:
    """Everything the publisher saw acknowledged reaches a persistent subscriber through the restart."""
    count = 2000
    acked_file = tmp_path / "acked.txt"
    with MosquittoInstance(tmp_path / "broker", recommended_config()) as broker:
        sub = Collector(broker, "sub-restart-stream")
        try:
            sub.subscribe("load/#")
            proc = start_publisher(
                broker.host,
                broker.port,
                topic="load/{i}",
                count=count,
                rate=1000,
                acked_file=acked_file,
                client_id="pub-restart-stream",
                deadline=40,
            )
            end = time.monotonic() + 10
            while len(read_acked(acked_file)) < 300 and time.monotonic() < end:
                time.sleep(0.01)
            acked_before = len(read_acked(acked_file))
            broker.restart()

            out, _ = proc.communicate(timeout=45)
            assert 300 <= acked_before < count, f"restart was not mid-stream ({acked_before} acked)"
            assert proc.returncode == 0, out
            assert "connects=1 " not in out, f"publisher never reconnected: {out}"
            assert read_acked(acked_file) == set(range(count))
            assert sub.wait_for(lambda msgs: len({t for t, _ in msgs}) == count, 15), broker.log_tail()
        finally:
            sub.close()
