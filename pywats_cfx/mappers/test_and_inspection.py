"""CFX.Production.TestAndInspection: UnitsTested and UnitsInspected → one result event per unit.

A unit's `defects` / `symptoms` are the union of those found in its tests or inspections; `start` / `end`
are the earliest start and latest end of its steps. An InspectedPanel adds a panel-level event when it has
inspections of its own (or when no unit is listed); units that share an identifier belong to one panel.
"""

from __future__ import annotations

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
    NumericMeasurement,
    NumericValue,
    Operator,
    Stage,
    Symptom,
    Test,
    TestCondition,
    TestedUnit,
    UnitsInspected,
    UnitsTested,
)
from ._context import MessageContext
from ._fields import earliest, iso_date, latest, num_or_raw, split_designators, step_result

__all__ = ["map_units_inspected", "map_units_tested", "operator", "stage_name"]

_NO_VALUE = NumericValue()


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


def _measurement(m: AnyMeasurement, index: int) -> dict[str, Any]:
    full_type = m.TYPE_NAME
    short = full_type.rsplit(".", 1)[-1]
    uid = m.unique_identifier or None
    out: dict[str, Any] = {
        "name": m.measurement_name or m.crds or uid or f"{short}_{index + 1}",
        "kind": "numeric",
        "value": None,
        "units": None,
        "expected_value": None,
        "expected_units": None,
        "low_limit": None,
        "low_limit_units": None,
        "high_limit": None,
        "high_limit_units": None,
        "result": step_result(m.result),
        "sequence": m.sequence,
        "timestamp": iso_date(m.time_recorded),
        "component_designators": [] if m.crds is None else split_designators(m.crds),
        "measurement_id": uid,
        "source_type": full_type,
    }
    if isinstance(m, NumericMeasurement):
        v = m.measured_value or _NO_VALUE
        out["value"] = v.value
        out["units"] = v.value_units or None
        out["expected_value"] = num_or_raw(v.expected_value)
        out["expected_units"] = v.expected_value_units or None
        out["low_limit"] = v.minimum_acceptable_value
        out["low_limit_units"] = v.minimum_acceptable_value_units or None
        out["high_limit"] = v.maximum_acceptable_value
        out["high_limit_units"] = v.maximum_acceptable_value_units or None
    elif isinstance(m, BooleanMeasurement):
        out["kind"] = "boolean"
        out["value"], out["expected_value"] = m.value, m.expected_value
    else:
        out["kind"] = "text"
        out["value"], out["expected_value"] = m.value or None, m.expected_value or None
    return out


def _measurements(ms: list[AnyMeasurement] | None) -> list[dict[str, Any]]:
    return [_measurement(m, i) for i, m in enumerate(ms or ())]


def _designators(v: list[ComponentDesignator | str] | str | None) -> list[str]:
    if isinstance(v, str):
        return split_designators(v)
    out = []
    for c in v or ():
        ref = c if isinstance(c, str) else c.reference_designator
        if ref is not None:
            out.append(ref)
    return out


def _symptom(s: Symptom) -> dict[str, Any]:
    return {
        "code": s.symptom_code or None,
        "category": s.symptom_category or None,
        "description": s.description or None,
        "comments": s.comments or None,
        "status": s.status or None,
        "priority": s.priority,
        "components": _designators(s.components_of_interest),
        "measurements": _measurements(s.related_measurements),
        "symptom_id": s.unique_identifier or None,
    }


def _defect(d: Defect) -> dict[str, Any]:
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
        "measurements": _measurements(d.related_measurements),
        "symptoms": [_symptom(s) for s in d.related_symptoms or ()],
        "defect_id": d.unique_identifier or None,
    }
    if d.defect_images:
        out["image_count"] = len(d.defect_images)  # the images themselves stay out of events (large)
    return out


def _condition(c: TestCondition) -> dict[str, Any]:
    full_type = type_name(c.type)
    return {
        "kind": (full_type.rsplit(".", 1)[-1] if full_type else None) or c.kind or None,
        "mean": c.mean_value,
        "median": c.median_value,
        "minimum": c.min_value,
        "maximum": c.max_value,
        "start": iso_date(c.start_time),
        "end": iso_date(c.end_time),
    }


def _step(
    t: Test | Inspection,
    name: str,
    start: str | None,
    end: str | None,
    symptoms: list[Symptom] | None,
) -> dict[str, Any]:
    return {
        "name": name,
        "result": step_result(t.result),
        "start": iso_date(start),
        "end": iso_date(end),
        "procedure": t.test_procedure or None,
        "comments": t.comments or None,
        "error": t.error or None,
        "measurements": _measurements(t.measurements),
        "symptoms": [_symptom(s) for s in symptoms or ()],
        "defects": [_defect(d) for d in t.defects_found or ()],
        "conditions": [_condition(c) for c in t.test_conditions or ()],
        "verification": t.verification or None,
        "step_id": t.unique_identifier or None,
    }


def _test(t: Test, index: int) -> dict[str, Any]:
    name = t.test_name or f"Test {index + 1}"
    return _step(t, name, t.test_start_time, t.test_end_time, t.symptoms_found)


def _inspection(t: Inspection, index: int) -> dict[str, Any]:
    ref = t.ref_no
    name = t.inspection_name or f"Inspection {ref if ref is not None else index + 1}"
    out = _step(t, name, t.inspection_start_time, t.inspection_end_time, t.symptoms)
    out["verification_detail"] = t.verification_detail or None
    out["ref_no"] = ref
    return out


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
    steps: list[dict[str, Any]],
    common: dict[str, Any],
    panel_serial: str | None,
) -> dict[str, Any]:
    return {
        **ctx.facts,
        "unit_serial": unit.unit_identifier or "",
        "unit_position": None if isinstance(unit, InspectedPanel) else unit.unit_position_number,
        "panel_serial": panel_serial,
        "result": step_result(unit.overall_result),
        "kind": common["kind"],
        "method": common["method"],
        "tests": steps,
        "defects": [d for s in steps for d in s["defects"]],
        "symptoms": [x for s in steps for x in s["symptoms"]],
        "operator": common["operator"],
        "recipe": common["recipe"],
        "recipe_revision": common["recipe_revision"],
        "start": earliest([s["start"] for s in steps if s["start"]]),
        "end": latest([s["end"] for s in steps if s["end"]]),
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
    events = []
    for i, u in enumerate(units):
        serial = u.unit_identifier or ""
        steps = [_test(t, j) for j, t in enumerate(u.tests or ())]
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
    events = []
    for i, u in enumerate(records):
        serial = u.unit_identifier or ""
        steps = [_inspection(t, j) for j, t in enumerate(u.inspections or ())]
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
