"""The lenient path: CFX messages of any shape (as dicts) → pywats_events domain events.

The codec's hot path decodes SDK-shaped messages straight into typed structs (`pywats_cfx.mappers`); what
that path refuses comes here: keys in other cases, numbers as text, placeholders such as ``"string"`` in
number fields, flattened NumericValues, measurements without ``$type``, vendor properties, bare bodies,
batches. Every value is read with the lenient parsers of `_values` and the field helpers the typed mappers
use, so both paths yield the same events for what both accept (tests/cfx/test_strict_lenient.py).

Payloads are built in the JSON shape of the `pywats_events.payloads` models; consumers read them with
``TestResultEvent.model_validate(event.payload)``. Conventions (shared with the typed mappers):
- `metadata.timestamp` is the envelope TimeStamp; a naive TimeStamp is taken as UTC and
  ``extras["timestamp_assumed_utc"]`` says so; without any TimeStamp the receive time is used and
  ``extras["timestamp_missing"]`` says so.
- `causation_id` = UniqueID, `correlation_id` = TransactionID (else UniqueID), `ordering_key` = unit serial
  for unit events, else the sender's handle; event ids derive from UniqueID (+ unit index).
- Valid messages without a mapping become `EventType.PASSTHROUGH` events carrying the body.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any

from pywats_events import Event, EventType

from ._json import canonical, canonicalize_tree
from ._states import asset_state, state_name
from ._values import parse_float, parse_int, parse_resource_state, parse_str, type_name
from ._values import parse_timespan as _timespan
from .mappers import MAPPED_MESSAGES, event_type_for
from .mappers._context import NS as _NS
from .mappers._context import MessageContext, event_id
from .mappers._fields import STEP_RESULTS as _STEP_RESULTS
from .mappers._fields import WORK_RESULTS as _WORK_RESULTS
from .mappers._fields import DateMemo, split_designators
from .mappers._fields import iso_date as _dt
from .mappers._fields import num_or_raw as _num_or_raw
from .mappers._fields import step_result as _step_result
from .received import CFXEnvelope

__all__ = ["MAPPED_MESSAGES", "NS", "MappingError", "event_id", "event_type_for", "map_envelope"]

NS = _NS


class MappingError(ValueError):
    """A message of a mapped type whose structure cannot be mapped (e.g. `TestedUnits` is not a list)."""


# --------------------------------------------------------------------------- small coercions


def _list(v: Any, what: str) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list):
        return v
    raise MappingError(f"{what} must be a list, got {type(v).__name__}")


def _obj(v: Any, what: str) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    raise MappingError(f"{what} must be an object, got {type(v).__name__}")


def _opt_obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _designators(v: Any) -> list[str]:
    if isinstance(v, str):
        return split_designators(v)
    if isinstance(v, list):
        out = []
        for item in v:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                ref = canonical(item).get("ReferenceDesignator")
                if isinstance(ref, str):
                    out.append(ref)
        return out
    return []


def _operator(v: Any) -> dict[str, Any] | None:
    if not isinstance(v, dict):
        return None
    v = canonical(v)
    return {
        "operator_id": parse_str(v.get("OperatorIdentifier")),
        "name": parse_str(v.get("Name")),
        "first_name": parse_str(v.get("FirstName")),
        "last_name": parse_str(v.get("LastName")),
        "login_name": parse_str(v.get("LoginName")),
        "actor_type": parse_str(v.get("ActorType")),
    }


# --------------------------------------------------------------------------- measurements & co

_MEAS_BASE_KEYS = frozenset(
    ("$type", "UniqueIdentifier", "MeasurementName", "TimeRecorded", "Sequence", "Result", "CRDs")
)


def _s(v: Any) -> str | None:
    return v if type(v) is str and v else parse_str(v)


_NUMERIC_VALUE_KEYS = (
    "Value",
    "ValueUnits",
    "ExpectedValue",
    "ExpectedValueUnits",
    "MinimumAcceptableValue",
    "MinimumAcceptableValueUnits",
    "MaximumAcceptableValue",
    "MaximumAcceptableValueUnits",
)


def _type(v: Any) -> tuple[str | None, str | None]:
    """(full type name, short name) of a ``$type`` value."""
    full = type_name(v)
    return full, full.rsplit(".", 1)[-1] if full else None


_NUMERIC_VALUE = itemgetter(*_NUMERIC_VALUE_KEYS)
#: every property of a NumericMeasurement as the SDK writes it (nulls included), fetched in one call
_SDK_NUMERIC = itemgetter(
    "$type",
    "MeasuredValue",
    "UniqueIdentifier",
    "MeasurementName",
    "TimeRecorded",
    "Sequence",
    "Result",
    "CRDs",
)
_SDK_NUMERIC_TYPE = "CFX.Structures.NumericMeasurement, CFX"


def _sdk_numeric(m: Any, index: int, dates: DateMemo) -> dict[str, Any] | None:
    """A NumericMeasurement as the SDK writes it (exactly its 8 properties and the NumericValue's 8, so every
    key is canonical), else None. The common shape inside a message the typed path refused for another
    reason (a vendor property elsewhere, a batch): the same fields as `_measurement`, without respelling
    keys or guessing the kind."""
    try:
        tname, mv, uid, name, ts, seq, res, crds = _SDK_NUMERIC(m)
        if tname != _SDK_NUMERIC_TYPE or len(m) != 8 or type(mv) is not dict or len(mv) != 8:
            return None
        v, units, ev, expected_units, low, low_units, high, high_units = _NUMERIC_VALUE(mv)
    except (KeyError, TypeError):  # TypeError: not an object, or an unhashable $type
        return None
    uid = _s(uid)
    return {
        "name": _s(name) or _s(crds) or uid or f"NumericMeasurement_{index + 1}",
        "kind": "numeric",
        "value": v if type(v) is float and v - v == 0.0 else parse_float(v),
        "units": _s(units),
        "expected_value": ev if type(ev) is float and ev - ev == 0.0 else _num_or_raw(ev),
        "expected_units": _s(expected_units),
        "low_limit": low if type(low) is float and low - low == 0.0 else parse_float(low),
        "low_limit_units": _s(low_units),
        "high_limit": high if type(high) is float and high - high == 0.0 else parse_float(high),
        "high_limit_units": _s(high_units),
        "result": (_STEP_RESULTS.get(res) if type(res) is str else None) or _step_result(res),
        "sequence": seq if type(seq) is int else parse_int(seq),
        "timestamp": dates[ts][0] if type(ts) is str else _dt(ts),
        "component_designators": [] if crds is None else _designators(crds),
        "measurement_id": uid,
        "source_type": "CFX.Structures.NumericMeasurement",
    }


def _measurement(m: Any, index: int, dates: DateMemo) -> dict[str, Any]:
    """Any measurement shape; without ``$type`` the kind follows from the properties present."""
    m = canonical(_obj(m, "Measurement"))
    get = m.get
    raw_type = get("$type")
    tname, short = _type(raw_type)
    value: Any = None
    units = expected = expected_units = low = low_units = high = high_units = None
    attributes: dict[str, Any] | None = None
    mv = get("MeasuredValue")
    if short == "NumericMeasurement" or (short is None and mv is not None):
        kind = "numeric"
        if type(mv) is dict:
            raw = tuple(map(canonical(mv).get, _NUMERIC_VALUE_KEYS))
        else:  # some senders flatten NumericValue into the measurement
            raw = tuple(map(get, _NUMERIC_VALUE_KEYS))
            if mv is not None:
                raw = (mv, *raw[1:])
        v, units, ev, expected_units, low, low_units, high, high_units = raw
        value, expected = parse_float(v), _num_or_raw(ev)
        low, high = parse_float(low), parse_float(high)
        units, expected_units = _s(units), _s(expected_units)
        low_units, high_units = _s(low_units), _s(high_units)
    elif short == "BooleanMeasurement" or (short is None and type(get("Value")) is bool):
        kind = "boolean"
        v = get("Value")
        value = v if type(v) is bool else None
        ev = get("ExpectedValue")
        expected = ev if type(ev) is bool else None
    elif short == "TextMeasurement" or (short is None and type(get("Value")) is str):
        kind = "text"
        value = _s(get("Value"))
        expected = _s(get("ExpectedValue"))
    else:
        kind = "other"
        attributes = {k: canonicalize_tree(v) for k, v in m.items() if k not in _MEAS_BASE_KEYS}
    crds = get("CRDs")
    uid = _s(get("UniqueIdentifier"))
    name = _s(get("MeasurementName")) or _s(crds) or uid or f"{short or 'Measurement'}_{index + 1}"
    seq = get("Sequence")
    ts = get("TimeRecorded")
    out: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "value": value,
        "units": units,
        "expected_value": expected,
        "expected_units": expected_units,
        "low_limit": low,
        "low_limit_units": low_units,
        "high_limit": high,
        "high_limit_units": high_units,
        "result": _step_result(get("Result")),
        "sequence": parse_int(seq),
        "timestamp": dates[ts][0] if type(ts) is str else _dt(ts),
        "component_designators": [] if crds is None else _designators(crds),
        "measurement_id": uid,
        "source_type": tname,
    }
    if attributes:
        out["attributes"] = attributes
    return out


def _measurements(v: Any, dates: DateMemo) -> list[dict[str, Any]]:
    if not v:
        if v is None or type(v) is list:
            return []
    return [
        _sdk_numeric(m, i, dates) or _measurement(m, i, dates) for i, m in enumerate(_list(v, "Measurements"))
    ]


def _symptom(s: Any, dates: DateMemo) -> dict[str, Any]:
    s = canonical(_obj(s, "Symptom"))
    return {
        "code": parse_str(s.get("SymptomCode")),
        "category": parse_str(s.get("SymptomCategory")),
        "description": parse_str(s.get("Description")),
        "comments": parse_str(s.get("Comments")),
        "status": parse_str(s.get("Status")),
        "priority": parse_int(s.get("Priority")),
        "components": _designators(s.get("ComponentsOfInterest")),
        "measurements": _measurements(s.get("RelatedMeasurements"), dates),
        "symptom_id": parse_str(s.get("UniqueIdentifier")),
    }


def _symptoms(v: Any, dates: DateMemo) -> list[dict[str, Any]]:
    if not v and (v is None or type(v) is list):
        return []
    return [_symptom(s, dates) for s in _list(v, "Symptoms")]


def _defect(d: Any, dates: DateMemo) -> dict[str, Any]:
    d = canonical(_obj(d, "Defect"))
    coi = d.get("ComponentOfInterest")
    out = {
        "code": parse_str(d.get("DefectCode")),
        "category": parse_str(d.get("DefectCategory")),
        "description": parse_str(d.get("Description")),
        "comments": parse_str(d.get("Comments")),
        "component": parse_str(canonical(coi).get("ReferenceDesignator"))
        if isinstance(coi, dict)
        else parse_str(coi),
        "priority": parse_int(d.get("Priority")),
        "confidence": parse_float(d.get("ConfidenceLevel")),
        "verification": parse_str(d.get("Verification")),
        "verification_detail": parse_str(d.get("VerificationDetail")),
        "measurements": _measurements(d.get("RelatedMeasurements"), dates),
        "symptoms": _symptoms(d.get("RelatedSymptoms"), dates),
        "defect_id": parse_str(d.get("UniqueIdentifier")),
    }
    images = d.get("DefectImages")
    if isinstance(images, list) and images:
        out["image_count"] = len(images)  # images themselves stay out of events (base64, large)
    return out


def _defects(v: Any, dates: DateMemo) -> list[dict[str, Any]]:
    if not v and (v is None or type(v) is list):
        return []
    return [_defect(d, dates) for d in _list(v, "Defects")]


def _condition(c: Any, dates: DateMemo) -> dict[str, Any]:
    c = canonical(_obj(c, "TestCondition"))
    short = _type(c.get("$type"))[1]
    return {
        "kind": short or parse_str(c.get("Kind")),
        "mean": parse_float(c.get("MeanValue")),
        "median": parse_float(c.get("MedianValue")),
        "minimum": parse_float(c.get("MinValue")),
        "maximum": parse_float(c.get("MaxValue")),
        "start": _date(dates, c.get("StartTime")),
        "end": _date(dates, c.get("EndTime")),
    }


def _date(dates: DateMemo, v: Any) -> str | None:
    """`iso_date` of a wire value, each distinct text parsed once per message (JSON gives dates as text)."""
    return dates[v][0] if type(v) is str else _dt(v)


def _earliest(texts: list[str], dates: DateMemo) -> str | None:
    """The earliest of the dates a step list carries (their texts are keys of the message's memo too)."""
    return min(texts, key=lambda text: dates[text][1]) if texts else None


def _latest(texts: list[str], dates: DateMemo) -> str | None:
    return max(texts, key=lambda text: dates[text][1]) if texts else None


def _step(t: Any, index: int, inspection: bool, dates: DateMemo) -> dict[str, Any]:
    t = canonical(_obj(t, "Inspection" if inspection else "Test"))
    get = t.get
    if inspection:
        ref_no = parse_int(get("RefNo"))
        name = _s(get("InspectionName"))
        if not name:
            name = f"Inspection {ref_no}" if ref_no is not None else f"Inspection {index + 1}"
        start, end = get("InspectionStartTime"), get("InspectionEndTime")
        symptoms = get("Symptoms")
    else:
        name = _s(get("TestName")) or f"Test {index + 1}"
        start, end = get("TestStartTime"), get("TestEndTime")
        symptoms = get("SymptomsFound")
    conditions = get("TestConditions")
    out: dict[str, Any] = {
        "name": name,
        "result": _step_result(get("Result")),
        "start": _date(dates, start),
        "end": _date(dates, end),
        "procedure": parse_str(get("TestProcedure")),
        "comments": parse_str(get("Comments")),
        "error": parse_str(get("Error")),
        "measurements": _measurements(get("Measurements"), dates),
        "symptoms": _symptoms(symptoms, dates),
        "defects": _defects(get("DefectsFound"), dates),
        "conditions": [_condition(c, dates) for c in _list(conditions, "TestConditions")]
        if conditions
        else [],
        "verification": _s(get("Verification")),
        "step_id": parse_str(get("UniqueIdentifier")),
    }
    if inspection:
        out["verification_detail"] = _s(get("VerificationDetail"))
        out["ref_no"] = ref_no
    return out


# --------------------------------------------------------------------------- event assembly


class _Ctx(MessageContext):
    """A `MessageContext` read from an envelope and its body dict (keys canonical at the top level)."""

    __slots__ = ("body", "env")

    def __init__(
        self,
        env: CFXEnvelope,
        body: dict[str, Any],
        topic: str | None,
        source_hint: str | None,
        received: datetime | None,
    ):
        txn = body.get("TransactionID")
        if txn is None:
            fault = body.get("Fault")
            if isinstance(fault, dict):
                txn = canonical(fault).get("TransactionID")
        super().__init__(
            name=env.message_name,
            unique_id=env.unique_id,
            version=env.version,
            timestamp=env.timestamp,
            timestamp_assumed_utc=env.timestamp_assumed_utc,
            derived_id=env.derived_id,
            bare=env.bare,
            handle=env.source or source_hint or parse_str(body.get("CFXHandle")),
            transaction_id=parse_str(txn),
            topic=topic,
            received=received,
        )
        self.env = env
        self.body = body


def _shared_identifiers(units: list[Any], key: str) -> set[str]:
    seen: set[str] = set()
    dup: set[str] = set()
    for u in units:
        if isinstance(u, dict):
            ident = u.get(key)
            if isinstance(ident, str):
                (dup if ident in seen else seen).add(ident)
    return dup


def _unit_serial(u: dict[str, Any]) -> str:
    return parse_str(u.get("UnitIdentifier")) or ""


def _map_tested(ctx: _Ctx, inspection: bool) -> list[Event]:
    b = ctx.body
    units_key = "InspectedUnits" if inspection else "TestedUnits"
    units = [canonical(u) if type(u) is dict else u for u in _list(b.get(units_key), units_key)]
    panel = b.get("InspectedPanel") if inspection else None
    panel = canonical(panel) if isinstance(panel, dict) else None
    panel_serial = parse_str(panel.get("UnitIdentifier")) if panel else None
    shared = _shared_identifiers(units, "UnitIdentifier")
    sampling = b.get("SamplingInformation")
    common = {
        "kind": "inspection" if inspection else "test",
        "method": parse_str(b.get("InspectionMethod" if inspection else "TestMethod")),
        "operator": _operator(b.get("Inspector" if inspection else "Tester")),
        "recipe": parse_str(b.get("RecipeName")),
        "recipe_revision": parse_str(b.get("RecipeRevision")),
        "sampling": canonicalize_tree(sampling) if isinstance(sampling, dict) else None,
    }
    event_type = EventType.INSPECTION_RESULT if inspection else EventType.TEST_RESULT
    dates = DateMemo()
    records: list[tuple[dict[str, Any], bool]] = [(_obj(u, units_key[:-1]), False) for u in units]
    if panel is not None and (not records or _list(panel.get("Inspections"), "Inspections")):
        records.append((panel, True))
    events = []
    for i, (u, is_panel) in enumerate(records):
        serial = _unit_serial(u)
        steps = [
            _step(t, j, inspection, dates)
            for j, t in enumerate(_list(u.get("Inspections" if inspection else "Tests"), "Tests"))
        ]
        payload = {
            **ctx.facts,
            "unit_serial": serial,
            "unit_position": None if is_panel else parse_int(u.get("UnitPositionNumber")),
            "panel_serial": None if is_panel else (panel_serial or (serial if serial in shared else None)),
            "result": _step_result(u.get("OverallResult")),
            "kind": common["kind"],
            "method": common["method"],
            "tests": steps,
            "defects": [d for s in steps for d in s["defects"]],
            "symptoms": [x for s in steps for x in s["symptoms"]],
            "operator": common["operator"],
            "recipe": common["recipe"],
            "recipe_revision": common["recipe_revision"],
            "start": _earliest([s["start"] for s in steps if s["start"]], dates),
            "end": _latest([s["end"] for s in steps if s["end"]], dates),
            "lane": parse_int(b.get("Lane")),
            "stage": _stage_name(b.get("Stage")),
            "sampling": common["sampling"],
            "part_number": parse_str(u.get("PartNumber")),
            "revision": parse_str(u.get("Revision")),
        }
        if inspection:
            payload["verification"] = parse_str(u.get("Verification"))
            payload["total_inspection_count"] = parse_int(u.get("TotalInspectionCount"))
        if is_panel:
            payload["is_panel"] = True
            payload["pcb_variant"] = parse_str(u.get("PCBVariant"))
        events.append(ctx.event(event_type, payload, i, serial or None))
    return events


def _stage_name(v: Any) -> str | None:
    if isinstance(v, dict):
        v = canonical(v)
        return parse_str(v.get("StageName")) or parse_str(v.get("StageSequence"))
    return parse_str(v)


def _per_unit(ctx: _Ctx) -> list[tuple[int, dict[str, Any] | None, str, str | None]]:
    """(index, unit, serial, panel) for messages with a `Units` list of UnitPosition, or the identifiers."""
    b = ctx.body
    units = _list(b.get("Units"), "Units")
    primary = parse_str(b.get("PrimaryIdentifier")) or parse_str(b.get("HermesIdentifier"))
    if not units:
        return [(0, None, primary or "", None)]
    shared = _shared_identifiers(units, "UnitIdentifier")
    out: list[tuple[int, dict[str, Any] | None, str, str | None]] = []
    for i, u in enumerate(units):
        u = _obj(u, "UnitPosition")
        serial = _unit_serial(u) or primary or ""
        panel = serial if serial in shared else (primary if primary and primary != serial else None)
        out.append((i, u, serial, panel))
    return out


def _pos(u: dict[str, Any] | None) -> int | None:
    return parse_int(u.get("PositionNumber")) if u else None


def _unit_events(
    ctx: _Ctx,
    event_type: EventType,
    fields: Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]],
) -> list[Event]:
    """One event per unit of the message: the unit's identity, then `fields(body, unit)`."""
    b = ctx.body
    events = []
    for i, u, serial, panel in _per_unit(ctx):
        payload = {
            **ctx.facts,
            "unit_serial": serial,
            "unit_position": _pos(u),
            "panel_serial": panel,
            **fields(b, u),
        }
        events.append(ctx.event(event_type, payload, i, serial or None))
    return events


def _work_started(b: dict[str, Any], u: dict[str, Any] | None) -> dict[str, Any]:
    wo = _opt_obj(b.get("WorkOrderIdentifier"))
    out = {
        "lane": parse_int(b.get("Lane")),
        "unit_count": parse_int(b.get("UnitCount")),
        "recipe": parse_str(b.get("RecipeName")),
        "recipe_revision": parse_str(b.get("Revision")),
        "work_order": parse_str(wo.get("WorkOrderId")),
        "batch": parse_str(wo.get("Batch")),
        "surface": parse_str(b.get("RelevantSurface")),
    }
    if u is not None:
        out["position_name"] = parse_str(u.get("PositionName"))
    return out


def _work_completed(b: dict[str, Any], u: dict[str, Any] | None) -> dict[str, Any]:
    raw = b.get("Result")
    out: dict[str, Any] = {
        "result": _WORK_RESULTS.get(raw.lower(), "Completed") if isinstance(raw, str) else "Completed",
        "unit_status": parse_str(u.get("Status")) if u else None,
        "lane": parse_int(b.get("Lane")),
        "unit_count": parse_int(b.get("UnitCount")),
    }
    if isinstance(raw, str) and raw.lower() not in _WORK_RESULTS:
        out["raw_result"] = raw
    stage = _stage_name(b.get("Stage"))
    if stage:
        out["stage"] = stage
    impacts = b.get("PerformanceImpacts")
    if isinstance(impacts, list):
        out["performance_impacts"] = [parse_str(p.get("Cause")) for p in impacts if isinstance(p, dict)]
    return out


def _disqualified(b: dict[str, Any], u: dict[str, Any] | None) -> dict[str, Any]:
    return {"reason": parse_str(b.get("Reason")), "comments": parse_str(b.get("Comments"))}


def _map_work_started(ctx: _Ctx) -> list[Event]:
    return _unit_events(ctx, EventType.WORK_STARTED, _work_started)


def _map_work_completed(ctx: _Ctx) -> list[Event]:
    return _unit_events(ctx, EventType.WORK_COMPLETED, _work_completed)


def _map_disqualified(ctx: _Ctx) -> list[Event]:
    return _unit_events(ctx, EventType.UNIT_DISQUALIFIED, _disqualified)


def _map_moved(event_type: EventType) -> Callable[[_Ctx], list[Event]]:
    def mapper(ctx: _Ctx) -> list[Event]:
        b = ctx.body
        units = []
        for u in _list(b.get("Units"), "Units"):
            u = _obj(u, "UnitPosition")
            units.append(
                {
                    "serial": parse_str(u.get("UnitIdentifier")),
                    "position": parse_int(u.get("PositionNumber")),
                    "position_name": parse_str(u.get("PositionName")),
                    "status": parse_str(u.get("Status")),
                }
            )
        primary = parse_str(b.get("PrimaryIdentifier")) or parse_str(b.get("HermesIdentifier"))
        lane = parse_int(b.get("Lane"))
        payload = {
            **ctx.facts,
            "units": units,
            "primary_identifier": primary,
            "location": f"lane {lane}" if lane is not None else None,
            "lane": lane,
            "unit_count": parse_int(b.get("UnitCount")),
        }
        return [ctx.event(event_type, payload, 0, None)]

    return mapper


def _map_installed(ctx: _Ctx) -> list[Event]:
    b = ctx.body
    installed = _list(b.get("InstalledMaterials"), "InstalledMaterials")
    if not installed:  # nothing to report would drop the message silently: quarantine it instead
        raise MappingError("InstalledMaterials is missing or empty")
    events = []
    for i, im in enumerate(installed):
        im = _obj(im, "InstalledMaterial")
        mat = _opt_obj(im.get("Material"))
        components = []
        for c in _list(im.get("InstalledComponents"), "InstalledComponents"):
            c = _obj(c, "InstalledComponent")
            components.append(
                {
                    "designator": parse_str(c.get("ReferenceDesignator")),
                    "part_number": parse_str(c.get("PartNumber")),
                    "serial": parse_str(c.get("InstalledUnitIdentifier")),
                }
            )
        serial = _unit_serial(im)
        carrier = _opt_obj(im.get("CarrierLocation"))
        payload = {
            **ctx.facts,
            "unit_serial": serial,
            "unit_position": parse_int(im.get("UnitPositionNumber")),
            "material_serial": parse_str(mat.get("UniqueIdentifier")),
            "part_number": parse_str(mat.get("InternalPartNumber")),
            "lot": parse_str(mat.get("BatchId")),
            "vendor": parse_str(mat.get("Vendor")),
            "quantity": parse_float(im.get("QuantityInstalled")),
            "reference_part_number": parse_str(im.get("ReferencePartNumber")),
            "components": components,
            "serialized": any(c["serial"] for c in components),
            "quantity_non_installed": parse_float(im.get("QuantityNonInstalled")),
            "location": parse_str(carrier.get("LocationName"))
            or parse_str(carrier.get("LocationIdentifier")),
        }
        events.append(ctx.event(EventType.MATERIAL_INSTALLED, payload, i, serial or None))
    return events


def _material_location(m: Any) -> dict[str, Any]:
    m = _obj(m, "MaterialLocation")
    pkg = _opt_obj(m.get("MaterialPackage"))
    carrier = _opt_obj(m.get("CarrierInformation"))
    return {
        "location_identifier": parse_str(m.get("LocationIdentifier")),
        "location_name": parse_str(m.get("LocationName")),
        "material_serial": parse_str(pkg.get("UniqueIdentifier")),
        "part_number": parse_str(pkg.get("InternalPartNumber")),
        "quantity": parse_float(pkg.get("Quantity")),
        "batch": parse_str(pkg.get("BatchId")),
        "carrier_id": parse_str(carrier.get("UniqueIdentifier")),
        "carrier_name": parse_str(carrier.get("Name")),
        "carrier_type": type_name(carrier.get("$type")),
    }


def _map_loaded(ctx: _Ctx) -> list[Event]:
    materials = [_material_location(m) for m in _list(ctx.body.get("Materials"), "Materials")]
    payload = {**ctx.facts, "materials": materials, "loaded": True}
    return [ctx.event(EventType.MATERIALS_LOADED, payload, 0, None)]


def _map_unloaded(ctx: _Ctx) -> list[Event]:
    ids = _list(ctx.body.get("MaterialPackageIdentifiers"), "MaterialPackageIdentifiers")
    materials = [{"material_serial": parse_str(i)} for i in ids]
    payload = {**ctx.facts, "materials": materials, "loaded": False}
    return [ctx.event(EventType.MATERIALS_UNLOADED, payload, 0, None)]


_FAULT_KEYS = frozenset(
    ("$type", "TransactionID", "Cause", "Severity", "FaultCode", "FaultOccurrenceId", "Lane", "Stage",
     "Description", "OccurredAt")
)  # fmt: skip


def _fault_payload(ctx: _Ctx, fault: dict[str, Any]) -> dict[str, Any]:
    tname = type_name(fault.get("$type"))
    return {
        **ctx.facts,
        "transaction_id": parse_str(fault.get("TransactionID")) or ctx.txn,
        "fault_code": parse_str(fault.get("FaultCode")),
        "fault_occurrence_id": parse_str(fault.get("FaultOccurrenceId")),
        "cause": parse_str(fault.get("Cause")),
        "severity": parse_str(fault.get("Severity")),
        "description": parse_str(fault.get("Description")),
        "lane": parse_int(fault.get("Lane")),
        "stage": _stage_name(fault.get("Stage")),
        "occurred_at": _dt(fault.get("OccurredAt")),
        "fault_type": tname.rsplit(".", 1)[-1] if tname else "Fault",
        "details": {k: v for k, v in fault.items() if k not in _FAULT_KEYS},
    }


def _map_fault(ctx: _Ctx) -> list[Event]:
    fault = _obj(ctx.body.get("Fault"), "Fault")
    return [ctx.event(EventType.ASSET_FAULT, _fault_payload(ctx, fault), 0, None)]


def _map_fault_cleared(acknowledged: bool) -> Callable[[_Ctx], list[Event]]:
    def mapper(ctx: _Ctx) -> list[Event]:
        b = ctx.body
        payload = {
            **ctx.facts,
            "fault_occurrence_id": parse_str(b.get("FaultOccurrenceId")),
            "operator": _operator(b.get("Operator")),
            "acknowledged_only": acknowledged,
        }
        et = EventType.ASSET_FAULT_ACKNOWLEDGED if acknowledged else EventType.ASSET_FAULT_CLEARED
        return [ctx.event(et, payload, 0, None)]

    return mapper


def _map_state(ctx: _Ctx) -> list[Event]:
    b = ctx.body
    old, new = parse_resource_state(b.get("OldState")), parse_resource_state(b.get("NewState"))
    if new is None:
        raise MappingError(f"StationStateChanged.NewState is not a ResourceState: {b.get('NewState')!r}")
    duration = _timespan(b.get("OldStateDuration"))
    fault = b.get("RelatedFault")
    payload = {
        **ctx.facts,
        "old_state": asset_state(old).value,
        "new_state": asset_state(new).value,
        "old_state_code": old,
        "new_state_code": new,
        "old_state_duration_s": duration.total_seconds() if duration is not None else None,
        "related_fault": _fault_payload(ctx, fault) if isinstance(fault, dict) else None,
        "old_state_name": state_name(old),
        "new_state_name": state_name(new),
    }
    return [ctx.event(EventType.ASSET_STATE_CHANGED, payload, 0, None)]


def _map_endpoint(event_type: EventType) -> Callable[[_Ctx], list[Event]]:
    def mapper(ctx: _Ctx) -> list[Event]:
        b = ctx.body
        freq = _timespan(b.get("HeartbeatFrequency"))
        payload = {
            **ctx.facts,
            "endpoint": b,
            "heartbeat_frequency_s": freq.total_seconds() if freq is not None else None,
        }
        return [ctx.event(event_type, payload, 0, None)]

    return mapper


def _map_passthrough(ctx: _Ctx) -> list[Event]:
    return [ctx.event(EventType.PASSTHROUGH, {**ctx.facts, "body": ctx.body}, 0, None)]


_MAPPERS: dict[str, Callable[[_Ctx], list[Event]]] = {
    "CFX.Production.TestAndInspection.UnitsTested": lambda c: _map_tested(c, False),
    "CFX.Production.TestAndInspection.UnitsInspected": lambda c: _map_tested(c, True),
    "CFX.Production.WorkStarted": _map_work_started,
    "CFX.Production.WorkCompleted": _map_work_completed,
    "CFX.Production.UnitsDisqualified": _map_disqualified,
    "CFX.Production.UnitsArrived": _map_moved(EventType.UNITS_ARRIVED),
    "CFX.Production.UnitsDeparted": _map_moved(EventType.UNITS_DEPARTED),
    "CFX.Production.Assembly.MaterialsInstalled": _map_installed,
    "CFX.Materials.Storage.MaterialsLoaded": _map_loaded,
    "CFX.Materials.Storage.MaterialsUnloaded": _map_unloaded,
    "CFX.ResourcePerformance.FaultOccurred": _map_fault,
    "CFX.ResourcePerformance.FaultCleared": _map_fault_cleared(False),
    "CFX.ResourcePerformance.FaultAcknowledged": _map_fault_cleared(True),
    "CFX.ResourcePerformance.StationStateChanged": _map_state,
    "CFX.EndpointConnected": _map_endpoint(EventType.ENDPOINT_CONNECTED),
    "CFX.EndpointShuttingDown": _map_endpoint(EventType.ENDPOINT_SHUTTING_DOWN),
    "CFX.Heartbeat": _map_endpoint(EventType.ENDPOINT_HEARTBEAT),
}
assert _MAPPERS.keys() == MAPPED_MESSAGES.keys()
_BY_LOWER = {k.lower(): v for k, v in _MAPPERS.items()}

_PER_OBJECT = frozenset(
    ("cfx.production.testandinspection.unitstested", "cfx.production.testandinspection.unitsinspected")
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
    lname = env.message_name.lower()
    entry = _BY_LOWER.get(lname)
    try:
        if lname in _PER_OBJECT:
            body = canonical(env.body)
        else:  # small messages, and parts of the body travel in the payload as-is
            body = env.body = canonicalize_tree(env.body)
        ctx = _Ctx(env, body, topic, source_hint, received)
        if entry is None:
            return _map_passthrough(ctx)
        return entry(ctx)
    except MappingError as exc:
        raise MappingError(f"{env.message_name}: {exc}") from None
    except (TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise MappingError(
            f"{env.message_name}: unexpected structure ({type(exc).__name__}: {exc})"
        ) from None
