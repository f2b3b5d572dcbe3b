"""Transports: where events come from."""

from ._base import BaseTransport, ConnectionState, QuarantineRecord, TransportContext
from ._mock import MockTransport

__all__ = ["BaseTransport", "ConnectionState", "MockTransport", "QuarantineRecord", "TransportContext"]
