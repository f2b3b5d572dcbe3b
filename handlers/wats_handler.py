"""What every WATS handler shares: a sink, the configuration, a resolver, and event helpers."""

from __future__ import annotations

import logging
from typing import Any

from pywats_events import BaseHandler, Event
from pywats_events.policies import CircuitBreaker, ErrorPolicy

from .config import WatsHandlersConfig
from .resolution import Resolver
from .wats.sink import RequestSink, WatsRequest, WatsResponse

__all__ = ["BREAKER_KEY", "WatsHandler", "message_id_of", "station_of", "wats_error_policy"]

log = logging.getLogger("handlers")

#: the circuit-breaker key of every WATS handler: one server, one circuit
BREAKER_KEY = "wats"


def wats_error_policy(config: WatsHandlersConfig) -> ErrorPolicy:
    """A circuit breaker from `config.breaker`; no dead-letter queue of its own, so give-ups go to the
    bus's queue. Give the same policy to all handlers of one server so they share the circuit."""
    settings = config.breaker
    breaker = CircuitBreaker(
        failure_threshold=settings.failure_threshold, reset_timeout=settings.reset_timeout
    )
    return ErrorPolicy(circuit_breaker=breaker)


def station_of(event: Event, payload: Any) -> str | None:
    """The sender's handle: the payload's `station`, else the event source."""
    return getattr(payload, "station", None) or event.metadata.source


def message_id_of(event: Event, payload: Any) -> str:
    """The source message id (CFX UniqueID); stable across redeliveries of the same message."""
    return str(getattr(payload, "message_id", None) or event.metadata.causation_id or event.metadata.event_id)


class WatsHandler(BaseHandler):
    """Base of the WATS handlers. Sink errors (`WatsTransientError` / `WatsPermanentError`) and
    `ResolutionError` propagate on purpose: the bus retries or defers transient ones and dead-letters
    permanent ones with the message.

    All WATS handlers share the ordering group ``"wats"``: they talk to the same server, so per unit the
    production handler must have created the unit (WorkStarted) before the report handler posts its report,
    before WorkCompleted. Within the group an event's handlers run in subscription order and a WATS outage
    holds up only the WATS handlers, never handlers of other groups (plugins).

    They also share one circuit breaker (key ``"wats"``, `error_policy`): after
    `config.breaker.failure_threshold` outage failures in a row events are deferred for
    `config.breaker.reset_timeout` seconds, then one trial request decides. `create_handlers` hands all
    handlers the same policy; a handler built alone gets its own."""

    ordering_group = "wats"

    def __init__(
        self,
        sink: RequestSink,
        config: WatsHandlersConfig | None = None,
        resolver: Resolver | None = None,
        *,
        owns_sink: bool = False,
        error_policy: ErrorPolicy | None = None,
    ) -> None:
        self.sink = sink
        #: close the sink in `on_stop` (the factory hands out a shared, reference-counted sink)
        self.owns_sink = owns_sink
        self.config = config or WatsHandlersConfig()
        self.resolver = resolver or Resolver(self.config, sink)
        self.error_policy = error_policy or wats_error_policy(self.config)

    def breaker_key(self, event: Event) -> str:
        return BREAKER_KEY

    async def send(self, request: WatsRequest) -> WatsResponse:
        log.debug("%s %s %s %s", self.name, request.method, request.path, request.params)
        return await self.sink.send(request)

    async def on_start(self) -> None:
        await self.resolver.load_processes()

    async def on_stop(self) -> None:
        if self.owns_sink:
            await self.sink.aclose()
