"""The conformance check (``--check``): where a message deviates from the CFX standard.

Reads the message as sent (wire layers peeled, JSON parsed, no key spelling fixed) and compares it with the
CFX definitions (`pywats_cfx.definitions`): message name and version, properties the definition of the
message or structure does not have (with the closest defined name), values of the wrong type, placeholders
left from templates, properties the standard always writes but the message lacks, timestamps without an
offset. Building only: `render` shows it.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pywats_events.transports.replay import iter_messages

from .._wire import WireError, unwrap
from ..codec import CFXCodec
from ..definitions import CFX_VERSIONS, CFXDefinitions, TypeDefinition, cfx_definitions
from ..samples import load_sample

__all__ = [
    "ConformanceReport",
    "Finding",
    "FindingKind",
    "MessageConformance",
    "check_inputs",
    "check_message",
    "check_paths",
    "check_samples",
]

_ENVELOPE_FIELDS = (
    "MessageName",
    "Version",
    "TimeStamp",
    "UniqueID",
    "Source",
    "Target",
    "RequestID",
    "MessageBody",
)
_CFX_NAME = re.compile(r"CFX(?:\.[A-Z][A-Za-z0-9]*)+")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_TIMESPAN = re.compile(r"^-?(\d+\.)?\d{1,2}:\d{2}:\d{2}(\.\d{1,7})?$")
_ZERO_GUID = re.compile(r"^[0-]+$")
_INTS = frozenset({"int", "long", "short", "byte", "uint", "Int32"})
_NUMBERS = frozenset({"double", "float", "decimal", "Double"})
_BOOLS = frozenset({"bool", "Boolean"})
#: text a template leaves in place of a value (compared case-insensitively)
_PLACEHOLDER_TEXT = frozenset({"string", "guid", "datetime", "sample string", "todo", "tbd"})


class FindingKind(str, Enum):
    """What kind of deviation a finding is; the JSON and the pinned corpus counts use the values."""

    UNDECODABLE = "undecodable"
    UNKNOWN_MESSAGE = "unknown_message"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    PLACEHOLDER = "placeholder"
    MISSING_REQUIRED = "missing_required"
    TIMESTAMP_WITHOUT_OFFSET = "timestamp_without_offset"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    #: where in the message: ``MessageBody.TestedUnits[0].Tests[1].Result``
    path: str
    detail: str
    #: the closest defined name, for an unknown field or message name
    suggestion: str | None = None


@dataclass(frozen=True)
class MessageConformance:
    """The findings for one message of one input."""

    #: the input it came from (a file, ``file:line``, a sample)
    label: str
    message_name: str | None
    findings: tuple[Finding, ...]
    #: False when the definitions know the message's name but not its properties (only the envelope checked)
    body_checked: bool = True


@dataclass(frozen=True)
class ConformanceReport:
    messages: tuple[MessageConformance, ...]

    @property
    def clean(self) -> bool:
        return not any(m.findings for m in self.messages)

    def counts(self) -> dict[str, int]:
        """Findings per kind, every kind present (0 when none)."""
        c = Counter(f.kind for m in self.messages for f in m.findings)
        return {k.value: c.get(k, 0) for k in FindingKind}


# ---------------------------------------------------------------- inputs


def check_paths(paths: Iterable[str | Path], *, message_name: str | None = None) -> ConformanceReport:
    """Check files, directories (recursively) and JSON-lines captures, as ``--file`` and replay read them.

    A bare MessageBody is named by `message_name`, its ``$type`` or a CFX message name in its file name.
    """
    inputs = ((m.origin, m.body, message_name or _name_in(m.origin)) for m in iter_messages(paths))
    return check_inputs(inputs)


def check_samples(names: Iterable[str]) -> ConformanceReport:
    return check_inputs((f"sample {n}", load_sample(n), None) for n in names)


def check_inputs(inputs: Iterable[tuple[str, bytes, str | None]]) -> ConformanceReport:
    """Check ``(label, raw bytes, message name for a bare body)`` inputs."""
    definitions = cfx_definitions()
    limits = CFXCodec().limits
    out: list[MessageConformance] = []
    for label, raw, name in inputs:
        try:
            text, _ = unwrap(raw, None, limits)
            data = json.loads(text)
        except (WireError, ValueError) as exc:
            out.append(_undecodable(label, f"not a CFX JSON message: {exc}"))
            continue
        items = data if isinstance(data, list) else [data]
        for index, item in enumerate(items):
            where = f"{label}[{index}]" if isinstance(data, list) else label
            out.append(check_message(item, label=where, message_name=name, definitions=definitions))
    return ConformanceReport(tuple(out))


def _undecodable(label: str, detail: str) -> MessageConformance:
    return MessageConformance(
        label, None, (Finding(FindingKind.UNDECODABLE, "", detail),), body_checked=False
    )


def _name_in(origin: str) -> str | None:
    found = _CFX_NAME.findall(Path(origin.split(":", 1)[0] if ":" in origin else origin).name)
    names = cfx_definitions().message_names
    return next((n for n in found if n in names), found[0] if found else None)


# ---------------------------------------------------------------- one message


def check_message(
    data: Any,
    *,
    label: str,
    message_name: str | None = None,
    definitions: CFXDefinitions | None = None,
) -> MessageConformance:
    """The findings for one parsed message: an envelope, or a bare MessageBody named by `message_name`."""
    d = definitions or cfx_definitions()
    findings: list[Finding] = []
    if not isinstance(data, dict):
        return _undecodable(label, f"a message is a JSON object, not {_json_kind(data)}")
    if "MessageBody" in data or "MessageName" in data:
        body, prefix = data.get("MessageBody"), "MessageBody"
        name = data.get("MessageName")
        _check_envelope(data, findings)
    else:
        body, prefix = data, ""
        type_name = data.get("$type")
        name = type_name.split(",", 1)[0].strip() if isinstance(type_name, str) else message_name
    if not isinstance(name, str):
        findings.append(Finding(FindingKind.UNKNOWN_MESSAGE, "MessageName", "the message has no name"))
        return MessageConformance(label, None, tuple(findings), body_checked=False)
    if name not in d.message_names:
        findings.append(
            Finding(
                FindingKind.UNKNOWN_MESSAGE,
                "MessageName",
                f"{name} is not a CFX message",
                _closest(name, d.message_names),
            )
        )
        return MessageConformance(label, name, tuple(findings), body_checked=False)
    definition = d.messages.get(name)
    if definition is None:
        return MessageConformance(label, name, tuple(findings), body_checked=False)
    if not isinstance(body, dict):
        findings.append(
            Finding(FindingKind.WRONG_TYPE, prefix, f"MessageBody is {_json_kind(body)}, not an object")
        )
    else:
        _Checker(d, findings).structure(body, definition, prefix)
    return MessageConformance(label, name, tuple(findings))


def _check_envelope(data: Mapping[str, Any], findings: list[Finding]) -> None:
    for key in data:
        if key not in _ENVELOPE_FIELDS:
            findings.append(
                Finding(
                    FindingKind.UNKNOWN_FIELD,
                    key,
                    "not a property of the CFX envelope",
                    _closest(key, _ENVELOPE_FIELDS),
                )
            )
    version = data.get("Version")
    if version is not None and (
        not isinstance(version, str) or ".".join(version.split(".")[:2]) not in CFX_VERSIONS
    ):
        findings.append(
            Finding(
                FindingKind.UNKNOWN_VERSION,
                "Version",
                f"{version!r} is not a CFX version ({', '.join(CFX_VERSIONS)})",
            )
        )
    checker = _Checker(cfx_definitions(), findings)
    for key, ctype in (("TimeStamp", "DateTime"), ("UniqueID", "Guid?"), ("MessageName", "string")):
        if key in data:
            checker.value(data[key], ctype, key)


class _Checker:
    """Walks a body against its definition, appending findings."""

    def __init__(self, definitions: CFXDefinitions, findings: list[Finding]) -> None:
        self.d = definitions
        self.findings = findings
        self.enum_names = frozenset(definitions.enums)

    def add(self, kind: FindingKind, path: str, detail: str, suggestion: str | None = None) -> None:
        self.findings.append(Finding(kind, path, detail, suggestion))

    def structure(self, obj: Mapping[str, Any], definition: TypeDefinition, path: str) -> None:
        declared = obj.get("$type")
        full = declared.split(",", 1)[0].strip() if isinstance(declared, str) else None
        if full is not None and definition.name not in (full, full.rsplit(".", 1)[-1]):
            concrete = self.d.structure_for_type(full)
            if concrete is None:  # a subclass the definitions do not describe: check what its base defines
                definition = TypeDefinition(definition.name, definition.fields, closed=False)
            else:
                definition = concrete
        for key, value in obj.items():
            if key == "$type":
                continue
            f = definition.fields.get(key)
            sub = _join(path, key)
            if f is None:
                if definition.closed:
                    self.add(
                        FindingKind.UNKNOWN_FIELD,
                        sub,
                        f"not a property of {definition.name}",
                        _closest(key, definition.fields),
                    )
                continue
            if f.type is not None:
                self.value(value, f.type, sub)
        for f in definition.required(self.enum_names):
            if f.name not in obj:
                self.add(
                    FindingKind.MISSING_REQUIRED,
                    _join(path, f.name),
                    f"{definition.name} always has {f.name} ({f.type})",
                )

    def value(self, value: Any, ctype: str, path: str) -> None:
        nullable = ctype.endswith("?")
        t = ctype.rstrip("?")
        if value is None:
            if not nullable and (t in _INTS | _NUMBERS | _BOOLS | {"Guid", "DateTime", "TimeSpan"}):
                self.add(FindingKind.WRONG_TYPE, path, f"null where CFX has {t}")
            return
        if t.startswith("List<") and t.endswith(">"):
            if not isinstance(value, list):
                self.wrong(path, t, value)
                return
            for i, item in enumerate(value):
                self.value(item, t[5:-1], f"{path}[{i}]")
            return
        if t.startswith("Dictionary<"):
            if not isinstance(value, dict):
                self.wrong(path, t, value)
            return
        if t == "string" or t == "byte[]":
            if not isinstance(value, str):
                self.wrong(path, t, value)
            elif t == "string":
                self.placeholder(value, path)
            elif not _is_base64(value):
                self.add(FindingKind.WRONG_TYPE, path, "not base64 text, where CFX has byte[]")
            return
        if t == "Guid":
            if not isinstance(value, str) or not _GUID.match(value):
                self.wrong(path, t, value)
            elif _ZERO_GUID.match(value):
                self.add(FindingKind.PLACEHOLDER, path, "an all-zero GUID")
            return
        if t in _INTS:
            if not isinstance(value, int) or isinstance(value, bool):
                self.wrong(path, t, value)
            return
        if t in _NUMBERS:
            if not isinstance(value, int | float) or isinstance(value, bool):
                self.wrong(path, t, value)
            return
        if t in _BOOLS:
            if not isinstance(value, bool):
                self.wrong(path, t, value)
            return
        if t == "DateTime":
            self.timestamp(value, path)
            return
        if t == "TimeSpan":
            if not isinstance(value, str) or not _TIMESPAN.match(value):
                self.wrong(path, t, value)
            return
        if t in self.d.enums:
            self.enum(value, t, path)
            return
        definition = self.d.structures.get(t)
        if definition is not None:
            if isinstance(value, dict):
                self.structure(value, definition, path)
            else:
                self.wrong(path, t, value)
            return
        if not isinstance(value, dict | list) and t[:1].isupper():  # an undescribed structure is an object
            self.wrong(path, t, value)

    def wrong(self, path: str, ctype: str, value: Any) -> None:
        if isinstance(value, str) and value.strip().lower() in _PLACEHOLDER_TEXT:
            self.add(FindingKind.PLACEHOLDER, path, f"{value!r} looks left from a template (CFX has {ctype})")
            return
        shown = json.dumps(value, ensure_ascii=False)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        self.add(FindingKind.WRONG_TYPE, path, f"{shown} ({_json_kind(value)}) where CFX has {ctype}")

    def placeholder(self, value: str, path: str) -> None:
        if value.strip().lower() in _PLACEHOLDER_TEXT:
            self.add(FindingKind.PLACEHOLDER, path, f"{value!r} looks left from a template")

    def enum(self, value: Any, t: str, path: str) -> None:
        members = self.d.enums[t]
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.wrong(path, t, value)
            return
        if isinstance(value, int) or value.lstrip("-").isdigit():
            numbers = {v for v in members.values() if v is not None}
            if numbers and int(value) not in numbers:
                self.add(FindingKind.WRONG_TYPE, path, f"{value} is not a code of {t}")
            return
        if value.lower() not in {m.lower() for m in members}:
            if value.strip().lower() in _PLACEHOLDER_TEXT:
                self.placeholder(value, path)
            else:
                self.add(
                    FindingKind.WRONG_TYPE,
                    path,
                    f"{value!r} is not a member of {t}",
                    _closest(value, members),
                )

    def timestamp(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            self.wrong(path, "DateTime", value)
            return
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.wrong(path, "DateTime", value)
            return
        if parsed.year <= 1:
            self.add(FindingKind.PLACEHOLDER, path, f"{value!r} is the zero date")
        elif parsed.tzinfo is None:
            self.add(
                FindingKind.TIMESTAMP_WITHOUT_OFFSET,
                path,
                f"{value!r} has no UTC offset: its time zone is a guess",
            )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _closest(name: str, known: Iterable[str]) -> str | None:
    """A case variant, else the closest spelling (difflib), else None."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return close[0] if close else None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "an array" if isinstance(value, list) else "an object"


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
