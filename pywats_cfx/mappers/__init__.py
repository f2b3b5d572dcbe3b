"""The registry of CFX message mappers: for each mapped message, its event type, its typed body
(`pywats_cfx.schema`) and the function that turns that body into events. Grouped by CFX domain.

`decode_typed` is the ingest hot path: bytes → typed envelope and body → events in one pass, for messages
sent as the SDK writes them. It returns None for anything else (another key spelling, a placeholder in a
number field, a vendor property, a batch, a bare body, no UniqueID or TimeStamp, nothing to report), and
the codec then takes the lenient path (`pywats_cfx.mapping`), which yields the same events for what both
accept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pywats_events import Event, EventType

from .. import schema
from .._json import canonicalize_tree
from .._values import is_naive_datetime, parse_datetime, parse_str
from ._context import MessageContext, event_id
from .endpoint import map_endpoint_connected, map_endpoint_shutting_down, map_heartbeat
from .materials import map_materials_loaded, map_materials_unloaded
from .production import (
    NothingToMap,
    map_materials_installed,
    map_units_arrived,
    map_units_departed,
    map_units_disqualified,
    map_work_completed,
    map_work_started,
)
from .resource_performance import (
    map_fault_acknowledged,
    map_fault_cleared,
    map_fault_occurred,
    map_state,
)
from .test_and_inspection import map_units_inspected, map_units_tested

__all__ = [
    "MAPPED_MESSAGES",
    "MAPPERS",
    "MessageContext",
    "MessageMapper",
    "NothingToMap",
    "decode_typed",
    "event_id",
    "event_type_for",
]


@dataclass(frozen=True)
class MessageMapper:
    """How one CFX message becomes events: the event type, the MessageBody's type and the mapping."""

    event_type: EventType
    body_type: Any
    map: Callable[[MessageContext, Any], list[Event]]
    #: the MessageBody alone, once the envelope has been read with the body as `msgspec.Raw`
    decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False, compare=False)
    #: the envelope with this body, in one pass, when the MessageName could be read ahead
    envelope_decoder: msgspec.json.Decoder[schema.Envelope[Any]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", msgspec.json.Decoder(self.body_type))
        envelope: Any = schema.Envelope  # parametrized at run time by the body type
        object.__setattr__(self, "envelope_decoder", msgspec.json.Decoder(envelope[self.body_type]))


MAPPERS: dict[str, MessageMapper] = {
    # CFX.Production.TestAndInspection
    "CFX.Production.TestAndInspection.UnitsTested": MessageMapper(
        EventType.TEST_RESULT, schema.UnitsTested, map_units_tested
    ),
    "CFX.Production.TestAndInspection.UnitsInspected": MessageMapper(
        EventType.INSPECTION_RESULT, schema.UnitsInspected, map_units_inspected
    ),
    # CFX.Production
    "CFX.Production.WorkStarted": MessageMapper(EventType.WORK_STARTED, schema.WorkStarted, map_work_started),
    "CFX.Production.WorkCompleted": MessageMapper(
        EventType.WORK_COMPLETED, schema.WorkCompleted, map_work_completed
    ),
    "CFX.Production.UnitsDisqualified": MessageMapper(
        EventType.UNIT_DISQUALIFIED, schema.UnitsDisqualified, map_units_disqualified
    ),
    "CFX.Production.UnitsArrived": MessageMapper(
        EventType.UNITS_ARRIVED, schema.UnitsMoved, map_units_arrived
    ),
    "CFX.Production.UnitsDeparted": MessageMapper(
        EventType.UNITS_DEPARTED, schema.UnitsMoved, map_units_departed
    ),
    "CFX.Production.Assembly.MaterialsInstalled": MessageMapper(
        EventType.MATERIAL_INSTALLED, schema.MaterialsInstalled, map_materials_installed
    ),
    # CFX.Materials.Storage
    "CFX.Materials.Storage.MaterialsLoaded": MessageMapper(
        EventType.MATERIALS_LOADED, schema.MaterialsLoaded, map_materials_loaded
    ),
    "CFX.Materials.Storage.MaterialsUnloaded": MessageMapper(
        EventType.MATERIALS_UNLOADED, schema.MaterialsUnloaded, map_materials_unloaded
    ),
    # CFX.ResourcePerformance
    "CFX.ResourcePerformance.FaultOccurred": MessageMapper(
        EventType.ASSET_FAULT, schema.FaultOccurred, map_fault_occurred
    ),
    "CFX.ResourcePerformance.FaultCleared": MessageMapper(
        EventType.ASSET_FAULT_CLEARED, schema.FaultCleared, map_fault_cleared
    ),
    "CFX.ResourcePerformance.FaultAcknowledged": MessageMapper(
        EventType.ASSET_FAULT_ACKNOWLEDGED, schema.FaultAcknowledged, map_fault_acknowledged
    ),
    "CFX.ResourcePerformance.StationStateChanged": MessageMapper(
        EventType.ASSET_STATE_CHANGED, schema.StationStateChanged, map_state
    ),
    # CFX (endpoints)
    "CFX.EndpointConnected": MessageMapper(
        EventType.ENDPOINT_CONNECTED, schema.EndpointBody, map_endpoint_connected
    ),
    "CFX.EndpointShuttingDown": MessageMapper(
        EventType.ENDPOINT_SHUTTING_DOWN, schema.EndpointBody, map_endpoint_shutting_down
    ),
    "CFX.Heartbeat": MessageMapper(EventType.ENDPOINT_HEARTBEAT, schema.EndpointBody, map_heartbeat),
}

#: CFX message names with a domain mapping → the event type they produce
MAPPED_MESSAGES: dict[str, EventType] = {name: m.event_type for name, m in MAPPERS.items()}
_BY_LOWER = {name.lower(): m.event_type for name, m in MAPPERS.items()}


def event_type_for(message_name: str) -> EventType:
    """The event type a message name maps to (`PASSTHROUGH` for unmapped names)."""
    return _BY_LOWER.get(message_name.lower(), EventType.PASSTHROUGH)


_ENVELOPE = msgspec.json.Decoder(schema.Envelope[msgspec.Raw])
#: the MessageName where SDK senders write it, first in the envelope
_LEADING_NAME = re.compile(rb'\A\s*\{\s*"MessageName"\s*:\s*"([A-Za-z0-9_.]{1,200})"')


def _transaction_id(body: Any) -> str | None:
    if isinstance(body, dict):
        return parse_str(body.get("TransactionID"))
    if isinstance(body, schema.FaultOccurred):
        return body.fault.transaction_id or None if body.fault else None
    txn: str | None = getattr(body, "transaction_id", None)
    return txn or None


def decode_typed(text: bytes, *, topic: str | None, source_hint: str | None) -> list[Event] | None:
    """Events for one SDK-shaped envelope of a mapped message, else None (the lenient path decides).

    Raises `msgspec.DecodeError` (any shape it does not know) or `NothingToMap`."""
    lead = _LEADING_NAME.match(text)
    mapper = MAPPERS.get(lead.group(1).decode()) if lead is not None else None
    if mapper is not None:  # envelope and body in one pass
        env = mapper.envelope_decoder.decode(text)
        if MAPPERS.get(env.message_name) is not mapper:  # a second MessageName key won
            return None
        body = env.message_body
    else:
        raw_env = _ENVELOPE.decode(text)
        mapper = MAPPERS.get(raw_env.message_name)
        if mapper is None:
            return None
        env, body = raw_env, None
    if not env.unique_id or env.time_stamp is None:
        return None
    timestamp = parse_datetime(env.time_stamp)
    if timestamp is None:
        return None
    if body is None:
        body = mapper.decoder.decode(env.message_body)
    handle = env.source or source_hint
    if isinstance(body, dict):
        body = canonicalize_tree(body)
        handle = handle or parse_str(body.get("CFXHandle"))
    ctx = MessageContext(
        name=env.message_name,
        unique_id=env.unique_id,
        version=env.version or None,
        timestamp=timestamp,
        timestamp_assumed_utc=is_naive_datetime(env.time_stamp),
        handle=handle,
        transaction_id=_transaction_id(body),
        topic=topic,
    )
    return mapper.map(ctx, body) or None
