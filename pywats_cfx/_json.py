"""JSON text → Python objects with CFX property names in their canonical spelling.

The rewrite happens inside the parser (an ``object_hook``), so there is no second pass over the tree; an
object whose keys are all canonical already (the usual case) costs one C-level subset check.
"""

from __future__ import annotations

import json
from typing import Any

from ._names import CANONICAL_NAMES, canonical_name

__all__ = ["canonicalize_keys", "loads"]

_issuperset = CANONICAL_NAMES.issuperset


def _hook(obj: dict[str, Any]) -> dict[str, Any]:
    if _issuperset(obj):
        return obj
    return canonicalize_keys(obj)


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


def _no_constant(_name: str) -> None:
    # NaN / Infinity literals (Newtonsoft can write them) carry no value: read them as null.
    return None


_decoder = json.JSONDecoder(object_hook=_hook, parse_constant=_no_constant)


def loads(text: str | bytes) -> Any:
    """Parse JSON (str or UTF-8 bytes) with canonical CFX key spelling. Raises ValueError on bad input."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _decoder.decode(text)
