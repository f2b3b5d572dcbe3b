"""What every event of one CFX message shares: ids, times, sender, transaction; and how an event is built."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from typing import Any

from pywats_events import Event, EventMetadata, EventType

from ._fields import fmt_dt

__all__ = ["NS", "MessageContext", "event_id"]

#: namespace of the deterministic event ids
NS = uuid.UUID("6f1d3c52-8a43-4c0e-9b1e-2f6f3c1a7e55")
_NS_BYTES = NS.bytes


def event_id(message_id: str, message_name: str, index: int) -> str:
    """``uuid5(NS, f"{message_id}/{message_name}/{index}")``, computed without `uuid.UUID` (three times
    cheaper), so a redelivered message yields the same event ids."""
    d = bytearray(hashlib.sha1(_NS_BYTES + f"{message_id}/{message_name}/{index}".encode()).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x50
    d[8] = (d[8] & 0x3F) | 0x80
    h = d.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class MessageContext:
    """Per-message facts shared by all events of one envelope.

    `facts` opens every payload; `event` wraps a payload with metadata: `causation_id` = UniqueID,
    `correlation_id` = TransactionID (else UniqueID), `ordering_key` = the given key (a unit serial) or the
    sender's handle, event ids derived from UniqueID + index. Without a TimeStamp the receive time is used.
    """

    __slots__ = ("extras", "facts", "handle", "name", "topic", "ts", "txn", "uid")

    def __init__(
        self,
        *,
        name: str,
        unique_id: str | None,
        version: str | None,
        timestamp: datetime | None,
        timestamp_assumed_utc: bool = False,
        derived_id: bool = False,
        bare: bool = False,
        handle: str | None,
        transaction_id: str | None,
        topic: str | None,
        received: datetime | None = None,
    ) -> None:
        self.name = name
        self.uid = unique_id
        self.handle = handle
        self.txn = transaction_id
        self.topic = topic
        extras: dict[str, Any] = {"message_name": name, "cfx_version": version}
        if timestamp is None:
            self.ts = received or datetime.now(timezone.utc)
            extras["timestamp_missing"] = True
        else:
            self.ts = timestamp
            if timestamp_assumed_utc:
                extras["timestamp_assumed_utc"] = True
        if derived_id:
            extras["message_id_derived"] = True
        if bare:
            extras["bare_body"] = True
        self.extras = extras
        self.facts: dict[str, Any] = {
            "station": handle,
            "message_id": unique_id,
            "transaction_id": transaction_id,
            "timestamp": fmt_dt(timestamp) if timestamp is not None else None,
            "message_name": name,
        }

    def event(self, event_type: EventType, payload: dict[str, Any], index: int, key: str | None) -> Event:
        meta = EventMetadata(
            event_id=event_id(self.uid, self.name, index) if self.uid else str(uuid.uuid4()),
            correlation_id=self.txn or self.uid,
            causation_id=self.uid,
            timestamp=self.ts,
            source=self.handle,
            source_topic=self.topic,
            ordering_key=key or self.handle,
            extras=dict(self.extras),
        )
        return Event(event_type=event_type, payload=payload, metadata=meta)
