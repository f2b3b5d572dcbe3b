"""Transports: where events come from."""

from ._base import BaseTransport, ConnectionState, QuarantineRecord, TransportContext

__all__ = ["BaseTransport", "ConnectionState", "QuarantineRecord", "TransportContext"]
