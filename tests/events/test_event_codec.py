"""`EventJsonCodec`: messages that already are events (`Event.to_json()`) come back as the same events."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import orjson
import pytest

from pywats_events import DecodeResult, Event, EventMetadata, EventType
from pywats_events.event_codec import EventJsonCodec
from pywats_events.plugins import make_codec

pytestmark = pytest.mark.timeout(10)


def _event(serial: str = "SN-1", **meta: object) -> Event:
    return Event(
        event_type=EventType.TEST_RESULT,
        payload={"unit_serial": serial, "result": "P", "measurements": [1.5, 2.5]},
        metadata=EventMetadata(
            correlation_id="tx-1",
            causation_id="cfx-1",
            timestamp=datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=timezone.utc),
            source="ICT-01",
            trace_context={"traceparent": "00-abc-def-01"},
            **meta,
        ),
    )


def _only_reason(result: DecodeResult) -> str:
    assert result.events == [], "nothing from a refused message is emitted"
    assert len(result.quarantined) == 1
    return result.quarantined[0].reason


def test_an_event_round_trips_with_its_id_and_enum_type() -> None:
    original = _event(source_topic="gateway/events")
    result = EventJsonCodec().decode(original.to_json().encode(), topic="events/line1")
    assert result.quarantined == []
    [event] = result.events
    assert event == original, "every field survives, so a redelivered message is recognised downstream"
    assert event.id == original.id
    assert event.event_type is EventType.TEST_RESULT
    assert event.timestamp.tzinfo is not None


def test_a_plugin_defined_event_type_stays_a_string() -> None:
    original = Event(event_type="sensor.temperature", payload={"value": 23.5})
    [event] = EventJsonCodec().decode(original.to_json().encode()).events
    assert event.event_type == "sensor.temperature" and event.id == original.id


def test_a_json_array_yields_its_events_in_order() -> None:
    originals = [_event(f"SN-{i}") for i in range(3)]
    body = b"[" + b",".join(e.to_json().encode() for e in originals) + b"]"
    result = EventJsonCodec().decode(body, topic="events/line1")
    assert result.quarantined == []
    assert [e.id for e in result.events] == [e.id for e in originals]
    assert [e.payload["unit_serial"] for e in result.events] == ["SN-0", "SN-1", "SN-2"]


def test_source_topic_comes_from_the_topic_only_when_the_event_has_none() -> None:
    codec = EventJsonCodec()
    [filled] = codec.decode(_event().to_json().encode(), topic="events/line1").events
    assert filled.metadata.source_topic == "events/line1"
    [kept] = codec.decode(_event(source_topic="origin/ict").to_json().encode(), topic="events/line1").events
    assert kept.metadata.source_topic == "origin/ict", "the producer's own origin is the more useful one"
    [untouched] = codec.decode(_event().to_json().encode()).events
    assert untouched.metadata.source_topic is None


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"event_type": "x"', b"\xff\xfe"])
def test_invalid_json_is_quarantined_with_the_raw_bytes(body: bytes) -> None:
    result = EventJsonCodec().decode(body, {"mqtt-qos": 1}, topic="events/line1")
    assert _only_reason(result).startswith("invalid JSON")
    record = result.quarantined[0]
    assert (record.raw, record.topic) == (body, "events/line1")
    assert record.headers == {"mqtt-qos": 1}


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"payload": {"value": 1}}, "event_type"),
        ({"event_type": "x", "payload": "not a dict"}, "payload"),
        ({"event_type": "x", "colour": "red"}, "colour"),
        ({"event_type": "x", "metadata": {"timestamp": "yesterday"}}, "metadata.timestamp"),
        ({"event_type": "x", "metadata": {"attempt": "many"}}, "metadata.attempt"),
    ],
)
def test_an_object_that_is_not_an_event_is_quarantined_naming_the_field(
    doc: dict[str, object], field: str
) -> None:
    reason = _only_reason(EventJsonCodec().decode(orjson.dumps(doc), topic="events/line1"))
    assert reason.startswith(f"not an event: {field}: "), reason


def test_a_bad_item_refuses_the_whole_array_naming_the_item_and_field() -> None:
    """All or nothing: a partly emitted array would be emitted again in full once the fix is replayed."""
    good = json.loads(_event().to_json())
    body = orjson.dumps([good, {"event_type": "x", "metadata": {"event_id": 7}}, good])
    result = EventJsonCodec().decode(body, topic="events/line1")
    reason = _only_reason(result)
    assert reason.startswith("not an event: item 1: metadata.event_id: "), reason
    assert result.quarantined[0].raw == body


@pytest.mark.parametrize("body", [b"42", b'"text"', b"null", b"[1]"])
def test_json_that_is_not_an_object_is_quarantined(body: bytes) -> None:
    assert _only_reason(EventJsonCodec().decode(body)).startswith("not an event: ")


def test_the_codec_is_found_by_name() -> None:
    codec = make_codec("event", {})
    assert isinstance(codec, EventJsonCodec)
    [event] = codec.decode(_event().to_json().encode()).events
    assert event.payload["unit_serial"] == "SN-1"


def test_a_naive_timestamp_from_outside_is_read_as_utc() -> None:
    """Event times are documented as always timezone-aware; comparing naive and aware times raises."""
    body = b'{"event_type": "x", "metadata": {"timestamp": "2024-05-01T10:00:00"}}'
    [event] = EventJsonCodec().decode(body).events
    assert event.timestamp == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
