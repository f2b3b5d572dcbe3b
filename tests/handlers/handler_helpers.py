"""Event builders and a scripted sink shared by the handler tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from handlers import RecordingSink, WatsHandlersConfig, WatsPermanentError
from handlers.wats.sink import WatsRequest, WatsResponse
from pywats_events import Event, EventMetadata, EventType
from pywats_events.payloads import (
    Measurement,
    MeasurementKind,
    Operator,
    StepResult,
    TestResultEvent,
    TestStep,
)

STATION = "//Acme/Line3/ICT-01"
T0 = datetime(2026, 1, 30, 11, 0, 0, tzinfo=timezone.utc)

PROCESSES = [
    {"code": 10, "name": "ICT", "isTestOperation": True},
    {"code": 50, "name": "Functional test", "isTestOperation": True},
    {"code": 20, "name": "AOI", "isTestOperation": True},
    {"code": 200, "name": "Assembly", "isWipOperation": True},
    {"code": 500, "name": "Repair", "isRepairOperation": True},
]


def event(kind: EventType, payload: Any, *, source: str | None = STATION) -> Event:
    data = payload.model_dump(mode="json") if hasattr(payload, "model_dump") else dict(payload)
    return Event(event_type=kind, payload=data, metadata=EventMetadata(source=source))


def make_result(serial: str = "SN1", **overrides: Any) -> TestResultEvent:
    values: dict[str, Any] = {
        "unit_serial": serial,
        "station": STATION,
        "message_id": "msg-1",
        "transaction_id": "tx-1",
        "timestamp": T0 + timedelta(seconds=10),
        "result": StepResult.PASSED,
        "method": "ICT",
        "recipe": "PCBA-100-ICT",
        "start": T0,
        "end": T0 + timedelta(seconds=12.5),
        "operator": Operator(login_name="jdoe"),
        "tests": [
            TestStep(
                name="3V3 rail",
                result=StepResult.PASSED,
                measurements=[
                    Measurement(
                        name="3V3",
                        value=3.31,
                        units="V",
                        low_limit=3.2,
                        high_limit=3.4,
                        result=StepResult.PASSED,
                    )
                ],
            )
        ],
    }
    values.update(overrides)
    return TestResultEvent(**values)


def base_config(**overrides: Any) -> WatsHandlersConfig:
    values: dict[str, Any] = {
        "location": "Line 3",
        "default_revision": "A",
        "stations": {STATION: {"machine_name": "ICT-01", "asset_serial": "ICT-01", "process": 10}},
        "products": [{"recipe": "PCBA-100*", "part_number": "PCBA-100", "revision": "B"}],
        "lookup_processes": False,
    }
    values.update(overrides)
    return WatsHandlersConfig.model_validate(values)


class FakeServer:
    """Answers like a small WATS for the recording sink: units, assets, processes."""

    def __init__(self) -> None:
        self.units: dict[tuple[str, str], dict[str, Any]] = {}
        self.assets = {"ICT-01": "11111111-1111-1111-1111-111111111111"}
        self.counts: dict[str, int] = {}
        self.processes = PROCESSES

    def __call__(self, r: WatsRequest) -> WatsResponse:
        if r.method == "GET" and r.path == "/api/App/Processes":
            return WatsResponse(200, self.processes)
        if r.method == "GET" and r.path == "/api/Production/Unit/Query":
            sn = r.params["$filter"].split("'")[1]
            return WatsResponse(200, [u for (s, _), u in self.units.items() if s == sn])
        if r.method == "GET" and r.path.startswith("/api/Production/Unit/"):
            sn, pn = r.path.split("/")[-2:]
            if (sn, pn) not in self.units:
                raise WatsPermanentError("unit not found", status=404)
            return WatsResponse(200, self.units[(sn, pn)])
        if r.method == "POST" and r.path == "/api/Production/Unit":
            key = (r.json["serialNumber"], r.json["partNumber"])
            if key in self.units:
                raise WatsPermanentError("exists", status=409)
            self.units[key] = {**r.json, "subUnits": []}
            return WatsResponse(200, r.json)
        if r.method == "GET" and r.path.startswith("/api/Asset/"):
            serial = r.path.rsplit("/", 1)[-1]
            if serial not in self.assets:
                raise WatsPermanentError("asset not found", status=404)
            body = {"assetId": self.assets[serial], "serialNumber": serial}
            return WatsResponse(200, {**body, "totalCount": self.counts.get(serial, 0), "assetLog": []})
        if r.method == "PUT" and r.path == "/api/Asset/Count":
            serial = r.params["serialNumber"]
            self.counts[serial] = self.counts.get(serial, 0) + int(r.params["incrementBy"])
        return WatsResponse(200, None)


def server_sink() -> tuple[RecordingSink, FakeServer]:
    server = FakeServer()
    return RecordingSink(server), server


_ = MeasurementKind  # re-exported for tests
