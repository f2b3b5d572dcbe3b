"""The codec interface: bytes from a transport → domain events (or a quarantine record)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._event import Event
from .transports._base import QuarantineRecord

__all__ = ["Codec", "DecodeResult"]


@dataclass
class DecodeResult:
    """Zero or more events, and for whatever part could not be decoded, quarantine records.
    A message may yield both (a batch with one broken envelope)."""

    events: list[Event] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


@runtime_checkable
class Codec(Protocol):
    """Never raises: every failure becomes a `QuarantineRecord` carrying the raw bytes and the reason."""

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult: ...
