"""A received CFX message as the codec hands it to the mapper (the inbound side; `pywats_cfx.amqp.outbound`
builds envelopes to publish): a light record, not a validated model (hot path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CFXEnvelope", "short_message_name"]


@dataclass(slots=True)
class CFXEnvelope:
    """One CFX message. `body` keeps every property of the MessageBody; `CFXCodec.decode_messages` returns
    it with every key in canonical spelling (the mapper copes with any spelling; ingest skips that step)."""

    message_name: str
    body: dict[str, Any]
    version: str | None = None
    #: when the fact happened (envelope TimeStamp), timezone-aware; None when absent or unreadable
    timestamp: datetime | None = None
    #: the TimeStamp had no offset and was taken as UTC
    timestamp_assumed_utc: bool = False
    unique_id: str | None = None
    source: str | None = None
    target: str | None = None
    request_id: str | None = None
    #: True when the message arrived as a bare MessageBody (no envelope)
    bare: bool = False
    #: True when `unique_id` was derived from the bytes (no UniqueID on the wire)
    derived_id: bool = False
    #: envelope properties outside the standard set, kept as sent
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The envelope in CFX wire shape (for display and re-publishing)."""
        out: dict[str, Any] = {
            "MessageName": self.message_name,
            "Version": self.version,
            "TimeStamp": self.timestamp.isoformat() if self.timestamp else None,
            "UniqueID": self.unique_id,
            "Source": self.source,
            "Target": self.target,
            "RequestID": self.request_id,
            "MessageBody": self.body,
        }
        out.update(self.extra)
        return out


def short_message_name(name: str) -> str:
    """``CFX.Production.TestAndInspection.UnitsTested`` → ``UnitsTested``."""
    return name.rsplit(".", 1)[-1]
