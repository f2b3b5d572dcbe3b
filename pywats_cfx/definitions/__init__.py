"""What the CFX standard defines: every message name, and the properties of the messages and structures
the CFX schema reference describes, with their C# types (``cfx_definitions.json``, made by
`pywats_cfx.definitions.generate`), joined with the typed description of the mapped messages
(`pywats_cfx.schema`), which may name properties the reference leaves out.

The conformance check (`pywats_cfx.explorer.conformance`) reads it; nothing on the hot path does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import msgspec
import msgspec.inspect as mi

__all__ = [
    "CFX_VERSIONS",
    "CFXDefinitions",
    "FieldDefinition",
    "TypeDefinition",
    "cfx_definitions",
    "typed_description",
]

#: the published versions of the standard (an envelope's ``Version``)
CFX_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "2.0", "2.1")

#: C# value types: never null unless ``?``, so the SDK always writes them
_VALUE_TYPES = frozenset(
    {"Guid", "int", "long", "short", "byte", "uint", "double", "float", "decimal", "bool", "Boolean"}
    | {"DateTime", "TimeSpan", "Double", "Int32"}
)


@dataclass(frozen=True)
class FieldDefinition:
    """One property: its wire name and C# type (None when only the typed description names it loosely)."""

    name: str
    type: str | None
    optional: bool = False
    #: the CFX version that added it, when the reference says so
    added: str | None = None


@dataclass(frozen=True)
class TypeDefinition:
    """A message body or structure: its properties (base classes' included) by wire name."""

    name: str
    fields: dict[str, FieldDefinition] = field(default_factory=dict)
    #: False for a polymorphic base whose subclasses (not all described) may carry more properties
    closed: bool = True

    def required(self, enums: frozenset[str]) -> list[FieldDefinition]:
        """The properties the SDK always writes: non-nullable value types (enums too), not marked optional."""
        return [
            f
            for f in self.fields.values()
            if f.type is not None and not f.optional and (f.type in _VALUE_TYPES or f.type in enums)
        ]


@dataclass(frozen=True)
class CFXDefinitions:
    """The lookup the conformance check uses."""

    #: every CFX message name the SDK defines
    message_names: frozenset[str]
    #: message name → its MessageBody, for the described messages
    messages: dict[str, TypeDefinition]
    #: short structure name (``NumericValue``) → definition
    structures: dict[str, TypeDefinition]
    #: short and full structure names by full name, to resolve a ``$type``
    full_names: dict[str, str]
    #: short enum name → member names (and numbers, where the enum is written as one)
    enums: dict[str, dict[str, int | None]]

    def structure_for_type(self, type_name: str) -> TypeDefinition | None:
        """The structure a ``$type`` (``CFX.Structures.NumericMeasurement, CFX``) names, if described."""
        full = type_name.split(",", 1)[0].strip()
        short = self.full_names.get(full)
        return self.structures.get(short) if short else None


@cache
def cfx_definitions() -> CFXDefinitions:
    """The definitions, loaded once."""
    text = resources.files(__package__).joinpath("cfx_definitions.json").read_text(encoding="utf-8")
    return _build(json.loads(text))


def _build(table: dict[str, Any]) -> CFXDefinitions:
    raw_structs: dict[str, dict[str, Any]] = {n.rsplit(".", 1)[-1]: s for n, s in table["structures"].items()}
    enums = {n.rsplit(".", 1)[-1]: dict(e["members"]) for n, e in table["enums"].items()}

    def fields_of(spec: dict[str, Any]) -> dict[str, FieldDefinition]:
        out: dict[str, FieldDefinition] = {}
        base = raw_structs.get(spec["base"]) if spec.get("base") else None
        if base is not None:
            out.update(fields_of(base))
        for name, f in spec["fields"].items():
            out[name] = FieldDefinition(name, f["type"], f.get("optional", False), f.get("added"))
        return out

    structures = {
        short: TypeDefinition(short, fields_of(spec), closed=not spec.get("subclasses"))
        for short, spec in raw_structs.items()
    }
    messages = {name: TypeDefinition(name, fields_of(spec)) for name, spec in table["messages"].items()}
    _join_schema(messages, structures)
    return CFXDefinitions(
        message_names=frozenset(table["message_names"]),
        messages=messages,
        structures=structures,
        full_names={n: n.rsplit(".", 1)[-1] for n in table["structures"]},
        enums=enums,
    )


def _join_schema(messages: dict[str, TypeDefinition], structures: dict[str, TypeDefinition]) -> None:
    """Add the properties the typed description (`pywats_cfx.schema`) names and the reference does not."""
    from ..mappers import MAPPERS

    for name, mapper in MAPPERS.items():
        if isinstance(mapper.body_type, type) and issubclass(mapper.body_type, msgspec.Struct):
            target = messages.setdefault(name, TypeDefinition(name))
            _add_struct_fields(target, mapper.body_type, structures)


def _add_struct_fields(
    target: TypeDefinition, struct: type[msgspec.Struct], structures: dict[str, TypeDefinition]
) -> None:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    for f in info.fields:
        if f.encode_name == "$type" or f.encode_name in target.fields:
            continue
        target.fields[f.encode_name] = FieldDefinition(
            f.encode_name, _csharp(f.type, structures), optional=True
        )


def _csharp(t: mi.Type, structures: dict[str, TypeDefinition]) -> str | None:
    """The C# type name a msgspec type stands for; None when it is loose (`Any`, a union of shapes)."""
    if isinstance(t, mi.UnionType):
        kinds = [k for k in t.types if not isinstance(k, mi.NoneType)]
        return _csharp(kinds[0], structures) if len(kinds) == 1 else None
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.IntType):
        return "int"
    if isinstance(t, mi.FloatType):
        return "double"
    if isinstance(t, mi.ListType):
        item = _csharp(t.item_type, structures)
        return f"List<{item}>" if item else None
    if isinstance(t, mi.StructType):
        name = t.cls.__name__
        return name if name in structures else None
    return None


def typed_description() -> dict[str, list[tuple[str, str]]]:
    """What the codec reads, from its typed description (`pywats_cfx.schema`): each mapped message (full
    CFX name) and then each structure those hold (short name), with its properties (wire name, type)."""
    from ..mappers import MAPPERS

    out: dict[str, list[tuple[str, str]]] = {}
    structures: list[type[msgspec.Struct]] = []
    for name, mapper in sorted(MAPPERS.items()):
        if isinstance(mapper.body_type, type) and issubclass(mapper.body_type, msgspec.Struct):
            out[name] = _typed_fields(mapper.body_type, structures)
        else:
            out[name] = [("*", "the body, as sent")]
    done: set[type[msgspec.Struct]] = set()
    while structures:
        struct = structures.pop(0)
        if struct not in done:
            done.add(struct)
            out[struct.__name__] = _typed_fields(struct, structures)
    return out


def _typed_fields(struct: type[msgspec.Struct], found: list[type[msgspec.Struct]]) -> list[tuple[str, str]]:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    return [(f.encode_name, _type_text(f.type, found)) for f in info.fields]


def _type_text(t: mi.Type, found: list[type[msgspec.Struct]]) -> str:
    """A msgspec type in words (``list of Test``, ``number``); structures met are appended to `found`."""
    if isinstance(t, mi.UnionType):
        return " or ".join(_type_text(k, found) for k in t.types if not isinstance(k, mi.NoneType))
    if isinstance(t, mi.ListType):
        return f"list of {_type_text(t.item_type, found)}"
    if isinstance(t, mi.StructType):
        found.append(t.cls)
        return t.cls.__name__
    words = {mi.StrType: "text", mi.IntType: "integer", mi.FloatType: "number", mi.BoolType: "true/false"}
    return words.get(type(t), "as sent")
