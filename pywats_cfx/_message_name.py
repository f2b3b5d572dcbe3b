"""Is this a CFX message name? The gate between "unknown but valid" (passthrough) and "not CFX" (quarantine).

Well-formed messages nobody maps (vendor extensions such as ``CFX.HaiNa.ProgramInitialized``) must
still reach subscribers as passthrough events, while unknown message names in poison input must be
quarantined. Both hold when "unknown" means "not a CFX name at all": a name is accepted when it is a
dotted identifier path under the ``CFX`` root (the root's case is not significant).
Anything else — missing, empty, not a string, spaces, empty or numeric segments — is refused with a reason.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CFX_MESSAGE_NAME", "message_name_problem"]

#: ``CFX`` (any case) then one or more ``.identifier`` segments, ASCII only
CFX_MESSAGE_NAME = re.compile(r"^[Cc][Ff][Xx](\.[A-Za-z_][A-Za-z0-9_]*)+$")

_MAX_SHOWN = 120


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def message_name_problem(value: Any, origin: str) -> str | None:
    """None when `value` is a plausible CFX message name, else the quarantine reason.

    `origin` says where the name came from (``MessageName``, ``$type``, ``the topic`` ...)."""
    if isinstance(value, str) and CFX_MESSAGE_NAME.fullmatch(value):
        return None
    if value is None:
        what = "missing"
    elif not isinstance(value, str):
        what = f"{_shown(value)} is a {type(value).__name__}, not a string"
    elif not value.strip():
        what = "empty"
    else:
        what = f"{_shown(value)} does not have the form CFX.<Name>[.<Name>...]"
    return f"not a CFX message name: {what} ({origin})"
