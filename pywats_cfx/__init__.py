"""IPC-CFX adapter for pywats-events: decode CFX traffic into domain events.

`CFXCodec` turns broker bytes into `Event`s (or quarantine records); `pywats_cfx.schema` is the one typed
description of the CFX messages (msgspec structs), which `pywats_cfx.models` reads from dicts of any shape;
`pywats_cfx.samples` bundles realistic example messages; the explorer (``python -m pywats_cfx.explorer``)
shows what a message becomes. `CFXTransport` consumes CFX traffic from RabbitMQ; `pywats_cfx.amqp` also
holds its statistics and the envelope builders for publishing.
"""

from __future__ import annotations

from ._wire import DecodeLimits
from .amqp import AMQPConfig, CFXConfig, CFXTransport, EndpointConfig
from .codec import CFXCodec, CFXDecodeError, DecodedMessage, message_name_from_topic, regex_topic_parser
from .mapping import MAPPED_MESSAGES, MappingError, event_type_for, map_envelope
from .received import CFXEnvelope

__all__ = [
    "MAPPED_MESSAGES",
    "AMQPConfig",
    "CFXCodec",
    "CFXConfig",
    "CFXDecodeError",
    "CFXEnvelope",
    "CFXTransport",
    "DecodeLimits",
    "DecodedMessage",
    "EndpointConfig",
    "MappingError",
    "event_type_for",
    "map_envelope",
    "message_name_from_topic",
    "regex_topic_parser",
]
