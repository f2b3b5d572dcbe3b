"""pywats-events plugin `fpy_watch`: first-pass yield per station and process, watched over a sliding window.

Only a unit's first test at a station and process counts. When the yield of the last `window` first tests
drops below `threshold` (with at least `min_units` of them), the watch publishes an ``fpy.low`` event on the
bus and writes a message to the station's asset log in WATS, once; it re-arms when the yield recovers.

What it shows beyond the CSV sample: options validated by a model, state that survives a restart (SQLite
in the data directory), an event published on the bus, and writing to WATS through the WATS sink of the
run (`handlers.plugin.wats_sink`), so the message goes through the outbox and rate limit like the WATS
handlers' own requests; the bus retries and defers it while WATS is down and the circuit breaker is open.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from handlers.plugin import wats_sink
from handlers.wats.request_builders import add_asset_message
from pywats_events import AsyncEventBus, BaseHandler, Event, EventMetadata, EventType
from pywats_events.payloads import TestResultEvent
from pywats_events.plugins import PluginContext
from pywats_events.policies import CircuitBreaker, ErrorPolicy

from .state import FpyState

__all__ = ["FPY_LOW", "FpyWatchHandler", "FpyWatchOptions", "create_handlers"]

log = logging.getLogger("pywats_fpy_watch")

#: the event type the watch publishes; subscribe to it to act on a yield drop
FPY_LOW = "fpy.low"


class FpyWatchOptions(BaseModel):
    """``[handlers.fpy_watch]``; a bad or unknown option stops the start-up naming it."""

    model_config = ConfigDict(extra="forbid")

    #: alarm when the first-pass yield of the window is below this fraction
    threshold: float = Field(0.9, gt=0, le=1)
    #: how many of the latest first tests per station and process make the window
    window: int = Field(50, ge=1)
    #: no alarm before the window holds this many units
    min_units: int = Field(10, ge=1)
    #: station (event source) → WATS asset id the log message goes to; a station not listed gets no message
    asset_ids: dict[str, str] = Field(default_factory=dict)
    #: the WATS user the message is logged as
    user: str | None = None
    #: the state file; default ``fpy_watch.db`` in the listener's data directory
    state_file: Path | None = None


class FpyWatchHandler(BaseHandler):
    """Async, in an ordering group of its own: a WATS outage defers the watch, never the WATS handlers."""

    event_types = [EventType.TEST_RESULT]
    ordering_group = "fpy_watch"

    def __init__(self, options: FpyWatchOptions, state: FpyState, sink: Any) -> None:
        self.options = options
        self.state = state
        self.sink = sink
        self.bus: AsyncEventBus | None = None
        # after 5 outage failures in a row, hold the watch's WATS writes for 30 s (one trial then)
        self.error_policy = ErrorPolicy(circuit_breaker=CircuitBreaker(5, reset_timeout=30.0))
        self._lock = asyncio.Lock()
        self._telling = asyncio.Lock()

    @property
    def name(self) -> str:
        return "fpy_watch"

    def breaker_key(self, event: Event) -> str:
        return "wats"

    async def handle(self, event: Event) -> None:
        result = TestResultEvent.model_validate(event.payload)
        station = result.station or event.source or "?"
        process = result.method or result.kind
        passed = str(getattr(result.result, "value", result.result)).lower() == "passed"
        async with self._lock:  # one window update and alarm decision at a time
            if self.state.record(station, process, result.unit_serial, passed):
                fpy, units = self.state.window_yield(station, process)
                alarm = self.state.alarm(station, process)
                low = units >= self.options.min_units and fpy < self.options.threshold
                if low and alarm is None:
                    self.state.raise_alarm(station, process, fpy, units)
                elif not low and alarm == "sent":
                    self.state.clear_alarm(station, process)
            pending = self.state.pending(station, process)
        if pending is None:
            return
        # units are handled concurrently: the units after the one that raised the alarm see it pending too,
        # so one tells it at a time and the others find it sent (a failed attempt leaves it pending: the
        # retry, or the next unit, tells it again)
        async with self._telling:
            pending = self.state.pending(station, process)
            if pending is not None:
                await self._tell(event, station, process, *pending)
                self.state.mark_sent(station, process)

    async def _tell(self, cause: Event, station: str, process: str, fpy: float, units: int) -> None:
        text = (
            f"FPY {fpy:.0%} at {station} / {process} over the last {units} units "
            f"(threshold {self.options.threshold:.0%})"
        )
        asset_id = self.options.asset_ids.get(station)
        if asset_id:
            await self.sink.send(add_asset_message(asset_id, text, self.options.user))
        else:
            log.warning("%s (no asset id for station %r: nothing written to WATS)", text, station)
        if self.bus is not None:
            payload = {
                "station": station,
                "process": process,
                "fpy": fpy,
                "units": units,
                "threshold": self.options.threshold,
            }
            meta = EventMetadata(source=station, causation_id=cause.id, ordering_key=f"{station}/{process}")
            await self.bus.publish(Event(event_type=FPY_LOW, payload=payload, metadata=meta))

    def on_stop(self) -> None:
        self.state.close()


def create_handlers(ctx: PluginContext) -> list[BaseHandler]:
    """Entry point: the watch of ``[handlers.fpy_watch]``, writing to WATS through the run's WATS sink."""
    options = ctx.parse_options(FpyWatchOptions)
    if options.min_units > options.window:
        from pywats_events import ConfigurationError

        raise ConfigurationError("handlers.fpy_watch.min_units", "must not exceed window")
    path = options.state_file or ctx.settings.listener.data_dir / "fpy_watch.db"
    watch = FpyWatchHandler(options, FpyState(path, options.window), wats_sink(ctx))

    def keep(bus: AsyncEventBus) -> None:
        watch.bus = bus

    ctx.on_bus.append(keep)
    return [watch]


create_handlers.event_types = FpyWatchHandler.event_types  # type: ignore[attr-defined]
create_handlers.options_model = FpyWatchOptions  # type: ignore[attr-defined]
