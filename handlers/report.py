"""`ReportHandler`: one WSJF UUT report per unit tested or inspected."""

from __future__ import annotations

from collections.abc import Iterable

from pywats_events import Event, EventType
from pywats_events.payloads import TestResultEvent

from ._base import WatsHandler, message_id_of, station_of
from .wats import requests
from .wsjf import ReportHeader, build_uut_report, report_id

__all__ = ["ReportHandler"]


class ReportHandler(WatsHandler):
    """TEST_RESULT / INSPECTION_RESULT → `POST /api/Report/WSJF`.

    The report id is uuid5(message id, unit serial, position): a redelivered message overwrites its
    report instead of adding one. pn/rev and the process code come from the resolver; if they cannot be
    resolved the event is dead-lettered (`ResolutionError`), never reported with invented values."""

    @property
    def event_types(self) -> Iterable[EventType | str]:
        return [EventType.TEST_RESULT, EventType.INSPECTION_RESULT]

    async def build(self, event: Event) -> dict[str, object]:
        """The WSJF document this event leads to (resolution may ask WATS)."""
        result = TestResultEvent.model_validate(event.payload)
        station = station_of(event, result)
        pn, rev = await self.resolver.part(
            result.unit_serial,
            station=station,
            recipe=result.recipe,
            part_number=result.part_number,
            revision=result.revision,
        )
        requests.check_identifier(result.unit_serial, "serial number")
        code = await self.resolver.process_code(station=station, method=result.method, recipe=result.recipe)
        header = ReportHeader(
            id=report_id(message_id_of(event, result), result.unit_serial, result.unit_position),
            part_number=pn,
            revision=rev,
            process_code=code,
            machine_name=self.resolver.machine_name(station),
            location=self.resolver.location(station),
            purpose=self.config.purpose,
            start=result.timestamp or event.metadata.timestamp,
            timezone=self.config.timezone,
        )
        return build_uut_report(result, header, include_defects=self.config.include_defects)

    async def handle(self, event: Event) -> None:
        await self.send(requests.submit_report(await self.build(event)))
