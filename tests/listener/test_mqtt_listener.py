"""`pywats-events run --mqtt …` against the real Mosquitto: CFX over MQTT → WATS requests in the outbox.

Publishes the bundled CFX samples (gzipped and plain envelopes, and a bare MessageBody whose name comes from
the topic) with paho and reads the outbox with `pywats-events outbox list --json`, as a user would.
"""

from __future__ import annotations

import copy
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto
from listener_support import ListenerProcess, run_cli, wats_settings_toml

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
