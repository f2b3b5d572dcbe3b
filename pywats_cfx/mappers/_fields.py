"""Event field values from CFX values, shared by the typed mappers and the lenient path so both agree."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from typing import Any

from .._values import parse_datetime, parse_float

__all__ = [
    "STEP_RESULTS",
    "WORK_RESULTS",
    "DateMemo",
    "earliest",
    "fmt_dt",
    "iso_date",
    "latest",
    "num_or_raw",
    "split_designators",
    "step_result",
]

_RESULT_NAMES = ("Passed", "Failed", "Error", "Aborted", "Skipped", "Unknown")
_STEP_RESULTS = {v.lower(): v for v in _RESULT_NAMES} | {"pass": "Passed", "fail": "Failed"}
#: TestResult text (as the SDK writes it, or in lower case) and null → its name, for one lookup per value;
#: other values go through `step_result`. Text keys only: `True == 1` must not find the name of result 1.
STEP_RESULTS: dict[Any, str] = {None: "Unknown"} | _STEP_RESULTS | {v: v for v in _RESULT_NAMES}
#: WorkResult names by their lower-case spelling
WORK_RESULTS = {v.lower(): v for v in ("Completed", "Failed", "Aborted", "Skipped")}


def step_result(v: Any) -> str:
    """A TestResult as its name: any case, ``pass`` / ``fail``, or the enum's number; else ``Unknown``."""
    if isinstance(v, str):
        return _STEP_RESULTS.get(v.lower(), "Unknown")
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 4:
        return _RESULT_NAMES[v]
    return "Unknown"


_CANON_DT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")


def fmt_dt(dt: datetime) -> str:
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def iso_date(v: Any) -> str | None:
    """A wire date as a timezone-aware ISO string: kept as sent when it already is one (offset, at most 6
    fractional digits), else rewritten (a naive date is UTC); None when it is no date."""
    if v is None:
        return None
    if isinstance(v, str) and _CANON_DT.fullmatch(v) is not None:
        return v if parse_datetime(v) is not None else None
    dt = parse_datetime(v)
    return fmt_dt(dt) if dt is not None else None


_EPOCH_MIN = datetime.min.replace(tzinfo=timezone.utc)
_NO_DATE: tuple[str | None, datetime] = (None, _EPOCH_MIN)


class DateMemo(dict[str | None, tuple[str | None, datetime]]):
    """Per-message memo: wire date text → (`iso_date` of it, its instant for ordering; the earliest
    instant when it is no date). A test result repeats its times in steps, measurements and conditions (the
    ICT sample: 145 dates, 50 distinct), so each distinct text is parsed once; the memo lives as long as one
    message, so nothing accumulates across messages. Keys are text or null only (hashable, like the
    typed structs' date fields)."""

    __slots__ = ()

    def __missing__(self, text: str | None) -> tuple[str | None, datetime]:
        out = _NO_DATE
        if text is not None:
            dt = None
            if _canonical(text) is not None:
                try:  # the C parser reads every canonical form from Python 3.11 on
                    dt = _fromisoformat(text) if _FROMISO_Z else parse_datetime(text)
                except ValueError:
                    dt = parse_datetime(text)
                if dt is not None:
                    out = (text, dt)
            else:
                dt = parse_datetime(text)
                if dt is not None:
                    out = (fmt_dt(dt), dt)
        self[text] = out
        return out


_canonical = _CANON_DT.fullmatch
_fromisoformat = datetime.fromisoformat
_FROMISO_Z = sys.version_info >= (3, 11)


def _instant(text: str) -> datetime:
    return parse_datetime(text) or _EPOCH_MIN


def earliest(texts: list[str]) -> str | None:
    return min(texts, key=_instant) if texts else None


def latest(texts: list[str]) -> str | None:
    return max(texts, key=_instant) if texts else None


def num_or_raw(v: Any) -> float | str | bool | None:
    """A number as float; a flag or non-numeric text as sent (an ExpectedValue need not be numeric)."""
    if isinstance(v, bool):
        return v
    f = parse_float(v)
    if f is not None:
        return f
    return v if isinstance(v, str) else None


_CRD_SPLIT = re.compile(r"[,;\s]+")


def split_designators(v: str) -> list[str]:
    """``"R1, R2;C3"`` → ``["R1", "R2", "C3"]`` (CRDs is one string listing reference designators)."""
    if v.isalnum():  # one designator: the usual case, no split needed
        return [v]
    return [p for p in _CRD_SPLIT.split(v) if p]
