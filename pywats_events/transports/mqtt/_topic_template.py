"""Plain sensor traffic → events: topic levels name the fields, the payload carries the value.

``factory/{line}/{station}/temperature`` with payload ``23.5`` on ``factory/L1/ICT-01/temperature`` becomes an
``asset.telemetry`` event with payload ``{"line": "L1", "station": "ICT-01", "value": 23.5}``. A JSON object
payload is merged in (``{"value": 23.5, "units": "degC"}``); text that is not JSON becomes the value as a
string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import orjson

from ..._codec import DecodeResult
from ..._event import Event, EventMetadata
from .._base import QuarantineRecord

__all__ = ["TopicTemplate", "TopicTemplateCodec"]

_FIELD = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class TopicTemplate:
    """A topic pattern whose ``{name}`` levels capture fields; the other levels must match literally."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.levels: list[tuple[bool, str]] = []  # (is_field, field name or literal)
        for level in template.split("/"):
            match = _FIELD.match(level)
            if match:
                self.levels.append((True, match.group(1)))
            elif "{" in level or "}" in level:
                raise ValueError(
                    f"bad topic template {template!r}: a field must be a whole level, like {{name}}"
                )
            elif level in ("+", "#"):
                raise ValueError(f"bad topic template {template!r}: name the level instead of {level!r}")
            else:
                self.levels.append((False, level))
        self._seen: dict[str, dict[str, str] | None] = {}
        names = [name for is_field, name in self.levels if is_field]
        if len(set(names)) != len(names):
            raise ValueError(f"bad topic template {template!r}: a field name appears twice")
        self.fields = names

    def unknown_fields(self, text: str) -> list[str]:
        """The ``{name}`` placeholders in `text` (an event type) that are not fields of this template."""
        return sorted(set(re.findall(r"\{([^}]*)\}", text)) - set(self.fields))

    @property
    def topic_filter(self) -> str:
        """The MQTT subscription filter: every field level is ``+``."""
        return "/".join("+" if is_field else text for is_field, text in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured fields (a fresh dict), or None when `topic` does not fit the template."""
        try:
            known = self._seen[topic]
        except KeyError:
            known = self._match(topic)
            if len(self._seen) >= 10_000:
                self._seen.clear()
            self._seen[topic] = known
        return None if known is None else dict(known)

    def _match(self, topic: str) -> dict[str, str] | None:
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            return None
        captured: dict[str, str] = {}
        for part, (is_field, text) in zip(parts, self.levels, strict=True):
            if is_field:
                captured[text] = part
            elif part != text:
                return None
        return captured


class TopicTemplateCodec:
    """Codec for one template subscription. Never raises: what cannot be read is quarantined with the reason.

    `event_type` may name template fields (``sensor.{quantity}``); `fields` are constant payload fields.
    The template's ``station`` field (if any) becomes the event's source, and a payload ``timestamp``
    (ISO 8601) its timestamp. An empty payload (MQTT's "clear the retained message") yields no event.
    """

    def __init__(
        self, template: str, event_type: str = "asset.telemetry", fields: Mapping[str, Any] | None = None
    ) -> None:
        self.template = TopicTemplate(template)
        unknown = self.template.unknown_fields(event_type)
        if unknown:
            raise ValueError(f"event_type {event_type!r} names {unknown}, not fields of {template!r}")
        self.event_type = event_type
        self._formatted = "{" in event_type
        self.fields = dict(fields or {})

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        captured = self.template.match(topic or "")
        if captured is None:
            return _quarantine(
                body, f"topic {topic!r} does not fit template {self.template.template!r}", topic
            )
        if not body:
            return DecodeResult()
        try:
            value: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                value = body.decode("utf-8").strip()
            except UnicodeDecodeError:
                return _quarantine(body, "payload is neither JSON nor UTF-8 text", topic)
        if isinstance(value, dict):
            payload = {**self.fields, **value, **captured}
        else:
            payload = {**self.fields, "value": value, **captured}
        source = captured.get("station") or topic
        stamp = payload.get("timestamp")
        if stamp is None:
            meta = EventMetadata(source=source, source_topic=topic)
        else:
            try:
                parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except (ValueError, AttributeError):
                return _quarantine(body, f"timestamp {stamp!r} is not an ISO 8601 text", topic)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            meta = EventMetadata(source=source, source_topic=topic, timestamp=parsed)
        event_type = self.event_type.format(**captured) if self._formatted else self.event_type
        return DecodeResult(events=[Event(event_type=event_type, payload=payload, metadata=meta)])


def _quarantine(body: bytes, reason: str, topic: str | None) -> DecodeResult:
    return DecodeResult(quarantined=[QuarantineRecord(body, reason, {"mqtt-topic": topic}, "mqtt", topic)])
