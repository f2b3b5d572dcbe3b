"""Typed CFX models: polymorphism by $type, unknown fields kept, case-insensitive keys, lenient values."""

from __future__ import annotations

from datetime import timedelta

from pywats_cfx.models import (
    BooleanMeasurement,
    FaultOccurred,
    GenericCFXMessage,
    Humidity,
    Measurement,
    NumericMeasurement,
    StationStateChanged,
    Temperature,
    TextMeasurement,
    UnitsTested,
    parse_envelope,
    parse_message,
)
from pywats_cfx.samples import load_sample_dict


def test_measurements_are_polymorphic_by_type() -> None:
    msg = parse_message(
        "CFX.Production.TestAndInspection.UnitsTested", load_sample_dict("units_tested_fct")["MessageBody"]
    )
    assert isinstance(msg, UnitsTested)
    kinds = [type(m) for t in msg.TestedUnits[0].Tests for m in t.Measurements]
    assert {NumericMeasurement, BooleanMeasurement, TextMeasurement} == set(kinds)
    conditions = msg.TestedUnits[0].Tests[0].TestConditions
    assert [type(c) for c in conditions] == [Temperature, Humidity]
    num = msg.TestedUnits[0].Tests[0].Measurements[0]
    assert isinstance(num, NumericMeasurement) and num.MeasuredValue is not None
    assert num.MeasuredValue.MinimumAcceptableValue == 3.135
    dumped = msg.model_dump(mode="json")
    assert dumped["TestedUnits"][0]["Tests"][0]["Measurements"][0]["MeasuredValue"]["Value"] == 3.302


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
                            {"Foo": 1},
                        ]
                    }
                ]
            }
        ]
    }
    ms = UnitsTested.model_validate(body).TestedUnits[0].Tests[0].Measurements
    assert [type(m) for m in ms] == [NumericMeasurement, BooleanMeasurement, TextMeasurement, Measurement]
    assert ms[3].model_extra == {"Foo": 1}


def test_unknown_subclass_keeps_its_fields() -> None:
    body = {
        "Fault": {
            "$type": "CFX.Structures.SMTPlacement.SMTPlacementFault, CFX",
            "PlacementFaultType": "PickupError",
            "FaultCode": "E1",
        }
    }
    f = FaultOccurred.model_validate(body).Fault
    assert f is not None and f.FaultCode == "E1"
    assert f.model_extra is not None and f.model_extra["PlacementFaultType"] == "PickupError"
    assert f.cfx_type == "CFX.Structures.SMTPlacement.SMTPlacementFault, CFX"


def test_keys_case_insensitive_and_transaction_id_spellings() -> None:
    a = UnitsTested.model_validate({"transactionid": "t1", "testedunits": [{"unitidentifier": "S1"}]})
    b = UnitsTested.model_validate({"TransactionId": "t1", "TestedUnits": [{"UnitIdentifier": "S1"}]})
    assert a.TransactionID == b.TransactionID == "t1"
    assert a.TestedUnits[0].UnitIdentifier == "S1"


def test_lenient_values() -> None:
    s = StationStateChanged.model_validate(
        {"OldState": "22A0", "NewState": 5000, "OldStateDuration": "6.00:00:00"}
    )
    assert (s.OldState, s.NewState, s.OldStateDuration) == (2201, 5000, timedelta(days=6))
    u = UnitsTested.model_validate({"TestedUnits": [{"UnitPositionNumber": "string", "Tests": None}]})
    assert u.TestedUnits[0].UnitPositionNumber is None and u.TestedUnits[0].Tests == []


def test_envelope_and_generic_message() -> None:
    env = parse_envelope(
        {"MessageName": "CFX.Vendor.Thing", "TimeStamp": "2026-01-01T00:00:00", "MessageBody": {"A": 1}}
    )
    assert isinstance(env.MessageBody, GenericCFXMessage) and env.MessageBody.model_extra == {"A": 1}
    assert env.TimeStamp is not None and env.TimeStamp.tzinfo is not None
    typed = parse_envelope(load_sample_dict("station_state_changed"))
    assert isinstance(typed.MessageBody, StationStateChanged) and typed.MessageBody.NewState == 5500
