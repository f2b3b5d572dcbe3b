"""CFX.Production.TestAndInspection: UnitsTested and UnitsInspected → one result event per unit.

A unit's `defects` / `symptoms` are the union of those found in its tests or inspections; `start` / `end`
are the earliest start and latest end of its steps. An InspectedPanel adds a panel-level event when it has
inspections of its own (or when no unit is listed); units that share an identifier belong to one panel.
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Any

from pywats_events import Event, EventType

from .._json import canonicalize_tree
from .._values import type_name
from ..schema import (
    AnyMeasurement,
    BooleanMeasurement,
    ComponentDesignator,
    Defect,
    InspectedPanel,
    InspectedUnit,
    Inspection,
    Measurement,
    NumericMeasurement,
    NumericValue,
    Operator,
    OtherMeasurement,
    Stage,
    Symptom,
    Test,
    TestCondition,
    TestedUnit,
    TextMeasurement,
    UnitsInspected,
    UnitsTested,
)
from ._context import MessageContext
from ._fields import STEP_RESULTS, DateMemo, num_or_raw, split_designators, step_result

__all__ = ["map_units_inspected", "map_units_tested", "operator", "stage_name"]

_NO_VALUE = NumericValue()
_RESULTS = STEP_RESULTS
_INSTANT = itemgetter(0)


def operator(o: Operator | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {
        "operator_id": o.operator_identifier or None,
        "name": o.name or None,
        "first_name": o.first_name or None,
        "last_name": o.last_name or None,
        "login_name": o.login_name or None,
        "actor_type": o.actor_type or None,
    }


def stage_name(s: Stage | str | None) -> str | None:
    if isinstance(s, Stage):
        seq = s.stage_sequence
        return s.stage_name or (str(seq) if isinstance(seq, int) else seq or None)
    return s or None


def _measurements(
    ms: list[AnyMeasurement] | list[Measurement] | None, dates: DateMemo
) -> list[dict[str, Any]]:
    """The measurements' event fields, built in one loop (a step can hold hundreds of measurements)."""
    out: list[dict[str, Any]] = []
    if not ms:
        return out
    append = out.append
    for i, m in enumerate(ms):
        uid = m.unique_identifier or None
        crds = m.crds
        res = m.result
        if isinstance(m, NumericMeasurement):
            v = m.measured_value or _NO_VALUE
            ev = v.expected_value
            append(
                {
                    "name": m.measurement_name or crds or uid or f"NumericMeasurement_{i + 1}",
                    "kind": "numeric",
                    "value": v.value,
                    "units": v.value_units or None,
                    "expected_value": ev if ev is None or type(ev) is float else num_or_raw(ev),
                    "expected_units": v.expected_value_units or None,
                    "low_limit": v.minimum_acceptable_value,
                    "low_limit_units": v.minimum_acceptable_value_units or None,
                    "high_limit": v.maximum_acceptable_value,
                    "high_limit_units": v.maximum_acceptable_value_units or None,
                    "result": _RESULTS.get(res) or step_result(res),
                    "sequence": m.sequence,
                    "timestamp": dates[m.time_recorded][0],
                    "component_designators": [] if crds is None else split_designators(crds),
                    "measurement_id": uid,
                    "source_type": NumericMeasurement.TYPE_NAME,
                }
            )
            continue
        value: bool | str | None
        expected: bool | str | None
        full_type: str | None = m.TYPE_NAME
        short = None
        if isinstance(m, BooleanMeasurement):
            kind, value, expected = "boolean", m.value, m.expected_value
        elif isinstance(m, TextMeasurement):
            kind, value, expected = "text", m.value or None, m.expected_value or None
        else:  # a kind the SDK does not define (the lenient path only): its properties as sent
            kind, value, expected = "other", None, None
            full_type = m.type_name if isinstance(m, OtherMeasurement) else None
            short = full_type.rsplit(".", 1)[-1] if full_type else "Measurement"
        entry: dict[str, Any] = {
            "name": m.measurement_name or crds or uid or f"{short or m.TYPE_NAME.rsplit('.', 1)[-1]}_{i + 1}",
            "kind": kind,
            "value": value,
            "units": None,
            "expected_value": expected,
            "expected_units": None,
            "low_limit": None,
            "low_limit_units": None,
            "high_limit": None,
            "high_limit_units": None,
            "result": _RESULTS.get(res) or step_result(res),
            "sequence": m.sequence,
            "timestamp": dates[m.time_recorded][0],
            "component_designators": [] if crds is None else split_designators(crds),
            "measurement_id": uid,
            "source_type": full_type,
        }
        if isinstance(m, OtherMeasurement) and m.properties:
            entry["attributes"] = m.properties
        append(entry)
    return out


def _designators(v: list[ComponentDesignator | str] | str | None) -> list[str]:
    if isinstance(v, str):
        return split_designators(v)
    out = []
    for c in v or ():
        ref = c if isinstance(c, str) else c.reference_designator
        if ref is not None:
            out.append(ref)
    return out


def _symptom(s: Symptom, dates: DateMemo) -> dict[str, Any]:
    return {
        "code": s.symptom_code or None,
        "category": s.symptom_category or None,
        "description": s.description or None,
        "comments": s.comments or None,
        "status": s.status or None,
        "priority": s.priority,
        "components": _designators(s.components_of_interest),
        "measurements": _measurements(s.related_measurements, dates),
        "symptom_id": s.unique_identifier or None,
    }


def _defect(d: Defect, dates: DateMemo) -> dict[str, Any]:
    coi = d.component_of_interest
    out: dict[str, Any] = {
        "code": d.defect_code or None,
        "category": d.defect_category or None,
        "description": d.description or None,
        "comments": d.comments or None,
        "component": (coi.reference_designator if isinstance(coi, ComponentDesignator) else coi) or None,
        "priority": d.priority,
        "confidence": d.confidence_level,
        "verification": d.verification or None,
        "verification_detail": d.verification_detail or None,
        "measurements": _measurements(d.related_measurements, dates),
        "symptoms": [_symptom(s, dates) for s in d.related_symptoms or ()],
        "defect_id": d.unique_identifier or None,
    }
    if d.defect_images:
        out["image_count"] = len(d.defect_images)  # the images themselves stay out of events (large)
    return out


def _condition(c: TestCondition, dates: DateMemo) -> dict[str, Any]:
    full_type = type_name(c.type)
    return {
        "kind": (full_type.rsplit(".", 1)[-1] if full_type else None) or c.kind or None,
        "mean": c.mean_value,
        "median": c.median_value,
        "minimum": c.min_value,
        "maximum": c.max_value,
        "start": dates[c.start_time][0],
        "end": dates[c.end_time][0],
    }


class _Steps:
    """A unit's step payloads and the span they cover: the earliest start and the latest end, compared
    as instants (each date is parsed once per message, in the `DateMemo`)."""

    __slots__ = ("dates", "ends", "starts", "steps")

    def __init__(self, dates: DateMemo) -> None:
        self.dates = dates
        self.steps: list[dict[str, Any]] = []
        self.starts: list[tuple[datetime, str]] = []
        self.ends: list[tuple[datetime, str]] = []

    def add(
        self,
        t: Test | Inspection,
        name: str,
        start_time: str | None,
        end_time: str | None,
        symptoms: list[Symptom] | None,
    ) -> dict[str, Any]:
        dates = self.dates
        start, start_at = dates[start_time]
        end, end_at = dates[end_time]
        if start is not None:
            self.starts.append((start_at, start))
        if end is not None:
            self.ends.append((end_at, end))
        res = t.result
        step = {
            "name": name,
            "result": _RESULTS.get(res) or step_result(res),
            "start": start,
            "end": end,
            "procedure": t.test_procedure or None,
            "comments": t.comments or None,
            "error": t.error or None,
            "measurements": _measurements(t.measurements, dates),
            "symptoms": [_symptom(s, dates) for s in symptoms] if symptoms else [],
            "defects": [_defect(d, dates) for d in t.defects_found] if t.defects_found else [],
            "conditions": [_condition(c, dates) for c in t.test_conditions] if t.test_conditions else [],
            "verification": t.verification or None,
            "step_id": t.unique_identifier or None,
        }
        self.steps.append(step)
        return step

    def span(self) -> tuple[str | None, str | None]:
        """(earliest start, latest end); the first one listed among equal instants."""
        starts, ends = self.starts, self.ends
        return (
            min(starts, key=_INSTANT)[1] if starts else None,
            max(ends, key=_INSTANT)[1] if ends else None,
        )


def _tests(tests: list[Test] | None, dates: DateMemo) -> _Steps:
    steps = _Steps(dates)
    for j, t in enumerate(tests or ()):
        steps.add(t, t.test_name or f"Test {j + 1}", t.test_start_time, t.test_end_time, t.symptoms_found)
    return steps


def _inspections(inspections: list[Inspection] | None, dates: DateMemo) -> _Steps:
    steps = _Steps(dates)
    for j, t in enumerate(inspections or ()):
        ref = t.ref_no
        name = t.inspection_name or f"Inspection {ref if ref is not None else j + 1}"
        step = steps.add(t, name, t.inspection_start_time, t.inspection_end_time, t.symptoms)
        step["verification_detail"] = t.verification_detail or None
        step["ref_no"] = ref
    return steps


def _shared(identifiers: list[str | None]) -> set[str]:
    """Identifiers listed more than once: the units of one panel."""
    seen: set[str] = set()
    dup: set[str] = set()
    for ident in identifiers:
        if ident is not None:
            (dup if ident in seen else seen).add(ident)
    return dup


def _result_payload(
    ctx: MessageContext,
    unit: TestedUnit | InspectedUnit | InspectedPanel,
    found: _Steps,
    common: dict[str, Any],
    panel_serial: str | None,
) -> dict[str, Any]:
    steps = found.steps
    start, end = found.span()
    res = unit.overall_result
    return {
        **ctx.facts,
        "unit_serial": unit.unit_identifier or "",
        "unit_position": None if isinstance(unit, InspectedPanel) else unit.unit_position_number,
        "panel_serial": panel_serial,
        "result": _RESULTS.get(res) or step_result(res),
        "kind": common["kind"],
        "method": common["method"],
        "tests": steps,
        "defects": [d for s in steps for d in s["defects"]],
        "symptoms": [x for s in steps for x in s["symptoms"]],
        "operator": common["operator"],
        "recipe": common["recipe"],
        "recipe_revision": common["recipe_revision"],
        "start": start,
        "end": end,
        "lane": common["lane"],
        "stage": common["stage"],
        "sampling": common["sampling"],
        "part_number": unit.part_number or None,
        "revision": unit.revision or None,
    }


def _common(
    b: UnitsTested | UnitsInspected, kind: str, method: str | None, op: Operator | None
) -> dict[str, Any]:
    sampling = b.sampling_information
    return {
        "kind": kind,
        "method": method or None,
        "operator": operator(op),
        "recipe": b.recipe_name or None,
        "recipe_revision": b.recipe_revision or None,
        "lane": b.lane,
        "stage": stage_name(b.stage),
        "sampling": canonicalize_tree(sampling) if sampling is not None else None,
    }


def map_units_tested(ctx: MessageContext, b: UnitsTested) -> list[Event]:
    units = b.tested_units or []
    common = _common(b, "test", b.test_method, b.tester)
    shared = _shared([u.unit_identifier for u in units])
    dates = DateMemo()
    events = []
    for i, u in enumerate(units):
        serial = u.unit_identifier or ""
        steps = _tests(u.tests, dates)
        payload = _result_payload(ctx, u, steps, common, serial if serial in shared else None)
        events.append(ctx.event(EventType.TEST_RESULT, payload, i, serial or None))
    return events


def map_units_inspected(ctx: MessageContext, b: UnitsInspected) -> list[Event]:
    records: list[InspectedUnit | InspectedPanel] = list(b.inspected_units or ())
    panel = b.inspected_panel
    panel_serial = panel.unit_identifier or None if panel is not None else None
    common = _common(b, "inspection", b.inspection_method, b.inspector)
    shared = _shared([u.unit_identifier for u in records])
    if panel is not None and (not records or panel.inspections):
        records.append(panel)
    dates = DateMemo()
    events = []
    for i, u in enumerate(records):
        serial = u.unit_identifier or ""
        steps = _inspections(u.inspections, dates)
        if isinstance(u, InspectedPanel):
            payload = _result_payload(ctx, u, steps, common, None)
        else:
            payload = _result_payload(
                ctx, u, steps, common, panel_serial or (serial if serial in shared else None)
            )
        payload["verification"] = u.verification or None
        payload["total_inspection_count"] = u.total_inspection_count
        if isinstance(u, InspectedPanel):
            payload["is_panel"] = True
            payload["pcb_variant"] = u.pcb_variant or None
        events.append(ctx.event(EventType.INSPECTION_RESULT, payload, i, serial or None))
    return events
