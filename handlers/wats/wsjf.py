"""WSJF UUT reports from test/inspection results (WATS_API.md §2).

Pure functions: no I/O, no resolution. The caller passes what was resolved (pn, rev, process code,
station name); this module only shapes the document. Statuses are set explicitly everywhere because WATS
stores what it is sent and propagates nothing (§2.4): a failed measurement fails its step, a failed step
fails the report.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from pywats_events.payloads import (
    Defect,
    Measurement,
    MeasurementKind,
    StepResult,
    Symptom,
    TestResultEvent,
    TestStep,
)

from .numeric_limits import numeric_limits

__all__ = [
    "REPORT_NAMESPACE",
    "ROOT_NAME",
    "MeasurementWarning",
    "ReportHeader",
    "build_uut_report",
    "build_uut_report_with_warnings",
    "numeric_comp_op",
    "report_id",
]

#: namespace of deterministic report ids (uuid5 over message id + unit)
REPORT_NAMESPACE = uuid.UUID("5b0f1c2e-7a43-4c8e-9d1a-3f6e2b8c4d10")
ROOT_NAME = "MainSequence Callback"
_MAX_NAME = 100
_MAX_TEXT = 100
_MAX_REPORT_TEXT = 5000

_STATUS = {
    StepResult.PASSED: "P",
    StepResult.FAILED: "F",
    StepResult.ERROR: "E",
    StepResult.ABORTED: "T",
    StepResult.SKIPPED: "S",
}


def report_id(message_id: str, unit_serial: str, unit_position: int | None = None) -> str:
    """Same CFX message + same unit → same id, so a redelivered message overwrites its report."""
    key = f"{message_id}|{unit_serial}|{'' if unit_position is None else unit_position}"
    return str(uuid.uuid5(REPORT_NAMESPACE, key))


class ReportHeader:
    """The resolved header values a report needs beside the event."""

    def __init__(
        self,
        *,
        id: str,
        part_number: str,
        revision: str,
        process_code: int,
        machine_name: str,
        location: str,
        purpose: str = "Production",
        start: datetime | None = None,
        timezone: str | None = None,
    ) -> None:
        self.id = id
        self.part_number = part_number
        self.revision = revision
        self.process_code = process_code
        self.machine_name = machine_name
        self.location = location
        self.purpose = purpose
        self.start = start
        self.timezone = timezone


@dataclass(frozen=True)
class MeasurementWarning:
    """A measurement the report carries although its numbers contradict each other (shown in the step's
    report text and counted in the report's misc info, never silently)."""

    step: str
    measurement: str
    #: "unit_mismatch" (limits in units that cannot be converted to the value's) or "limit_contradiction"
    #: (the value is outside its limits but passed, or within them but failed)
    kind: str
    #: finer label for metrics: "quantity", "unknown_unit", "ambiguous_unit", "outside_limits", ...
    reason: str
    text: str

    @property
    def report_text(self) -> str:
        label = "Unit check" if self.kind == "unit_mismatch" else "Limit check"
        return f"{label}: {self.measurement}: {self.text}"


def _clip(text: str | None, limit: int = _MAX_TEXT) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(moment: datetime, zone: tzinfo | None) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if zone is not None:
        moment = moment.astimezone(zone)
    return moment.isoformat()


def _number(value: Any) -> float | str | None:
    """WSJF numbers; NaN/Inf travel as strings (§2.1), non-numbers are not numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or math.isinf(number):
        return str(number)
    return number


def _comp_op(
    low_limit: float | None, high_limit: float | None, expected_value: Any
) -> tuple[str, float | None, float | None]:
    low, high = _number(low_limit), _number(high_limit)
    low_f = low if isinstance(low, float) else None
    high_f = high if isinstance(high, float) else None
    if low_f is not None and high_f is not None:
        return "GELE", low_f, high_f
    if low_f is not None:
        return "GE", low_f, None
    if high_f is not None:
        return "LE", high_f, None
    expected = _number(expected_value)
    if isinstance(expected, float):
        return "EQ", expected, None
    return "LOG", None, None


def numeric_comp_op(m: Measurement) -> tuple[str, float | None, float | None]:
    """(compOp, lowLimit, highLimit) from the limits present, in the value's unit (`numeric_limits`).
    Single-limit operators carry their limit in `lowLimit` (§2.5): low only → GE, high only → LE,
    expected only → EQ, both → GELE, none → LOG."""
    limits = numeric_limits(m)
    return _comp_op(limits.low, limits.high, limits.expected)


def _evaluate(op: str, value: float | str | None, low: float | None, high: float | None) -> bool | None:
    if not isinstance(value, float):
        return None
    if op == "GELE" and low is not None and high is not None:
        return low <= value <= high
    if op == "GE" and low is not None:
        return value >= low
    if op == "LE" and low is not None:
        return value <= low
    if op == "EQ" and low is not None:
        return value == low
    return None


def _at_or_beyond(value: float, limit: float, above: bool) -> bool:
    """`value` on the accepted side of `limit`, a limit hit up to float noise counting as accepted."""
    if math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-15):
        return True
    return value > limit if above else value < limit


def _within_limits(op: str, value: float, low: float | None, high: float | None) -> bool | None:
    """Does `value` satisfy its acceptance limits (GELE/GE/LE)? None for operators without them: an
    expected value alone (EQ) is a nominal value, not a limit."""
    if op == "GELE" and low is not None and high is not None:
        return _at_or_beyond(value, low, True) and _at_or_beyond(value, high, False)
    if op == "GE" and low is not None:
        return _at_or_beyond(value, low, True)
    if op == "LE" and low is not None:
        return _at_or_beyond(value, low, False)
    return None


def _meas_status(m: Measurement, computed: bool | None) -> str:
    if m.result in _STATUS:
        return _STATUS[m.result]
    if computed is False:
        return "F"
    return "P"


def _g(number: float) -> str:
    return f"{number:.12g}"


def _limits_text(op: str, low: float, high: float | None, unit: str) -> str:
    if op == "GELE" and high is not None:
        return f"limits {_g(low)}..{_g(high)}{unit}"
    return f"{'minimum' if op == 'GE' else 'maximum'} {_g(low)}{unit}"


def _numeric_meas(m: Measurement, step: str, name: str, flags: list[MeasurementWarning]) -> dict[str, Any]:
    limits = numeric_limits(m)
    op, low, high = _comp_op(limits.low, limits.high, limits.expected)
    value = _number(m.value)
    meas: dict[str, Any] = {"compOp": op}
    if value is not None:
        meas["value"] = value
    if limits.unit:
        meas["unit"] = _clip(limits.unit, 50)
    if low is not None:
        meas["lowLimit"] = low
    if high is not None:
        meas["highLimit"] = high
    meas["status"] = _meas_status(m, _evaluate(op, value, low, high))
    if limits.problem is not None:
        reason = limits.reason or "unknown_unit"
        flags.append(MeasurementWarning(step, name, "unit_mismatch", reason, limits.problem))
    elif isinstance(value, float) and low is not None and m.result in (StepResult.PASSED, StepResult.FAILED):
        within = _within_limits(op, value, low, high)
        passed = m.result is StepResult.PASSED
        if within is not None and within is not passed:
            unit = f" {limits.unit}" if limits.unit else ""
            where = "outside" if passed else "within"
            verdict = "Passed" if passed else "Failed"
            text = (
                f"value {_g(value)}{unit} is {where} its {_limits_text(op, low, high, unit)} "
                f"but the CFX result is {verdict}"
            )
            flags.append(MeasurementWarning(step, name, "limit_contradiction", f"{where}_limits", text))
    return meas


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "pass", "passed", "1", "yes"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "fail", "failed", "0", "no"}:
        return False
    if isinstance(value, (int, float)):
        return bool(value)
    return None


def _boolean_meas(m: Measurement) -> dict[str, Any]:
    value = _as_bool(m.value)
    expected = _as_bool(m.expected_value)
    computed = None if value is None or expected is None else value == expected
    status = _meas_status(m, computed)
    return {"value": value if value is not None else status == "P", "status": status}


def _string_meas(m: Measurement) -> dict[str, Any]:
    value = "" if m.value is None else str(m.value)
    meas: dict[str, Any] = {"value": _clip(value, _MAX_TEXT)}
    if m.expected_value is not None and m.kind is MeasurementKind.TEXT:
        meas["compOp"] = "CASESENSIT"
        meas["limit"] = _clip(str(m.expected_value), _MAX_TEXT)
        computed: bool | None = value == str(m.expected_value)
    else:
        meas["compOp"] = "LOG"
        computed = None
    meas["status"] = _meas_status(m, computed)
    return meas


_KIND_STEP = {
    MeasurementKind.NUMERIC: ("ET_NLT", "ET_MNLT", "numericMeas"),
    MeasurementKind.BOOLEAN: ("ET_PFT", "ET_MPFT", "booleanMeas"),
    MeasurementKind.TEXT: ("ET_SVT", "ET_MSVT", "stringMeas"),
    MeasurementKind.OTHER: ("ET_SVT", "ET_MSVT", "stringMeas"),
}


def _meas(m: Measurement, step: str, name: str, flags: list[MeasurementWarning]) -> dict[str, Any]:
    """The WSJF measurement of `m`; what a numeric one contradicts is added to `flags`."""
    if m.kind is MeasurementKind.NUMERIC:
        return _numeric_meas(m, step, name, flags)
    if m.kind is MeasurementKind.BOOLEAN:
        return _boolean_meas(m)
    return _string_meas(m)


def _unique_names(measurements: list[Measurement]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for i, m in enumerate(measurements, 1):
        base = _clip(m.name or f"Measurement {i}", _MAX_NAME - 4)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return names


def _defect_text(d: Defect | Symptom) -> str:
    parts = [p for p in (d.code, d.category, d.description, d.comments) if p]
    where = getattr(d, "component", None) or ", ".join(getattr(d, "components", []) or [])
    kind = "Defect" if isinstance(d, Defect) else "Symptom"
    text = f"{kind} {' / '.join(parts) or '(no code)'}"
    return f"{text} at {where}" if where else text


def _step_status(test: TestStep, children: list[str]) -> str:
    if "F" in children or test.result is StepResult.FAILED:
        return "F"
    if test.result in _STATUS:
        return _STATUS[test.result]
    if "E" in children:
        return "E"
    if children and all(c == "S" for c in children):
        return "S"
    if test.defects and not children:
        return "F"
    return "P" if children else "D"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    seconds = (end - start).total_seconds()
    return round(seconds, 6) if seconds >= 0 else None


def _step_from_test(test: TestStep, include_defects: bool, flags: list[MeasurementWarning]) -> dict[str, Any]:
    name = _clip(test.name or "Test", _MAX_NAME)
    measurements = test.measurements
    names = _unique_names(measurements)
    own_flags: list[MeasurementWarning] = []
    step: dict[str, Any]
    child_statuses: list[str]
    kinds = {m.kind for m in measurements}
    if not measurements:
        step = {"stepType": "Action", "name": name, "group": "M"}
        child_statuses = []
    elif len(kinds) == 1:
        single, multi, key = _KIND_STEP[measurements[0].kind]
        metas = [_meas(m, name, mname, own_flags) for m, mname in zip(measurements, names, strict=True)]
        if len(metas) > 1:
            for meta, mname in zip(metas, names, strict=True):
                meta["name"] = mname
        step = {"stepType": single if len(metas) == 1 else multi, "name": name, "group": "M", key: metas}
        child_statuses = [meta["status"] for meta in metas]
    else:  # mixed kinds: a sub-sequence with one step per measurement
        children = []
        for m, mname in zip(measurements, names, strict=True):
            single, _, key = _KIND_STEP[m.kind]
            meta = _meas(m, name, mname, own_flags)
            children.append(
                {"stepType": single, "name": mname, "group": "M", "status": meta["status"], key: [meta]}
            )
        step = {"stepType": "SequenceCall", "name": name, "group": "M", "seqCall": _seq_call(name, None)}
        step["steps"] = children
        child_statuses = [c["status"] for c in children]
    if not measurements and test.result in (StepResult.PASSED, StepResult.FAILED):
        step = {
            "stepType": "ET_PFT",
            "name": name,
            "group": "M",
            "booleanMeas": [{"value": test.result is StepResult.PASSED, "status": _STATUS[test.result]}],
        }
    step["status"] = _step_status(test, child_statuses)
    total = _seconds(test.start, test.end)
    if total is not None:
        step["totTime"] = total
    if test.error:
        step["errorMessage"] = _clip(test.error, 200)
    notes = [test.comments] if test.comments else []
    if include_defects:
        notes += [_defect_text(d) for d in test.defects] + [_defect_text(s) for s in test.symptoms]
    notes += [f.report_text for f in own_flags]
    flags += own_flags
    if notes:
        step["reportText"] = _clip("\n".join(n for n in notes if n), _MAX_REPORT_TEXT)
    return step


def _seq_call(name: str, version: str | None) -> dict[str, str]:
    return {"path": f"CFX/{name}", "name": name, "version": version or "1.0.0"}


def _overall(result: StepResult, statuses: list[str], has_defects: bool) -> str:
    if result is StepResult.ERROR:
        return "E"
    if result is StepResult.ABORTED:
        return "T"
    if result is StepResult.FAILED or "F" in statuses:
        return "F"
    if result is StepResult.PASSED:
        return "P"
    # Skipped / Unknown: derive from what was measured
    if has_defects:
        return "F"
    if "E" in statuses:
        return "E"
    if statuses and all(s in ("P", "S", "D") for s in statuses) and "P" in statuses:
        return "P"
    return "D"


def _misc(description: str, text: Any) -> dict[str, str]:
    return {"description": _clip(description), "text": _clip(str(text))}


def build_uut_report(
    event: TestResultEvent, header: ReportHeader, *, include_defects: bool = True
) -> dict[str, Any]:
    """The WSJF UUT document for one unit's test or inspection result."""
    return build_uut_report_with_warnings(event, header, include_defects=include_defects)[0]


def _flag_summary(flags: list[MeasurementWarning]) -> str:
    kinds = {"unit_mismatch": "unit mismatch", "limit_contradiction": "value vs limits"}
    counts = {label: sum(f.kind == kind for f in flags) for kind, label in kinds.items()}
    parts = ", ".join(f"{label} {n}" for label, n in counts.items() if n)
    return f"{len(flags)} flagged ({parts}); see step report text"


def build_uut_report_with_warnings(
    event: TestResultEvent, header: ReportHeader, *, include_defects: bool = True
) -> tuple[dict[str, Any], list[MeasurementWarning]]:
    """The WSJF UUT document and the measurements it flags (for the caller to log and count).

    Limits and expected values are sent in the unit of their value (`numeric_limits`). A measurement
    whose units cannot be reconciled, or whose value contradicts its limits and CFX result, keeps the
    numbers and the CFX verdict as sent and is flagged: a "Unit check" / "Limit check" line in its
    step's report text and a "Measurement check" misc info on the report."""
    zone = ZoneInfo(header.timezone) if header.timezone else None
    start = event.start or header.start or event.timestamp or datetime.now(timezone.utc)
    flags: list[MeasurementWarning] = []
    steps = [_step_from_test(t, include_defects, flags) for t in event.tests]
    statuses = [s["status"] for s in steps]
    result = _overall(event.result, statuses, bool(event.defects))
    sequence_name = _clip(event.recipe or event.method or event.kind or "CFX", _MAX_NAME)
    root: dict[str, Any] = {
        "stepType": "SequenceCall",
        "name": ROOT_NAME,
        "group": "M",
        "status": result,
        "seqCall": _seq_call(sequence_name, event.recipe_revision),
        "steps": steps,
    }
    uut: dict[str, Any] = {}
    if event.operator is not None and event.operator.display_name:
        uut["user"] = _clip(event.operator.display_name)
    exec_time = _seconds(event.start, event.end)
    if exec_time is None and event.tests:
        durations = [_seconds(t.start, t.end) for t in event.tests]
        if any(d is not None for d in durations):
            exec_time = round(sum(d for d in durations if d is not None), 6)
    if exec_time is not None:
        uut["execTime"] = exec_time
    failed = next((s for s in steps if s["status"] == "F"), None)
    if failed is not None and result == "F":
        uut["comment"] = _clip(f"First failed step: {failed['name']}", 5000)

    misc = [
        _misc(label, value)
        for label, value in (
            ("CFX method", event.method),
            ("CFX kind", event.kind),
            ("Recipe", event.recipe),
            ("Recipe revision", event.recipe_revision),
            ("Transaction id", event.transaction_id),
            ("Message id", event.message_id),
            ("Panel serial", event.panel_serial),
            ("Unit position", event.unit_position),
            ("Lane", event.lane),
            ("Stage", event.stage),
        )
        if value is not None and value != ""
    ]
    if include_defects:
        misc += [_misc(f"Defect {i}", _defect_text(d)) for i, d in enumerate(event.defects, 1)]
        misc += [_misc(f"Symptom {i}", _defect_text(s)) for i, s in enumerate(event.symptoms, 1)]

    report: dict[str, Any] = {
        "type": "T",
        "id": header.id,
        "pn": header.part_number,
        "sn": event.unit_serial,
        "rev": header.revision,
        "processCode": int(header.process_code),
        "result": result,
        "machineName": _clip(header.machine_name),
        "location": _clip(header.location),
        "purpose": _clip(header.purpose),
        "start": _iso(start, zone),
        "uut": uut,
        "root": root,
    }
    if flags:
        misc.append(_misc("Measurement check", _flag_summary(flags)))
    if misc:
        report["miscInfos"] = misc
    return report, flags
