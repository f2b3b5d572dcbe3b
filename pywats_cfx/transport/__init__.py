"""CFX over AMQP: `CFXTransport` and its configuration."""

from .amqp import CFXTransport, TransportStats
from .config import AMQPConfig, AmqpSettings, CFXConfig, EndpointConfig
from .envelope import build_envelope, encode_envelope, routing_key_for

__all__ = [
    "AMQPConfig",
    "AmqpSettings",
    "CFXConfig",
    "CFXTransport",
    "EndpointConfig",
    "TransportStats",
    "build_envelope",
    "encode_envelope",
    "routing_key_for",
]
