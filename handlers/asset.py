"""`AssetHandler`: station faults and states as WATS asset log messages and states, plus usage counts.

Mapping of CFX/SEMI E10 states to WATS asset states (`AssetSettings.state_map`, default
`DEFAULT_ASSET_STATE_MAP`): productive and standby → 1 In Operation, scheduled downtime → 3 In
Maintenance; engineering, unscheduled downtime (machine error), non-scheduled (off) and unknown have no
WATS state (WATS_API.md §3.1) and become log messages instead.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

from pywats_events import Event, EventType
from pywats_events.payloads import (
    AssetFaultClearedEvent,
    AssetFaultEvent,
    AssetState,
    AssetStateChangedEvent,
    TestResultEvent,
)

from ._base import WatsHandler, message_id_of, station_of
from .config import WatsHandlersConfig
from .resolution import Resolver
from .wats import requests
from .wats._request import RequestSink
from .wsjf import report_id

__all__ = ["WATS_ASSET_STATES", "AssetHandler"]

log = logging.getLogger(__name__)

#: WATS asset state ids (WATS_API.md §3.1)
WATS_ASSET_STATES = {
    0: "Unknown",
    1: "In Operation",
    2: "In Transit",
    3: "In Maintenance",
    4: "In Calibration",
    5: "In Storage",
    6: "Scrapped",
}
_IN_MAINTENANCE = 3
_COMMENT_LIMIT = 1000
_SEEN_LIMIT = 50_000


def _fault_text(f: AssetFaultEvent) -> str:
    head = f"Fault {f.fault_code or '(no code)'}"
    if f.severity:
        head += f" [{f.severity}]"
    what = "; ".join(x for x in (f.description, f.cause, f.fault_type) if x)
    where = ", ".join(
        f"{k} {v}"
        for k, v in (("lane", f.lane), ("stage", f.stage), ("occurrence", f.fault_occurrence_id))
        if v is not None and v != ""
    )
    text = f"{head}: {what}" if what else head
    return f"{text} ({where})" if where else text


class AssetHandler(WatsHandler):
    """ASSET_FAULT → log message on the station's asset (optionally state In Maintenance);
    ASSET_FAULT_CLEARED / ACKNOWLEDGED → log message; ASSET_STATE_CHANGED → WATS state or log message;
    with `asset.count_usage`, TEST_RESULT / INSPECTION_RESULT → usage count +1 on the station's asset.

    `PUT /api/Asset/Count` is not idempotent: a unit already counted in this process is not counted
    again when its message is redelivered (in-memory, bounded)."""

    def __init__(
        self,
        sink: RequestSink,
        config: WatsHandlersConfig | None = None,
        resolver: Resolver | None = None,
        *,
        owns_sink: bool = False,
    ) -> None:
        super().__init__(sink, config, resolver, owns_sink=owns_sink)
        self._counted: OrderedDict[str, None] = OrderedDict()

    @property
    def event_types(self) -> Iterable[EventType | str]:
        types: list[EventType | str] = [
            EventType.ASSET_FAULT,
            EventType.ASSET_FAULT_CLEARED,
            EventType.ASSET_FAULT_ACKNOWLEDGED,
            EventType.ASSET_STATE_CHANGED,
        ]
        if self.config.asset.count_usage:
            types += [EventType.TEST_RESULT, EventType.INSPECTION_RESULT]
        return types

    async def handle(self, event: Event) -> None:
        kind = event.event_type
        if kind == EventType.ASSET_FAULT:
            await self._fault(event, AssetFaultEvent.model_validate(event.payload))
        elif kind in (EventType.ASSET_FAULT_CLEARED, EventType.ASSET_FAULT_ACKNOWLEDGED):
            await self._fault_cleared(event, AssetFaultClearedEvent.model_validate(event.payload))
        elif kind == EventType.ASSET_STATE_CHANGED:
            await self._state_changed(event, AssetStateChangedEvent.model_validate(event.payload))
        elif kind in (EventType.TEST_RESULT, EventType.INSPECTION_RESULT):
            await self._count(event, TestResultEvent.model_validate(event.payload))

    async def _message(self, serial: str, comment: str) -> None:
        asset_id = await self.resolver.asset_id(serial)
        user = self.config.asset.user
        await self.send(requests.add_asset_message(asset_id, comment[:_COMMENT_LIMIT], user))

    async def _fault(self, event: Event, f: AssetFaultEvent) -> None:
        serial = self.resolver.asset_serial(station_of(event, f))
        await self._message(serial, _fault_text(f))
        settings = self.config.asset
        severities = {s.lower() for s in settings.maintenance_severities}
        if settings.fault_sets_maintenance and (f.severity or "").lower() in severities:
            await self.send(requests.set_asset_state(serial, _IN_MAINTENANCE))

    async def _fault_cleared(self, event: Event, c: AssetFaultClearedEvent) -> None:
        serial = self.resolver.asset_serial(station_of(event, c))
        acknowledged = c.acknowledged_only or event.event_type == EventType.ASSET_FAULT_ACKNOWLEDGED
        verb = "acknowledged" if acknowledged else "cleared"
        text = f"Fault {c.fault_occurrence_id or ''} {verb}".replace("  ", " ")
        who = c.operator.display_name if c.operator else None
        await self._message(serial, f"{text} by {who}" if who else text)

    async def _state_changed(self, event: Event, s: AssetStateChangedEvent) -> None:
        serial = self.resolver.asset_serial(station_of(event, s))
        mapping = self.config.asset.state_map
        new = mapping.get(s.new_state)
        if new is not None:
            old = mapping.get(s.old_state)
            if (
                self.config.asset.skip_unchanged_state
                and s.old_state is not AssetState.UNKNOWN
                and old == new
            ):
                return
            await self.send(requests.set_asset_state(serial, new))
            return
        code = f" (E10 {s.new_state_code})" if s.new_state_code is not None else ""
        text = f"State {s.old_state.value} -> {s.new_state.value}{code}; WATS has no such asset state"
        if s.related_fault is not None:
            text += f". {_fault_text(s.related_fault)}"
        await self._message(serial, text)

    async def _count(self, event: Event, r: TestResultEvent) -> None:
        station = station_of(event, r)
        if not self.resolver.has_asset(station):
            log.debug("no WATS asset for %s; usage not counted", station)
            return
        key = report_id(message_id_of(event, r), r.unit_serial, r.unit_position)
        if key in self._counted:
            return
        await self.send(requests.increment_asset_count(self.resolver.asset_serial(station), 1))
        self._counted[key] = None
        while len(self._counted) > _SEEN_LIMIT:
            self._counted.popitem(last=False)
