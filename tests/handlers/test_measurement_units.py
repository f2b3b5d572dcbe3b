"""Measurement units: spellings, conversion, limits in the value's unit, and what a report flags."""

from __future__ import annotations

import math

import pytest
from handler_helpers import make_result

from handlers.wats.measurement_units import Unit, convert, parse_unit
from handlers.wats.numeric_limits import numeric_limits
from handlers.wats.wsjf import ReportHeader, build_uut_report_with_warnings
from pywats_events.payloads import Measurement, StepResult, TestStep


@pytest.mark.parametrize(
    ("spellings", "quantity", "scale"),
    [
        (["Ohm", "ohm", "Ohms", "OHM", "\u03a9", "\u2126", " Ohm "], "resistance", 1.0),
        (["kOhm", "KOhm", "kohm", "k\u03a9", "k \u2126", "kOhms"], "resistance", 1e3),
        (["MOhm", "M\u03a9", "Mohm"], "resistance", 1e6),
        (["mOhm", "m\u03a9"], "resistance", 1e-3),
        (["V", "v", "volt", "Volts"], "voltage", 1.0),
        (["mV", "mv"], "voltage", 1e-3),
        (["uV", "\u00b5V", "\u03bcV"], "voltage", 1e-6),
        (["MV"], "voltage", 1e6),
        (["A", "a", "amps"], "current", 1.0),
        (["nA"], "current", 1e-9),
        (["Hz", "hz", "HZ", "hertz"], "frequency", 1.0),
        (["kHz", "KHz", "khz"], "frequency", 1e3),
        (["MHz"], "frequency", 1e6),
        (["GHz"], "frequency", 1e9),
        (["F", "f", "farad"], "capacitance", 1.0),
        (["pF"], "capacitance", 1e-12),
        (["uF", "\u00b5F"], "capacitance", 1e-6),
        (["H", "henry"], "inductance", 1.0),
        (["uH", "\u00b5H"], "inductance", 1e-6),
        (["s", "sec", "seconds"], "time", 1.0),
        (["ms"], "time", 1e-3),
        (["min"], "time", 60.0),
        (["W", "w", "watts"], "power", 1.0),
        (["mW"], "power", 1e-3),
        (["%", "percent"], "ratio", 0.01),
        (["ppm"], "ratio", 1e-6),
        (["mm"], "length", 1e-3),
        (["mil"], "length", 2.54e-5),
        (["mm2", "mm^2", "mm\u00b2"], "length^2", 1e-6),
        (["um3", "\u00b5m\u00b3"], "length^3", 1e-18),
        (["deg", "\u00b0", "degrees"], "angle", math.pi / 180),
    ],
)
def test_spellings_of_one_unit_parse_alike(spellings: list[str], quantity: str, scale: float) -> None:
    for text in spellings:
        unit = parse_unit(text)
        assert unit is not None, text
        assert unit.quantity == quantity, text
        assert math.isclose(unit.scale, scale, rel_tol=1e-12), text


@pytest.mark.parametrize("text", ["degC", "\u00b0C", "deg C", "C", "celsius", "DegC"])
def test_celsius_spellings(text: str) -> None:
    assert parse_unit(text) == Unit("temperature", 1.0, 273.15)


@pytest.mark.parametrize("text", [None, "", "  ", "furlong", "VDC", "mdeg", "k%", "xOhm"])
def test_unknown_units_are_none(text: str | None) -> None:
    assert parse_unit(text) is None


def test_prefix_case_is_kept_where_it_matters() -> None:
    """``mS`` millisiemens and ``ms`` milliseconds; ``H`` henry and ``h`` hour; ``mOhm`` and ``MOhm``."""
    assert parse_unit("ms") == Unit("time", 1e-3)
    assert parse_unit("mS") == Unit("conductance", 1e-3)
    assert parse_unit("H") == Unit("inductance", 1.0)
    assert parse_unit("h") == Unit("time", 3600.0)
    mohm, big = parse_unit("mOhm"), parse_unit("MOhm")
    assert mohm is not None and big is not None and mohm.scale * 1e9 == pytest.approx(big.scale)


@pytest.mark.parametrize(
    ("value", "source", "target", "out"),
    [
        (28.4, "kOhm", "Ohm", 28400.0),
        (28.0, "kOhm", "Ohm", 28000.0),
        (28300.0, "Ohm", "kOhm", 28.3),
        (100.0, "nF", "uF", 0.1),
        (3300.0, "mV", "V", 3.3),
        (25.0, "degC", "K", 298.15),
        (212.0, "degF", "\u00b0C", 100.0),
        (1.0, "mil", "um", 25.4),
        (50.0, "%", "ppm", 500000.0),
    ],
)
def test_convert(value: float, source: str, target: str, out: float) -> None:
    src, dst = parse_unit(source), parse_unit(target)
    assert src is not None and dst is not None
    assert convert(value, src, dst) == out


def test_convert_refuses_another_quantity() -> None:
    with pytest.raises(ValueError, match="resistance"):
        convert(1.0, Unit("resistance", 1.0), Unit("voltage", 1.0))


def _m(**fields: object) -> Measurement:
    values: dict[str, object] = {"name": "R21", "value": 28300.0, "units": "Ohm", "result": StepResult.PASSED}
    values.update(fields)
    return Measurement.model_validate(values)


def test_limits_without_units_take_the_expected_values_units() -> None:
    """The CFX SDK's own ICT example: limits in kOhm by way of the expected value, value in Ohm."""
    limits = numeric_limits(_m(expected_value=28.2, expected_units="kOhm", low_limit=28.0, high_limit=28.4))
    assert (limits.unit, limits.expected, limits.low, limits.high) == ("Ohm", 28200.0, 28000.0, 28400.0)
    assert limits.problem is None


def test_limits_with_own_units_are_converted_each() -> None:
    limits = numeric_limits(
        _m(
            value=0.1,
            units="uF",
            low_limit=90.0,
            low_limit_units="nF",
            high_limit=0.00000011,
            high_limit_units="F",
        )
    )
    assert (limits.unit, limits.low, limits.high) == ("uF", 0.09, 0.11)


def test_units_spelled_differently_need_no_conversion() -> None:
    limits = numeric_limits(
        _m(expected_value=28200.0, expected_units="ohms", low_limit=28000.0, high_limit=28400.0)
    )
    assert (limits.unit, limits.low, limits.high, limits.problem) == ("Ohm", 28000.0, 28400.0, None)


def test_same_unknown_unit_everywhere_is_fine() -> None:
    limits = numeric_limits(_m(value=1.0, units="cps", low_limit=0.5, low_limit_units="cps"))
    assert (limits.unit, limits.low, limits.problem) == ("cps", 0.5, None)


def test_a_value_without_units_takes_its_limits_units() -> None:
    limits = numeric_limits(
        _m(
            value=5.0,
            units=None,
            low_limit=4.9,
            low_limit_units="V",
            high_limit=5100.0,
            high_limit_units="mV",
        )
    )
    assert (limits.unit, limits.low, limits.high, limits.problem) == ("V", 4.9, 5.1, None)


@pytest.mark.parametrize(
    ("fields", "reason", "text"),
    [
        (
            {"expected_value": 28.2, "expected_units": "V", "low_limit": 28.0, "high_limit": 28.4},
            "quantity",
            "expected value in 'V' is not comparable with the value in 'Ohm' (voltage vs resistance)",
        ),
        (
            {"low_limit": 28.0, "low_limit_units": "furlong"},
            "unknown_unit",
            "minimum in 'furlong', value in 'Ohm': unknown unit 'furlong'",
        ),
        (
            {"units": "cps", "low_limit": 28.0, "low_limit_units": "kOhm"},
            "unknown_unit",
            "minimum in 'kOhm', value in 'cps': unknown unit 'cps'",
        ),
        (
            {"expected_value": 28.2, "expected_units": "kOhm", "low_limit": 27900.0, "low_limit_units": "Ohm",
             "high_limit": 28.4},
            "ambiguous_unit",
            "limits without units beside limits in 'kOhm', 'Ohm'",
        ),
    ],
)  # fmt: skip
def test_irreconcilable_units_keep_the_numbers_as_sent(
    fields: dict[str, object], reason: str, text: str
) -> None:
    m = _m(**fields)
    limits = numeric_limits(m)
    assert (limits.low, limits.high, limits.expected) == (m.low_limit, m.high_limit, m.expected_value)
    assert limits.unit == m.units
    assert limits.reason == reason
    assert limits.problem is not None and limits.problem.startswith(text)
    assert limits.problem.endswith("numbers kept as sent")


def header() -> ReportHeader:
    return ReportHeader(
        id="3f2c6a1e-8d4b-4c1e-9a51-0c2b7f1d9e01",
        part_number="PCBA-100",
        revision="B",
        process_code=10,
        machine_name="ICT-01",
        location="Line 3",
    )


def _report(*measurements: Measurement, name: str = "R21_VALUE") -> tuple[dict, list]:  # type: ignore[type-arg]
    tests = [TestStep(name=name, result=StepResult.PASSED, measurements=list(measurements))]
    return build_uut_report_with_warnings(make_result(tests=tests), header())


def test_report_sends_converted_limits_without_a_flag() -> None:
    doc, flags = _report(_m(expected_value=28.2, expected_units="kOhm", low_limit=28.0, high_limit=28.4))
    step = doc["root"]["steps"][0]
    assert step["numericMeas"] == [
        {
            "compOp": "GELE",
            "value": 28300.0,
            "unit": "Ohm",
            "lowLimit": 28000.0,
            "highLimit": 28400.0,
            "status": "P",
        }
    ]
    assert flags == [] and "reportText" not in step
    assert "Measurement check" not in {m["description"] for m in doc["miscInfos"]}


def test_report_flags_irreconcilable_units_in_step_text_and_misc_info() -> None:
    doc, flags = _report(_m(expected_value=28.2, expected_units="V", low_limit=28.0, high_limit=28.4))
    step = doc["root"]["steps"][0]
    meas = step["numericMeas"][0]
    assert (meas["value"], meas["unit"], meas["lowLimit"], meas["highLimit"], meas["status"]) == (
        28300.0,
        "Ohm",
        28.0,
        28.4,
        "P",
    )
    [flag] = flags
    assert (flag.step, flag.measurement, flag.kind, flag.reason) == (
        "R21_VALUE",
        "R21",
        "unit_mismatch",
        "quantity",
    )
    assert step["reportText"].startswith("Unit check: R21: expected value in 'V' is not comparable")
    misc = {m["description"]: m["text"] for m in doc["miscInfos"]}
    assert misc["Measurement check"] == "1 flagged (unit mismatch 1); see step report text"


def test_report_flags_a_passed_value_outside_its_limits_and_keeps_the_verdict() -> None:
    doc, flags = _report(_m(value=5.0, units="s", low_limit=0.0, high_limit=3000.0, high_limit_units="ms"))
    step = doc["root"]["steps"][0]
    assert step["numericMeas"][0]["status"] == "P" and step["status"] == "P" and doc["result"] == "P"
    [flag] = flags
    assert (flag.kind, flag.reason) == ("limit_contradiction", "outside_limits")
    assert step["reportText"] == (
        "Limit check: R21: value 5 s is outside its limits 0..3 s but the CFX result is Passed"
    )
    misc = {m["description"]: m["text"] for m in doc["miscInfos"]}
    assert misc["Measurement check"] == "1 flagged (value vs limits 1); see step report text"


def test_report_flags_a_failed_value_within_its_limit() -> None:
    doc, flags = _report(_m(value=1.0, units="V", high_limit=3.0, result=StepResult.FAILED))
    [flag] = flags
    assert flag.reason == "within_limits"
    assert flag.text == "value 1 V is within its maximum 3 V but the CFX result is Failed"
    assert doc["root"]["steps"][0]["numericMeas"][0]["status"] == "F"


def test_values_on_their_limits_or_near_an_expected_value_are_not_flagged() -> None:
    _, flags = _report(
        _m(
            name="edge",
            value=28400.0,
            expected_value=28.2,
            expected_units="kOhm",
            low_limit=28.0,
            high_limit=28.4,
        ),
        _m(name="nominal", value=9.97, units="kOhm", expected_value=10.0, expected_units="kOhm"),
    )
    assert flags == []


def test_flags_name_the_measurement_in_a_multi_measurement_step() -> None:
    doc, flags = _report(
        _m(name="R1", value=1.0, units="Ohm", low_limit=1.0, low_limit_units="V"),
        _m(name="R1", value=1.0, units="Ohm", low_limit=2.0),
    )
    assert [(f.measurement, f.kind) for f in flags] == [
        ("R1", "unit_mismatch"),
        ("R1 #2", "limit_contradiction"),
    ]
    lines = doc["root"]["steps"][0]["reportText"].splitlines()
    assert [line.split(":")[:2] for line in lines] == [["Unit check", " R1"], ["Limit check", " R1 #2"]]
