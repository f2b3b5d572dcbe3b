"""The CFX messages as typed structs, read leniently from a dict of any shape.

There is one typed description of CFX, `pywats_cfx.schema`: the codec decodes SDK-shaped bytes straight into
its structs, the lenient path reads everything else into the same structs (`pywats_cfx.mapping.read_body`),
the explorer shows them and the generated definitions list their properties. This module is the way in for
code that wants typed access to a message it holds as a dict:

- `parse_message(name, body)`: the message's struct (`MESSAGE_TYPES`), or the body with its keys in
  canonical spelling for a message that has none;
- `parse_envelope(envelope)`: the envelope around it;
- `to_wire(value)`: a struct back in CFX JSON shape (wire names, nulls left out, vendor properties kept).

Attributes are the CFX property names in snake case (``TestedUnits`` → ``tested_units``); values keep their
wire form (dates and enums as text). Reading never raises for odd values (a placeholder in a number field
reads as null); a value of the wrong shape raises `pywats_cfx.MappingError` naming the property.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET

from .. import schema
from .._json import canonical
from .._values import parse_str
from ..mappers import MAPPERS
from ..mapping import read_body
from ..received import CFXEnvelope
from ..schema import *  # noqa: F403 - re-export the typed description
from ..schema import __all__ as _schema_all

__all__ = [
    "MESSAGE_TYPES",
    "model_for",
    "parse_envelope",
    "parse_message",
    "to_wire",
    *_schema_all,
]

#: every message with a struct of its own, by its full CFX name
MESSAGE_TYPES: dict[str, type[msgspec.Struct]] = {
    name: m.body_type
    for name, m in MAPPERS.items()
    if isinstance(m.body_type, type) and issubclass(m.body_type, msgspec.Struct)
}
_BY_LOWER = {k.lower(): v for k, v in MESSAGE_TYPES.items()}


def model_for(message_name: str) -> type[msgspec.Struct] | None:
    """The struct of a message name (any case); None when the message has none (its body stays a dict)."""
    return _BY_LOWER.get(message_name.lower())


def parse_message(message_name: str, body: dict[str, Any]) -> Any:
    """The MessageBody as its struct, or as a dict with canonical keys when the message has no struct."""
    return read_body(body, model_for(message_name))


def parse_envelope(envelope: CFXEnvelope | dict[str, Any]) -> schema.Envelope[Any]:
    """A decoded `CFXEnvelope` (from the codec) or a raw envelope dict (keys in any case), with its body
    read by `parse_message`. Dates stay text, as in the structs."""
    if isinstance(envelope, CFXEnvelope):
        return schema.Envelope(
            message_name=envelope.message_name,
            message_body=parse_message(envelope.message_name, envelope.body),
            unique_id=envelope.unique_id,
            time_stamp=envelope.timestamp.isoformat() if envelope.timestamp is not None else None,
            version=envelope.version,
            source=envelope.source,
            target=envelope.target,
            request_id=envelope.request_id,
        )
    doc = canonical(envelope)
    name = parse_str(doc.get("MessageName")) or ""
    body = doc.get("MessageBody")
    return schema.Envelope(
        message_name=name,
        message_body=parse_message(name, body if isinstance(body, dict) else {}),
        unique_id=parse_str(doc.get("UniqueID")),
        time_stamp=parse_str(doc.get("TimeStamp")),
        version=parse_str(doc.get("Version")),
        source=parse_str(doc.get("Source")),
        target=parse_str(doc.get("Target")),
        request_id=parse_str(doc.get("RequestID")),
    )


def to_wire(value: Any) -> Any:
    """A struct (or a list / dict holding structs) in CFX JSON shape: wire names, ``$type`` where the SDK
    writes one, nulls left out; the properties a vendor subclass adds are put back beside the others."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        # the lenient path's own structs: the properties of the CFX type they stand for, then the others
        wire_type: type[msgspec.Struct] = type(value)
        others: dict[str, Any] = {}
        if isinstance(value, schema.OtherMeasurement):
            wire_type, others = schema.Measurement, value.properties
            if value.type_name:
                out["$type"] = value.type_name
        elif isinstance(value, schema.SubclassedFault):
            wire_type, others = schema.Fault, value.other_properties
        else:
            config = value.__struct_config__
            if config.tag_field is not None and isinstance(config.tag, str):
                out[config.tag_field] = config.tag
        for f in msgspec.structs.fields(wire_type):
            v = getattr(value, f.name)
            if v is not None and v is not UNSET:
                out[f.encode_name] = to_wire(v)
        out.update(others)
        return out
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value
