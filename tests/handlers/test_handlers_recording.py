"""The three handlers against a recording sink: which requests each event leads to, field by field."""

from __future__ import annotations

import pytest
from handler_helpers import STATION, base_config, event, make_result, server_sink

from handlers import (
    AssetHandler,
    ProductionHandler,
    RecordingSink,
    ReportHandler,
    ResolutionError,
    WatsPermanentError,
    WatsTransientError,
    report_id,
)
from handlers.wats.sink import WatsRequest, WatsResponse
from pywats_events import EventType
from pywats_events.payloads import (
    AssetFaultClearedEvent,
    AssetFaultEvent,
    AssetState,
    AssetStateChangedEvent,
    InstalledComponent,
    MaterialInstalledEvent,
    Operator,
    UnitDisqualifiedEvent,
    WorkCompletedEvent,
    WorkResult,
    WorkStartedEvent,
)

ASSET_ID = "11111111-1111-1111-1111-111111111111"


# -- reports -------------------------------------------------------------------------------------------


async def test_report_handler_posts_one_report_with_resolved_header() -> None:
    sink, _ = server_sink()
    h = ReportHandler(sink, base_config())
    assert set(h.event_types) == {EventType.TEST_RESULT, EventType.INSPECTION_RESULT}
    await h.handle(event(EventType.TEST_RESULT, make_result()))
    [req] = sink.requests
    assert (req.method, req.path, req.operation) == ("POST", "/api/Report/WSJF", "submit_report")
    doc = req.json
    assert doc["id"] == report_id("msg-1", "SN1", None)
    assert (doc["pn"], doc["rev"], doc["sn"], doc["processCode"]) == ("PCBA-100", "B", "SN1", 10)
    assert (doc["machineName"], doc["location"]) == ("ICT-01", "Line 3")


async def test_redelivered_message_gets_the_same_report_id() -> None:
    sink, _ = server_sink()
    h = ReportHandler(sink, base_config())
    for _ in range(3):
        await h.handle(event(EventType.TEST_RESULT, make_result()))
    assert len({r.json["id"] for r in sink.requests}) == 1
    await h.handle(event(EventType.TEST_RESULT, make_result(unit_position=2)))
    assert len({r.json["id"] for r in sink.requests}) == 2


async def test_unresolvable_part_number_sends_nothing() -> None:
    sink, _ = server_sink()
    h = ReportHandler(sink, base_config(products=[]))
    with pytest.raises(ResolutionError, match="no part number"):
        await h.handle(event(EventType.TEST_RESULT, make_result(recipe="OTHER")))
    assert sink.writes() == []


async def test_bad_serial_is_a_resolution_error() -> None:
    h = ReportHandler(RecordingSink(), base_config())
    with pytest.raises(ResolutionError, match="refuses"):
        await h.handle(event(EventType.TEST_RESULT, make_result(serial="A/B")))


async def test_sink_errors_propagate_to_the_bus() -> None:
    def down(_: WatsRequest) -> WatsResponse:
        raise WatsTransientError("503", status=503)

    with pytest.raises(WatsTransientError):
        await ReportHandler(RecordingSink(down), base_config()).handle(
            event(EventType.TEST_RESULT, make_result())
        )

    def refuse(_: WatsRequest) -> WatsResponse:
        raise WatsPermanentError("400: bad", status=400)

    with pytest.raises(WatsPermanentError, match="bad"):
        await ReportHandler(RecordingSink(refuse), base_config()).handle(
            event(EventType.TEST_RESULT, make_result())
        )


# -- production ----------------------------------------------------------------------------------------


def started(serial: str = "SN1") -> WorkStartedEvent:
    return WorkStartedEvent(unit_serial=serial, station=STATION, recipe="PCBA-100-ICT", message_id="ws-1")


async def test_work_started_creates_missing_unit_then_sets_phase_and_process() -> None:
    sink, server = server_sink()
    await ProductionHandler(sink, base_config()).handle(event(EventType.WORK_STARTED, started()))
    calls = [(r.method, r.path) for r in sink.requests]
    assert calls == [
        ("GET", "/api/Production/Unit/SN1/PCBA-100"),
        ("POST", "/api/Production/Unit"),
        ("PUT", "/api/Production/SetUnitPhase"),
        ("PUT", "/api/Production/SetUnitProcess"),
    ]
    assert sink.requests[1].json == {
        "serialNumber": "SN1",
        "partNumber": "PCBA-100",
        "revision": "B",
        "currentLocation": "Line 3",
    }
    assert sink.requests[2].params == {"serialNumber": "SN1", "partNumber": "PCBA-100", "phase": 2}
    assert sink.requests[3].params == {"serialNumber": "SN1", "partNumber": "PCBA-100", "processCode": 10}
    assert ("SN1", "PCBA-100") in server.units


async def test_work_started_for_existing_unit_does_not_create() -> None:
    sink, server = server_sink()
    server.units[("SN1", "PCBA-100")] = {"serialNumber": "SN1", "partNumber": "PCBA-100", "subUnits": []}
    await ProductionHandler(sink, base_config()).handle(event(EventType.WORK_STARTED, started()))
    assert [r.operation for r in sink.requests] == ["get_unit", "set_unit_phase", "set_unit_process"]


async def test_work_started_tolerates_a_concurrent_create() -> None:
    def answer(r: WatsRequest) -> WatsResponse:
        if r.method == "GET":
            raise WatsPermanentError("not found", status=404)
        if r.operation == "create_unit":
            raise WatsPermanentError("exists", status=409)
        return WatsResponse(200)

    sink = RecordingSink(answer)
    await ProductionHandler(sink, base_config()).handle(event(EventType.WORK_STARTED, started()))
    assert [r.operation for r in sink.requests][-2:] == ["set_unit_phase", "set_unit_process"]


@pytest.mark.parametrize(
    ("result", "status", "last", "phase"),
    [
        (WorkResult.COMPLETED, None, True, 16),
        (WorkResult.COMPLETED, None, False, None),
        (WorkResult.FAILED, None, False, 4),
        (WorkResult.COMPLETED, "Failed", True, 4),
        (WorkResult.ABORTED, None, True, None),
    ],
)
async def test_work_completed_phase_per_configuration(
    result: WorkResult, status: str | None, last: bool, phase: int | None
) -> None:
    sink, _ = server_sink()
    cfg = base_config(default_part_number="PCBA-100", products=[])
    cfg.stations[STATION].last_operation = last
    payload = WorkCompletedEvent(unit_serial="SN1", station=STATION, result=result, unit_status=status)
    await ProductionHandler(sink, cfg).handle(event(EventType.WORK_COMPLETED, payload))
    if phase is None:
        assert sink.requests == []  # nothing to change: not even resolution asks WATS
    else:
        [req] = sink.writes()  # after the unit lookup (WATS first, then the default part number)
        assert (req.method, req.path) == ("PUT", "/api/Production/SetUnitPhase")
        assert req.params["phase"] == phase and req.params["partNumber"] == "PCBA-100"
        assert req.params["comment"] == f"Work {result.value.lower()} at ICT-01"


async def test_unit_disqualified_scraps_with_reason() -> None:
    sink, _ = server_sink()
    payload = UnitDisqualifiedEvent(unit_serial="SN1", station=STATION, reason="Burnt", comments="visual")
    await ProductionHandler(sink, base_config(default_part_number="PCBA-100")).handle(
        event(EventType.UNIT_DISQUALIFIED, payload)
    )
    [req] = sink.writes()
    assert req.params == {
        "serialNumber": "SN1",
        "partNumber": "PCBA-100",
        "phase": 32,
        "comment": "Burnt; visual",
    }


async def test_material_installed_attaches_serialized_children_once() -> None:
    sink, server = server_sink()
    server.units[("SN1", "PCBA-100")] = {"serialNumber": "SN1", "partNumber": "PCBA-100", "subUnits": []}
    payload = MaterialInstalledEvent(
        unit_serial="SN1",
        station=STATION,
        material_serial="PSU-77",
        part_number="PSU-200",
        serialized=True,
        components=[
            InstalledComponent(designator="R1", part_number="RES-10K"),  # not serialized: no relation
            InstalledComponent(designator="J1", part_number="CBL-9", serial="CBL-0001"),
        ],
    )
    h = ProductionHandler(sink, base_config(default_part_number="PCBA-100"))
    await h.handle(event(EventType.MATERIAL_INSTALLED, payload))
    adds = [r for r in sink.requests if r.operation == "add_child_unit"]
    assert [r.params for r in adds] == [
        {
            "parentSerialNumber": "SN1",
            "parentPartNumber": "PCBA-100",
            "childSerialNumber": "PSU-77",
            "childPartNumber": "PSU-200",
        },
        {
            "parentSerialNumber": "SN1",
            "parentPartNumber": "PCBA-100",
            "childSerialNumber": "CBL-0001",
            "childPartNumber": "CBL-9",
        },
    ]
    # WATS now lists them: a redelivery attaches nothing again
    server.units[("SN1", "PCBA-100")]["subUnits"] = [
        {"serialNumber": "PSU-77", "partNumber": "PSU-200"},
        {"serialNumber": "CBL-0001", "partNumber": "CBL-9"},
    ]
    sink.clear()
    await h.handle(event(EventType.MATERIAL_INSTALLED, payload))
    assert [r.operation for r in sink.requests] == ["get_unit"]


async def test_material_not_serialized_sends_nothing() -> None:
    sink, _ = server_sink()
    payload = MaterialInstalledEvent(unit_serial="SN1", station=STATION, lot="L1", part_number="RES")
    await ProductionHandler(sink, base_config()).handle(event(EventType.MATERIAL_INSTALLED, payload))
    assert sink.requests == []


async def test_serialized_material_without_part_number_is_a_resolution_error() -> None:
    payload = MaterialInstalledEvent(unit_serial="SN1", material_serial="X1", serialized=True)
    with pytest.raises(ResolutionError, match="no part number"):
        await ProductionHandler(RecordingSink(), base_config()).handle(
            event(EventType.MATERIAL_INSTALLED, payload)
        )


# -- assets --------------------------------------------------------------------------------------------


async def test_fault_becomes_log_message_with_asset_id() -> None:
    sink, _ = server_sink()
    fault = AssetFaultEvent(
        station=STATION,
        fault_code="E42",
        severity="Error",
        description="Feeder jam",
        lane=1,
        fault_occurrence_id="f-1",
        message_id="cfx-1",
    )
    await AssetHandler(sink, base_config()).handle(event(EventType.ASSET_FAULT, fault))
    assert [(r.method, r.path) for r in sink.requests] == [
        ("GET", "/api/Asset/ICT-01"),
        ("POST", "/api/Asset/Message"),
    ]
    assert sink.requests[1].json == {
        "assetId": ASSET_ID,
        # the CFX UniqueID makes a repeat of this line recognisable in the asset log
        "comment": "Fault E42 [Error]: Feeder jam (lane 1, occurrence f-1) [ref cfx-1]",
        "user": "pywats-events",
    }


async def test_fault_can_set_in_maintenance() -> None:
    sink, _ = server_sink()
    cfg = base_config(asset={"fault_sets_maintenance": True})
    await AssetHandler(sink, cfg).handle(
        event(EventType.ASSET_FAULT, AssetFaultEvent(station=STATION, severity="Critical"))
    )
    assert sink.requests[-1].params == {"serialNumber": "ICT-01", "state": 3}
    sink.clear()
    await AssetHandler(sink, cfg).handle(
        event(EventType.ASSET_FAULT, AssetFaultEvent(station=STATION, severity="Information"))
    )
    assert [r.operation for r in sink.requests] == ["get_asset", "add_asset_message"]


async def test_fault_cleared_logs() -> None:
    sink, _ = server_sink()
    cleared = AssetFaultClearedEvent(
        station=STATION, fault_occurrence_id="f-1", operator=Operator(login_name="tech")
    )
    ev = event(EventType.ASSET_FAULT_CLEARED, cleared)
    await AssetHandler(sink, base_config()).handle(ev)
    # without a source message id the event id (stable across retries) identifies the line
    assert sink.requests[-1].json["comment"] == f"Fault f-1 cleared by tech [ref {ev.id}]"


async def test_fault_on_unknown_station_is_a_resolution_error() -> None:
    with pytest.raises(ResolutionError, match="no WATS asset"):
        await AssetHandler(RecordingSink(), base_config()).handle(
            event(EventType.ASSET_FAULT, AssetFaultEvent(station="//Acme/unknown"))
        )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (AssetState.UNKNOWN, AssetState.PRODUCTIVE, 1),
        (AssetState.UNSCHEDULED_DOWNTIME, AssetState.STANDBY, 1),
        (AssetState.PRODUCTIVE, AssetState.SCHEDULED_DOWNTIME, 3),
        (AssetState.PRODUCTIVE, AssetState.STANDBY, None),  # both "In Operation": nothing to send
    ],
)
async def test_state_changes_map_to_wats_states(
    old: AssetState, new: AssetState, expected: int | None
) -> None:
    sink, _ = server_sink()
    payload = AssetStateChangedEvent(station=STATION, old_state=old, new_state=new)
    await AssetHandler(sink, base_config()).handle(event(EventType.ASSET_STATE_CHANGED, payload))
    if expected is None:
        assert sink.requests == []
    else:
        [req] = sink.requests
        assert (req.method, req.path, req.params) == (
            "PUT",
            "/api/Asset/State",
            {"serialNumber": "ICT-01", "state": expected},
        )


async def test_states_wats_lacks_become_log_messages() -> None:
    sink, _ = server_sink()
    payload = AssetStateChangedEvent(
        station=STATION,
        old_state=AssetState.PRODUCTIVE,
        new_state=AssetState.UNSCHEDULED_DOWNTIME,
        new_state_code=5000,
        related_fault=AssetFaultEvent(fault_code="E7"),
        message_id="cfx-7",
    )
    await AssetHandler(sink, base_config()).handle(event(EventType.ASSET_STATE_CHANGED, payload))
    assert [r.operation for r in sink.requests] == ["get_asset", "add_asset_message"]
    assert sink.requests[-1].json["comment"] == (
        "State productive -> unscheduled_downtime (E10 5000); WATS has no such asset state. Fault E7"
        " [ref cfx-7]"
    )


async def test_usage_count_once_per_unit_when_enabled() -> None:
    sink, _ = server_sink()
    off = AssetHandler(sink, base_config())
    assert EventType.TEST_RESULT not in list(off.event_types)
    h = AssetHandler(sink, base_config(asset={"count_usage": True}))
    assert EventType.TEST_RESULT in list(h.event_types)
    for _ in range(2):
        await h.handle(event(EventType.TEST_RESULT, make_result()))
    await h.handle(event(EventType.TEST_RESULT, make_result(serial="SN2")))
    counts = [r for r in sink.requests if r.operation == "increment_asset_count"]
    assert len(counts) == 2 and counts[0].params == {"serialNumber": "ICT-01", "incrementBy": 1}
    assert counts[0].idempotent is False
    # each increment is preceded by a read of totalCount, the baseline for verifying a lost answer
    ops = [r.operation for r in sink.requests]
    assert ops == ["get_asset", "increment_asset_count", "get_asset", "increment_asset_count"]
