"""A tiny JSON codec for the MQTT transport tests."""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from typing import Any

from pywats_events import DecodeResult, Event, EventMetadata, EventType
from pywats_events.transports import QuarantineRecord


class EnvelopeCodec:
    """gzip-or-plain JSON; an envelope or a bare body whose name comes from the `cfx-message` header."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Any], str | None]] = []

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        headers = dict(headers or {})
        self.seen.append((headers, topic))
        try:
            doc = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
            if "MessageName" in doc:
                name, unique_id = doc["MessageName"], doc["UniqueID"]
            else:
                name, unique_id = headers["cfx-message"], doc["Id"]
        except Exception as exc:
            return DecodeResult(
                quarantined=[QuarantineRecord(body, f"undecodable: {exc}", headers, None, topic)]
            )
        meta = EventMetadata(causation_id=unique_id, source_topic=topic)
        event = Event(
            event_type=EventType.PASSTHROUGH, payload={"name": name, "id": unique_id}, metadata=meta
        )
        return DecodeResult(events=[event])
