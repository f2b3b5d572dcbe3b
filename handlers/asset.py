"""`AssetHandler`: station faults and states as WATS asset log messages and states, plus usage counts.

Mapping of CFX/SEMI E10 states to WATS asset states (`AssetSettings.state_map`, default
`DEFAULT_ASSET_STATE_MAP`): productive and standby → 1 In Operation, scheduled downtime → 3 In
Maintenance; engineering, unscheduled downtime (machine error), non-scheduled (off) and unknown have no
WATS state (WATS_API.md §3.1) and become log messages instead.

Lost answers (`WatsOutcomeUnknownError`: a 5xx, read timeout or dropped connection after a request that
is not idempotent) never dead-letter an event: they are raised as transient errors (retried or
deferred by the bus) and the next attempt checks WATS before sending again:

* Log messages are delivered **at least once**. Every comment ends with ``[ref <message id>]`` (the CFX
  UniqueID; fault comments also name the fault occurrence), so a copy is recognisable. Before a
  message is sent again after a lost answer or a failed attempt, the asset log is read (`assetLog[]` of
  ``GET /api/Asset/{serial}``, else ``GET /api/Asset/Log`` filtered by comment) and an identical
  comment means "already logged". A duplicate line remains possible only when the first request is
  still being processed when the check runs, or when the process restarted in between and the event
  comes back as a first attempt (nothing recorded the lost answer).
* Usage counts are **verified, never resent blindly**: `totalCount` is read before the increment. After
  a lost answer it is read again: risen by the increment → done; not risen → the increment provably did
  not happen and is sent again; WATS unreachable → transient, and the baseline is kept (per CFX message,
  unit and asset, bounded) so the check can be made on a later attempt. The baseline is recorded before
  the increment is sent, and with `state_file` (set by the listener) on disk, together with the units
  already counted: a process killed between the increment and the journal's record of it verifies on
  restart instead of counting twice. Counts only grow, so a resend
  happens only when ours is missing: the check can never count twice. Its limit: increments by another
  client between the two reads (or a late-arriving copy of the lost request, or a ``SetTotalCount``)
  can make a missing increment look done, so under such concurrency it errs towards one count too few.
  Increments made by this handler are serialised per asset and accounted for exactly. A server that
  reports no `totalCount` gets the increment unverified; only if its answer is then lost is the event
  dead-lettered ("check the asset's count"), as that is not an outage and a blind resend could double.
* In distributed mode (`use_single_writer`) several listeners handle one station's units at once, so
  none increments: each unit goes to the single writer of `handlers.usage_writer`, which one listener at a
  time serves with its ledger on the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from pywats_events import Event, EventType
from pywats_events.payloads import (
    AssetFaultClearedEvent,
    AssetFaultEvent,
    AssetState,
    AssetStateChangedEvent,
    TestResultEvent,
)
from pywats_events.policies import ErrorPolicy
from pywats_events.single_writer import SingleWriters, Submit, WorkItem

from ._exceptions import WatsPermanentError
from .config import WatsHandlersConfig
from .count_ledger import CountLedger
from .resolution import Resolver
from .usage_writer import WRITER_NAME, UsageCountWriter, total_count
from .wats import request_builders
from .wats.sender import WatsOutcomeUnknownError
from .wats.sink import RequestSink
from .wats.wsjf import report_id
from .wats_handler import WatsHandler, message_id_of, station_of

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
_PENDING_LIMIT = 10_000


def _bounded_put(store: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > _PENDING_LIMIT:
        store.popitem(last=False)


def _with_ref(text: str, ref: str) -> str:
    """`text` cut to fit the comment limit, followed by a tag that identifies the source message."""
    tag = f" [ref {ref}]"
    return text[: max(0, _COMMENT_LIMIT - len(tag))] + tag


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

    `PUT /api/Asset/Count` is not idempotent: a unit already counted is not counted again when its message
    is redelivered (bounded; kept in `state_file` across restarts), and a lost answer is verified against
    the asset's `totalCount` before anything is resent (see the module docstring)."""

    def __init__(
        self,
        sink: RequestSink,
        config: WatsHandlersConfig | None = None,
        resolver: Resolver | None = None,
        *,
        owns_sink: bool = False,
        error_policy: ErrorPolicy | None = None,
    ) -> None:
        super().__init__(sink, config, resolver, owns_sink=owns_sink, error_policy=error_policy)
        #: units counted and increments not yet confirmed (in `state_file`, so they survive a restart)
        self.ledger = CountLedger(self.config.state_file if self.config.asset.count_usage else None)
        #: log comments whose POST answer was lost, by (asset serial, comment)
        self._uncertain_messages: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._count_locks: dict[str, asyncio.Lock] = {}
        #: distributed mode: counts go to the single writer (`use_single_writer`)
        self._submit_usage: Submit | None = None

    def use_single_writer(self, writers: SingleWriters) -> None:
        """Distributed mode: hand usage counts to one writer across all listeners (`handlers.usage_writer`)
        instead of incrementing here, where several listeners would count one asset at once."""
        if self.config.asset.count_usage and self.resolver.can_read:
            self._submit_usage = writers.declare(WRITER_NAME, UsageCountWriter(self.send))

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

    async def _message(self, event: Event, payload: Any, serial: str, text: str) -> None:
        asset_id = await self.resolver.asset_id(serial)
        comment = _with_ref(text, message_id_of(event, payload))
        key = (serial, comment)
        if self.resolver.can_read and (key in self._uncertain_messages or event.metadata.attempt > 0):
            # an earlier attempt may have logged it: look before sending again
            if await self._logged(serial, asset_id, comment):
                log.info("asset %s: message already in the WATS log; not sent again", serial)
                self._uncertain_messages.pop(key, None)
                return
        try:
            await self.send(request_builders.add_asset_message(asset_id, comment, self.config.asset.user))
        except WatsOutcomeUnknownError as exc:
            _bounded_put(self._uncertain_messages, key, None)
            raise exc.as_transient() from exc  # at least once: a duplicate line beats a lost one
        self._uncertain_messages.pop(key, None)

    async def _logged(self, serial: str, asset_id: str, comment: str) -> bool:
        """Whether the asset log already holds `comment` (raises transient while WATS is down)."""
        body = (await self.send(request_builders.get_asset(serial))).json
        if isinstance(body, list):
            body = body[0] if body else None
        entries = body.get("assetLog", body.get("AssetLog")) if isinstance(body, dict) else None
        if not isinstance(entries, list):  # the server leaves the log out of the asset: ask for it
            entries = (await self.send(request_builders.get_asset_log(asset_id, comment))).json
        if not isinstance(entries, list):
            return False
        wanted = comment.strip()
        return any(isinstance(e, dict) and str(e.get("comment", "")).strip() == wanted for e in entries)

    async def _fault(self, event: Event, f: AssetFaultEvent) -> None:
        serial = self.resolver.asset_serial(station_of(event, f))
        await self._message(event, f, serial, _fault_text(f))
        settings = self.config.asset
        severities = {s.lower() for s in settings.maintenance_severities}
        if settings.fault_sets_maintenance and (f.severity or "").lower() in severities:
            await self.send(request_builders.set_asset_state(serial, _IN_MAINTENANCE))

    async def _fault_cleared(self, event: Event, c: AssetFaultClearedEvent) -> None:
        serial = self.resolver.asset_serial(station_of(event, c))
        acknowledged = c.acknowledged_only or event.event_type == EventType.ASSET_FAULT_ACKNOWLEDGED
        verb = "acknowledged" if acknowledged else "cleared"
        text = f"Fault {c.fault_occurrence_id or ''} {verb}".replace("  ", " ")
        who = c.operator.display_name if c.operator else None
        await self._message(event, c, serial, f"{text} by {who}" if who else text)

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
            await self.send(request_builders.set_asset_state(serial, new))
            return
        code = f" (E10 {s.new_state_code})" if s.new_state_code is not None else ""
        text = f"State {s.old_state.value} -> {s.new_state.value}{code}; WATS has no such asset state"
        if s.related_fault is not None:
            text += f". {_fault_text(s.related_fault)}"
        await self._message(event, s, serial, text)

    async def _count(self, event: Event, r: TestResultEvent) -> None:
        station = station_of(event, r)
        if not self.resolver.has_asset(station):
            log.debug("no WATS asset for %s; usage not counted", station)
            return
        key = report_id(message_id_of(event, r), r.unit_serial, r.unit_position)
        serial = self.resolver.asset_serial(station)
        if self._submit_usage is not None:
            item = WorkItem(key, {"serial": serial, "increment": 1}, event.metadata.attempt > 0)
            await self._submit_usage(item)
            return
        if self.ledger.is_counted(key):
            return
        if self.resolver.can_read:
            await self._verified_increment(key, serial, 1)
        else:  # an outbox without a server: stored for later; a lost answer there stays permanent
            await self.send(request_builders.increment_asset_count(serial, 1))
            self.ledger.done(key, serial, 1)

    async def _verified_increment(self, key: str, serial: str, increment: int) -> None:
        """Increment once: recorded as pending before it is sent, and a pending one (a lost answer, or a
        process killed mid-request) is checked against totalCount instead of being sent again blindly."""
        lock = self._count_locks.setdefault(serial, asyncio.Lock())
        async with lock:  # this handler's own increments of one asset never overlap: they stay exact
            pending = self.ledger.pending(key, serial)
            total = await self._read_total(serial)  # WATS down → transient; `pending` is kept
            if pending is not None:
                if pending.before is None or total is None:
                    # not an outage: without the count there is no way to tell, and resending could
                    # count twice; a person checks the asset (the reason is in the dead letter)
                    self.ledger.forget(key, serial)
                    raise WatsPermanentError(
                        f"asset {serial}: the answer to a count increment was lost and WATS reports no"
                        " totalCount to verify it; check the asset's count"
                    )
                if total >= pending.before + pending.increment:
                    log.info("asset %s: count increment confirmed after a lost answer", serial)
                    self.ledger.done(key, serial, 0)
                    return
                log.info("asset %s: count increment did not happen; sending it again", serial)
            self.ledger.begin(key, serial, total, increment)
            try:
                await self.send(request_builders.increment_asset_count(serial, increment))
            except WatsOutcomeUnknownError as exc:
                raise exc.as_transient() from exc  # pending stays: the next attempt compares totalCount
            except asyncio.CancelledError:
                raise  # it may have been sent: pending stays, the next attempt compares totalCount
            except BaseException:
                # declined or refused: provably not counted, the next attempt reads a fresh baseline
                self.ledger.forget(key, serial)
                raise
            self.ledger.done(key, serial, increment)

    async def on_stop(self) -> None:
        try:
            await super().on_stop()
        finally:
            self.ledger.close()

    async def _read_total(self, serial: str) -> int | None:
        return total_count((await self.send(request_builders.get_asset(serial))).json)
