"""The event envelope every layer speaks: `Event`, its `EventMetadata` and the `EventType` catalogue."""

from __future__ import annotations

import os
import random
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Event", "EventMetadata", "EventType"]


class EventType(str, Enum):
    """Domain event categories (pyWATS "Event Architecture") plus what CFX mapping and the bus need."""

    # test
    TEST_RESULT = "test.result"
    TEST_STARTED = "test.started"
    INSPECTION_RESULT = "inspection.result"
    # asset
    ASSET_FAULT = "asset.fault"
    ASSET_FAULT_CLEARED = "asset.fault_cleared"
    ASSET_FAULT_ACKNOWLEDGED = "asset.fault_acknowledged"
    ASSET_STATE_CHANGED = "asset.state_changed"
    ASSET_MAINTENANCE = "asset.maintenance"
    #: a reading from a machine or sensor (MQTT topic templates: temperature, humidity, ...)
    ASSET_TELEMETRY = "asset.telemetry"
    # material
    MATERIAL_INSTALLED = "material.installed"
    MATERIAL_CONSUMED = "material.consumed"
    MATERIALS_LOADED = "material.loaded"
    MATERIALS_UNLOADED = "material.unloaded"
    # production
    WORK_STARTED = "production.work_started"
    WORK_COMPLETED = "production.work_completed"
    UNIT_DISQUALIFIED = "production.unit_disqualified"
    UNITS_ARRIVED = "production.unit_arrived"
    UNITS_DEPARTED = "production.unit_departed"
    # endpoints (machines announcing themselves)
    ENDPOINT_CONNECTED = "endpoint.connected"
    ENDPOINT_SHUTTING_DOWN = "endpoint.shutting_down"
    ENDPOINT_HEARTBEAT = "endpoint.heartbeat"
    # valid traffic with no domain mapping: still subscribable
    PASSTHROUGH = "passthrough"
    UNKNOWN = "unknown"
    # system (emitted by the bus itself)
    TRANSPORT_CONNECTED = "system.transport_connected"
    TRANSPORT_DISCONNECTED = "system.transport_disconnected"
    HANDLER_ERROR = "system.handler_error"
    EVENT_DEAD_LETTER = "system.event_dead_letter"

    def __str__(self) -> str:
        return self.value

    @property
    def is_system(self) -> bool:
        return self.value.startswith("system.")


#: random, not cryptographic: `uuid4()` asks the kernel for every id, a system call that in a busy listener
#: also hands the GIL to the broker client's thread. Reseeded in forked children so their ids differ.
_id_source = random.Random()
os.register_at_fork(after_in_child=_id_source.seed)
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def _new_id() -> str:
    """A random version-4 UUID string (same form as ``str(uuid.uuid4())``)."""
    h = f"{_id_source.getrandbits(128) & _V4_CLEAR | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_EVENT_TYPES: dict[str, EventType] = {member.value: member for member in EventType}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class EventMetadata(BaseModel):
    """Where an event came from and how it relates to others; travels with the event into journal and DLQ."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    #: unique per event; stable across retries, journal replays and DLQ replays
    event_id: str = Field(default_factory=_new_id)
    #: groups events that stem from one business transaction (CFX TransactionID, else the message id)
    correlation_id: str | None = None
    #: the id of what caused this event (the CFX UniqueID of the source message)
    causation_id: str | None = None
    #: when the fact happened (the CFX TimeStamp), always timezone-aware
    timestamp: datetime = Field(default_factory=_utcnow)
    #: who produced it (CFX handle, MQTT client, station name)
    source: str | None = None
    #: broker topic / routing key / file it arrived through
    source_topic: str | None = None
    #: events with the same key are handled in order; None means "use the bus default"
    ordering_key: str | None = None
    #: how many times handling has been attempted (incremented by the bus)
    attempt: int = 0
    #: W3C trace context or similar, passed through untouched
    trace_context: dict[str, str] = Field(default_factory=dict)
    #: free-form extras a transport or mapper wants to keep
    extras: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # a producer's local time without an offset is read as UTC, so every event compares and sorts
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class Event(BaseModel):
    """One domain event. `payload` is a plain dict so handlers written against the docs keep working;
    typed views live in `pywats_events.payloads` (`TestResultEvent.model_validate(event.payload)`)."""

    model_config = ConfigDict(extra="forbid")

    event_type: EventType | str
    payload: dict[str, Any] = Field(default_factory=dict)
    metadata: EventMetadata = Field(default_factory=EventMetadata)

    @field_validator("event_type", mode="plain", json_schema_input_type=str)
    @classmethod
    def _known_types_become_enum(cls, value: Any) -> EventType | str:
        # "test.result" read back from a journal must compare and hash like EventType.TEST_RESULT; a plugin's
        # own type stays a string. One dict lookup: this runs for every event a transport decodes.
        if isinstance(value, EventType):
            return value
        if isinstance(value, str):
            known: EventType | None = _EVENT_TYPES.get(value)
            return known if known is not None else str(value)
        raise ValueError(f"event_type must be a string, not {type(value).__name__}")

    def __init__(self, source: str | None = None, **data: Any) -> None:
        # `Event(..., source="station")` as in the pyWATS docs: a shortcut into metadata.
        if source is not None:
            meta = data.get("metadata")
            if meta is None:
                data["metadata"] = EventMetadata(source=source)
            elif isinstance(meta, EventMetadata):
                data["metadata"] = meta.model_copy(update={"source": source})
            else:
                data["metadata"] = {**meta, "source": source}
        super().__init__(**data)

    @property
    def id(self) -> str:
        return self.metadata.event_id

    @property
    def source(self) -> str | None:
        return self.metadata.source

    @property
    def timestamp(self) -> datetime:
        return self.metadata.timestamp

    @property
    def correlation_id(self) -> str | None:
        return self.metadata.correlation_id

    @property
    def type_name(self) -> str:
        """The event type as plain text (works for built-in and plugin-defined types)."""
        et = self.event_type
        return et.value if isinstance(et, EventType) else str(et)

    def ordering_key(self) -> str:
        """Explicit key, else the unit serial in the payload, else the source, else the event id."""
        m = self.metadata
        if m.ordering_key:
            return m.ordering_key
        p = self.payload
        for k in ("unit_serial", "serial_number", "unit_id"):
            v = p.get(k)
            if v:
                return str(v)
        return m.source or m.event_id

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> Event:
        return cls.model_validate_json(data)
