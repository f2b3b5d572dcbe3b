"""JSON text → Python objects, and CFX property names → their canonical spelling.

`parse` keeps keys as sent: orjson does the common case several times faster than any Python-level hook could,
and the stdlib decoder takes over for what orjson refuses but Newtonsoft writes or tolerates (NaN/Infinity
literals, lone surrogates, integers beyond 64 bits), so the accepted input set and the error messages stay
those of `json`. Key spelling is fixed afterwards, only where it is read: `canonical` for one object (the
mapper, per object it touches), `canonicalize_tree` for a whole value handed on as-is.

One difference from `json` remains: an integer literal beyond 64 bits (no CFX property has one) is read by
orjson as the nearest float instead of an exact int.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ._names import CANONICAL_NAMES, canonical_name

__all__ = ["canonical", "canonicalize_keys", "canonicalize_tree", "loads", "parse"]

_issuperset = CANONICAL_NAMES.issuperset
_orjson_loads = orjson.loads
_OrjsonError = orjson.JSONDecodeError


def canonicalize_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """One object's keys in canonical spelling; unknown keys kept; on a case clash the first key wins."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        canon = canonical_name(key) if isinstance(key, str) else None
        if canon is None or canon in out or (canon != key and canon in obj):
            out.setdefault(key, value)
        else:
            out[canon] = value
    return out


def canonical(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` itself when every key is a canonical name (one C-level check), else a canonical copy."""
    return obj if _issuperset(obj) else canonicalize_keys(obj)


def canonicalize_tree(value: Any) -> Any:
    """`value` with every nested object's keys canonical. Objects are fixed in place (their containers are
    updated), so the call is idempotent and shared references stay shared; returns the (possibly new) root."""
    if type(value) is dict:
        if not _issuperset(value):
            value = canonicalize_keys(value)
        for k, v in value.items():
            tv = type(v)
            if tv is dict or tv is list:
                new = canonicalize_tree(v)
                if new is not v:
                    value[k] = new
    elif type(value) is list:
        for i, v in enumerate(value):
            tv = type(v)
            if tv is dict or tv is list:
                new = canonicalize_tree(v)
                if new is not v:
                    value[i] = new
    return value


def _no_constant(_name: str) -> None:
    # NaN / Infinity literals (Newtonsoft can write them) carry no value: read them as null.
    return None


_decoder = json.JSONDecoder(parse_constant=_no_constant)


def parse(text: str | bytes) -> Any:
    """Parse JSON (str or UTF-8 bytes), keys as sent. Raises ValueError (`json.JSONDecodeError`,
    `UnicodeDecodeError`) or RecursionError on bad input."""
    try:
        return _orjson_loads(text)
    except _OrjsonError:
        pass
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _decoder.decode(text)


def loads(text: str | bytes) -> Any:
    """Parse JSON with canonical CFX key spelling throughout."""
    return canonicalize_tree(parse(text))
