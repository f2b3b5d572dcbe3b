"""WSJF documents built from test results: header, steps, compOp, statuses, ids (WATS_API.md §2)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from handler_helpers import T0, make_result

from handlers.wats.wsjf import ReportHeader, build_uut_report, numeric_comp_op, report_id
from pywats_events.payloads import Defect, Measurement, MeasurementKind, StepResult, Symptom, TestStep


def header(**overrides: object) -> ReportHeader:
    values: dict[str, object] = {
        "id": "3f2c6a1e-8d4b-4c1e-9a51-0c2b7f1d9e01",
        "part_number": "PCBA-100",
        "revision": "B",
        "process_code": 10,
        "machine_name": "ICT-01",
        "location": "Line 3",
    }
    values.update(overrides)
    return ReportHeader(**values)  # type: ignore[arg-type]


def test_header_fields() -> None:
    doc = build_uut_report(make_result(), header())
    assert doc["type"] == "T"
    assert doc["id"] == "3f2c6a1e-8d4b-4c1e-9a51-0c2b7f1d9e01"
    assert (doc["pn"], doc["sn"], doc["rev"], doc["processCode"]) == ("PCBA-100", "SN1", "B", 10)
    assert (doc["machineName"], doc["location"], doc["purpose"]) == ("ICT-01", "Line 3", "Production")
    assert doc["start"] == "2026-01-30T11:00:00+00:00"
    assert doc["result"] == "P"
    assert doc["uut"] == {"user": "jdoe", "execTime": 12.5}
    root = doc["root"]
    assert root["stepType"] == "SequenceCall" and root["name"] == "MainSequence Callback"
    assert root["status"] == "P"
    assert root["seqCall"] == {"path": "CFX/PCBA-100-ICT", "name": "PCBA-100-ICT", "version": "1.0.0"}
    misc = {m["description"]: m["text"] for m in doc["miscInfos"]}
    assert misc["Transaction id"] == "tx-1" and misc["CFX method"] == "ICT" and misc["Message id"] == "msg-1"


def test_start_is_expressed_in_the_configured_zone() -> None:
    doc = build_uut_report(make_result(), header(timezone="Europe/Oslo"))
    assert doc["start"] == "2026-01-30T12:00:00+01:00"


def test_start_falls_back_to_header_time_when_event_has_none() -> None:
    doc = build_uut_report(make_result(start=None, end=None), header(start=T0 + timedelta(hours=1)))
    assert doc["start"] == "2026-01-30T12:00:00+00:00"
    assert "execTime" not in doc["uut"]


@pytest.mark.parametrize(
    ("low", "high", "expected", "op", "low_out", "high_out"),
    [
        (3.2, 3.4, None, "GELE", 3.2, 3.4),
        (3.2, None, None, "GE", 3.2, None),
        (None, 3.4, None, "LE", 3.4, None),  # single-limit operators carry the limit in lowLimit (§2.5)
        (None, None, 5.0, "EQ", 5.0, None),
        (None, None, None, "LOG", None, None),
    ],
)
def test_numeric_comp_op_follows_the_limits_present(low, high, expected, op, low_out, high_out) -> None:  # type: ignore[no-untyped-def]
    m = Measurement(name="v", value=1.0, low_limit=low, high_limit=high, expected_value=expected)
    assert numeric_comp_op(m) == (op, low_out, high_out)


def test_numeric_step_fields() -> None:
    step = build_uut_report(make_result(), header())["root"]["steps"][0]
    assert step == {
        "stepType": "ET_NLT",
        "name": "3V3 rail",
        "group": "M",
        "status": "P",
        "numericMeas": [
            {"compOp": "GELE", "value": 3.31, "unit": "V", "lowLimit": 3.2, "highLimit": 3.4, "status": "P"}
        ],
    }


def test_measurement_without_result_is_judged_by_its_limits_and_fails_the_report() -> None:
    tests = [TestStep(name="5V", measurements=[Measurement(name="5V", value=5.3, high_limit=5.1)])]
    doc = build_uut_report(make_result(tests=tests, result=StepResult.UNKNOWN), header())
    step = doc["root"]["steps"][0]
    assert step["numericMeas"][0] == {"compOp": "LE", "value": 5.3, "lowLimit": 5.1, "status": "F"}
    assert step["status"] == "F"
    assert doc["result"] == "F" and doc["root"]["status"] == "F"


def test_a_failed_step_fails_a_unit_reported_as_passed() -> None:
    tests = [
        TestStep(name="ok", result=StepResult.PASSED),
        TestStep(name="bad", result=StepResult.FAILED),
    ]
    doc = build_uut_report(make_result(tests=tests, result=StepResult.PASSED), header())
    steps = doc["root"]["steps"]
    assert [s["status"] for s in steps] == ["P", "F"]
    assert steps[1] == {
        "stepType": "ET_PFT",
        "name": "bad",
        "group": "M",
        "status": "F",
        "booleanMeas": [{"value": False, "status": "F"}],
    }
    assert doc["result"] == "F"
    assert doc["uut"]["comment"] == "First failed step: bad"


@pytest.mark.parametrize(
    ("result", "letter"),
    [(StepResult.ERROR, "E"), (StepResult.ABORTED, "T"), (StepResult.FAILED, "F"), (StepResult.SKIPPED, "P")],
)
def test_unit_result_letters(result: StepResult, letter: str) -> None:
    assert build_uut_report(make_result(result=result), header())["result"] == letter


def test_boolean_and_string_measurements() -> None:
    tests = [
        TestStep(
            name="Flags",
            measurements=[
                Measurement(name="a", kind=MeasurementKind.BOOLEAN, value=True, result=StepResult.PASSED),
                Measurement(name="a", kind=MeasurementKind.BOOLEAN, value=False, expected_value=True),
            ],
        ),
        TestStep(
            name="FW",
            measurements=[
                Measurement(name="fw", kind=MeasurementKind.TEXT, value="1.2.3", expected_value="1.2.3")
            ],
        ),
    ]
    steps = build_uut_report(make_result(tests=tests), header())["root"]["steps"]
    assert steps[0]["stepType"] == "ET_MPFT"
    assert steps[0]["booleanMeas"] == [
        {"value": True, "status": "P", "name": "a"},
        {"value": False, "status": "F", "name": "a #2"},
    ]
    assert steps[0]["status"] == "F"
    assert steps[1]["stepType"] == "ET_SVT"
    assert steps[1]["stringMeas"] == [
        {"value": "1.2.3", "compOp": "CASESENSIT", "limit": "1.2.3", "status": "P"}
    ]


def test_multi_numeric_and_mixed_measurements() -> None:
    multi = TestStep(
        name="Rails",
        result=StepResult.PASSED,
        measurements=[
            Measurement(name="5V", value=5.0, low_limit=4.9, high_limit=5.1, result=StepResult.PASSED),
            Measurement(name="12V", value=12.0, low_limit=11.5, result=StepResult.PASSED),
        ],
    )
    mixed = TestStep(
        name="Mixed",
        measurements=[
            Measurement(name="v", value=1.0),
            Measurement(name="ok", kind=MeasurementKind.BOOLEAN, value=True),
        ],
    )
    steps = build_uut_report(make_result(tests=[multi, mixed]), header())["root"]["steps"]
    assert steps[0]["stepType"] == "ET_MNLT"
    assert [m["name"] for m in steps[0]["numericMeas"]] == ["5V", "12V"]
    assert [m["compOp"] for m in steps[0]["numericMeas"]] == ["GELE", "GE"]
    assert steps[1]["stepType"] == "SequenceCall"
    assert [(s["stepType"], s["name"]) for s in steps[1]["steps"]] == [("ET_NLT", "v"), ("ET_PFT", "ok")]
    assert steps[1]["seqCall"]["name"] == "Mixed"


def test_nan_travels_as_string() -> None:
    tests = [
        TestStep(name="n", measurements=[Measurement(name="n", value=float("nan"), result=StepResult.ERROR)])
    ]
    meas = build_uut_report(make_result(tests=tests), header())["root"]["steps"][0]["numericMeas"][0]
    assert meas["value"] == "nan" and meas["status"] == "E"


def test_defects_go_to_step_text_and_misc_info() -> None:
    tests = [
        TestStep(
            name="Solder",
            result=StepResult.FAILED,
            defects=[Defect(code="BRIDGE", description="Solder bridge", component="U12")],
            symptoms=[Symptom(code="SHORT", components=["U12", "U13"])],
            error="probe contact",
            start=T0,
            end=T0 + timedelta(seconds=2),
        )
    ]
    unit_defects = [Defect(code="MISSING", component="C5")]
    doc = build_uut_report(
        make_result(tests=tests, defects=unit_defects, result=StepResult.UNKNOWN), header()
    )
    step = doc["root"]["steps"][0]
    assert step["reportText"] == "Defect BRIDGE / Solder bridge at U12\nSymptom SHORT at U12, U13"
    assert step["errorMessage"] == "probe contact" and step["totTime"] == 2.0
    misc = {m["description"]: m["text"] for m in doc["miscInfos"]}
    assert misc["Defect 1"] == "Defect MISSING at C5"
    assert doc["result"] == "F"
    assert all(len(m["text"]) <= 100 and len(m["description"]) <= 100 for m in doc["miscInfos"])


def test_unit_level_defect_without_tests_fails_inspection() -> None:
    doc = build_uut_report(
        make_result(tests=[], defects=[Defect(code="X")], result=StepResult.UNKNOWN, kind="inspection"),
        header(),
    )
    assert doc["result"] == "F"


def test_report_id_is_deterministic_per_message_and_unit() -> None:
    a = report_id("msg-1", "SN1", 1)
    assert a == report_id("msg-1", "SN1", 1)
    assert (
        len({a, report_id("msg-1", "SN1", 2), report_id("msg-1", "SN2", 1), report_id("msg-2", "SN1", 1)})
        == 4
    )
    assert report_id("m", "SN1") != report_id("m", "SN1", 0)


def test_long_names_are_clipped() -> None:
    tests = [TestStep(name="x" * 300, result=StepResult.PASSED)]
    step = build_uut_report(make_result(tests=tests), header())["root"]["steps"][0]
    assert len(step["name"]) == 100
