"""`EventJsonCodec`: messages that already are events, in the bus's own JSON (`Event.to_json()`).

For producers that speak pywats-events natively (another listener, a gateway, a script): one event object or
a JSON array of them per message. Event ids are kept, so a redelivered message is recognised downstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from ._codec import DecodeResult
from ._event import Event
from .transports._base import QuarantineRecord

__all__ = ["EventJsonCodec"]


class EventJsonCodec:
    """Never raises: invalid JSON or an object that is not an event is quarantined with the reason; an
    empty message yields nothing."""

    name = "event"

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        if not body:  # MQTT's "clear the retained message": nothing to read
            return DecodeResult()
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._refuse(body, f"invalid JSON: {exc}", headers, topic)
        items = doc if isinstance(doc, list) else [doc]
        events: list[Event] = []
        for index, item in enumerate(items):
            try:
                event = Event.model_validate(item)
            except ValidationError as exc:
                where = f"item {index}: " if isinstance(doc, list) else ""
                first = exc.errors()[0]
                loc = ".".join(str(part) for part in first["loc"]) or "event"
                return self._refuse(body, f"not an event: {where}{loc}: {first['msg']}", headers, topic)
            if topic is not None and event.metadata.source_topic is None:
                event.metadata.source_topic = topic
            events.append(event)
        return DecodeResult(events=events)

    @staticmethod
    def _refuse(
        body: bytes, reason: str, headers: Mapping[str, Any] | None, topic: str | None
    ) -> DecodeResult:
        return DecodeResult(quarantined=[QuarantineRecord(body, reason, dict(headers or {}), None, topic)])
