"""CFX.ResourcePerformance: faults occurring / cleared / acknowledged and station state changes."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from pywats_events import Event, EventType

from .._json import canonicalize_tree
from .._states import asset_state, state_name
from .._values import parse_resource_state, parse_timespan, type_name
from ..schema import FAULT_DETAILS, Fault, FaultCleared, FaultOccurred, StationStateChanged, SubclassedFault
from ._context import MessageContext
from ._fields import iso_date
from .production import NothingToMap
from .test_and_inspection import operator, stage_name

__all__ = ["fault_payload", "map_fault_acknowledged", "map_fault_cleared", "map_fault_occurred", "map_state"]


def fault_payload(ctx: MessageContext, f: Fault) -> dict[str, Any]:
    """A Fault's event fields; properties without a field of their own travel in ``details`` as sent."""
    full_type = type_name(f.type)
    details = {}
    for wire_name, attr in FAULT_DETAILS:
        value = getattr(f, attr)
        if value is not UNSET:
            details[wire_name] = canonicalize_tree(value)
    if isinstance(f, SubclassedFault):
        details.update(f.other_properties)
    return {
        **ctx.facts,
        "transaction_id": f.transaction_id or ctx.txn,
        "fault_code": f.fault_code or None,
        "fault_occurrence_id": f.fault_occurrence_id or None,
        "cause": f.cause or None,
        "severity": f.severity or None,
        "description": f.description or None,
        "lane": f.lane,
        "stage": stage_name(f.stage),
        "occurred_at": iso_date(f.occurred_at),
        "fault_type": full_type.rsplit(".", 1)[-1] if full_type else "Fault",
        "details": details,
    }


def map_fault_occurred(ctx: MessageContext, b: FaultOccurred) -> list[Event]:
    if b.fault is None:
        raise NothingToMap("Fault is missing or not an object")
    return [ctx.event(EventType.ASSET_FAULT, fault_payload(ctx, b.fault), 0, None)]


def _fault_ended(ctx: MessageContext, b: FaultCleared, acknowledged: bool) -> list[Event]:
    payload = {
        **ctx.facts,
        "fault_occurrence_id": b.fault_occurrence_id or None,
        "operator": operator(b.operator),
        "acknowledged_only": acknowledged,
    }
    et = EventType.ASSET_FAULT_ACKNOWLEDGED if acknowledged else EventType.ASSET_FAULT_CLEARED
    return [ctx.event(et, payload, 0, None)]


def map_fault_cleared(ctx: MessageContext, b: FaultCleared) -> list[Event]:
    return _fault_ended(ctx, b, False)


def map_fault_acknowledged(ctx: MessageContext, b: FaultCleared) -> list[Event]:
    return _fault_ended(ctx, b, True)


def map_state(ctx: MessageContext, b: StationStateChanged) -> list[Event]:
    old, new = parse_resource_state(b.old_state), parse_resource_state(b.new_state)
    if new is None:
        raise NothingToMap(f"StationStateChanged.NewState is not a ResourceState: {b.new_state!r}")
    duration = parse_timespan(b.old_state_duration)
    fault = b.related_fault
    payload = {
        **ctx.facts,
        "old_state": asset_state(old).value,
        "new_state": asset_state(new).value,
        "old_state_code": old,
        "new_state_code": new,
        "old_state_duration_s": duration.total_seconds() if duration is not None else None,
        "related_fault": fault_payload(ctx, fault) if fault is not None else None,
        "old_state_name": state_name(old),
        "new_state_name": state_name(new),
    }
    return [ctx.event(EventType.ASSET_STATE_CHANGED, payload, 0, None)]
