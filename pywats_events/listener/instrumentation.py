"""Instrumentation of the listener: counting what the codec lets in, before the bus sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._codec import Codec, DecodeResult
from ..metrics import MetricsObserver, endpoint_label, status_label
from ..transports import QuarantineRecord

__all__ = ["MeteredCodec", "MeteredSink"]


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


class MeteredSink:
    """Counts WATS requests by endpoint and status around any RequestSink."""

    def __init__(self, inner: Any, metrics: MetricsObserver) -> None:
        self.inner = inner
        self.metrics = metrics

    async def send(self, request: Any) -> Any:
        endpoint = endpoint_label(request.method, request.path)
        try:
            response = await self.inner.send(request)
        except Exception as exc:
            self.metrics.request_sent(endpoint, status_label(exc))
            raise
        self.metrics.request_sent(endpoint, status_label(response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
