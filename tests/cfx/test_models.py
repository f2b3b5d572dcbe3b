"""Typed access to CFX messages held as dicts: the structs of the one description, read leniently
(polymorphism by $type or shape, vendor properties kept where events carry them, keys in any case)."""

from __future__ import annotations

import json

import msgspec
import pytest

from pywats_cfx import MappingError
from pywats_cfx.models import (
    MESSAGE_TYPES,
    BooleanMeasurement,
    FaultOccurred,
    NumericMeasurement,
    OtherMeasurement,
    StationStateChanged,
    SubclassedFault,
    TextMeasurement,
    UnitsTested,
    model_for,
    parse_envelope,
    parse_message,
    to_wire,
)
from pywats_cfx.samples import load_sample_dict

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"


def test_measurements_are_polymorphic_by_type() -> None:
    msg = parse_message(UNITS_TESTED, load_sample_dict("units_tested_fct")["MessageBody"])
    assert isinstance(msg, UnitsTested) and msg.tested_units
    tests = msg.tested_units[0].tests or []
    kinds = {type(m) for t in tests for m in t.measurements or ()}
    assert kinds == {NumericMeasurement, BooleanMeasurement, TextMeasurement}
    conditions = tests[0].test_conditions or []
    assert [c.type for c in conditions] == [
        "CFX.Structures.Temperature, CFX",
        "CFX.Structures.Humidity, CFX",
    ]
    num = (tests[0].measurements or [])[0]
    assert isinstance(num, NumericMeasurement) and num.measured_value is not None
    assert num.measured_value.minimum_acceptable_value == 3.135


def test_an_sdk_shaped_body_reads_like_the_strict_decode_of_its_bytes() -> None:
    doc = load_sample_dict("units_tested_ict")
    strict = msgspec.json.decode(json.dumps(doc["MessageBody"]).encode(), type=UnitsTested)
    assert parse_message(UNITS_TESTED, doc["MessageBody"]) == strict


def test_measurement_kind_guessed_without_type() -> None:
    body = {
        "TestedUnits": [
            {
                "Tests": [
                    {
                        "Measurements": [
                            {"MeasuredValue": {"Value": 1}},
                            {"Value": True},
                            {"Value": "x"},
                            {"Foo": 1, "MeasurementName": "m4"},
                        ]
                    }
                ]
            }
        ]
    }
    msg = parse_message(UNITS_TESTED, body)
    ms = msg.tested_units[0].tests[0].measurements
    kinds = [NumericMeasurement, BooleanMeasurement, TextMeasurement, OtherMeasurement]
    assert [type(m) for m in ms] == kinds
    assert ms[0].measured_value.value == 1.0
    assert ms[3].measurement_name == "m4" and ms[3].properties == {"Foo": 1}
    assert to_wire(ms[3]) == {"MeasurementName": "m4", "Foo": 1}


def test_a_fault_subclass_keeps_the_properties_the_base_fault_lacks() -> None:
    body = {
        "Fault": {
            "$type": "CFX.Structures.SMTPlacement.SMTPlacementFault, CFX",
            "PlacementFaultType": "PickupError",
            "FaultCode": "E1",
        }
    }
    f = parse_message("CFX.ResourcePerformance.FaultOccurred", body).fault
    assert isinstance(f, SubclassedFault) and f.fault_code == "E1"
    assert f.other_properties == {"PlacementFaultType": "PickupError"}
    assert f.type == "CFX.Structures.SMTPlacement.SMTPlacementFault, CFX"
    assert to_wire(f) == body["Fault"]


def test_keys_in_any_case_and_both_transaction_id_spellings() -> None:
    a = parse_message(UNITS_TESTED, {"transactionid": "t1", "testedunits": [{"unitidentifier": "S1"}]})
    b = parse_message(UNITS_TESTED, {"TransactionID": "t1", "TestedUnits": [{"UnitIdentifier": "S1"}]})
    assert a == b
    assert a.transaction_id == "t1" and a.tested_units[0].unit_identifier == "S1"


def test_odd_values_read_as_null_and_wrong_shapes_name_the_property() -> None:
    u = parse_message(UNITS_TESTED, {"TestedUnits": [{"UnitPositionNumber": "string", "Tests": None}]})
    assert u.tested_units[0].unit_position_number is None and u.tested_units[0].tests is None
    s = parse_message(
        "CFX.ResourcePerformance.StationStateChanged",
        {"OldState": "22A0", "NewState": "5000", "OldStateDuration": "6.00:00:00"},
    )
    assert isinstance(s, StationStateChanged)
    assert (s.old_state, s.new_state, s.old_state_duration) == ("22A0", "5000", "6.00:00:00")
    with pytest.raises(MappingError, match="TestedUnits must be a list, got dict"):
        parse_message(UNITS_TESTED, {"TestedUnits": {"UnitIdentifier": "S1"}})


def test_envelopes_and_messages_without_a_struct() -> None:
    env = parse_envelope(
        {"MessageName": "CFX.Vendor.Thing", "TimeStamp": "2026-01-01T00:00:00", "MessageBody": {"A": 1}}
    )
    assert env.message_body == {"A": 1} and model_for("CFX.Vendor.Thing") is None
    assert env.time_stamp == "2026-01-01T00:00:00"
    typed = parse_envelope(load_sample_dict("station_state_changed"))
    assert isinstance(typed.message_body, StationStateChanged) and typed.message_body.new_state == "5500"
    assert model_for("cfx.resourceperformance.faultoccurred") is FaultOccurred
    assert MESSAGE_TYPES[UNITS_TESTED] is UnitsTested
