"""Building and encoding outgoing CFX envelopes the way the SDK puts them on the wire.

Used by `CFXTransport` for EndpointConnected / Heartbeat, and by the line simulator and the benchmark,
so that what we publish is exactly what a real SDK endpoint would: routing key `<handle>.<MessageName>`,
gzip with `content-encoding: gzip`, `message-id` = UniqueID and the `cfx-*` application properties.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = ["CFX_VERSION", "OutgoingMessage", "build_envelope", "encode_envelope", "routing_key_for"]

#: the CFX version we claim in envelopes we build
CFX_VERSION = "2.1"
_CONTENT_TYPE = 'application/json; charset="utf-8"'


def routing_key_for(handle: str, message_name: str) -> str:
    """The SDK's default subject: `<Source handle>.<MessageName>`."""
    return f"{handle}.{message_name}"


def build_envelope(
    message_name: str,
    body: Mapping[str, Any],
    source: str,
    *,
    timestamp: datetime | None = None,
    unique_id: str | None = None,
    target: str | None = None,
    version: str = CFX_VERSION,
) -> dict[str, Any]:
    """A standard envelope; the body gets the `$type` CFX 1.2+ senders put first."""
    stamp = (timestamp or datetime.now(timezone.utc)).isoformat(timespec="microseconds")
    typed_body: dict[str, Any] = {"$type": f"{message_name}, CFX"}
    typed_body.update(body)
    return {
        "MessageName": message_name,
        "Version": version,
        "TimeStamp": stamp,
        "UniqueID": unique_id or str(uuid.uuid4()),
        "Source": source,
        "Target": target,
        "RequestID": None,
        "MessageBody": typed_body,
    }


@dataclass(frozen=True)
class OutgoingMessage:
    """Bytes plus the AMQP properties an SDK endpoint sets (aio-pika `Message(**as_kwargs())`)."""

    body: bytes
    routing_key: str
    message_id: str
    content_encoding: str | None
    headers: dict[str, str] = field(default_factory=dict)
    reply_to: str | None = None
    content_type: str = _CONTENT_TYPE

    def message_kwargs(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "message_id": self.message_id,
            "content_type": self.content_type,
            "content_encoding": self.content_encoding,
            "headers": dict(self.headers),
            "reply_to": self.reply_to,
        }


def encode_envelope(envelope: Mapping[str, Any], *, compress: bool = True, level: int = 6) -> OutgoingMessage:
    """Serialize (compact JSON, UTF-8) and optionally gzip one envelope."""
    raw = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = gzip.compress(raw, compresslevel=level, mtime=0) if compress else raw
    name = str(envelope["MessageName"])
    source = str(envelope.get("Source") or "")
    headers = {"cfx-topic": name.rsplit(".", 1)[0], "cfx-message": name, "cfx-handle": source}
    if envelope.get("Target"):
        headers["cfx-target"] = str(envelope["Target"])
    return OutgoingMessage(
        body=body,
        routing_key=routing_key_for(source, name),
        message_id=str(envelope.get("UniqueID") or uuid.uuid4()),
        content_encoding="gzip" if compress else None,
        headers=headers,
        reply_to=source or None,
    )
