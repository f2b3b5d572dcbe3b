"""`CFXCodec`: bytes from a broker → CFX envelopes → domain events; never raises.

Steps: peel framing/compression/BOM (`_wire`); on the ingest path (`decode`) try the typed decode of an
SDK-shaped envelope straight from the bytes (`mappers.decode_typed`); otherwise take the lenient path:
parse JSON with keys as sent (`_json`), split a batch array into envelopes, accept a bare MessageBody when a
name is known (``$type``, caller, headers or topic), then map (`mapping`, which reads any key spelling).
Whatever fails at any step becomes a `QuarantineRecord` with the raw bytes and a reason; the rest of a batch
still yields its events.

`decode` (the ingest hot path) drops the envelopes once mapped; `decode_messages` returns them with every key
of the body in canonical spelling.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pywats_events import DecodeResult, Event
from pywats_events.transports import QuarantineRecord

from . import _json
from ._message_name import message_name_problem
from ._values import is_naive_datetime, parse_datetime, parse_str, type_name
from ._wire import DecodeLimits, WireError, unwrap
from .mappers import decode_typed
from .mapping import MappingError, map_envelope
from .received import CFXEnvelope

__all__ = [
    "CFXCodec",
    "CFXDecodeError",
    "DecodeLimits",
    "DecodedMessage",
    "TopicParser",
    "message_name_from_topic",
    "regex_topic_parser",
]

_ENVELOPE_KEYS = frozenset(
    ("MessageName", "Version", "TimeStamp", "UniqueID", "Source", "Target", "RequestID")
)
#: the envelope slot of a `DecodedMessage` from the typed path (`decode` keeps only the events)
_TYPED = CFXEnvelope(message_name="", body={})
_ID_NS = uuid.UUID("0b5e2f4e-7f0c-4f55-a3b6-1f2d8c9e0a11")

#: maps a topic / routing key to (message name, sender handle); either may be None
TopicParser = Callable[[str], tuple[str | None, str | None]]

_CFX_NAME = re.compile(r"(?:^|[./])(CFX\.[A-Za-z0-9_.]*[A-Za-z0-9_])$")


def message_name_from_topic(topic: str) -> tuple[str | None, str | None]:
    """SDK routing keys ``<handle>.<MessageName>`` and topics ending in a CFX name (``line1/CFX.Heartbeat``).

    The message name is the ``CFX.``-rooted tail of the last path segment; the handle is what precedes it.
    """
    segment = topic.rsplit("/", 1)[-1]
    idx = segment.rfind(".CFX.")
    if idx >= 0:
        return segment[idx + 1 :], segment[:idx] or None
    if segment.startswith("CFX."):
        m = _CFX_NAME.search(segment)
        return (m.group(1) if m else None), None
    return None, None


class CFXDecodeError(ValueError):
    """Raised by `CFXCodec.decode_strict` (the explorer's path); `decode` never raises."""


@dataclass(slots=True)
class DecodedMessage:
    """One envelope and the events it produced."""

    envelope: CFXEnvelope
    events: list[Event] = field(default_factory=list)


def _header(headers: Mapping[str, Any] | None, *names: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower().replace("_", "-") in names:
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str) and value:
                return value
    return None


def _safe_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return dict(headers) if headers else {}
    except Exception:  # a broken mapping must not cost us the quarantine record
        return {}


class CFXCodec:
    """The CFX codec for `pywats_events` transports (`Codec` protocol).

    `topic_parser` extracts (message name, handle) from a topic or routing key; the default understands SDK
    routing keys and topics ending in a CFX message name; pass your own for site-specific MQTT layouts
    (see `regex_topic_parser`). `default_message_name` names bare bodies arriving with no other clue.
    """

    def __init__(
        self,
        *,
        limits: DecodeLimits | None = None,
        topic_parser: TopicParser | None = None,
        default_message_name: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.limits = limits or DecodeLimits()
        self.topic_parser: TopicParser = topic_parser or message_name_from_topic
        self.default_message_name = default_message_name
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    # ------------------------------------------------------------------ Codec protocol

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        """Events for every decodable envelope, a `QuarantineRecord` for every part that is not.
        Never raises."""
        try:
            messages, quarantined = self._decode(body, headers, topic, None, False, typed=True)
            if len(messages) == 1:
                return DecodeResult(events=messages[0].events, quarantined=quarantined)
            return DecodeResult(events=[e for m in messages for e in m.events], quarantined=quarantined)
        except BaseException as exc:  # the contract: nothing escapes into the consumer loop
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            return DecodeResult(
                quarantined=[self._record(body, f"internal decoder error: {exc!r}", headers, topic)]
            )

    # ------------------------------------------------------------------ richer API

    def decode_messages(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        topic: str | None = None,
        *,
        message_name: str | None = None,
    ) -> tuple[list[DecodedMessage], list[QuarantineRecord]]:
        """Envelopes with their events, plus quarantine records. `message_name` names a bare body."""
        return self._decode(body, headers, topic, message_name, True)

    def _decode(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None,
        topic: str | None,
        message_name: str | None,
        canonical_envelopes: bool,
        *,
        typed: bool = False,
    ) -> tuple[list[DecodedMessage], list[QuarantineRecord]]:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            return [], [self._record(b"", f"body is {type(body).__name__}, not bytes", headers, topic)]
        body = bytes(body)
        try:
            text, _notes = unwrap(body, headers, self.limits)
        except WireError as exc:
            return [], [self._record(body, str(exc), headers, topic)]
        if not text.strip():
            return [], [self._record(body, "empty message body", headers, topic)]
        topic_name, topic_handle = self._topic_hints(topic)
        handle_hint = _header(headers, "cfx-handle") or topic_handle
        if typed:
            events = self._decode_typed(text, topic, handle_hint)
            if events:
                return [DecodedMessage(_TYPED, events)], []
        try:
            doc = _json.parse(text)
        except UnicodeDecodeError as exc:
            return [], [
                self._record(
                    body, f"body is not UTF-8 text: {exc.reason} at byte {exc.start}", headers, topic
                )
            ]
        except json.JSONDecodeError as exc:
            return [], [
                self._record(
                    body,
                    f"invalid JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}",
                    headers,
                    topic,
                )
            ]
        except (ValueError, RecursionError) as exc:
            return [], [self._record(body, f"invalid JSON: {exc}", headers, topic)]

        received = self._clock()

        messages: list[DecodedMessage] = []
        quarantined: list[QuarantineRecord] = []
        if isinstance(doc, list):
            if not doc:
                return [], [
                    self._record(body, "empty JSON array (a batch without envelopes)", headers, topic)
                ]
            if len(doc) > self.limits.max_batch:
                reason = f"batch of {len(doc)} envelopes exceeds the limit of {self.limits.max_batch}"
                return [], [self._record(body, reason, headers, topic)]
            items = doc
            single = False
        else:
            items = [doc]
            single = True
        for index, item in enumerate(items):
            raw_item = body if single else None
            try:
                env = self._envelope(item, index, text, single, message_name, headers, topic_name)
                events = map_envelope(env, topic=topic, source_hint=handle_hint, received=received)
            except CFXDecodeError as exc:
                quarantined.append(
                    self._record(
                        self._item_bytes(item, raw_item), self._where(exc, index, single), headers, topic
                    )
                )
                continue
            except MappingError as exc:
                quarantined.append(
                    self._record(
                        self._item_bytes(item, raw_item), self._where(exc, index, single), headers, topic
                    )
                )
                continue
            if not events:  # e.g. a UnitsTested whose TestedUnits is empty or null: never a silent drop
                reason = f"{env.message_name}: nothing to deliver (the MessageBody names no unit)"
                quarantined.append(
                    self._record(
                        self._item_bytes(item, raw_item),
                        self._where(CFXDecodeError(reason), index, single),
                        headers,
                        topic,
                    )
                )
                continue
            if canonical_envelopes:
                self._canonicalize(env)
            messages.append(DecodedMessage(env, events))
        return messages, quarantined

    def decode_strict(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        topic: str | None = None,
        *,
        message_name: str | None = None,
    ) -> list[DecodedMessage]:
        """Like `decode_messages` but raises `CFXDecodeError` if any part had to be quarantined."""
        messages, quarantined = self.decode_messages(body, headers, topic, message_name=message_name)
        if quarantined:
            raise CFXDecodeError("; ".join(q.reason for q in quarantined))
        return messages

    # ------------------------------------------------------------------ internals

    def _topic_hints(self, topic: str | None) -> tuple[str | None, str | None]:
        if not topic:
            return None, None
        try:
            return self.topic_parser(topic)
        except Exception:  # a faulty custom parser degrades to "no topic hint"
            return None, None

    @staticmethod
    def _decode_typed(text: bytes, topic: str | None, handle_hint: str | None) -> list[Event] | None:
        """The typed path's events, or None when the lenient path must decide (any refusal, any failure)."""
        try:
            return decode_typed(text, topic=topic, source_hint=handle_hint)
        except Exception:  # the lenient path reads it or quarantines it with the reason
            return None

    def _envelope(
        self,
        item: Any,
        index: int,
        text: bytes,
        single: bool,
        message_name: str | None,
        headers: Mapping[str, Any] | None,
        topic_name: str | None,
    ) -> CFXEnvelope:
        if not isinstance(item, dict):
            raise CFXDecodeError(
                f"expected a JSON object (envelope or MessageBody), got {type(item).__name__}"
            )
        item = _json.canonical(item)
        is_envelope = "MessageBody" in item or "MessageName" in item
        if is_envelope:
            body = item.get("MessageBody")
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise CFXDecodeError(f"MessageBody must be an object, got {type(body).__name__}")
            body = _json.canonical(body)
            name = self._envelope_name(item.get("MessageName"), body.get("$type"))
            ts_raw = item.get("TimeStamp")
            uid = parse_str(item.get("UniqueID"))
            env = CFXEnvelope(
                message_name=name,
                body=body,
                version=parse_str(item.get("Version")),
                timestamp=parse_datetime(ts_raw),
                timestamp_assumed_utc=is_naive_datetime(ts_raw),
                unique_id=uid,
                source=parse_str(item.get("Source")),
                target=parse_str(item.get("Target")),
                request_id=parse_str(item.get("RequestID")),
                extra={k: v for k, v in item.items() if k not in _ENVELOPE_KEYS and k != "MessageBody"},
            )
        else:
            name = self._bare_name(item, message_name, headers, topic_name)
            env = CFXEnvelope(message_name=name, body=item, bare=True)
        if not env.unique_id:
            # No UniqueID on the wire: derive one from the content so a redelivery maps to the same ids.
            digest = hashlib.blake2b(text, digest_size=16).hexdigest()
            env.unique_id = str(uuid.uuid5(_ID_NS, f"{digest}/{index}"))
            env.derived_id = True
        return env

    @staticmethod
    def _envelope_name(raw: Any, body_type: Any) -> str:
        """An envelope's own MessageName, or its body's ``$type`` when MessageName is absent or null.

        A MessageName that is there must be a CFX name (a wrong one is not replaced by the ``$type``)."""
        if raw is not None:
            problem = message_name_problem(raw, "MessageName")
            if problem:
                raise CFXDecodeError(problem)
            return str(raw)
        name = type_name(body_type)
        if name is None:
            raise CFXDecodeError(
                "not a CFX message name: missing (envelope without MessageName and without a $type "
                "in its MessageBody)"
            )
        problem = message_name_problem(name, "the MessageBody's $type")
        if problem:
            raise CFXDecodeError(problem)
        return name

    def _bare_name(
        self,
        item: dict[str, Any],
        message_name: str | None,
        headers: Mapping[str, Any] | None,
        topic_name: str | None,
    ) -> str:
        """A bare MessageBody's name from the first clue present; that clue must be a CFX name."""
        candidates = (
            (message_name, "given by the caller"),
            (type_name(item.get("$type")), "the body's $type"),
            (self._name_from_headers(headers), "the cfx-message header"),
            (topic_name, "the topic / routing key"),
            (self.default_message_name, "the codec's default_message_name"),
        )
        for name, origin in candidates:
            if name:
                problem = message_name_problem(name, origin)
                if problem:
                    raise CFXDecodeError(problem)
                return name
        raise CFXDecodeError(
            "not a CFX message name: missing (bare MessageBody without a message name: no $type, no "
            "cfx-message header, no CFX name in the topic, none given by the caller)"
        )

    @staticmethod
    def _canonicalize(env: CFXEnvelope) -> None:
        try:
            env.body = _json.canonicalize_tree(env.body)
            if env.extra:  # its keys are the envelope's own (clash losers kept as sent)
                env.extra = {k: _json.canonicalize_tree(v) for k, v in env.extra.items()}
        except RecursionError:  # nested deeper than Python recurses: keep the spelling as sent
            pass

    @staticmethod
    def _name_from_headers(headers: Mapping[str, Any] | None) -> str | None:
        name = _header(headers, "cfx-message")
        if name:
            return name
        kind = _header(headers, "type", "message-type")
        if kind and kind.startswith("CFX."):
            return kind
        return None

    @staticmethod
    def _item_bytes(item: Any, raw: bytes | None) -> bytes:
        if raw is not None:
            return raw
        try:
            return json.dumps(_json.canonicalize_tree(item), ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            return repr(item).encode("utf-8", "replace")

    @staticmethod
    def _where(exc: Exception, index: int, single: bool) -> str:
        return str(exc) if single else f"batch item {index}: {exc}"

    @staticmethod
    def _record(
        raw: bytes, reason: str, headers: Mapping[str, Any] | None, topic: str | None
    ) -> QuarantineRecord:
        return QuarantineRecord(
            raw=raw,
            reason=reason,
            headers=_safe_headers(headers),
            source=_header(headers, "cfx-handle"),
            topic=topic,
        )


def regex_topic_parser(pattern: str | re.Pattern[str]) -> TopicParser:
    """A `TopicParser` from a regex with named groups ``name`` and optionally ``handle``,
    e.g. ``r"^plant/(?P<handle>[^/]+)/(?P<name>[^/]+)$"`` for MQTT layouts."""
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern

    def parse(topic: str) -> tuple[str | None, str | None]:
        m = rx.search(topic)
        if m is None:
            return None, None
        groups = m.groupdict()
        return groups.get("name") or None, groups.get("handle") or None

    return parse
