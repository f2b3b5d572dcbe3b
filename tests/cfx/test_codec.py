"""CFXCodec semantics: message names for bare bodies, case-insensitive keys, dates, ids and metadata."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from cfx_helpers import gz, sample_body

from pywats_cfx import CFXCodec, message_name_from_topic, regex_topic_parser
from pywats_cfx.samples import load_sample
from pywats_events import Codec, EventType

WS = "CFX.Production.WorkStarted"
FAULT_CLEARED = {"FaultOccurrenceId": "22ac3c8a-9e6d-42f8-85b2-f51bf2224ecc"}


def test_cfxcodec_satisfies_the_codec_protocol(codec: CFXCodec) -> None:
    assert isinstance(codec, Codec)


def _bare(body: dict) -> bytes:
    return json.dumps(body).encode()


def test_bare_body_named_by_its_type(codec: CFXCodec) -> None:
    result = codec.decode(_bare(sample_body("work_started")))
    assert result.quarantined == []
    assert result.events[0].event_type is EventType.WORK_STARTED
    assert result.events[0].metadata.extras["bare_body"] is True


def test_bare_body_named_by_cfx_message_header(codec: CFXCodec) -> None:
    result = codec.decode(_bare(FAULT_CLEARED), {"cfx-message": "CFX.ResourcePerformance.FaultCleared"})
    assert result.events[0].event_type is EventType.ASSET_FAULT_CLEARED
    assert result.events[0].payload["fault_occurrence_id"] == FAULT_CLEARED["FaultOccurrenceId"]


def test_bare_body_named_by_type_property_but_not_by_amqp_marker(codec: CFXCodec) -> None:
    named = codec.decode(_bare(FAULT_CLEARED), {"type": "CFX.ResourcePerformance.FaultCleared"})
    assert named.events[0].event_type is EventType.ASSET_FAULT_CLEARED
    marker = codec.decode(_bare(FAULT_CLEARED), {"type": "amqp-1.0"})
    assert marker.events == [] and "without a message name" in marker.quarantined[0].reason


def test_bare_body_named_by_sdk_routing_key_with_dotted_handle(codec: CFXCodec) -> None:
    topic = "SMTPlus.Model_21232.SN23123.CFX.ResourcePerformance.FaultCleared"
    result = codec.decode(_bare(FAULT_CLEARED), None, topic)
    ev = result.events[0]
    assert ev.event_type is EventType.ASSET_FAULT_CLEARED
    assert ev.metadata.source == "SMTPlus.Model_21232.SN23123"  # handle from the routing key
    assert ev.metadata.source_topic == topic


def test_envelope_message_name_wins_over_topic(codec: CFXCodec) -> None:
    result = codec.decode(load_sample("work_started"), None, "X.Y.CFX.Heartbeat")
    assert result.events[0].event_type is EventType.WORK_STARTED


def test_bare_body_without_any_name_is_quarantined(codec: CFXCodec) -> None:
    body = _bare(FAULT_CLEARED)
    result = codec.decode(body, {"x": 1}, "plant/line1/station7")
    assert result.events == []
    q = result.quarantined[0]
    assert "bare MessageBody without a message name" in q.reason
    assert q.raw == body and q.topic == "plant/line1/station7" and q.headers == {"x": 1}


def test_explicit_name_for_bare_body(codec: CFXCodec) -> None:
    messages, quarantined = codec.decode_messages(
        _bare(FAULT_CLEARED), message_name="CFX.ResourcePerformance.FaultCleared"
    )
    assert quarantined == [] and messages[0].envelope.bare


@pytest.mark.parametrize(
    ("topic", "name", "handle"),
    [
        ("Vendor.Model.SN1.CFX.Production.WorkStarted", WS, "Vendor.Model.SN1"),
        ("CFX.Production.WorkStarted", WS, None),
        ("factory/line1/CFX.Heartbeat", "CFX.Heartbeat", None),
        ("factory/line1/Vendor.M.S.CFX.Heartbeat", "CFX.Heartbeat", "Vendor.M.S"),
        ("factory/line1/status", None, None),
        ("Vendor.CFX.CFX.Heartbeat", "CFX.Heartbeat", "Vendor.CFX"),
    ],
)
def test_message_name_from_topic(topic: str, name: str | None, handle: str | None) -> None:
    assert message_name_from_topic(topic) == (name, handle)


def test_configurable_mqtt_topic_layout() -> None:
    codec = CFXCodec(topic_parser=regex_topic_parser(r"^plant/(?P<handle>[^/]+)/(?P<name>[^/]+)$"))
    result = codec.decode(_bare(FAULT_CLEARED), None, "plant/Acme.M.1/CFX.ResourcePerformance.FaultCleared")
    assert result.events[0].event_type is EventType.ASSET_FAULT_CLEARED
    assert result.events[0].metadata.source == "Acme.M.1"


def test_faulty_topic_parser_does_not_break_decoding() -> None:
    def broken(topic: str) -> tuple[str | None, str | None]:
        raise RuntimeError("bug")

    codec = CFXCodec(topic_parser=broken)
    assert codec.decode(load_sample("work_started"), None, "t").events


def _lower_keys(obj):
    if isinstance(obj, dict):
        return {k.lower(): _lower_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_lower_keys(v) for v in obj]
    return obj


def test_property_names_are_case_insensitive(codec: CFXCodec) -> None:
    normal = codec.decode(load_sample("units_tested_fct")).events[0]
    shouty = codec.decode(
        json.dumps(_lower_keys(json.loads(load_sample("units_tested_fct")))).encode()
    ).events[0]
    assert shouty.event_type is EventType.TEST_RESULT
    assert shouty.payload == normal.payload
    assert shouty.metadata == normal.metadata


def test_transaction_id_spellings(codec: CFXCodec) -> None:
    ut = codec.decode(load_sample("units_tested_fct")).events[0]  # TransactionId
    ws = codec.decode(load_sample("work_started")).events[0]  # TransactionID
    assert ut.payload["transaction_id"] == ws.payload["transaction_id"] is not None
    assert ut.metadata.correlation_id == ws.metadata.correlation_id == ws.payload["transaction_id"]


def _with_timestamp(ts: str) -> bytes:
    env = json.loads(load_sample("work_started"))
    env["TimeStamp"] = ts
    return json.dumps(env).encode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-12T09:14:02-04:00", datetime(2026, 3, 12, 9, 14, 2, tzinfo=timezone(timedelta(hours=-4)))),
        (
            "2026-03-12T09:14:02.1+08:00",
            datetime(2026, 3, 12, 9, 14, 2, 100000, tzinfo=timezone(timedelta(hours=8))),
        ),
        ("2026-03-12T09:14:02.12Z", datetime(2026, 3, 12, 9, 14, 2, 120000, tzinfo=timezone.utc)),
        ("2026-03-12T09:14:02.1234567+01:00", datetime(2026, 3, 12, 8, 14, 2, 123456, tzinfo=timezone.utc)),
        ("2026-03-12T09:14:02.123456", datetime(2026, 3, 12, 9, 14, 2, 123456, tzinfo=timezone.utc)),
        ("2026-03-12T09:14:02", datetime(2026, 3, 12, 9, 14, 2, tzinfo=timezone.utc)),
    ],
)
def test_envelope_timestamp_forms(codec: CFXCodec, text: str, expected: datetime) -> None:
    ev = codec.decode(_with_timestamp(text)).events[0]
    assert ev.metadata.timestamp == expected
    assert ev.metadata.timestamp.tzinfo is not None
    naive = not (text.endswith("Z") or "+" in text[19:] or "-" in text[19:])
    assert ev.metadata.extras.get("timestamp_assumed_utc", False) is naive


def test_original_time_is_used_not_receive_time(codec: CFXCodec) -> None:
    ev = codec.decode(load_sample("work_started")).events[0]
    assert ev.metadata.timestamp == datetime(2026, 3, 12, 8, 14, 2, 441002, tzinfo=timezone.utc)


def test_missing_timestamp_falls_back_to_receive_time_and_says_so() -> None:
    fixed = datetime(2030, 1, 1, tzinfo=timezone.utc)
    codec = CFXCodec(clock=lambda: fixed)
    env = json.loads(load_sample("work_started"))
    del env["TimeStamp"]
    ev = codec.decode(json.dumps(env).encode()).events[0]
    assert ev.metadata.timestamp == fixed
    assert ev.metadata.extras["timestamp_missing"] is True
    assert ev.payload["timestamp"] is None


def test_metadata_contract(codec: CFXCodec) -> None:
    env = json.loads(load_sample("units_tested_fct"))
    ev = codec.decode(gz(load_sample("units_tested_fct")), None, "rk").events[0]
    m = ev.metadata
    assert m.source == env["Source"] == ev.payload["station"]
    assert m.causation_id == env["UniqueID"] == ev.payload["message_id"]
    assert m.correlation_id == env["MessageBody"]["TransactionId"]
    assert m.ordering_key == "MB-4471-000145" == ev.ordering_key()
    assert m.source_topic == "rk"
    assert m.extras["message_name"] == "CFX.Production.TestAndInspection.UnitsTested"
    assert m.extras["cfx_version"] == "2.1"


def test_non_unit_events_are_ordered_by_station(codec: CFXCodec) -> None:
    ev = codec.decode(load_sample("fault_feeder")).events[0]
    assert ev.metadata.ordering_key == json.loads(load_sample("fault_feeder"))["Source"]


def test_event_ids_are_stable_across_redelivery(codec: CFXCodec) -> None:
    first = [e.id for e in codec.decode(load_sample("units_tested_ict")).events]
    again = [e.id for e in CFXCodec().decode(gz(load_sample("units_tested_ict"))).events]
    assert first == again and len(set(first)) == 2


def test_missing_unique_id_is_derived_from_content(codec: CFXCodec) -> None:
    body = _bare(FAULT_CLEARED)
    a = codec.decode(body, {"cfx-message": "CFX.ResourcePerformance.FaultCleared"}).events[0]
    b = codec.decode(body, {"cfx-message": "CFX.ResourcePerformance.FaultCleared"}).events[0]
    assert a.payload["message_id"] == b.payload["message_id"] is not None
    assert a.id == b.id
    assert a.metadata.extras["message_id_derived"] is True


@pytest.mark.parametrize("state", [5500, "5500", "USD_ChangeOfConsumables"])
def test_station_state_number_string_and_name(codec: CFXCodec, state: object) -> None:
    env = json.loads(load_sample("station_state_changed"))
    env["MessageBody"]["NewState"] = state
    p = codec.decode(json.dumps(env).encode()).events[0].payload
    assert p["new_state"] == "unscheduled_downtime" and p["new_state_code"] == 5500


@pytest.mark.parametrize(("legacy", "code"), [("22A0", 2201), ("22B0", 2202)])
def test_legacy_blocked_starved_states(codec: CFXCodec, legacy: str, code: int) -> None:
    env = json.loads(load_sample("station_state_changed"))
    env["MessageBody"]["OldState"] = legacy
    p = codec.decode(json.dumps(env).encode()).events[0].payload
    assert p["old_state"] == "standby" and p["old_state_code"] == code


def test_unreadable_new_state_is_quarantined(codec: CFXCodec) -> None:
    env = json.loads(load_sample("station_state_changed"))
    env["MessageBody"]["NewState"] = "running"
    result = codec.decode(json.dumps(env).encode())
    assert result.events == [] and "NewState" in result.quarantined[0].reason


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:48:51.6310000", 2931.631),
        ("6.00:00:00", 518400.0),
        ("00:00:25", 25.0),
        ("01:30", 5400.0),
        ("PT1M", 60.0),
    ],
)
def test_timespan_forms(codec: CFXCodec, text: str, seconds: float) -> None:
    env = json.loads(load_sample("station_state_changed"))
    env["MessageBody"]["OldStateDuration"] = text
    p = codec.decode(json.dumps(env).encode()).events[0].payload
    assert p["old_state_duration_s"] == pytest.approx(seconds)


def test_structurally_broken_mapped_message_is_quarantined_not_raised(codec: CFXCodec) -> None:
    env = json.loads(load_sample("units_tested_fct"))
    env["MessageBody"]["TestedUnits"] = "not a list"
    body = json.dumps(env).encode()
    result = codec.decode(body)
    assert result.events == []
    assert "TestedUnits must be a list" in result.quarantined[0].reason
    assert result.quarantined[0].raw == body


def test_unknown_message_names_pass_through(codec: CFXCodec) -> None:
    env = {
        "MessageName": "CFX.HaiNa.ProgramInitialized",
        "Version": "1.0",
        "UniqueID": "u1",
        "MessageBody": {"Program": "P1"},
    }
    ev = codec.decode(json.dumps(env).encode()).events[0]
    assert ev.event_type is EventType.PASSTHROUGH
    assert ev.payload["body"] == {"Program": "P1"}
    assert ev.payload["message_name"] == "CFX.HaiNa.ProgramInitialized"


def test_placeholder_values_do_not_break_mapping(codec: CFXCodec) -> None:
    env = json.loads(load_sample("units_tested_fct"))
    m = env["MessageBody"]["TestedUnits"][0]["Tests"][0]["Measurements"][0]
    m["MeasuredValue"]["Value"] = "string"
    m["Sequence"] = "string"
    m["TimeRecorded"] = "string"
    ev = codec.decode(json.dumps(env).encode()).events[0]
    meas = ev.payload["tests"][0]["measurements"][0]
    assert meas["value"] is None and meas["sequence"] is None and meas["timestamp"] is None
    assert meas["low_limit"] == 3.135


@pytest.mark.parametrize("body", [None, "text", 123, bytearray(b"{}")])
def test_decode_never_raises_on_odd_arguments(codec: CFXCodec, body: object) -> None:
    result = codec.decode(body, {"weird": object()}, None)  # type: ignore[arg-type]
    assert result.events == [] and len(result.quarantined) == 1


def test_event_id_is_a_standard_uuid5() -> None:
    import uuid

    from pywats_cfx.mapping import NS, event_id

    assert event_id("m-1", "CFX.Heartbeat", 3) == str(uuid.uuid5(NS, "m-1/CFX.Heartbeat/3"))


def test_payload_dates_are_aware_iso_with_at_most_6_fraction_digits(codec: CFXCodec) -> None:
    env = json.loads(load_sample("units_tested_fct"))
    test = env["MessageBody"]["TestedUnits"][0]["Tests"][0]
    test["TestStartTime"] = "2026-03-12T09:14:05.1234567+01:00"
    test["TestEndTime"] = "2026-03-12T09:14:21"
    step = codec.decode(json.dumps(env).encode()).events[0].payload["tests"][0]
    assert step["start"] == "2026-03-12T09:14:05.123456+01:00"
    assert step["end"] == "2026-03-12T09:14:21Z"
    assert datetime.fromisoformat(step["start"]).tzinfo is not None


def test_batch_size_limit() -> None:
    from pywats_cfx import DecodeLimits

    codec = CFXCodec(limits=DecodeLimits(max_batch=2))
    one = load_sample("work_started")
    assert len(codec.decode(b"[" + one + b"," + one + b"]").events) == 2
    result = codec.decode(b"[" + one + b"," + one + b"," + one + b"]")
    assert result.events == [] and "exceeds the limit of 2" in result.quarantined[0].reason
