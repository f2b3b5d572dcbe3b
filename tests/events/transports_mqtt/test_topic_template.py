"""Topic templates: plain sensor traffic (``factory/L1/ICT-01/temperature`` → ``23.5``) becomes events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from pywats_events import DecodeResult, Event
from pywats_events.transports.mqtt import TopicTemplate, TopicTemplateCodec

pytestmark = pytest.mark.timeout(10)

TEMPLATE = "factory/{line}/{station}/temperature"
TOPIC = "factory/L1/ICT-01/temperature"


def _one_event(result: DecodeResult) -> Event:
    assert result.quarantined == [], [q.reason for q in result.quarantined]
    assert len(result.events) == 1
    return result.events[0]


def _one_reason(result: DecodeResult) -> str:
    assert result.events == []
    assert len(result.quarantined) == 1
    return result.quarantined[0].reason


# ------------------------------------------------------------------ TopicTemplate


def test_template_names_its_fields_and_derives_the_subscription_filter() -> None:
    template = TopicTemplate(TEMPLATE)
    assert template.fields == ["line", "station"]
    assert template.topic_filter == "factory/+/+/temperature"
    assert TopicTemplate("plant/temperature").topic_filter == "plant/temperature"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("factory/{line}x/temperature", "a field must be a whole level"),
        ("factory/x{line}/temperature", "a field must be a whole level"),
        ("factory/{line/temperature", "a field must be a whole level"),
        ("factory/+/temperature", "name the level instead of '+'"),
        ("factory/{line}/#", "name the level instead of '#'"),
        ("factory/{line}/{line}/temperature", "a field name appears twice"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(template: str, expected: str) -> None:
    with pytest.raises(ValueError) as err:
        TopicTemplate(template)
    assert expected in str(err.value)
    assert repr(template) in str(err.value), "the message quotes the template the operator wrote"


def test_match_captures_fields_and_checks_length_and_literals() -> None:
    template = TopicTemplate(TEMPLATE)
    assert template.match(TOPIC) == {"line": "L1", "station": "ICT-01"}
    assert template.match("factory/L1/ICT-01") is None, "too short"
    assert template.match("factory/L1/ICT-01/temperature/raw") is None, "too long"
    assert template.match("plant/L1/ICT-01/temperature") is None, "first literal differs"
    assert template.match("factory/L1/ICT-01/humidity") is None, "last literal differs"
    assert template.match("factory/L1/ICT-01/Temperature") is None, "MQTT topics are case-sensitive"


# ------------------------------------------------------------------ TopicTemplateCodec: payloads


def test_the_issue_example_becomes_an_asset_telemetry_event() -> None:
    event = _one_event(TopicTemplateCodec(TEMPLATE).decode(b"23.5", topic=TOPIC))
    assert event.type_name == "asset.telemetry"
    assert event.payload == {"line": "L1", "station": "ICT-01", "value": 23.5}
    assert event.metadata.source == "ICT-01", "the station field names the event's source"
    assert event.metadata.source_topic == TOPIC


@pytest.mark.parametrize(("body", "value"), [(b"23", 23), (b"-0.5", -0.5), (b"true", True), (b"null", None)])
def test_json_scalars_become_the_value(body: bytes, value: object) -> None:
    event = _one_event(TopicTemplateCodec(TEMPLATE).decode(body, topic=TOPIC))
    assert event.payload["value"] == value
    assert type(event.payload["value"]) is type(value)


def test_a_json_object_is_merged_and_topic_fields_win_over_body_fields() -> None:
    """The topic is what the subscription routed on, so a body claiming another station must not win."""
    body = b'{"value": 23.5, "units": "degC", "station": "ICT-99", "line": "L9"}'
    event = _one_event(TopicTemplateCodec(TEMPLATE).decode(body, topic=TOPIC))
    assert event.payload == {"line": "L1", "station": "ICT-01", "value": 23.5, "units": "degC"}
    assert event.metadata.source == "ICT-01"


def test_constant_fields_are_added_and_the_payload_overrides_them() -> None:
    codec = TopicTemplateCodec(TEMPLATE, fields={"units": "degC", "quantity": "temperature"})
    plain = _one_event(codec.decode(b"23.5", topic=TOPIC))
    assert plain.payload == {
        "line": "L1",
        "station": "ICT-01",
        "value": 23.5,
        "units": "degC",
        "quantity": "temperature",
    }
    explicit = _one_event(codec.decode(b'{"value": 296.6, "units": "K"}', topic=TOPIC))
    assert explicit.payload["units"] == "K", (
        "what the sensor says about its own reading wins over the default"
    )
    assert explicit.payload["quantity"] == "temperature"


def test_constant_fields_are_not_shared_between_events() -> None:
    codec = TopicTemplateCodec(TEMPLATE, fields={"units": "degC"})
    first = _one_event(codec.decode(b"1", topic=TOPIC))
    first.payload["units"] = "changed by a handler"
    assert _one_event(codec.decode(b"2", topic=TOPIC)).payload["units"] == "degC"


@pytest.mark.parametrize(("body", "value"), [(b"OK", "OK"), (b"  running \n", "running"), (b"23,5", "23,5")])
def test_text_that_is_not_json_becomes_a_string_value(body: bytes, value: str) -> None:
    event = _one_event(TopicTemplateCodec(TEMPLATE).decode(body, topic=TOPIC))
    assert event.payload["value"] == value


def test_binary_that_is_not_utf8_is_quarantined_with_its_raw_bytes() -> None:
    body = b"\xff\xfe\x00\x81binary"
    result = TopicTemplateCodec(TEMPLATE).decode(body, topic=TOPIC)
    assert _one_reason(result) == "payload is neither JSON nor UTF-8 text"
    record = result.quarantined[0]
    assert record.raw == body
    assert record.topic == TOPIC


def test_an_empty_payload_yields_nothing_and_is_not_quarantined() -> None:
    """An empty retained publish is how MQTT clears a retained value: not a reading, not an error."""
    result = TopicTemplateCodec(TEMPLATE).decode(b"", topic=TOPIC)
    assert result.events == [] and result.quarantined == []


def test_a_topic_that_does_not_fit_the_template_is_quarantined() -> None:
    body = b"23.5"
    result = TopicTemplateCodec(TEMPLATE).decode(body, topic="factory/L1/ICT-01/humidity")
    reason = _one_reason(result)
    assert "factory/L1/ICT-01/humidity" in reason and TEMPLATE in reason
    assert result.quarantined[0].raw == body
    assert result.quarantined[0].topic == "factory/L1/ICT-01/humidity"
    assert _one_reason(TopicTemplateCodec(TEMPLATE).decode(body, topic=None))


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)),
        ("2024-05-01T10:00:00+00:00", datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)),
        ("2024-05-01T12:00:00.250+02:00", datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=timezone.utc)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)),
    ],
)
def test_a_payload_timestamp_becomes_the_event_time(stamp: str, expected: datetime) -> None:
    body = f'{{"value": 1, "timestamp": "{stamp}"}}'.encode()
    event = _one_event(TopicTemplateCodec(TEMPLATE).decode(body, topic=TOPIC))
    assert event.timestamp.tzinfo is not None, "event times are always timezone-aware"
    assert event.timestamp == expected


def test_without_a_timestamp_the_event_time_is_now() -> None:
    before = datetime.now(timezone.utc)
    event = _one_event(TopicTemplateCodec(TEMPLATE).decode(b"1", topic=TOPIC))
    assert before - timedelta(seconds=1) <= event.timestamp <= datetime.now(timezone.utc)


@pytest.mark.parametrize("stamp", ["yesterday", "2024-13-01T00:00:00Z", "", 1714557600])
def test_a_bad_timestamp_is_quarantined(stamp: object) -> None:
    """A reading with a wrong time must not enter WATS stamped "now"."""
    body = orjson.dumps({"value": 1, "timestamp": stamp})
    result = TopicTemplateCodec(TEMPLATE).decode(body, topic=TOPIC)
    reason = _one_reason(result)
    assert reason.startswith(f"timestamp {stamp!r} ") and "ISO 8601" in reason, reason
    assert result.quarantined[0].raw == body


# ------------------------------------------------------------------ event type, source


def test_event_type_may_name_template_fields() -> None:
    codec = TopicTemplateCodec("sensors/{station}/{quantity}", event_type="sensor.{quantity}")
    first = _one_event(codec.decode(b"23.5", topic="sensors/ICT-01/temperature"))
    second = _one_event(codec.decode(b"41", topic="sensors/ICT-01/humidity"))
    assert (first.type_name, second.type_name) == ("sensor.temperature", "sensor.humidity")


def test_event_type_naming_an_unknown_field_is_refused_when_built() -> None:
    with pytest.raises(ValueError) as err:
        TopicTemplateCodec(TEMPLATE, event_type="sensor.{quantity}")
    assert "'quantity'" in str(err.value) and TEMPLATE in str(err.value)


def test_without_a_station_field_the_source_is_the_topic() -> None:
    codec = TopicTemplateCodec("plant/{line}/pressure")
    event = _one_event(codec.decode(b"1.2", topic="plant/L2/pressure"))
    assert event.metadata.source == "plant/L2/pressure"
    assert event.payload == {"line": "L2", "value": 1.2}


def test_each_message_gets_its_own_event_id() -> None:
    codec = TopicTemplateCodec(TEMPLATE)
    ids = {_one_event(codec.decode(b"1", topic=TOPIC)).id for _ in range(3)}
    assert len(ids) == 3
