"""`pywats-events run --mqtt …` against the real Mosquitto: CFX over MQTT → WATS requests in the outbox.

Publishes the bundled CFX samples (gzipped and plain envelopes, and a bare MessageBody whose name comes from
the topic) with paho and reads the outbox with `pywats-events outbox list --json`, as a user would; and kills
the listener with -9 mid-stream on a private Mosquitto, against FakeWATS over HTTP.
"""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto
from listener_support import (
    ListenerProcess,
    clean_env,
    reported_message_ids,
    run_cli,
    wait_until,
    wats_settings_toml,
    wats_toml,
)
from mosquitto_instance import MosquittoInstance, recommended_config
from mqtt_publisher_process import message_uuid, read_acked, start_publisher

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"


def _publish(messages: list[tuple[str, bytes]]) -> None:
    from paho.mqtt import client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    try:
        for topic, body in messages:
            client.publish(topic, body, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def _units(envelope: dict[str, Any]) -> list[tuple[str, str]]:
    body = envelope["MessageBody"]
    units = body.get("TestedUnits") or body.get("InspectedUnits") or []
    return [(u["UnitIdentifier"], u["OverallResult"][0]) for u in units]


def test_mqtt_cfx_traffic_reaches_the_outbox(tmp_path: Path) -> None:
    require_mosquitto()
    from pywats_cfx.samples import load_sample_dict

    prefix = f"pywats-test/{uuid.uuid4().hex[:10]}"
    ict = load_sample_dict("units_tested_ict")
    fct = load_sample_dict("units_tested_fct")
    aoi = load_sample_dict("units_inspected_aoi")
    bare = copy.deepcopy(fct["MessageBody"])
    bare.pop("$type")  # name and sender come from the topic (`<handle>.<MessageName>`)
    bare["TestedUnits"][0]["UnitIdentifier"] = "MB-4471-000999"
    messages = [
        (f"{prefix}/line1/ict", json.dumps(ict).encode()),
        (f"{prefix}/line1/fct", gzip.compress(json.dumps(fct).encode())),
        (f"{prefix}/line1/aoi", gzip.compress(json.dumps(aoi).encode())),
        (f"{prefix}/line1/FCT-L1-02.{UNITS_TESTED}", json.dumps(bare).encode()),
    ]
    expected = sorted(_units(ict) + _units(fct) + _units(aoi) + [("MB-4471-000999", "F")])

    outbox = tmp_path / "outbox"
    listener = ListenerProcess(
        tmp_path,
        wats_settings_toml(),
        "--mqtt",
        f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
        "--topic",
        f"{prefix}/#",
        "--outbox",
        str(outbox),
        "--max-messages",
        str(len(messages)),
        "--idle-exit",
        "15",
    ).start()
    try:
        _publish(messages)
        assert listener.proc is not None
        code = listener.proc.wait(timeout=20)
    finally:
        if listener.proc is not None and listener.proc.poll() is None:
            listener.stop(timeout=10)
    log = listener.log.read_text()
    assert code == 0, log[-3000:]
    assert "stopped: max-messages" in log, log[-3000:]

    listed = run_cli("outbox", "list", "--json", "--outbox", outbox, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    reports = [r for r in rows if (r["method"], r["path"]) == ("POST", "/api/Report/WSJF")]
    assert sorted((r["json"]["sn"], r["json"]["result"]) for r in reports) == expected
    assert len({r["json"]["id"] for r in reports}) == len(expected), "one report id per message and unit"
    assert all(r["json"]["pn"] == "MB-4471" for r in reports)
    for store in ("quarantine", "dlq"):
        listed = run_cli(store, "list", "--json", cwd=tmp_path)
        assert listed.returncode == 0 and listed.stdout.strip() == "", f"{store}: {listed.stdout}"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_mid_stream_then_restart_loses_nothing_over_mqtt(tmp_path: Path) -> None:
    """The listener acknowledges an MQTT message only once the journal holds its events: killed with -9
    mid-stream and started again (same client id, persistent session), every message the broker accepted
    becomes exactly one report in WATS, including those published while the listener was dead."""
    from handlers.wats.fake import FakeWATS

    token = FakeWATS.make_token("listener", "s3cret-pw")
    count = 2000
    with (
        FakeWATS(token=token) as wats,
        MosquittoInstance(tmp_path / "broker", recommended_config()) as broker,
    ):
        wats.latency = 0.005  # slow WATS down so the kill lands mid-stream
        config = _listener_config(broker, wats.url)
        env = clean_env(WATS_AUTH_TOKEN=token)
        listener = ListenerProcess(tmp_path, config, env=env).start()
        acked_file = tmp_path / "acked.txt"
        publisher = start_publisher(
            broker.host, broker.port, topic="line1/cfx/ict", count=count, acked_file=acked_file,
            payload="cfx-gzip", rate=300, client_id="pywats-kill9-publisher", deadline=120,
        )  # fmt: skip
        try:
            wait_until(lambda: len(reported_message_ids(wats)) >= 200, 60, interval=0.1, what="first reports")
            listener.kill()
            time.sleep(2)  # the publisher goes on: the broker queues for the dead listener's session
            before = len(reported_message_ids(wats))
            listener = ListenerProcess(tmp_path, config, env=env).start()
            out, _ = publisher.communicate(timeout=150)
            assert publisher.returncode == 0, out
            accepted = {message_uuid(i) for i in read_acked(acked_file)}
            assert len(accepted) == count
            wait_until(
                lambda: reported_message_ids(wats) >= accepted, 120, what="every accepted message reported"
            )
        finally:
            if publisher.poll() is None:
                publisher.kill()
            assert listener.stop() == 0
        assert before < count, "the kill must land mid-stream"
        assert reported_message_ids(wats) == accepted
        assert len(wats.reports) == count, "a redelivered message overwrites its report, never adds one"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_broker_restart_under_a_running_listener_loses_nothing(tmp_path: Path) -> None:
    """Mosquitto restarted mid-stream (SIGTERM, its store saved): the listener reports not ready while the
    broker is away, reconnects to its session, and every message the broker accepted becomes one report."""
    from handlers.wats.fake import FakeWATS

    token = FakeWATS.make_token("listener", "s3cret-pw")
    count = 1500
    with (
        FakeWATS(token=token) as wats,
        MosquittoInstance(tmp_path / "broker", recommended_config()) as broker,
    ):
        listener = ListenerProcess(
            tmp_path, _listener_config(broker, wats.url), env=clean_env(WATS_AUTH_TOKEN=token)
        )
        listener.start()
        acked_file = tmp_path / "acked.txt"
        publisher = start_publisher(
            broker.host, broker.port, topic="line1/cfx/ict", count=count, acked_file=acked_file,
            payload="cfx-gzip", rate=300, client_id="pywats-restart-publisher", deadline=120,
        )  # fmt: skip
        try:
            wait_until(lambda: len(reported_message_ids(wats)) >= 200, 60, interval=0.1, what="first reports")
            broker.stop()
            wait_until(lambda: listener.http("/readyz")[0] == 503, 15, interval=0.1, what="not ready")
            broker.start()
            wait_until(lambda: listener.http("/readyz")[0] == 200, 30, interval=0.2, what="ready again")
            out, _ = publisher.communicate(timeout=150)
            assert publisher.returncode == 0, out
            accepted = {message_uuid(i) for i in read_acked(acked_file)}
            wait_until(
                lambda: reported_message_ids(wats) >= accepted, 120, what="every accepted message reported"
            )
        finally:
            if publisher.poll() is None:
                publisher.kill()
            assert listener.stop() == 0
        assert len(accepted) == count
        assert reported_message_ids(wats) == accepted
        assert len(wats.reports) == count


def _listener_config(broker: MosquittoInstance, wats_url: str) -> str:
    return "\n".join(
        [
            "[mqtt]",
            f'url = "mqtt://{broker.host}:{broker.port}"',
            'client_id = "pywats-listener-test"',
            "[[mqtt.subscriptions]]",
            'topic = "line1/cfx/#"',
            wats_toml(wats_url),
            wats_settings_toml(),
        ]
    )


@pytest.mark.timeout(120)
def test_the_documented_mqtt_demo_runs_end_to_end(tmp_path: Path) -> None:
    """docs/operations.md: line simulator → Mosquitto → `pywats-events run --mqtt` → FakeWATS, as written
    there (the demo configuration, the simulator's gateway topics), with a unique topic prefix."""
    from handlers.wats.fake import FakeWATS

    require_mosquitto()
    root = Path(__file__).resolve().parents[2]
    prefix = f"pywats-test/{uuid.uuid4().hex[:10]}"
    token = FakeWATS.make_token("demo", "T")
    with FakeWATS(token=token) as wats:
        for serial in ("SN1000", "SN1001"):
            wats.add_asset(serial)
        env = clean_env(
            WATS_AUTH_TOKEN=token,
            PYWATS_EVENTS_MQTT_CLIENT_ID=f"pywats-test-{uuid.uuid4().hex[:8]}",
            PYWATS_EVENTS_MQTT_PERSISTENT_SESSION="false",
        )
        config = (root / "samples" / "config" / "line-simulator.toml").read_text("utf-8")
        listener = ListenerProcess(
            tmp_path,
            config,
            "--mqtt",
            f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
            "--topic",
            f"{prefix}/#",
            "--wats-url",
            wats.url,
            env=env,
        ).start()
        try:
            simulator = subprocess.run(
                [sys.executable, str(root / "samples" / "line_simulator.py"), "--mqtt",
                 f"mqtt://{MQTT_HOST}:{MQTT_PORT}", "--topic-prefix", prefix, "--count", "10", "--rate", "0",
                 "--fault-rate", "0", "--seed", "3"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert simulator.returncode == 0, simulator.stderr
            wait_until(lambda: len(wats.reports) >= 10, 60, what="10 reports")
        finally:
            assert listener.stop() == 0
        assert {r["pn"] for r in wats.reports.values()} == {"PCB-4711"}
        dlq = run_cli("dlq", "list", "--json", "--config", tmp_path / "listener.toml", cwd=tmp_path)
        assert dlq.returncode == 0 and dlq.stdout.strip() == "", dlq.stdout
