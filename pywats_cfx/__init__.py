"""IPC-CFX adapter for pywats-events: decode CFX traffic into domain events.

`CFXCodec` turns broker bytes into `Event`s (or quarantine records); `pywats_cfx.models` has typed
pydantic models of the CFX messages; `pywats_cfx.samples` bundles realistic example messages; the explorer
(``python -m pywats_cfx.explorer``) shows what a message becomes. The AMQP transport lives in
`pywats_cfx.transport` and is imported lazily, so decoding does not pull in aio-pika.
"""

from __future__ import annotations

from typing import Any

from ._envelope import CFXEnvelope
from ._wire import DecodeLimits
from .codec import CFXCodec, CFXDecodeError, DecodedMessage, message_name_from_topic, regex_topic_parser
from .mapping import MAPPED_MESSAGES, MappingError, event_type_for, map_envelope

__all__ = [
    "MAPPED_MESSAGES",
    "CFXCodec",
    "CFXDecodeError",
    "CFXEnvelope",
    "DecodeLimits",
    "DecodedMessage",
    "MappingError",
    "event_type_for",
    "map_envelope",
    "message_name_from_topic",
    "regex_topic_parser",
]

_TRANSPORT_NAMES = ("CFXTransport", "CFXConfig", "AMQPConfig", "EndpointConfig")


def __getattr__(name: str) -> Any:
    # The transport (aio-pika) is optional at import time: resolve its names only when asked for.
    if name in _TRANSPORT_NAMES:
        from . import transport

        return getattr(transport, name)
    raise AttributeError(f"module 'pywats_cfx' has no attribute {name!r}")
