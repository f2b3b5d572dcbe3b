"""Typed pydantic models of CFX messages (field names as in the standard, keys case-insensitive).

The ingest hot path does not build these (see `pywats_cfx.mapping`); they are for code that wants typed
access to a message, for the explorer and for producing CFX. `parse_message(name, body)` picks the model
by message name and falls back to `GenericCFXMessage` for everything else.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializeAsAny

from ..received import CFXEnvelope
from . import messages as _messages
from ._base import CFXDateTime, CFXModel, Str
from .messages import *  # noqa: F403 - re-export the messages
from .messages import CFXMessage, GenericCFXMessage
from .messages import __all__ as _messages_all
from .structures import *  # noqa: F403 - re-export the structures
from .structures import __all__ as _structures_all

#: every message with a dedicated model, by its full CFX name
MESSAGE_MODELS: dict[str, type[CFXMessage]] = {
    cls.MESSAGE_NAME: cls for cls in (getattr(_messages, name) for name in _messages_all) if cls.MESSAGE_NAME
}
_BY_LOWER = {k.lower(): v for k, v in MESSAGE_MODELS.items()}


class Envelope(CFXModel):
    """A full CFX envelope with its body parsed into the message's model."""

    MessageName: str
    Version: Str = None
    TimeStamp: CFXDateTime = None
    UniqueID: Str = None
    Source: Str = None
    Target: Str = None
    RequestID: Str = None
    MessageBody: SerializeAsAny[CFXMessage] = Field(default_factory=GenericCFXMessage)


def model_for(message_name: str) -> type[CFXMessage]:
    """The model class for a message name (case-insensitive), `GenericCFXMessage` when none."""
    return _BY_LOWER.get(message_name.lower(), GenericCFXMessage)


def parse_message(message_name: str, body: dict[str, Any]) -> CFXMessage:
    """The message body as its model. Raises pydantic.ValidationError only for structural garbage."""
    return model_for(message_name).model_validate(body)


def parse_envelope(envelope: CFXEnvelope | dict[str, Any]) -> Envelope:
    """A decoded `CFXEnvelope` (from the codec) or a raw envelope dict, as a typed `Envelope`."""
    if isinstance(envelope, CFXEnvelope):
        return Envelope(
            MessageName=envelope.message_name,
            Version=envelope.version,
            TimeStamp=envelope.timestamp,
            UniqueID=envelope.unique_id,
            Source=envelope.source,
            Target=envelope.target,
            RequestID=envelope.request_id,
            MessageBody=parse_message(envelope.message_name, envelope.body),
        )
    name = str(envelope.get("MessageName") or "")
    body = envelope.get("MessageBody") or {}
    data = {**envelope, "MessageBody": parse_message(name, body if isinstance(body, dict) else {})}
    return Envelope.model_validate(data)


__all__ = [
    "MESSAGE_MODELS",
    "Envelope",
    "model_for",
    "parse_envelope",
    "parse_message",
    *_messages_all,
    *_structures_all,
]
