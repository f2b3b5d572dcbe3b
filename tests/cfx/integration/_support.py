"""A small JSON codec and unique broker names for the CFX transport integration tests."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Mapping
from typing import Any

from pywats_events import DecodeResult, Event, EventMetadata, EventType
from pywats_events.transports import QuarantineRecord


def unique(prefix: str) -> str:
    return f"test.{prefix}.{uuid.uuid4().hex[:10]}"


class JsonEnvelopeCodec:
    """A deliberately small codec: gunzip by header or magic, one JSON envelope → one passthrough event."""

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        headers = dict(headers or {})
        try:
            raw = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            envelope = json.loads(raw)
            unique_id = envelope["UniqueID"]
            name = envelope["MessageName"]
        except Exception as exc:
            record = QuarantineRecord(
                raw=body, reason=f"not a CFX envelope: {exc}", headers=headers, topic=topic
            )
            return DecodeResult(quarantined=[record])
        meta = EventMetadata(causation_id=unique_id, source=envelope.get("Source"), source_topic=topic)
        payload = {"message_name": name, "unique_id": unique_id, "body": envelope.get("MessageBody")}
        return DecodeResult(events=[Event(event_type=EventType.PASSTHROUGH, payload=payload, metadata=meta)])
