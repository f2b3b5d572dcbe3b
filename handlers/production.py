"""`ProductionHandler`: unit existence, process and phase in WATS production, and assembly relations.

AddChildUnit / RemoveChildUnit are not idempotent on the wire, but their effect is a state that can be
read: the parent's `subUnits`. So the handler reads it before attaching or detaching (done already →
nothing sent), and when an answer is lost (`WatsOutcomeUnknownError`) or WATS refuses a repeat, it reads
it again: the relation is as wanted → done; it is not → sent once more, and a second lost answer is left
to the bus as a transient error (retried or deferred, then checked again). While WATS is down the reads fail
transiently too, so an outage never dead-letters an assembly event.

CFX lets a WorkCompleted name no unit when its WorkStarted named them; the codec then yields one
WORK_COMPLETED with an empty `unit_serial` and the `transaction_id`. The handler therefore remembers, per
transaction id, the units of WorkStarted events (`handlers.transactions`: least recently used first out, at
most `phases.remembered_transactions`, kept across restarts in `state_file`) and applies such a
WorkCompleted to each of them in position order. The WorkStarted's units are handled on their own lanes, so
the WorkCompleted waits up to `phases.transaction_wait` for them; a transaction still unknown then raises
`ResolutionError`, and the event lands in the dead-letter queue where an operator can see and replay it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from pywats_events import Event, EventType
from pywats_events.payloads import (
    MaterialInstalledEvent,
    UnitDisqualifiedEvent,
    WorkCompletedEvent,
    WorkResult,
    WorkStartedEvent,
)
from pywats_events.policies import ErrorPolicy

from ._exceptions import ResolutionError, WatsPermanentError
from .config import WatsHandlersConfig
from .resolution import Resolver
from .transactions import StartedUnit, TransactionUnits
from .wats import request_builders
from .wats.sender import WatsOutcomeUnknownError
from .wats.sink import RequestSink, WatsRequest
from .wats_handler import WatsHandler, station_of

__all__ = ["ProductionHandler"]

log = logging.getLogger(__name__)

#: seconds between two looks for the WorkStarted of a unit-less WorkCompleted
_TRANSACTION_POLL = 0.05


class ProductionHandler(WatsHandler):
    """WORK_STARTED → unit exists (created when missing), phase `phases.work_started`, process set;
    WORK_COMPLETED → phase per `phases` (Finalized at a `last_operation` station, Production repair on
    failure); UNIT_DISQUALIFIED → Scrapped with the reason as comment; MATERIAL_INSTALLED → serialized
    components attached as child units (skipped when WATS already lists them, so redelivery is harmless).
    A WorkCompleted naming no unit applies to the units its transaction's WorkStarted named."""

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
        #: units per work transaction, for WorkCompleted messages that name none
        self.transactions = TransactionUnits(
            self.config.phases.remembered_transactions, self.config.state_file
        )

    @property
    def event_types(self) -> Iterable[EventType | str]:
        return [
            EventType.WORK_STARTED,
            EventType.WORK_COMPLETED,
            EventType.UNIT_DISQUALIFIED,
            EventType.MATERIAL_INSTALLED,
        ]

    async def handle(self, event: Event) -> None:
        kind = event.event_type
        if kind == EventType.WORK_STARTED:
            await self._work_started(event, WorkStartedEvent.model_validate(event.payload))
        elif kind == EventType.WORK_COMPLETED:
            await self._work_completed(event, WorkCompletedEvent.model_validate(event.payload))
        elif kind == EventType.UNIT_DISQUALIFIED:
            await self._disqualified(event, UnitDisqualifiedEvent.model_validate(event.payload))
        elif kind == EventType.MATERIAL_INSTALLED:
            await self._material_installed(event, MaterialInstalledEvent.model_validate(event.payload))

    async def _work_started(self, event: Event, p: WorkStartedEvent) -> None:
        station = station_of(event, p)
        # remembered before the first await, so a WorkCompleted queued behind this event finds it; written to
        # the state file once the part number is known (until then the journal would replay this event)
        self._remember(p, None, persist=False)
        # resolve everything first so an unresolvable event changes nothing in WATS
        pn, rev = await self.resolver.part(p.unit_serial, station=station, recipe=p.recipe)
        self._remember(p, pn)
        code = await self.resolver.process_code(station=station, recipe=p.recipe, test_operation=False)
        await self._ensure_unit(p.unit_serial, pn, rev, self.resolver.location(station))
        if self.config.phases.work_started is not None:
            await self.send(
                request_builders.set_unit_phase(p.unit_serial, pn, self.config.phases.work_started)
            )
        await self.send(request_builders.set_unit_process(p.unit_serial, pn, code))

    def _remember(self, p: WorkStartedEvent, pn: str | None, *, persist: bool = True) -> None:
        if p.transaction_id and p.unit_serial:
            self.transactions.remember(p.transaction_id, p.unit_serial, p.unit_position, pn, persist=persist)

    async def _ensure_unit(self, serial: str, pn: str, rev: str, location: str | None) -> None:
        if self.resolver.can_read:
            try:
                await self.send(request_builders.get_unit(serial, pn))
                return
            except WatsPermanentError as exc:
                if exc.status != 404:
                    raise
        try:
            await self.send(request_builders.create_unit(serial, pn, rev, current_location=location))
        except WatsPermanentError as exc:
            if exc.status != 409:  # created meanwhile (e.g. an earlier attempt whose answer was lost)
                raise

    def _completed_phase(self, station: str | None, p: WorkCompletedEvent) -> int | None:
        phases = self.config.phases
        failed_status = (p.unit_status or "").strip().lower() in {"failed", "fail", "failure"}
        if p.result is WorkResult.FAILED or failed_status:
            return phases.failed
        if p.result is WorkResult.ABORTED:
            return phases.aborted
        if p.result is WorkResult.COMPLETED:
            if self.resolver.station(station).last_operation:
                return phases.last_operation_completed
            return phases.completed
        return None

    async def _work_completed(self, event: Event, p: WorkCompletedEvent) -> None:
        station = station_of(event, p)
        phase = self._completed_phase(station, p)
        if phase is None:
            return
        comment = f"Work {p.result.value.lower()} at {self.resolver.machine_name(station)}"
        if p.unit_serial:
            pn, _ = await self.resolver.part(p.unit_serial, station=station)
            await self.send(request_builders.set_unit_phase(p.unit_serial, pn, phase, comment))
            return
        if not p.transaction_id:
            raise ResolutionError("WorkCompleted names neither a unit nor a transaction")
        units = await self._transaction_units(p.transaction_id)
        if not units:
            raise ResolutionError(
                f"WorkCompleted names no unit and no WorkStarted of transaction {p.transaction_id} was seen"
                f" (within phases.transaction_wait = {self.config.phases.transaction_wait:g} s)"
            )
        # resolve all first so an unresolvable unit changes nothing in WATS
        targets = [
            (u.serial, u.part_number or (await self.resolver.part(u.serial, station=station))[0])
            for u in units
        ]
        for serial, pn in targets:
            await self.send(request_builders.set_unit_phase(serial, pn, phase, comment))

    async def _transaction_units(self, transaction_id: str) -> list[StartedUnit] | None:
        """The units of `transaction_id`; waits up to `phases.transaction_wait` for its WorkStarted, whose
        units are handled on their own lanes and may be a moment behind this unit-less WorkCompleted."""
        deadline = time.monotonic() + self.config.phases.transaction_wait
        while True:
            units = self.transactions.units(transaction_id)
            if units or time.monotonic() >= deadline:
                return units
            await asyncio.sleep(_TRANSACTION_POLL)

    async def on_stop(self) -> None:
        try:
            await super().on_stop()
        finally:
            self.transactions.close()

    async def _disqualified(self, event: Event, p: UnitDisqualifiedEvent) -> None:
        phase = self.config.phases.disqualified
        if phase is None:
            return
        station = station_of(event, p)
        pn, _ = await self.resolver.part(p.unit_serial, station=station)
        reason = "; ".join(x for x in (p.reason, p.comments) if x) or "Disqualified"
        await self.send(request_builders.set_unit_phase(p.unit_serial, pn, phase, reason[:500]))

    async def _material_installed(self, event: Event, p: MaterialInstalledEvent) -> None:
        # serial → part number; a component naming the material's own serial inherits its part number
        children: dict[str, str | None] = {}
        if p.serialized and p.material_serial:
            children[p.material_serial] = p.part_number
        for component in p.components:
            if component.serial:
                inherited = p.part_number if component.serial == p.material_serial else None
                known = children.get(component.serial)
                children[component.serial] = component.part_number or known or inherited
        missing = [sn for sn, pn in children.items() if not pn]
        if missing:
            raise ResolutionError(f"serialized material {', '.join(missing)} has no part number")
        if not children:
            log.debug("material on %s is not serialized; no child units", p.unit_serial)
            return
        station = station_of(event, p)
        pn, _ = await self.resolver.part(p.unit_serial, station=station)
        relations = [
            request_builders.add_child_unit(p.unit_serial, pn, sn, str(cpn)) for sn, cpn in children.items()
        ]
        existing = await self._children_of(p.unit_serial, pn)
        for relation in relations:
            child = (relation.params["childSerialNumber"], relation.params["childPartNumber"])
            if child not in existing:
                await self._relate(relation, attached=True)

    async def detach_child_unit(
        self, parent_serial: str, parent_part_number: str, child_serial: str, child_part_number: str
    ) -> None:
        """Detach a child unit; nothing is sent when WATS no longer lists it under the parent."""
        relation = request_builders.remove_child_unit(
            parent_serial, parent_part_number, child_serial, child_part_number
        )
        children = await self._children_of(parent_serial, parent_part_number)
        if (child_serial, child_part_number) in children:
            await self._relate(relation, attached=False)

    async def _relate(self, relation: WatsRequest, *, attached: bool) -> None:
        """Send AddChildUnit (`attached`) or RemoveChildUnit; verify by reading when the answer is lost."""
        for attempt in (1, 2):
            try:
                await self.send(relation)
                return
            except WatsOutcomeUnknownError as exc:
                if not self.resolver.can_read:
                    raise exc.as_transient() from exc  # a blind repeat is at worst refused
                if await self._relation_is(relation, attached):  # WATS down → transient
                    return  # it went through; only the answer was lost
                if attempt == 2:
                    raise exc.as_transient() from exc  # the bus retries; that attempt checks first
                log.info("%s %s did not happen; sending it again", relation.operation, relation.params)
            except WatsPermanentError:  # a 4xx
                # a repeat of a request whose first answer was lost is refused ("already has a parent")
                if self.resolver.can_read and await self._relation_is(relation, attached):
                    return
                raise

    async def _relation_is(self, relation: WatsRequest, attached: bool) -> bool:
        params = relation.params
        children = await self._children_of(params["parentSerialNumber"], params["parentPartNumber"])
        return ((params["childSerialNumber"], params["childPartNumber"]) in children) == attached

    async def _children_of(self, serial: str, pn: str) -> set[tuple[str, str]]:
        """Child units WATS already lists for the parent (AddChildUnit is refused for a repeat)."""
        if not self.resolver.can_read:
            return set()
        try:
            response = await self.send(request_builders.get_unit(serial, pn))
        except WatsPermanentError as exc:
            if exc.status == 404:
                raise ResolutionError(f"parent unit {serial!r} / {pn!r} does not exist in WATS") from exc
            raise
        body = response.json if isinstance(response.json, dict) else {}
        subs = body.get("subUnits") or body.get("SubUnits") or []
        return {
            (str(s.get("serialNumber")), str(s.get("partNumber")))
            for s in subs
            if isinstance(s, dict) and s.get("serialNumber")
        }
