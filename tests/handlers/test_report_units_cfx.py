"""Measurement units from real CFX input: every numeric measurement of the SDK example corpus and of the
bundled samples reaches WATS with its limits in the value's unit (or flagged), and the SDK's ICT example
travels over HTTP to FakeWATS as WATS should store it."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sample_plant import TOKEN, plant_config, seed

from handlers import create_handlers
from handlers.wats.fake import FakeWATS
from handlers.wats.measurement_units import convert, parse_unit
from handlers.wats.sender import HttpSender
from handlers.wats.wsjf import ReportHeader, build_uut_report_with_warnings, report_id
from pywats_events import BaseHandler, Event, EventType
from pywats_events._handlers import resolve_event_types
from pywats_events.metrics import PLUGIN_METRICS, MetricsObserver
from pywats_events.payloads import Measurement, MeasurementKind, StepResult, TestResultEvent

pytest.importorskip("pywats_cfx")

from pywats_cfx import CFXCodec
from pywats_cfx.samples import list_samples, load_sample

CORPUS = Path(__file__).resolve().parents[1] / "cfx" / "corpus" / "messages"
#: the SDK's in-circuit test of a 2-circuit panel: 28300 Ohm measured against 28.2 kOhm, limits 28.0..28.4
ICT = next(CORPUS.glob("cfx-sdk__CFX.Production.TestAndInspection.UnitsTested__ex1-*.json"))
ICT_MESSAGE = "CFX.Production.TestAndInspection.UnitsTested"
HEADER = ReportHeader(
    id="3f2c6a1e-8d4b-4c1e-9a51-0c2b7f1d9e01",
    part_number="PCBA-100",
    revision="B",
    process_code=10,
    machine_name="ICT-01",
    location="Line 3",
)


def _corpus_name(path: Path) -> str:
    name = path.name[len("cfx-sdk__") : -len(".json")].split("__", 1)[0]
    return "CFX.EndpointConnected" if name == "CFXEnvelope" else name


def _results() -> list[tuple[str, TestResultEvent]]:
    codec = CFXCodec()
    decoded = [
        (p.name, codec.decode(p.read_bytes(), {"cfx-message": _corpus_name(p)}))
        for p in CORPUS.glob("*.json")
    ]
    decoded += [(name, codec.decode(load_sample(name))) for name in list_samples()]
    return [
        (source, TestResultEvent.model_validate(ev.payload))
        for source, result in decoded
        for ev in result.events
        if ev.event_type in (EventType.TEST_RESULT, EventType.INSPECTION_RESULT)
    ]


def _pairs(event: TestResultEvent, doc: dict[str, Any]) -> list[tuple[str, Measurement, dict[str, Any]]]:
    """(step name, numeric measurement, its WSJF numericMeas) in report order."""
    pairs = []
    for test, step in zip(event.tests, doc["root"]["steps"], strict=True):
        if "numericMeas" in step:
            metas = step["numericMeas"]
        else:
            metas = [c["numericMeas"][0] for c in step.get("steps", []) if "numericMeas" in c]
        numeric = [m for m in test.measurements if m.kind is MeasurementKind.NUMERIC]
        pairs += [(step["name"], m, meta) for m, meta in zip(numeric, metas, strict=True)]
    return pairs


def _in_value_unit(number: float | None, units: str | None, m: Measurement) -> float | None:
    """The oracle: `number` (in `units`, or the value's units when it has none) in the value's units."""
    if number is None or not units or units == m.units:
        return number
    source, target = parse_unit(units), parse_unit(m.units)
    assert source is not None and target is not None, (units, m.units)
    return convert(number, source, target)


def _expected_limits(m: Measurement) -> tuple[float | None, float | None]:
    limit_units = m.expected_units  # CFX 1.x limits carry no units: the expected value's speak for them
    low = _in_value_unit(m.low_limit, m.low_limit_units or limit_units, m)
    high = _in_value_unit(m.high_limit, m.high_limit_units or limit_units, m)
    return low, high


def test_every_numeric_measurement_has_its_limits_in_the_value_unit_or_is_flagged() -> None:
    checked = converted = 0
    for source, event in _results():
        doc, flags = build_uut_report_with_warnings(event, HEADER)
        flagged = {(f.step, f.measurement) for f in flags}
        for step, m, meta in _pairs(event, doc):
            checked += 1
            if any(f[0] == step for f in flagged):
                assert "Measurement check" in {i["description"] for i in doc["miscInfos"]}, source
                continue
            assert meta.get("unit") == m.units, (source, step, m.name)
            low, high = _expected_limits(m)
            if (low, high) != (m.low_limit, m.high_limit):
                converted += 1
            op = meta["compOp"]
            sent = (meta.get("lowLimit"), meta.get("highLimit"))
            want = {"GELE": (low, high), "GE": (low, None), "LE": (high, None)}.get(op)
            if want is not None:
                assert sent == want, (source, step, m.name, sent, want)
            if m.result is StepResult.PASSED and op == "GELE":
                assert sent[0] is not None and sent[1] is not None
                assert sent[0] <= meta["value"] <= sent[1] or math.isclose(meta["value"], sent[1]), (
                    source,
                    m.name,
                )
    assert checked >= 160  # 162 in corpus and samples together; a decoding change that loses them fails here
    assert converted == 3  # the ICT example's three kOhm limits


class _Rig:
    def __init__(self, wats: FakeWATS, handlers: list[BaseHandler]) -> None:
        self.wats, self.handlers = wats, handlers

    async def send(self, body: bytes) -> list[Event]:
        """`body` in an envelope from the sample line's ICT station, through the handlers to FakeWATS."""
        envelope = {
            "MessageName": ICT_MESSAGE,
            "Version": "2.0",
            "TimeStamp": "2026-03-12T09:02:41+01:00",
            "UniqueID": "0b6f3f0e-5a1d-4c55-9a43-6f1f3e0c2a10",
            "Source": "Keysight.i3070.ICT-L1-01",
            "Target": None,
            "RequestID": None,
            "MessageBody": json.loads(body),
        }
        result = CFXCodec().decode(json.dumps(envelope).encode())
        assert not result.quarantined
        for ev in result.events:
            for h in self.handlers:
                if str(ev.event_type) in resolve_event_types(h):
                    await h.handle(ev)  # type: ignore[misc]
        return list(result.events)

    def report(self, ev: Event) -> dict[str, Any]:
        p = ev.payload
        return self.wats.reports[report_id(p["message_id"], p["unit_serial"], p["unit_position"])]


@pytest.fixture
async def rig() -> AsyncIterator[_Rig]:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with HttpSender(wats.url, TOKEN) as sender:
            # the SDK example's TestMethod is "Automated", a name the plant's WATS does not know
            handlers = create_handlers(plant_config(processes={"Automated": 10}), sender)
            for h in handlers:
                await h.on_start()  # type: ignore[misc]
            yield _Rig(wats, handlers)


def _r21(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    step = next(s for s in doc["root"]["steps"] if s["name"] == "RESISTANCE_CHECK_R21")
    return step, step["numericMeas"][0]


def _mismatches(reason: str) -> float:
    return PLUGIN_METRICS.get_sample_value("pywats_wats_unit_mismatches_total", {"reason": reason}) or 0.0


async def test_sdk_ict_example_reaches_wats_in_ohm(rig: _Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="handlers")
    events = await rig.send(ICT.read_bytes())
    assert len(events) == 2 and len(rig.wats.reports) == 2
    step, meas = _r21(rig.report(events[0]))
    assert meas == {
        "compOp": "GELE",
        "value": 28300.0,
        "unit": "Ohm",
        "lowLimit": 28000.0,
        "highLimit": 28400.0,
        "status": "P",
    }
    assert step["status"] == "P" and "reportText" not in step
    assert "Measurement check" not in {m["description"] for m in rig.report(events[0])["miscInfos"]}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_limits_in_another_quantity_are_flagged_and_counted(
    rig: _Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handlers.report")
    body = ICT.read_bytes().replace(b'"ExpectedValueUnits": "kOhm"', b'"ExpectedValueUnits": "V"')
    before = _mismatches("quantity")
    events = await rig.send(body)
    doc = rig.report(events[0])
    step, meas = _r21(doc)
    # the numbers and the verdict as CFX sent them, and a report that says they do not fit together
    assert (meas["value"], meas["unit"], meas["lowLimit"], meas["highLimit"], meas["status"]) == (
        28300.0,
        "Ohm",
        28.0,
        28.4,
        "P",
    )
    assert step["reportText"] == (
        "Unit check: RESISTANCE_MEASUREMENT_R21: expected value in 'V' is not comparable with the value in "
        "'Ohm' (voltage vs resistance); numbers kept as sent"
    )
    misc = {m["description"]: m["text"] for m in doc["miscInfos"]}
    assert misc["Measurement check"] == "1 flagged (unit mismatch 1); see step report text"
    # three R21/R22 measurements across the two units of the panel
    assert _mismatches("quantity") - before == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("not comparable with the value in 'Ohm'" in w for w in warnings)
    assert f"report {doc['id']} ({doc['sn']})" in warnings[0]
    # the listener serves the handlers' counters on /metrics
    exposed = MetricsObserver().registry.get_sample_value(
        "pywats_wats_unit_mismatches_total", {"reason": "quantity"}
    )
    assert exposed == _mismatches("quantity")
