"""Instrumentation of the listener: counting what the codec lets in, before the bus sees it, and the
series read from the listener's parts when /metrics is scraped (`ListenerCollector`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .._codec import Codec, DecodeResult
from ..metrics import MetricsObserver
from ..transports import ConnectionState, QuarantineRecord
from .status import oldest_unfinished_created

if TYPE_CHECKING:
    from .runner import Listener

__all__ = ["ListenerCollector", "MeteredCodec"]


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


class ListenerCollector:
    """Series computed at scrape time from the listener's transports and stores."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def collect(self) -> Iterable[Metric]:
        listener = self.listener
        connected = GaugeMetricFamily(
            "pywats_transport_connected",
            "1 while the transport is connected to its broker",
            labels=["transport"],
        )
        states = listener.context.states if listener.context is not None else {}
        for transport in listener.transports:
            state = states.get(transport.name, transport.state)
            connected.add_metric([transport.name], 1.0 if state is ConnectionState.CONNECTED else 0.0)
        yield connected
        dropped = CounterMetricFamily(
            "pywats_transport_qos0_dropped",
            "QoS 0 messages dropped because the transport's backlog was full (QoS 0 has no flow control)",
            labels=["transport"],
        )
        for transport in listener.transports:
            count = getattr(getattr(transport, "stats", None), "dropped_qos0", None)
            if isinstance(count, int):
                dropped.add_metric([transport.name], float(count))
        yield dropped
        parts = listener.parts
        evicted = getattr(parts.dlq, "evicted", 0) if parts is not None else 0
        yield CounterMetricFamily(
            "pywats_dlq_evicted",
            "Dead letters dropped (oldest first) because the dead-letter queue was full",
            value=float(evicted),
        )
        age = 0.0
        if parts is not None and parts.journal is not None:
            created = oldest_unfinished_created(listener.settings.journal_path)
            age = max(0.0, time.time() - created) if created is not None else 0.0
        yield GaugeMetricFamily(
            "pywats_journal_oldest_unfinished_age_seconds",
            "Age of the oldest journal entry not yet finished by every handler (0 when none)",
            value=age,
        )
