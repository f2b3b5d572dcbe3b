"""Lenient parsers for CFX scalar conventions (Newtonsoft-written dates, TimeSpans, SEMI states, numbers).

Real traffic carries placeholders (``"string"``), omitted fields and mixed forms, so every parser here returns
``None`` for what it cannot read instead of raising: one odd field must not cost the whole message.
"""

from __future__ import annotations

import math
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "parse_datetime",
    "parse_float",
    "parse_int",
    "parse_resource_state",
    "parse_str",
    "parse_timespan",
    "type_name",
]

_UTC = timezone.utc

# ISO 8601 as Newtonsoft writes it: 0-7 (we accept any number of) fractional digits, optional offset or Z.
_DT_RE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_FAST_ISO = sys.version_info >= (3, 11)


#: Microsoft's JSON date (Newtonsoft's `DateFormatHandling.MicrosoftDateFormat`): milliseconds since the
#: Unix epoch (UTC), and the sender's offset to show it in, e.g. ``/Date(1335205592410+0200)/``
_MS_DATE_RE = re.compile(r"^\s*\\?/Date\((-?\d{1,15})([+-]\d{4})?\)\\?/\s*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ms_date(value: str) -> datetime | None:
    m = _MS_DATE_RE.match(value)
    if m is None:
        return None
    millis, offset = m.groups()
    try:
        dt = _EPOCH + timedelta(milliseconds=int(millis))
    except OverflowError:
        return None
    if offset:
        sign = -1 if offset[0] == "-" else 1
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        if minutes >= 24 * 60:
            return None
        dt = dt.astimezone(timezone(sign * timedelta(minutes=minutes)))
    return dt


def parse_datetime(value: Any) -> datetime | None:
    """A timezone-aware datetime, or None. Naive times (no offset on the wire) are taken as UTC: the
    sender's zone is unknowable and UTC keeps ordering stable; callers flag it via `is_naive_datetime`.
    Besides ISO 8601 as Newtonsoft writes it, Microsoft's JSON form (``/Date(1335205592410)/``) is read."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    if not isinstance(value, str):
        return None
    if len(value) < 16 or value.lstrip("\\ ").startswith("/Date("):
        return _ms_date(value)
    if _FAST_ISO and len(value) <= 35:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return dt if dt.tzinfo is not None else dt.replace(tzinfo=_UTC)
    m = _DT_RE.match(value)
    if m is None:
        return None
    year, month, day, hour, minute, sec, frac, off = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = _UTC
    if off and off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
        if minutes >= 24 * 60:
            return None
        tz = timezone(sign * timedelta(minutes=minutes))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(sec or 0), micro, tzinfo=tz
        )
    except ValueError:
        return None


def is_naive_datetime(value: Any) -> bool:
    """True when a wire date string carries no offset (so `parse_datetime` assumed UTC)."""
    if not isinstance(value, str):
        return False
    m = _DT_RE.match(value)
    return m is not None and m.group(8) is None


# .NET TimeSpan: [-][d.]hh:mm[:ss[.fffffff]]
_TS_RE = re.compile(r"^\s*(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?\s*$")
_ISO_DUR_RE = re.compile(r"^\s*(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\s*$")


def parse_timespan(value: Any) -> timedelta | None:
    """A .NET TimeSpan (``"00:29:01.0840472"``, ``"6.00:00:00"``), an ISO 8601 duration, or seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return timedelta(seconds=value) if math.isfinite(value) and abs(value) < 1e12 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit() and len(text) <= 8:  # .NET reads a bare integer as days
        return timedelta(days=int(text))
    m = _TS_RE.match(value)
    if m is not None:
        neg, days, hours, minutes, secs, frac = m.groups()
        if int(minutes) > 59 or (secs is not None and int(secs) > 59) or (days is None and int(hours) > 23):
            return None
        td = timedelta(
            days=int(days or 0),
            hours=int(hours),
            minutes=int(minutes),
            seconds=int(secs or 0),
            microseconds=int((frac or "0").ljust(7, "0")) / 10,
        )
        return -td if neg else td
    m = _ISO_DUR_RE.match(value)
    if m is not None and any(m.groups()[1:]):
        neg, days, hours, minutes, secs = m.groups()
        td = timedelta(
            days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(secs or 0)
        )
        return -td if neg else td
    return None


# Legacy hex-like codes some CFX 1.x senders used for blocked / starved.
_LEGACY_STATES = {"22A0": 2201, "22B0": 2202}


def parse_resource_state(value: Any) -> int | None:
    """SEMI E10/E58 ResourceState as an int: JSON number (``5000``), numeric string (``"1100"``),
    legacy ``"22A0"``/``"22B0"``, or the enum member name (``"USD_Repair"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 100000 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and 0 <= value < 100000 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit() and len(text) <= 5:
        return int(text)
    legacy = _LEGACY_STATES.get(text.upper())
    if legacy is not None:
        return legacy
    from ._states import STATE_NAMES_TO_CODES  # small table, imported lazily to keep this module leaf-only

    return STATE_NAMES_TO_CODES.get(text.lower())


def parse_float(value: Any) -> float | None:
    """A finite float from a number or numeric string; None for placeholders like ``"string"``."""
    if value is None:
        return None
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def parse_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def parse_str(value: Any) -> str | None:
    """Text as-is; numbers become their text; containers and empty strings become None."""
    if value is None:
        return None
    if type(value) is str or isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def type_name(value: Any) -> str | None:
    """The short CFX type name from a ``$type`` discriminator: ``"CFX.Structures.NumericMeasurement, CFX"``
    → ``"CFX.Structures.NumericMeasurement"``."""
    if not isinstance(value, str):
        return None
    name = value.split(",", 1)[0].strip()
    return name or None
