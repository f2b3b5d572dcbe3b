"""The lenient path: a CFX message of any shape (a dict) read into the typed structs of `pywats_cfx.schema`,
then mapped by the same mappers as the hot path (`pywats_cfx.mappers`).

The codec's hot path decodes SDK-shaped bytes straight into the structs; what that decode refuses comes here.
`read_body` repairs what senders stray on, guided by the structs' own field types, so there is one
description of each message and one mapping:
- keys in any case (Newtonsoft matches names case-insensitively) and vendor properties (dropped, except in
  a Fault, where they travel in the event's ``details``, and in a measurement of a kind the SDK lacks);
- numbers as text, placeholders such as ``"string"`` in number fields (read as null), text as numbers;
- measurements without ``$type`` (the kind follows from the properties present), NumericValues flattened
  into the measurement, measurement kinds the SDK does not define (kind ``other``, their properties kept);
- a value of the wrong shape: a list where an object is expected, or the reverse, is a `MappingError`
  naming the property, and the codec quarantines the message with that reason.

Envelope conventions (shared with the typed path, see `mappers.MessageContext`): `metadata.timestamp` is the
envelope TimeStamp; a naive TimeStamp is taken as UTC and ``extras["timestamp_assumed_utc"]`` says so; without
any TimeStamp the receive time is used and ``extras["timestamp_missing"]`` says so. Valid messages without
a mapping become `EventType.PASSTHROUGH` events carrying the body.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import msgspec.inspect as mi

from pywats_events import Event, EventType

from . import schema
from ._json import canonical, canonicalize_tree
from ._values import parse_float, parse_int, parse_str, type_name
from .mappers import MAPPED_MESSAGES, MAPPERS, NothingToMap, event_type_for
from .mappers._context import NS, MessageContext, event_id
from .mappers._fields import num_or_raw
from .received import CFXEnvelope

__all__ = ["MAPPED_MESSAGES", "NS", "MappingError", "event_id", "event_type_for", "map_envelope", "read_body"]


class MappingError(ValueError):
    """A message of a mapped type whose structure cannot be mapped (e.g. `TestedUnits` is not a list)."""


_Read = Callable[[Any], Any]


# --------------------------------------------------------------------------- scalars


def _bool(v: Any) -> bool | None:
    return v if type(v) is bool else None


def _any(v: Any) -> Any:
    return canonicalize_tree(v)


def _dict(v: Any) -> dict[str, Any] | None:
    return canonicalize_tree(v) if isinstance(v, dict) else None


def _scalar_union(kinds: tuple[type, ...]) -> _Read:
    """A union of scalar types: a value of one of them as it is, else the first conversion that reads it."""
    convert: list[_Read] = []
    for kind in kinds:
        if kind is int:
            convert.append(parse_int)
        elif kind is float:
            convert.append(parse_float)
        elif kind is str:
            convert.append(parse_str)

    def read(v: Any) -> Any:
        if type(v) in kinds:
            return v
        if type(v) is int and float in kinds:
            return float(v)
        for c in convert:
            out = c(v)
            if out is not None:
                return out
        return None

    return read


# --------------------------------------------------------------------------- structures


class _StructReader:
    """Reads a dict into one struct type: keys matched in any case (the canonical spelling wins a clash),
    each value read by its field's type, properties the struct does not name set aside."""

    __slots__ = ("cls", "fields", "known", "lower")

    def __init__(self, cls: type[msgspec.Struct]) -> None:
        self.cls = cls
        self.fields: dict[str, tuple[str, _Read]] = {}
        self.lower: dict[str, str] = {}
        self.known: frozenset[str] = frozenset()

    def setup(self) -> None:
        info = mi.type_info(self.cls)
        assert isinstance(info, mi.StructType)
        for f in info.fields:
            self.fields[f.encode_name] = (f.name, _reader(f.type, f.encode_name))
        self.lower = {k.lower(): k for k in self.fields}
        #: the wire names as the SDK spells them, and the tag that chose the struct (``$type``)
        self.known = frozenset(self.fields) | ({info.tag_field} if info.tag_field else set())

    def __call__(self, v: Any) -> Any:
        if not isinstance(v, dict):
            raise MappingError(f"{self.cls.__name__} must be an object, got {type(v).__name__}")
        try:  # an object as the SDK writes it: read by msgspec, exactly as the typed path reads it
            return msgspec.convert(v, self.cls)
        except msgspec.ValidationError:
            pass  # repaired field by field; the objects inside try the exact reading again
        values, unknown = self.read_fields(v)
        if unknown and self.cls is schema.Fault:
            return schema.SubclassedFault(**values, other_properties=unknown)
        return self.cls(**values)

    def read_fields(self, v: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        values: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        fields, lower = self.fields, self.lower
        if self.known.issuperset(v):  # every key spelled as the SDK spells it: one lookup each
            for key, value in v.items():
                entry = fields.get(key)
                if entry is not None:
                    values[entry[0]] = entry[1](value)
            return values, unknown
        for key, value in v.items():
            wire = key if key in fields else lower.get(key.lower()) if isinstance(key, str) else None
            if wire is None:
                unknown[key] = value
                continue
            attr, read = fields[wire]
            if attr in values and wire != key:  # a case variant after the canonical key: the canonical wins
                continue
            values[attr] = read(value)
        if unknown:
            unknown = canonicalize_tree(unknown)
        return values, unknown


def _optional_struct(reader: _StructReader) -> _Read:
    """A single nested object that senders sometimes leave as text or a number: read as absent."""

    def read(v: Any) -> Any:
        return reader(v) if isinstance(v, dict) else None

    return read


def _struct_or_text(reader: _StructReader) -> _Read:
    def read(v: Any) -> Any:
        return reader(v) if isinstance(v, dict) else parse_str(v)

    return read


def _list_of(item: _Read, name: str) -> _Read:
    """A list; anything else is an error when its items are read, else absent (a list passed on as sent)."""

    def read(v: Any) -> list[Any] | None:
        if v is None:
            return None
        if not isinstance(v, list):
            if item is _any:
                return None
            raise MappingError(f"{name} must be a list, got {type(v).__name__}")
        return [item(x) for x in v]

    return read


def _designators(v: Any) -> list[Any] | str | None:
    """ComponentsOfInterest: one CRDs text, or a list of designators (objects or text); else none."""
    if isinstance(v, str):
        return v
    if not isinstance(v, list):
        return None
    out: list[Any] = []
    for item in v:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            ref = _struct(schema.ComponentDesignator)(item).reference_designator
            if isinstance(ref, str):
                out.append(ref)
    return out


# --------------------------------------------------------------------------- measurements

_MEASUREMENTS = {cls.TYPE_NAME.rsplit(".", 1)[-1]: cls for cls in schema.MEASUREMENT_KINDS}
_NUMERIC_VALUE_NAMES = {f.encode_name.lower() for f in msgspec.structs.fields(schema.NumericValue)}


def _measurement(v: Any) -> schema.Measurement:
    """Any measurement shape. Without ``$type`` the kind follows from the properties present: a
    MeasuredValue makes it numeric, a flag or text Value boolean or text; a kind the SDK lacks is kept
    with its properties (`schema.OtherMeasurement`)."""
    if not isinstance(v, dict):
        raise MappingError(f"Measurement must be an object, got {type(v).__name__}")
    try:
        return msgspec.convert(v, schema.AnyMeasurement)
    except msgspec.ValidationError:
        pass
    keys = {k.lower(): k for k in v if isinstance(k, str)}
    full = type_name(v[keys["$type"]]) if "$type" in keys else None
    short = full.rsplit(".", 1)[-1] if full else None
    cls = _MEASUREMENTS.get(short) if short else None
    if short is None:
        value = v[keys["value"]] if "value" in keys else None
        if "measuredvalue" in keys and v[keys["measuredvalue"]] is not None:
            cls = schema.NumericMeasurement
        elif type(value) is bool:
            cls = schema.BooleanMeasurement
        elif type(value) is str:
            cls = schema.TextMeasurement
    if cls is None:
        values, unknown = _struct(schema.Measurement).read_fields(v)
        properties = {k: x for k, x in unknown.items() if not (isinstance(k, str) and k.lower() == "$type")}
        return schema.OtherMeasurement(**values, type_name=full, properties=properties)
    if cls is schema.NumericMeasurement:
        return _numeric(v)
    return _struct(cls)(v)


def _numeric(v: dict[str, Any]) -> schema.NumericMeasurement:
    reader = _struct(schema.NumericMeasurement)
    values, unknown = reader.read_fields(v)
    mv = values.get("measured_value")
    if not isinstance(mv, schema.NumericValue):  # some senders flatten NumericValue into the measurement
        flat = {k: x for k, x in unknown.items() if k.lower() in _NUMERIC_VALUE_NAMES}
        raw = next((x for k, x in v.items() if isinstance(k, str) and k.lower() == "measuredvalue"), None)
        if raw is not None and not isinstance(raw, dict):
            flat["Value"] = raw
        values["measured_value"] = _struct(schema.NumericValue)(flat)
    return schema.NumericMeasurement(**values)


# --------------------------------------------------------------------------- readers by type

_STRUCTS: dict[type, _StructReader] = {}


def _struct(cls: type[msgspec.Struct]) -> _StructReader:
    reader = _STRUCTS.get(cls)
    if reader is None:
        reader = _STRUCTS[cls] = _StructReader(cls)
        reader.setup()
    return reader


def _reader(t: mi.Type, name: str) -> _Read:
    """How a value of the wire is read into a field of type `t` (`name` names it in errors)."""
    if isinstance(t, mi.UnionType):
        kinds = [k for k in t.types if not isinstance(k, mi.NoneType)]
        if len(kinds) == 1:
            return _reader(kinds[0], name)
        structs = [k for k in kinds if isinstance(k, mi.StructType)]
        if structs and all(issubclass(s.cls, schema.Measurement) for s in structs):
            return _measurement
        if len(structs) == 1 and all(isinstance(k, mi.StrType | mi.StructType) for k in kinds):
            return _struct_or_text(_struct(structs[0].cls))
        if any(isinstance(k, mi.ListType) for k in kinds):  # ComponentsOfInterest, the one such union
            return _designators
        scalars = {mi.StrType: str, mi.IntType: int, mi.FloatType: float, mi.BoolType: bool}
        if set(map(type, kinds)) == {mi.FloatType, mi.BoolType, mi.StrType}:
            return num_or_raw
        return _scalar_union(tuple(scalars[type(k)] for k in kinds))
    if isinstance(t, mi.StrType):
        return parse_str
    if isinstance(t, mi.IntType):
        return parse_int
    if isinstance(t, mi.FloatType):
        return parse_float
    if isinstance(t, mi.BoolType):
        return _bool
    if isinstance(t, mi.DictType):
        return _dict
    if isinstance(t, mi.ListType):
        return _list_of(_reader(t.item_type, name), name)
    if isinstance(t, mi.StructType):
        return _optional_struct(_struct(t.cls))
    return _any


def read_body(body: dict[str, Any], body_type: Any) -> Any:
    """A MessageBody dict of any key spelling and value shape as `body_type`: a struct, or anything else
    (a dict body, or None for a message without a struct) for the body with its keys in canonical spelling.
    Raises `MappingError` naming the first property whose shape cannot be read."""
    if isinstance(body_type, type) and issubclass(body_type, msgspec.Struct):
        return _struct(body_type)(body)
    return canonicalize_tree(body)


# --------------------------------------------------------------------------- envelopes

_BY_LOWER = {name.lower(): m for name, m in MAPPERS.items()}


def _context(
    env: CFXEnvelope, body: Any, topic: str | None, source_hint: str | None, received: datetime | None
) -> MessageContext:
    if isinstance(body, dict):
        txn: Any = body.get("TransactionID")
    else:
        fault = getattr(body, "fault", None)
        txn = getattr(body, "transaction_id", None) or (fault.transaction_id if fault is not None else None)
    handle = env.source or source_hint or parse_str(canonical(env.body).get("CFXHandle"))
    return MessageContext(
        name=env.message_name,
        unique_id=env.unique_id,
        version=env.version,
        timestamp=env.timestamp,
        timestamp_assumed_utc=env.timestamp_assumed_utc,
        derived_id=env.derived_id,
        bare=env.bare,
        handle=handle,
        transaction_id=parse_str(txn),
        topic=topic,
        received=received,
    )


def map_envelope(
    env: CFXEnvelope,
    *,
    topic: str | None = None,
    source_hint: str | None = None,
    received: datetime | None = None,
) -> list[Event]:
    """Domain events for one envelope. Raises `MappingError` when a mapped message is structurally broken.

    Keys may be spelled in any case. Except for test/inspection results, `env.body` is replaced by its
    canonical-key form (parts of it travel in the payload as they are)."""
    mapper = _BY_LOWER.get(env.message_name.lower())
    try:
        if mapper is None or mapper.body_type is schema.EndpointBody:
            env.body = canonicalize_tree(env.body)
            if mapper is None:
                ctx = _context(env, env.body, topic, source_hint, received)
                return [ctx.event(EventType.PASSTHROUGH, {**ctx.facts, "body": env.body}, 0, None)]
            body = env.body
        else:
            body = read_body(env.body, mapper.body_type)
        return mapper.map(_context(env, body, topic, source_hint, received), body)
    except (MappingError, NothingToMap) as exc:
        raise MappingError(f"{env.message_name}: {exc}") from None
    except (TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise MappingError(
            f"{env.message_name}: unexpected structure ({type(exc).__name__}: {exc})"
        ) from None
