"""CFX.Materials.Storage: material packages loaded into / unloaded from a station's locations."""

from __future__ import annotations

from typing import Any

from pywats_events import Event, EventType

from .._values import type_name
from ..schema import MaterialLocation, MaterialsLoaded, MaterialsUnloaded
from ._context import MessageContext

__all__ = ["map_materials_loaded", "map_materials_unloaded"]


def _location(m: MaterialLocation) -> dict[str, Any]:
    pkg, carrier = m.material_package, m.carrier_information
    return {
        "location_identifier": m.location_identifier or None,
        "location_name": m.location_name or None,
        "material_serial": pkg.unique_identifier or None if pkg else None,
        "part_number": pkg.internal_part_number or None if pkg else None,
        "quantity": pkg.quantity if pkg else None,
        "batch": pkg.batch_id or None if pkg else None,
        "carrier_id": carrier.unique_identifier or None if carrier else None,
        "carrier_name": carrier.name or None if carrier else None,
        "carrier_type": type_name(carrier.type) if carrier else None,
    }


def map_materials_loaded(ctx: MessageContext, b: MaterialsLoaded) -> list[Event]:
    payload = {**ctx.facts, "materials": [_location(m) for m in b.materials or ()], "loaded": True}
    return [ctx.event(EventType.MATERIALS_LOADED, payload, 0, None)]


def map_materials_unloaded(ctx: MessageContext, b: MaterialsUnloaded) -> list[Event]:
    materials = [{"material_serial": i or None} for i in b.material_package_identifiers or ()]
    payload = {**ctx.facts, "materials": materials, "loaded": False}
    return [ctx.event(EventType.MATERIALS_UNLOADED, payload, 0, None)]
