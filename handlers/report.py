"""`ReportHandler`: one WSJF UUT report per unit tested or inspected."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pywats_events import Event, EventType
from pywats_events.payloads import TestResultEvent

from .metrics import LIMIT_CONTRADICTIONS, UNIT_MISMATCHES
from .wats import request_builders
from .wats.wsjf import MeasurementWarning, ReportHeader, build_uut_report_with_warnings, report_id
from .wats_handler import WatsHandler, message_id_of, station_of

__all__ = ["ReportHandler"]

log = logging.getLogger(__name__)


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
        return (await self.build_with_warnings(event))[0]

    async def build_with_warnings(self, event: Event) -> tuple[dict[str, object], list[MeasurementWarning]]:
        """The WSJF document and the measurements it flags (see `build_uut_report_with_warnings`)."""
        result = TestResultEvent.model_validate(event.payload)
        station = station_of(event, result)
        pn, rev = await self.resolver.part(
            result.unit_serial,
            station=station,
            recipe=result.recipe,
            part_number=result.part_number,
            revision=result.revision,
        )
        request_builders.check_identifier(result.unit_serial, "serial number")
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
        return build_uut_report_with_warnings(result, header, include_defects=self.config.include_defects)

    async def handle(self, event: Event) -> None:
        report, flags = await self.build_with_warnings(event)
        await self.send(request_builders.submit_report(report))
        # after the send: a retried attempt does not log or count its measurements twice
        for flag in flags:
            counter = UNIT_MISMATCHES if flag.kind == "unit_mismatch" else LIMIT_CONTRADICTIONS
            counter.labels(reason=flag.reason).inc()
            log.warning(
                "report %s (%s): step %s: %s",
                report["id"],
                report["sn"],
                flag.step,
                flag.report_text,
            )
