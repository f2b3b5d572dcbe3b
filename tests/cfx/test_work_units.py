"""`work_units`: a WorkCompleted naming only its TransactionID is read with its WorkStarted's units."""

from __future__ import annotations

import gzip
import json

from pywats_cfx.amqp.work_units import WorkUnits, parse_header, with_work_units
from pywats_cfx.codec import CFXCodec
from pywats_events import EventType


def envelope(name: str, body: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "MessageName": f"CFX.Production.{name}",
            "Version": "2.0",
            "TimeStamp": "2026-03-12T09:00:00+00:00",
            "UniqueID": f"{name}-1",
            "Source": "Acme.FCT.L1",
            "MessageBody": {"$type": f"CFX.Production.{name}, CFX", **body},
        }
    ).encode()


STARTED = envelope(
    "WorkStarted",
    {
        "TransactionID": "txn-1",
        "Units": [
            {"UnitIdentifier": "SN-2", "PositionNumber": 2},
            {"UnitIdentifier": "SN-1", "PositionNumber": 1},
        ],
    },
)
COMPLETED = envelope("WorkCompleted", {"TransactionId": "txn-1", "Result": "Completed"})


def test_the_units_of_a_transaction_are_remembered_once_and_given_to_its_unitless_completion() -> None:
    codec, units = CFXCodec(), WorkUnits()
    started = codec.decode(STARTED).events
    assert units.started(started) == {"t": "txn-1", "u": [["SN-2", 2], ["SN-1", 1]]}
    assert units.started(started) is None  # a redelivery adds nothing to the ledger
    completed = codec.decode(COMPLETED).events
    assert [e.payload["unit_serial"] for e in completed] == [""]
    found = units.completed(completed)
    assert found == {"txn-1": [["SN-2", 2], ["SN-1", 1]]}
    assert parse_header(json.dumps(found)) == found

    filled = with_work_units(gzip.compress(COMPLETED), {"content-encoding": "gzip"}, found)
    assert filled is not None
    body = json.loads(filled)["MessageBody"]
    assert body["TransactionId"] == "txn-1" and body["Result"] == "Completed"
    events = codec.decode(filled).events
    assert [(e.event_type, e.payload["unit_serial"], e.payload["unit_position"]) for e in events] == [
        (EventType.WORK_COMPLETED, "SN-2", 2),
        (EventType.WORK_COMPLETED, "SN-1", 1),
    ]


def test_a_completion_naming_its_units_or_an_unknown_transaction_is_left_as_sent() -> None:
    codec, units = CFXCodec(), WorkUnits()
    units.started(codec.decode(STARTED).events)
    named = envelope("WorkCompleted", {"TransactionID": "txn-1", "Units": [{"UnitIdentifier": "SN-9"}]})
    assert units.completed(codec.decode(named).events) is None
    other = envelope("WorkCompleted", {"TransactionID": "txn-2"})
    assert units.completed(codec.decode(other).events) is None
    assert with_work_units(named, {}, {"txn-1": [["SN-1", 1]]}) is None
    assert with_work_units(b"not json", {}, {"txn-1": [["SN-1", 1]]}) is None
    assert parse_header(b"{broken") is None


def test_the_ledger_restores_what_a_previous_intake_knew_and_the_oldest_go_first() -> None:
    units = WorkUnits(limit=2)
    units.load(
        [
            {"t": "a", "u": [["SN-a", None]], "seq": 1},
            {"t": "b", "u": [["SN-b", 1]], "seq": 2},
            {"t": "c", "u": [["SN-c", 1], "junk"], "seq": 3},
            {"t": 5, "u": "junk"},
        ]
    )
    assert len(units) == 2
    codec = CFXCodec()
    for txn, serial in (("a", None), ("b", "SN-b"), ("c", "SN-c")):
        done = units.completed(codec.decode(envelope("WorkCompleted", {"TransactionID": txn})).events)
        assert (done[txn][0][0] if done else None) == serial
