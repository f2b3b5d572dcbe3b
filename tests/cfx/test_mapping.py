"""Per mapped message type: the events carry what WATS needs (serials, results, measurements with limits,
timestamps, defects/symptoms, operator, recipe, method, station, ids)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from cfx_helpers import corpus_files

from pywats_cfx import CFXCodec
from pywats_cfx.samples import load_sample, load_sample_dict
from pywats_events import Event, EventType
from pywats_events import payloads as P


def events(codec: CFXCodec, name: str) -> list[Event]:
    result = codec.decode(load_sample(name))
    assert result.quarantined == []
    return result.events


def _facts(ev: Event, sample: str) -> None:
    env = load_sample_dict(sample)
    p = ev.payload
    assert p["station"] == env["Source"] == ev.metadata.source
    assert p["message_id"] == env["UniqueID"] == ev.metadata.causation_id
    assert p["message_name"] == env["MessageName"]
    assert (
        datetime.fromisoformat(p["timestamp"])
        == ev.metadata.timestamp
        == datetime.fromisoformat(env["TimeStamp"][:26] + env["TimeStamp"][27:])
    )


def test_units_tested_fct_failing_unit(codec: CFXCodec) -> None:
    [ev] = events(codec, "units_tested_fct")
    assert ev.event_type is EventType.TEST_RESULT
    _facts(ev, "units_tested_fct")
    r = P.TestResultEvent.model_validate(ev.payload)
    body = load_sample_dict("units_tested_fct")["MessageBody"]
    assert r.unit_serial == "MB-4471-000145" and r.unit_position == 1
    assert r.result is P.StepResult.FAILED and r.kind == "test" and r.method == "FCT"
    assert r.transaction_id == body["TransactionId"] == ev.metadata.correlation_id
    assert r.recipe == "MB-4471_FCT" and r.recipe_revision == "4.2"
    assert r.operator is not None and r.operator.login_name == "jberg" and r.operator.actor_type == "Human"
    assert [t.name for t in r.tests] == [t["TestName"] for t in body["TestedUnits"][0]["Tests"]]
    assert r.start is not None and r.end is not None and r.start < r.end
    power = r.tests[0]
    assert power.result is P.StepResult.PASSED and power.start is not None and power.end is not None
    v33 = power.measurements[0]
    assert (v33.name, v33.kind, v33.value, v33.units) == ("VCC_3V3", P.MeasurementKind.NUMERIC, 3.302, "V")
    assert (v33.low_limit, v33.high_limit, v33.expected_value) == (3.135, 3.465, 3.3)
    assert v33.low_limit_units == v33.high_limit_units == v33.expected_units == "V"
    assert v33.result is P.StepResult.PASSED and v33.timestamp is not None and v33.sequence == 1
    assert v33.measurement_id and v33.source_type == "CFX.Structures.NumericMeasurement"
    [temp, hum] = power.conditions
    assert (temp.kind, temp.mean, hum.kind) == ("Temperature", 24.6, "Humidity")
    fw = r.tests[2].measurements[0]
    assert (fw.kind, fw.value, fw.expected_value) == (P.MeasurementKind.TEXT, "4.2.17", "4.2.17")
    eth = r.tests[4]
    assert eth.result is P.StepResult.FAILED and eth.comments == "Link LED stays off"
    link = eth.measurements[0]
    assert (link.kind, link.value, link.expected_value, link.result) == (
        P.MeasurementKind.BOOLEAN,
        False,
        True,
        P.StepResult.FAILED,
    )
    [sym] = eth.symptoms
    assert (
        sym.code == "ETH-NOLINK"
        and sym.components == ["U12", "T1"]
        and sym.measurements[0].name == "ETH_LINK_UP"
    )
    [dfc] = eth.defects
    assert dfc.code == "SOLDER_BRIDGE" and dfc.component == "U12.14" and dfc.confidence == 80.0
    assert r.defects == [dfc] and r.symptoms == [sym]  # unit-level union
    assert r.tests[5].result is P.StepResult.SKIPPED
    assert sum(len(t.measurements) for t in r.tests) == 10


def test_units_tested_ict_one_event_per_unit(codec: CFXCodec) -> None:
    evs = events(codec, "units_tested_ict")
    assert [e.payload["unit_serial"] for e in evs] == ["MB-4471-000145", "MB-4471-000146"]
    assert [e.payload["unit_position"] for e in evs] == [1, 2]
    assert len({e.id for e in evs}) == 2
    for ev in evs:
        _facts(ev, "units_tested_ict")
        r = P.TestResultEvent.model_validate(ev.payload)
        assert (
            r.result is P.StepResult.PASSED
            and r.method == "ICT"
            and ev.metadata.ordering_key == r.unit_serial
        )
        ms = [m for t in r.tests for m in t.measurements]
        assert len(ms) == 34
        assert all(m.low_limit is not None and m.high_limit is not None and m.units for m in ms)
        assert all(m.low_limit <= m.value <= m.high_limit for m in ms if m.value is not None)
        r21 = next(m for m in ms if m.name == "R21_RES")
        assert r21.component_designators == ["R21"] and r21.expected_value == 28200


def test_units_inspected_aoi_with_defect_and_panel(codec: CFXCodec) -> None:
    evs = events(codec, "units_inspected_aoi")
    assert [e.event_type for e in evs] == [EventType.INSPECTION_RESULT] * 2
    first = P.TestResultEvent.model_validate(evs[0].payload)
    assert first.kind == "inspection" and first.method == "AOI"
    assert first.unit_serial == "MB-4471-000145" and first.panel_serial == "PNL-4471-000073"
    assert first.result is P.StepResult.FAILED
    [d] = first.defects
    assert d.code == "TOMBSTONE" and d.component == "C4" and d.verification == "DefectRejected"
    c4 = next(t for t in first.tests if t.name == "C4_PLACEMENT")
    assert c4.verification == "DefectRejected" and c4.defects == [d]
    assert c4.measurements[0].low_limit == -0.08 and c4.measurements[0].units == "mm"
    assert evs[1].payload["result"] == "Passed" and evs[1].payload["defects"] == []


def test_units_inspected_spi(codec: CFXCodec) -> None:
    evs = events(codec, "units_inspected_spi")
    r = P.TestResultEvent.model_validate(evs[0].payload)
    assert r.method == "SPI" and len(r.tests) == 8
    vol = r.tests[0].measurements[0]
    assert vol.name == "R1.1_VOLUME" and vol.units == "%" and (vol.low_limit, vol.high_limit) == (70.0, 130.0)


def test_work_flow_shares_serial_and_transaction(codec: CFXCodec) -> None:
    [started] = events(codec, "work_started")
    [tested] = events(codec, "units_tested_fct")
    [completed] = events(codec, "work_completed_fail")
    serials = {
        started.payload["unit_serial"],
        tested.payload["unit_serial"],
        completed.payload["unit_serial"],
    }
    assert serials == {"MB-4471-000145"}
    txn = {
        started.payload["transaction_id"],
        tested.payload["transaction_id"],
        completed.payload["transaction_id"],
    }
    assert len(txn) == 1 and None not in txn
    assert started.metadata.timestamp < tested.metadata.timestamp < completed.metadata.timestamp


def test_work_started(codec: CFXCodec) -> None:
    [ev] = events(codec, "work_started")
    _facts(ev, "work_started")
    w = P.WorkStartedEvent.model_validate(ev.payload)
    assert (w.unit_serial, w.unit_position, w.lane, w.unit_count) == ("MB-4471-000145", 1, 1, 1)
    assert (w.recipe, w.recipe_revision, w.work_order, w.batch) == (
        "MB-4471_FCT",
        "4.2",
        "WO-240187",
        "WO-240187-02",
    )
    assert w.surface == "PrimarySurface"


def test_work_completed(codec: CFXCodec) -> None:
    [fail] = events(codec, "work_completed_fail")
    _facts(fail, "work_completed_fail")
    w = P.WorkCompletedEvent.model_validate(fail.payload)
    assert w.result is P.WorkResult.FAILED and w.unit_status == "Fail"
    passed = [P.WorkCompletedEvent.model_validate(e.payload) for e in events(codec, "work_completed_pass")]
    assert [(w.unit_serial, w.unit_position, w.result, w.panel_serial) for w in passed] == [
        ("MB-4471-000145", 1, P.WorkResult.COMPLETED, "PNL-4471-000073"),
        ("MB-4471-000146", 2, P.WorkResult.COMPLETED, "PNL-4471-000073"),
    ]


def test_work_completed_without_units_correlates_by_transaction(codec: CFXCodec) -> None:
    env = load_sample_dict("work_completed_fail")
    body = env["MessageBody"]
    for key in ("Units", "PrimaryIdentifier", "UnitCount"):
        body.pop(key)
    [ev] = codec.decode(json.dumps(env).encode()).events
    assert ev.payload["unit_serial"] == "" and ev.payload["transaction_id"] == body["TransactionID"]
    assert ev.metadata.ordering_key == env["Source"]


def test_units_disqualified(codec: CFXCodec) -> None:
    [ev] = events(codec, "units_disqualified")
    _facts(ev, "units_disqualified")
    d = P.UnitDisqualifiedEvent.model_validate(ev.payload)
    assert (
        d.unit_serial == "MB-4471-000145"
        and d.reason == "DefectiveRepairNotFeasible"
        and "U12" in (d.comments or "")
    )


def test_materials_smt_one_event_per_unit_and_lot(codec: CFXCodec) -> None:
    evs = events(codec, "materials_smt")
    assert len(evs) == 6
    m = P.MaterialInstalledEvent.model_validate(evs[1].payload)
    assert (m.unit_serial, m.unit_position) == ("MB-4471-000145", 1)
    assert (m.material_serial, m.part_number, m.lot, m.quantity) == (
        "REEL-0402-100N-77301",
        "GRM155R71C104KA88",
        "LOT-2411-042",
        2.0,
    )
    assert [c.designator for c in m.components] == ["C3", "C4"] and not m.serialized


def test_materials_th_serialized_subassembly(codec: CFXCodec) -> None:
    psu, conn = (P.MaterialInstalledEvent.model_validate(e.payload) for e in events(codec, "materials_th"))
    assert (
        psu.serialized
        and psu.components[0].serial == "PSU-220-00987"
        and psu.components[0].designator == "PS1"
    )
    assert not conn.serialized and conn.reference_part_number == "CONN-RJ45-TH-ALT"


def test_materials_loaded(codec: CFXCodec) -> None:
    [ev] = events(codec, "materials_loaded")
    m = P.MaterialsLoadedEvent.model_validate(ev.payload)
    assert m.loaded and len(m.materials) == 3
    assert m.materials[0]["material_serial"] == "REEL-0402-10K-55120"
    assert m.materials[0]["carrier_type"] == "CFX.Structures.SMTPlacement.SMDTapeFeeder"


def test_fault_feeder_subclass(codec: CFXCodec) -> None:
    [ev] = events(codec, "fault_feeder")
    _facts(ev, "fault_feeder")
    f = P.AssetFaultEvent.model_validate(ev.payload)
    assert (f.fault_code, f.cause, f.severity, f.lane, f.stage) == (
        "E-PICK-0214",
        "MissingComponent",
        "Error",
        1,
        "HEAD1",
    )
    assert f.fault_type == "SMTPlacementFault" and f.details["PlacementFaultType"] == "PickupError"
    assert f.occurred_at is not None and f.transaction_id is not None


def test_fault_temp_generic(codec: CFXCodec) -> None:
    [ev] = events(codec, "fault_temp")
    f = P.AssetFaultEvent.model_validate(ev.payload)
    assert (
        f.fault_type == "Fault"
        and f.fault_code == "ZONE5-OVERTEMP"
        and ev.metadata.extras["cfx_version"] == "1.7"
    )


def test_fault_cleared_matches_occurrence(codec: CFXCodec) -> None:
    [occurred] = events(codec, "fault_feeder")
    [cleared] = events(codec, "fault_cleared")
    c = P.AssetFaultClearedEvent.model_validate(cleared.payload)
    assert c.fault_occurrence_id == occurred.payload["fault_occurrence_id"]
    assert c.operator is not None and c.operator.operator_id == "BADGE-10977" and not c.acknowledged_only


def test_station_state_changed(codec: CFXCodec) -> None:
    [ev] = events(codec, "station_state_changed")
    s = P.AssetStateChangedEvent.model_validate(ev.payload)
    assert (s.old_state, s.old_state_code) == (P.AssetState.PRODUCTIVE, 1100)
    assert (s.new_state, s.new_state_code) == (P.AssetState.UNSCHEDULED_DOWNTIME, 5500)
    assert s.old_state_duration_s == pytest.approx(2931.631)
    assert s.related_fault is not None and s.related_fault.fault_code == "E-PICK-0214"
    assert ev.payload["new_state_name"] == "USD_ChangeOfConsumables"


def _corpus(name_part: str) -> Path:
    matches = [p for p in corpus_files() if name_part in p.name]
    if not matches:
        pytest.skip("CFX example corpus not found (it ships with the tests)")
    return matches[0]


def test_corpus_ict_panel_units_share_identifier(codec: CFXCodec) -> None:
    path = _corpus("UnitsTested__ex1")
    evs = codec.decode(
        path.read_bytes(), {"cfx-message": "CFX.Production.TestAndInspection.UnitsTested"}
    ).events
    assert [
        (e.payload["unit_serial"], e.payload["unit_position"], e.payload["panel_serial"]) for e in evs
    ] == [
        ("PANEL34543535", 1, "PANEL34543535"),
        ("PANEL34543535", 2, "PANEL34543535"),
    ]
    m = evs[0].payload["tests"][0]["measurements"][0]
    assert (m["value"], m["units"], m["expected_value"], m["expected_units"]) == (
        28300.0,
        "Ohm",
        28.2,
        "kOhm",
    )
    assert (m["low_limit"], m["high_limit"]) == (28.0, 28.4)
    sym = evs[0].payload["tests"][1]["symptoms"][0]
    assert sym["code"] == "RESFAIL2" and sym["measurements"][0]["value"] == 28.52


def test_corpus_spi_measurements_keep_their_attributes(codec: CFXCodec) -> None:
    path = _corpus("UnitsInspected__ex2")
    ev = codec.decode(
        path.read_bytes(), {"cfx-message": "CFX.Production.TestAndInspection.UnitsInspected"}
    ).events[0]
    m = ev.payload["tests"][0]["measurements"][0]
    assert (
        m["kind"] == "other"
        and m["source_type"] == "CFX.Structures.SolderPasteInspection.SolderPasteMeasurement"
    )
    assert m["attributes"]["Vol"] == 5.11 and m["name"] == "R1.1"


def test_corpus_state_change_numeric_state_and_timespan(codec: CFXCodec) -> None:
    path = _corpus("StationStateChanged__ex2")
    ev = codec.decode(
        path.read_bytes(), {"cfx-message": "CFX.ResourcePerformance.StationStateChanged"}
    ).events[0]
    assert (ev.payload["old_state_code"], ev.payload["new_state_code"]) == (1100, 5500)
    assert (
        ev.payload["old_state_duration_s"] == 25.0
        and ev.payload["related_fault"]["fault_code"] == "ERROR 3943480"
    )


@pytest.mark.parametrize(
    "name", ["units_tested_fct", "units_inspected_aoi", "materials_th", "station_state_changed"]
)
def test_events_equal_their_validated_form(codec: CFXCodec, name: str) -> None:
    """Events are assembled without re-validation on the hot path; they must equal the validated form."""
    for ev in events(codec, name):
        assert Event.model_validate(ev.model_dump()) == ev
        assert Event.from_json(ev.to_json()) == ev
        assert ev.metadata.timestamp.tzinfo is not None


@pytest.mark.parametrize("installed", [None, []])
def test_materials_installed_without_materials_is_quarantined_not_dropped(
    codec: CFXCodec, installed: list[object] | None
) -> None:
    env = load_sample_dict("materials_smt")
    env["MessageBody"]["InstalledMaterials"] = installed
    result = codec.decode(json.dumps(env).encode())
    assert result.events == []
    [record] = result.quarantined
    assert "InstalledMaterials is missing or empty" in record.reason
