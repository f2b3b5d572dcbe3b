"""Instrumentation of the listener: counting what the codec lets in, before the bus sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._codec import Codec, DecodeResult
from ..metrics import MetricsObserver
from ..transports import QuarantineRecord

__all__ = ["MeteredCodec"]


class MeteredCodec:
    """Counts inbound messages around any codec (received / decoded); never raises."""

    def __init__(self, inner: Codec, metrics: MetricsObserver) -> None:
        self.inner = inner
        self.metrics = metrics

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        self.metrics.message_received()
        try:
            result = self.inner.decode(body, headers, topic)
        except Exception as exc:
            return DecodeResult(
                [], [QuarantineRecord(body, f"codec raised {exc!r}", dict(headers or {}), None, topic)]
            )
        if result.events:
            self.metrics.message_decoded()
        return result
