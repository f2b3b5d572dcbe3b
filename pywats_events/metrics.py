"""Prometheus metrics and run statistics, fed by a `BusObserver` and by the listener's own hooks.

`ListenerStats` keeps plain counters for the summary table and the status snapshot; `MetricsObserver`
updates both those and a private Prometheus registry (so several listeners in one test process don't clash).
Plugins register their own metrics in the listener's registry (``PluginContext.registry``), or, when
they are built without a listener, in `PLUGIN_METRICS`, which every listener's registry serves too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Enum, Gauge, Histogram, Info
from prometheus_client import Counter as PromCounter
from prometheus_client.metrics_core import Metric

from ._observer import BusObserver

if TYPE_CHECKING:
    from ._event import Event
    from .transports import QuarantineRecord

__all__ = [
    "BREAKER_STATES",
    "PLUGIN_METRICS",
    "ListenerStats",
    "MetricsObserver",
    "breaker_state_name",
]

#: process-wide registry for plugins' own metrics (e.g. the WATS handlers' measurement checks): plugins are
#: built without access to the listener, so they register here and every `MetricsObserver` serves it
PLUGIN_METRICS = CollectorRegistry()


class _Forward:
    """A collector serving another registry's metrics (the plugins') from a listener's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


@dataclass
class ListenerStats:
    started: float = field(default_factory=time.time)
    received: int = 0
    decoded: int = 0
    quarantined: int = 0
    accepted: int = 0
    handled: int = 0
    retries: int = 0
    deferred: int = 0
    dead_letters: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    breakers: dict[str, str] = field(default_factory=dict)
    last_input: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "received": self.received,
            "decoded": self.decoded,
            "quarantined": self.quarantined,
            "accepted": self.accepted,
            "handled": self.handled,
            "retries": self.retries,
            "deferred": self.deferred,
            "dead_letters": self.dead_letters,
            "events_by_type": dict(self.events_by_type),
            "breakers": dict(self.breakers),
        }


#: breaker states as `pywats_breaker_state` lists them (an enum: exactly one is 1 per breaker)
BREAKER_STATES = ("closed", "half_open", "open")


def breaker_state_name(state: Any) -> str:
    name = str(getattr(state, "value", state)).lower().replace("-", "_")
    return name if name in BREAKER_STATES else "closed"


class MetricsObserver(BusObserver):
    """Counts what flows through the bus; `registry` is served on /metrics.

    Names follow the Prometheus conventions: counters end in ``_total``, durations are ``_seconds``
    histograms, sizes say their unit (``_entries``, ``_bytes``), labels have bounded values."""

    def __init__(self, stats: ListenerStats | None = None, registry: CollectorRegistry | None = None) -> None:
        self.stats = stats or ListenerStats()
        self.registry = registry or CollectorRegistry()
        r = self.registry
        from . import __version__

        Info("pywats_build", "Version of the running pywats-events", registry=r).info(
            {"version": __version__}
        )
        self.received = PromCounter(
            "pywats_messages_received", "Inbound messages from transports", registry=r
        )
        self.decoded = PromCounter(
            "pywats_messages_decoded", "Inbound messages decoded into events", registry=r
        )
        self.quarantined = PromCounter("pywats_messages_quarantined", "Inbound input quarantined", registry=r)
        self.events = PromCounter(
            "pywats_events_accepted", "Events accepted by the bus", ["event_type"], registry=r
        )
        self.latency = Histogram(
            "pywats_handler_duration_seconds",
            "Duration of a handler's successful attempt",
            ["handler"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.retries = PromCounter("pywats_handler_retries", "Handler retries", ["handler"], registry=r)
        self.deferrals = PromCounter(
            "pywats_handler_deferrals",
            "Events deferred by an outage or an open breaker",
            ["handler"],
            registry=r,
        )
        self.dead = PromCounter("pywats_dead_letters", "Events dead-lettered", ["handler"], registry=r)
        self.breaker = Enum(
            "pywats_breaker_state", "Circuit breaker state", ["key"], states=list(BREAKER_STATES), registry=r
        )
        self.dlq_size = Gauge("pywats_dlq_entries", "Entries in the dead-letter queue", registry=r)
        self.journal_depth = Gauge(
            "pywats_journal_unfinished_entries",
            "Journal entries not yet finished by every handler",
            registry=r,
        )
        self.quarantine_entries = Gauge(
            "pywats_quarantine_entries", "Entries in the quarantine store", registry=r
        )
        self.quarantine_bytes = Gauge(
            "pywats_quarantine_bytes", "Raw bytes held in the quarantine store", registry=r
        )
        self.quarantine_evictions = PromCounter(
            "pywats_quarantine_evicted",
            "Quarantined entries dropped because the store reached quarantine.max_entries or max_bytes",
            registry=r,
        )
        r.register(_Forward(PLUGIN_METRICS))

    def quarantine_evicted(self, n: int) -> None:
        """Called from the quarantine store's writer thread (prometheus_client counters are thread-safe)."""
        self.quarantine_evictions.inc(n)

    # --- transport side (called by the listener's codec pipeline)
    def message_received(self) -> None:
        self.stats.received += 1
        self.stats.last_input = time.monotonic()
        self.received.inc()

    def message_decoded(self) -> None:
        self.stats.decoded += 1
        self.decoded.inc()

    # --- bus hooks
    def on_accepted(self, event: Event) -> None:
        self.stats.accepted += 1
        self.stats.events_by_type[event.type_name] += 1
        self.events.labels(event_type=event.type_name).inc()

    def on_handled(self, event: Event, handler_name: str, seconds: float) -> None:
        self.stats.handled += 1
        self.latency.labels(handler=handler_name).observe(seconds)

    def on_retry(
        self, event: Event, handler_name: str, attempt: int, delay: float, error: BaseException
    ) -> None:
        self.stats.retries += 1
        self.retries.labels(handler=handler_name).inc()

    def on_deferred(self, event: Event, handler_name: str, delay: float, reason: str) -> None:
        self.stats.deferred += 1
        self.deferrals.labels(handler=handler_name).inc()

    def on_dead_letter(self, event: Event, handler_name: str, error: BaseException) -> None:
        self.stats.dead_letters += 1
        self.dead.labels(handler=handler_name).inc()

    def on_breaker_change(self, key: str, state: Any) -> None:
        self.stats.breakers[key] = str(getattr(state, "value", state))
        self.breaker.labels(key=key).state(breaker_state_name(state))

    def on_quarantine(self, record: QuarantineRecord) -> None:
        self.stats.quarantined += 1
        self.stats.quarantine_reasons[record.reason.split(":")[0][:60]] += 1
        self.quarantined.inc()
