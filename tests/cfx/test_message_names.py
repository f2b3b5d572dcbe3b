"""Message names: a well-formed but unmapped CFX name is passthrough; anything that is not a CFX name is
quarantined with the raw bytes and a reason, whichever clue (envelope, $type, header, topic) carried it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pywats_cfx import CFXCodec
from pywats_events import EventType

VENDOR = "CFX.HaiNa.ProgramInitialized"


def _envelope(name: Any, **extra: Any) -> bytes:
    env: dict[str, Any] = {"MessageName": name, "Version": "2.1", "UniqueID": "u-1", "MessageBody": {}}
    env.update(extra)
    return json.dumps(env).encode()


@pytest.mark.parametrize("name", [VENDOR, "cfx.haina.ProgramInitialized", "CFX.Vendor_X.Event2"])
def test_wellformed_unknown_name_is_passthrough(codec: CFXCodec, name: str) -> None:
    result = codec.decode(_envelope(name, MessageBody={"Program": "P-7"}))
    assert result.quarantined == []
    [event] = result.events
    assert event.event_type is EventType.PASSTHROUGH
    assert event.payload["body"] == {"Program": "P-7"}
    assert event.metadata.extras["message_name"] == name


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (42, "is a int, not a string"),
        (["CFX.Heartbeat"], "is a list, not a string"),
        ({"n": 1}, "is a dict, not a string"),
        (True, "is a bool, not a string"),
        ("Heartbeat", "does not have the form"),
        ("CFX", "does not have the form"),
        ("CFX.", "does not have the form"),
        ("CFX..Heartbeat", "does not have the form"),
        ("CFX.Production.1Unit", "does not have the form"),
        ("CFX.Production Unit", "does not have the form"),
        ("CFX.Heartbeat\n", "does not have the form"),
        ("XCFX.Heartbeat", "does not have the form"),
        ("CFX.Héartbeat", "does not have the form"),
        ("CFX.\u017fignal", "does not have the form"),  # long s: folds to "s" under re.IGNORECASE
    ],
)
def test_implausible_message_name_is_quarantined(codec: CFXCodec, name: Any, what: str) -> None:
    body = _envelope(name)
    result = codec.decode(body, topic=f"line1.{VENDOR}")  # a valid routing key does not rescue it
    assert result.events == []
    [record] = result.quarantined
    assert record.reason.startswith("not a CFX message name: ") and what in record.reason
    assert "(MessageName)" in record.reason and record.raw == body


def test_missing_name_is_quarantined_and_type_still_names_an_envelope(codec: CFXCodec) -> None:
    missing = json.dumps({"UniqueID": "u-2", "MessageBody": {"X": 1}}).encode()
    [record] = codec.decode(missing).quarantined
    assert record.reason.startswith("not a CFX message name: missing")
    typed = json.dumps(
        {"MessageName": None, "MessageBody": {"$type": "CFX.ResourcePerformance.FaultCleared, CFX"}}
    ).encode()
    assert codec.decode(typed).events[0].event_type is EventType.ASSET_FAULT_CLEARED
    bad_type = json.dumps({"MessageBody": {"$type": "Vendor.Thing, Vendor"}}).encode()
    [record] = codec.decode(bad_type).quarantined
    assert "not a CFX message name" in record.reason and "$type" in record.reason


def test_bare_body_names_are_checked_whatever_carried_them(codec: CFXCodec) -> None:
    body = json.dumps({"Program": "P-7"}).encode()
    by_topic = codec.decode(body, topic=f"site/line1/STN-1.{VENDOR}")
    assert [e.event_type for e in by_topic.events] == [EventType.PASSTHROUGH]
    by_header = codec.decode(body, {"cfx-message": "not a name"})
    assert by_header.events == []
    assert "not a CFX message name" in by_header.quarantined[0].reason
    assert "cfx-message header" in by_header.quarantined[0].reason
    by_caller = codec.decode_messages(body, message_name="Heartbeat")[1]
    assert "not a CFX message name" in by_caller[0].reason and "caller" in by_caller[0].reason
    # a topic without a CFX name gives no name at all: a bare body then has none
    [record] = codec.decode(body, topic="site/line1/ict").quarantined
    assert record.reason.startswith("not a CFX message name: missing")


def test_batch_keeps_good_envelopes_beside_a_bad_name(codec: CFXCodec) -> None:
    batch = b"[" + _envelope(VENDOR) + b"," + _envelope("Nope") + b"]"
    result = codec.decode(batch)
    assert [e.event_type for e in result.events] == [EventType.PASSTHROUGH]
    [record] = result.quarantined
    assert "not a CFX message name" in record.reason and b"Nope" in record.raw
