"""CFX.Production: work started / completed, units disqualified / arrived / departed, materials installed.

Messages about several units (a panel or carrier) yield one event per unit; one without units yields one
event whose `unit_serial` is the PrimaryIdentifier / HermesIdentifier, or ``""``: correlate by transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pywats_events import Event, EventType

from ..schema import (
    MaterialsInstalled,
    UnitPosition,
    UnitsDisqualified,
    UnitsMoved,
    WorkCompleted,
    WorkStarted,
)
from ._context import MessageContext
from ._fields import WORK_RESULTS
from .test_and_inspection import stage_name

__all__ = [
    "NothingToMap",
    "map_materials_installed",
    "map_units_arrived",
    "map_units_departed",
    "map_units_disqualified",
    "map_work_completed",
    "map_work_started",
]


class NothingToMap(ValueError):
    """The message is well-formed but says nothing an event could carry (the codec quarantines it)."""


_Body = TypeVar("_Body", WorkStarted, WorkCompleted, UnitsDisqualified)


def _unit_events(
    ctx: MessageContext,
    b: _Body,
    event_type: EventType,
    fields: Callable[[_Body, UnitPosition | None], dict[str, Any]],
) -> list[Event]:
    """One event per unit position: the unit's identity (serial, position, panel), then `fields(b, unit)`."""
    primary = b.primary_identifier or b.hermes_identifier or None
    if not b.units:
        payload = {**ctx.facts, "unit_serial": primary or "", "unit_position": None, "panel_serial": None}
        return [ctx.event(event_type, {**payload, **fields(b, None)}, 0, primary or None)]
    seen: set[str] = set()
    shared: set[str] = set()
    for u in b.units:
        if u.unit_identifier is not None:
            (shared if u.unit_identifier in seen else seen).add(u.unit_identifier)
    events = []
    for i, u in enumerate(b.units):
        serial = u.unit_identifier or primary or ""
        panel = serial if serial in shared else (primary if primary and primary != serial else None)
        payload = {
            **ctx.facts,
            "unit_serial": serial,
            "unit_position": u.position_number,
            "panel_serial": panel,
            **fields(b, u),
        }
        events.append(ctx.event(event_type, payload, i, serial or None))
    return events


def _work_started(b: WorkStarted, u: UnitPosition | None) -> dict[str, Any]:
    wo = b.work_order_identifier
    out: dict[str, Any] = {
        "lane": b.lane,
        "unit_count": b.unit_count,
        "recipe": b.recipe_name or None,
        "recipe_revision": b.revision or None,
        "work_order": wo.work_order_id or None if wo else None,
        "batch": wo.batch or None if wo else None,
        "surface": b.relevant_surface or None,
    }
    if u is not None:
        out["position_name"] = u.position_name or None
    return out


def _work_completed(b: WorkCompleted, u: UnitPosition | None) -> dict[str, Any]:
    raw = b.result
    known = WORK_RESULTS.get(raw.lower()) if raw is not None else None
    out: dict[str, Any] = {
        "result": known or "Completed",
        "unit_status": u.status or None if u else None,
        "lane": b.lane,
        "unit_count": b.unit_count,
    }
    if raw is not None and known is None:
        out["raw_result"] = raw
    stage = stage_name(b.stage)
    if stage:
        out["stage"] = stage
    if b.performance_impacts is not None:
        out["performance_impacts"] = [p.cause or None for p in b.performance_impacts]
    return out


def _disqualified(b: UnitsDisqualified, u: UnitPosition | None) -> dict[str, Any]:
    return {"reason": b.reason or None, "comments": b.comments or None}


def map_work_started(ctx: MessageContext, b: WorkStarted) -> list[Event]:
    return _unit_events(ctx, b, EventType.WORK_STARTED, _work_started)


def map_work_completed(ctx: MessageContext, b: WorkCompleted) -> list[Event]:
    return _unit_events(ctx, b, EventType.WORK_COMPLETED, _work_completed)


def map_units_disqualified(ctx: MessageContext, b: UnitsDisqualified) -> list[Event]:
    return _unit_events(ctx, b, EventType.UNIT_DISQUALIFIED, _disqualified)


def _moved(ctx: MessageContext, b: UnitsMoved, event_type: EventType) -> list[Event]:
    units = [
        {
            "serial": u.unit_identifier or None,
            "position": u.position_number,
            "position_name": u.position_name or None,
            "status": u.status or None,
        }
        for u in b.units or ()
    ]
    payload = {
        **ctx.facts,
        "units": units,
        "primary_identifier": b.primary_identifier or b.hermes_identifier or None,
        "location": f"lane {b.lane}" if b.lane is not None else None,
        "lane": b.lane,
        "unit_count": b.unit_count,
    }
    return [ctx.event(event_type, payload, 0, None)]


def map_units_arrived(ctx: MessageContext, b: UnitsMoved) -> list[Event]:
    return _moved(ctx, b, EventType.UNITS_ARRIVED)


def map_units_departed(ctx: MessageContext, b: UnitsMoved) -> list[Event]:
    return _moved(ctx, b, EventType.UNITS_DEPARTED)


def map_materials_installed(ctx: MessageContext, b: MaterialsInstalled) -> list[Event]:
    """One event per InstalledMaterial (a unit and the material installed on it)."""
    if not b.installed_materials:
        raise NothingToMap("InstalledMaterials is missing or empty")
    events = []
    for i, im in enumerate(b.installed_materials):
        mat = im.material
        components = [
            {
                "designator": c.reference_designator or None,
                "part_number": c.part_number or None,
                "serial": c.installed_unit_identifier or None,
            }
            for c in im.installed_components or ()
        ]
        where = im.carrier_location
        serial = im.unit_identifier or ""
        payload = {
            **ctx.facts,
            "unit_serial": serial,
            "unit_position": im.unit_position_number,
            "material_serial": mat.unique_identifier or None if mat else None,
            "part_number": mat.internal_part_number or None if mat else None,
            "lot": mat.batch_id or None if mat else None,
            "vendor": mat.vendor or None if mat else None,
            "quantity": im.quantity_installed,
            "reference_part_number": im.reference_part_number or None,
            "components": components,
            "serialized": any(c["serial"] for c in components),
            "quantity_non_installed": im.quantity_non_installed,
            "location": where.location_name or where.location_identifier or None if where else None,
        }
        events.append(ctx.event(EventType.MATERIAL_INSTALLED, payload, i, serial or None))
    return events
