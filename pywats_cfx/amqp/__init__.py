"""CFX over AMQP: `CFXTransport` and its configuration."""

from .config import AMQPConfig, AmqpSettings, CFXConfig, EndpointConfig
from .outbound import build_envelope, encode_envelope, routing_key_for
from .transport import CFXTransport, TransportStats

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
