"""The event envelope every layer speaks: `Event`, its `EventMetadata` and the `EventType` catalogue."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Mapping
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


class _EventIds:
    """Event ids in the form of ``str(uuid.uuid4())``: a random 20-digit prefix per process (version and
    variant digits included) and a 48-bit counter from a random start. Unique like random ids (a clash
    needs two processes drawing the same 74 random bits), but a counter costs a quarter of formatting
    random bits, and `uuid4()` would ask the kernel for every id, a system call that in a busy listener
    also hands the GIL to the broker client's thread. A forked child draws a new prefix."""

    def __init__(self) -> None:
        self.reseed()
        if hasattr(os, "register_at_fork"):  # not on Windows
            os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        rnd = random.Random()
        h = f"{rnd.getrandbits(80):020x}"
        variant = "89ab"[int(h[16], 16) & 3]
        self.prefix = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-"
        self.counter = itertools.count(rnd.getrandbits(48))

    def new(self) -> str:
        return "%s%012x" % (self.prefix, next(self.counter) & 0xFFFF_FFFF_FFFF)  # noqa: UP031 - fastest


_ids = _EventIds()
_new_id = _ids.new

_EVENT_TYPES: dict[str, EventType] = {member.value: member for member in EventType}
_UTC = timezone.utc


def _utcnow() -> datetime:
    return datetime.now(_UTC)


# ------------------------------------------------------------------------------------------ construction
# Building events is on every producer's hot path (a transport decoding messages, a script publishing in a
# loop); pydantic validation of the two nested models cost several times what the bus needs to dispatch an
# event. So `Event(...)` and `EventMetadata(...)` take a fast path when every value given already has the
# exact type the field stores (`str`, `int`, an aware or naive `datetime`, a `dict` with `str` keys, an
# `EventMetadata`): pydantic would keep (or, for dicts, shallow-copy) those values unchanged, and the fast
# path stores the same. Anything else (str subclasses, bools for ints, text timestamps, other mappings,
# unknown names, subclasses of the models) goes through pydantic, which converts it or raises the usual
# `ValidationError`. JSON (`from_json`) is always validated by pydantic: its metadata arrives as a dict.
# The fast path writes the instance state pydantic would write; `_fast_path_matches` checks that at import,
# so a pydantic version that keeps more state turns it off instead of building half-made models.
#
# Every in-flight event is a handful of objects the garbage collector keeps scanning, so the fast path also
# shares the `fields set` (which fields were given) between instances; `__setattr__` copies it before the
# first change, so an assignment never leaks into another event.


class _NotGiven:
    """Tells a missing argument apart from an explicit None (pydantic then applies the default, or says
    that a required field is missing)."""

    def __repr__(self) -> str:
        return "<not given>"


_UNSET: Any = _NotGiven()
#: the fast path is on (see `_fast_path_matches`)
_FAST = True
_object_setattr = object.__setattr__
_new_object = object.__new__
# the setters of BaseModel's slots, what `object.__setattr__(model, name, value)` ends up calling
_set_values = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__

#: shared fields sets, by the given names in order (bounded: only valid field names get here)
_FIELDS_SETS: dict[tuple[str, ...], set[str]] = {}
#: `id()`s of the shared sets, for the copy-on-write in `__setattr__`
_SHARED: set[int] = set()


def _shared_fields_set(names: tuple[str, ...]) -> set[str]:
    fields_set = _FIELDS_SETS.get(names)
    if fields_set is None:
        fields_set = _FIELDS_SETS[names] = set(names)
        _SHARED.add(id(fields_set))
    return fields_set


_NO_FIELDS = _shared_fields_set(())
_SOURCE_FIELD = _shared_fields_set(("source",))
_EVENT_FIELDS = {
    (payload, metadata): _shared_fields_set(
        ("event_type", *(("payload",) if payload else ()), *(("metadata",) if metadata else ()))
    )
    for payload in (False, True)
    for metadata in (False, True)
}


def _own_fields_set(model: BaseModel) -> None:
    """Before a change to `model`'s fields set: make it the model's own."""
    fields_set = model.__pydantic_fields_set__
    if id(fields_set) in _SHARED:
        _object_setattr(model, "__pydantic_fields_set__", set(fields_set))


def _set_state(model: BaseModel, values: dict[str, Any], fields_set: set[str]) -> None:
    """What `BaseModel.__init__` leaves on an instance of a model without extras or private attributes."""
    _set_values(model, values)
    _set_fields_set(model, fields_set)
    _set_extra(model, None)
    _set_private(model, None)


def _str_keyed_copy(value: Any, str_values: bool = False) -> dict[str, Any] | None:
    """A copy of `value` (as pydantic makes one) if it is a plain `dict` with plain `str` keys (and, with
    `str_values`, values); None when pydantic has to look at it."""
    if value.__class__ is not dict:
        return None
    for k, v in value.items():
        if k.__class__ is not str or (str_values and v.__class__ is not str):
            return None
    return dict(value)


#: every EventMetadata field in field order, with its default (`_UNSET`: made per instance)
_METADATA_DEFAULTS: dict[str, Any] = {
    "event_id": _UNSET,
    "correlation_id": None,
    "causation_id": None,
    "timestamp": _UNSET,
    "source": None,
    "source_topic": None,
    "ordering_key": None,
    "attempt": 0,
    "trace_context": _UNSET,
    "extras": _UNSET,
}
_OPTIONAL_TEXT = frozenset({str, type(None)})


def _plain_metadata(data: dict[str, Any]) -> dict[str, Any] | None:
    """The field values of ``EventMetadata(**data)`` if every value in `data` is stored as given (or, for
    a naive timestamp, marked UTC); None when pydantic has to validate."""
    v = {**_METADATA_DEFAULTS, **data}  # in field order; an unknown name makes it longer
    if not (
        len(v) == len(_METADATA_DEFAULTS)
        and v["correlation_id"].__class__ in _OPTIONAL_TEXT
        and v["causation_id"].__class__ in _OPTIONAL_TEXT
        and v["source"].__class__ in _OPTIONAL_TEXT
        and v["source_topic"].__class__ in _OPTIONAL_TEXT
        and v["ordering_key"].__class__ in _OPTIONAL_TEXT
        and v["attempt"].__class__ is int
    ):
        return None
    event_id = v["event_id"]
    if event_id is _UNSET:
        v["event_id"] = _new_id()
    elif event_id.__class__ is not str:
        return None
    timestamp = v["timestamp"]
    if timestamp is _UNSET:
        v["timestamp"] = datetime.now(_UTC)
    elif timestamp.__class__ is not datetime:
        return None
    elif timestamp.tzinfo is None:
        v["timestamp"] = timestamp.replace(tzinfo=_UTC)
    trace_context = v["trace_context"]
    if trace_context is _UNSET:
        v["trace_context"] = {}
    elif (trace_context := _str_keyed_copy(trace_context, str_values=True)) is None:
        return None
    else:
        v["trace_context"] = trace_context
    extras = v["extras"]
    if extras is _UNSET:
        v["extras"] = {}
    elif (extras := _str_keyed_copy(extras)) is None:
        return None
    else:
        v["extras"] = extras
    return v


def _fresh_metadata(source: str | None) -> EventMetadata:
    """``EventMetadata(source=source)`` (``EventMetadata()`` for None) for a `source` known to be valid."""
    meta = _new_object(EventMetadata)
    _set_values(
        meta,
        {
            "event_id": _new_id(),
            "correlation_id": None,
            "causation_id": None,
            "timestamp": datetime.now(_UTC),
            "source": source,
            "source_topic": None,
            "ordering_key": None,
            "attempt": 0,
            "trace_context": {},
            "extras": {},
        },
    )
    _set_fields_set(meta, _NO_FIELDS if source is None else _SOURCE_FIELD)
    _set_extra(meta, None)
    _set_private(meta, None)
    return meta


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

    def __init__(self, /, **data: Any) -> None:
        values = _plain_metadata(data) if _FAST and self.__class__ is EventMetadata else None
        if values is None:
            super().__init__(**data)
        else:
            _set_state(self, values, _shared_fields_set(tuple(data)))

    def __setattr__(self, name: str, value: Any) -> None:
        _own_fields_set(self)
        super().__setattr__(name, value)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # a producer's local time without an offset is read as UTC, so every event compares and sorts
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)


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

    def __init__(
        self,
        /,
        *,
        event_type: EventType | str = _UNSET,
        payload: Mapping[str, Any] = _UNSET,
        metadata: EventMetadata | Mapping[str, Any] = _UNSET,
        source: str | None = None,
        **unknown: Any,
    ) -> None:
        """`source` is a shortcut into `metadata`, as in the pyWATS docs: ``Event(..., source="station")``."""
        if _FAST and not unknown and self.__class__ is Event and (source is None or source.__class__ is str):
            et: Any = event_type
            if et.__class__ is not EventType:
                et = _EVENT_TYPES.get(et, et) if et.__class__ is str else _UNSET
            p: Any = {} if payload is _UNSET else None
            if payload.__class__ is dict:
                for key in payload:
                    if key.__class__ is not str:
                        break
                else:
                    p = payload.copy()
            meta: Any = _UNSET
            if metadata is _UNSET:
                meta = _fresh_metadata(source)
            elif metadata.__class__ is EventMetadata:
                meta = metadata if source is None else metadata.model_copy(update={"source": source})
            if et is not _UNSET and p is not None and meta is not _UNSET:
                _set_values(self, {"event_type": et, "payload": p, "metadata": meta})
                _set_fields_set(
                    self, _EVENT_FIELDS[payload is not _UNSET, metadata is not _UNSET or source is not None]
                )
                _set_extra(self, None)
                _set_private(self, None)
                return
        self._init_validated(event_type, payload, metadata, source, unknown)

    def _init_validated(
        self, event_type: Any, payload: Any, metadata: Any, source: str | None, unknown: dict[str, Any]
    ) -> None:
        """Full pydantic validation, for values the fast path in `__init__` does not vouch for."""
        data = dict(unknown)
        for name, value in (("event_type", event_type), ("payload", payload), ("metadata", metadata)):
            if value is not _UNSET:
                data[name] = value
        if source is not None:
            meta = data.get("metadata")
            if meta is None:
                data["metadata"] = EventMetadata(source=source)
            elif isinstance(meta, EventMetadata):
                data["metadata"] = meta.model_copy(update={"source": source})
            else:
                data["metadata"] = {**meta, "source": source}
        super().__init__(**data)

    def __setattr__(self, name: str, value: Any) -> None:
        _own_fields_set(self)
        super().__setattr__(name, value)

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
        key = m.ordering_key
        if key:
            return key
        p = self.payload
        # unrolled (first truthy of the three): this runs for every event the bus accepts
        v = p.get("unit_serial") or p.get("serial_number") or p.get("unit_id")
        if v:
            return str(v)
        return m.source or m.event_id

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> Event:
        return cls.model_validate_json(data)


def _fast_path_matches() -> bool:
    """Whether models built by the fast path hold exactly the state pydantic gives the same input."""
    given: dict[str, Any] = {
        "event_id": "id-1",
        "correlation_id": "c",
        "causation_id": None,
        "timestamp": datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=_UTC),
        "source": "s",
        "source_topic": "t",
        "ordering_key": "k",
        "attempt": 2,
        "trace_context": {"traceparent": "x"},
        "extras": {"n": [1, None]},
    }
    try:
        fast = Event(event_type=EventType.TEST_RESULT, payload={"a": 1}, metadata=EventMetadata(**given))
        validated = Event.model_validate_json(fast.model_dump_json())
        return (
            fast.__getstate__() == validated.__getstate__()
            and fast.metadata.__getstate__() == validated.metadata.__getstate__()
            and id(fast.metadata.__pydantic_fields_set__) in _SHARED  # it was the fast path
        )
    except Exception:
        return False


_FAST = _fast_path_matches()
