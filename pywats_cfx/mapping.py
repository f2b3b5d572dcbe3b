"""CFX messages → pywats_events domain events.

One event per unit where a message covers several units (a panel or carrier), so WATS gets one report per
serial and per-unit ordering holds. Payloads are built directly in the JSON shape of the
`pywats_events.payloads` models (what ``Model(...).model_dump(mode="json")`` yields, key for key) because
this runs on the ingest hot path; consumers read them with ``TestResultEvent.model_validate(event.payload)``.
The codec hands bodies over with keys as sent: test and inspection results fix key spelling per object they
read (`canonical`, usually a no-op check), other messages canonicalize the whole body first (they are small).

Conventions:
- `metadata.timestamp` is the envelope TimeStamp (when it happened); a naive TimeStamp is taken as UTC and
  ``extras["timestamp_assumed_utc"]`` says so; without any TimeStamp the receive time is used and
  ``extras["timestamp_missing"]`` says so.
- `causation_id` = UniqueID, `correlation_id` = TransactionID (else UniqueID), `ordering_key` = unit serial
  for unit events, else the sender's handle.
- Event ids are derived from UniqueID (+ unit index), so a redelivered message yields the same event ids.
- A unit-level `defects` / `symptoms` list is the union of those found in the unit's tests or inspections.
- Messages without units (a WorkCompleted that only names its TransactionID) yield one event whose
  `unit_serial` is the PrimaryIdentifier / HermesIdentifier, or ``""`` when the sender gave none: correlate
  by `transaction_id`.
- Valid messages without a mapping become `EventType.PASSTHROUGH` events carrying the body.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from itertools import chain as _chain
from operator import itemgetter
from typing import Any

from pywats_events import Event, EventMetadata, EventType

from ._envelope import CFXEnvelope
from ._json import canonical, canonicalize_tree
from ._states import asset_state, state_name
from ._values import parse_datetime, parse_float, parse_int, parse_resource_state, parse_str, type_name
from ._values import parse_timespan as _timespan

__all__ = ["MAPPED_MESSAGES", "MappingError", "event_id", "event_type_for", "map_envelope"]

_UTC = timezone.utc
_NS = uuid.UUID("6f1d3c52-8a43-4c0e-9b1e-2f6f3c1a7e55")


class MappingError(ValueError):
    """A message of a mapped type whose structure cannot be mapped (e.g. `TestedUnits` is not a list)."""


# --------------------------------------------------------------------------- small coercions

_STEP_RESULTS = {v.lower(): v for v in ("Passed", "Failed", "Error", "Aborted", "Skipped", "Unknown")}
_STEP_RESULTS.update({"pass": "Passed", "fail": "Failed"})
_STEP_RESULTS.update({v: v for v in ("Passed", "Failed", "Error", "Aborted", "Skipped", "Unknown")})
_WORK_RESULTS = {v.lower(): v for v in ("Completed", "Failed", "Aborted", "Skipped")}


def _step_result(v: Any) -> str:
    if type(v) is str:
        r = _STEP_RESULTS.get(v)
        return r if r is not None else _STEP_RESULTS.get(v.lower(), "Unknown")
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 4:  # enum written as a number
        return ("Passed", "Failed", "Error", "Aborted", "Skipped")[v]
    return "Unknown"


_CANON_DT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_DT_CACHE: dict[str, str | None] = {}
_DT_CACHE_MAX = 4096


def _dt(v: Any) -> str | None:
    """A wire date as a timezone-aware ISO string. Real dates already in ISO form with an offset and at most
    6 fractional digits are kept as sent; others (7 digits, no offset) are rewritten (naive = UTC). Results
    are cached because test, measurement and condition times repeat within and across messages."""
    if v is None:
        return None
    if type(v) is not str:
        dt = parse_datetime(v)
        return _fmt_dt(dt) if dt is not None else None
    cached = _DT_CACHE.get(v, _MISSING)
    if cached is not _MISSING:
        return cached
    out: str | None
    dt = parse_datetime(v)
    if dt is None:
        out = None
    elif _CANON_DT.fullmatch(v) is not None:
        out = v
    else:
        out = _fmt_dt(dt)
    if len(v) <= 40:  # only real dates are worth keeping; bounded in count and size
        if len(_DT_CACHE) >= _DT_CACHE_MAX:
            _DT_CACHE.clear()
        _DT_CACHE[v] = out
    return out


_MISSING: Any = object()


def _fmt_dt(dt: datetime) -> str:
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_TYPE_CACHE: dict[Any, tuple[str | None, str | None]] = {}


def _type(v: Any) -> tuple[str | None, str | None]:
    """(full type name, short name) of a ``$type`` value, cached (a handful of distinct values)."""
    try:
        return _TYPE_CACHE[v]
    except (KeyError, TypeError):
        pass
    full = type_name(v)
    out = (full, full.rsplit(".", 1)[-1] if full else None)
    if isinstance(v, str) and len(v) <= 200 and len(_TYPE_CACHE) < 1024:
        _TYPE_CACHE[v] = out
    return out


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


def _num_or_raw(v: Any) -> float | str | bool | None:
    if isinstance(v, bool):
        return v
    f = parse_float(v)
    if f is not None:
        return f
    return v if isinstance(v, str) else None


_CRD_SPLIT = re.compile(r"[,;\s]+")


def _designators(v: Any) -> list[str]:
    if isinstance(v, str):
        if v and "," not in v and " " not in v and ";" not in v:  # one designator: the usual case
            return [v]
        return [p for p in _CRD_SPLIT.split(v) if p]
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
_NUMERIC_VALUE = itemgetter(*_NUMERIC_VALUE_KEYS)
#: every property of a NumericMeasurement as the SDK writes it (nulls included), in one C-level fetch
_SDK_NUMERIC_KEYS = (
    "$type",
    "MeasuredValue",
    "UniqueIdentifier",
    "MeasurementName",
    "TimeRecorded",
    "Sequence",
    "Result",
    "CRDs",
)
_SDK_NUMERIC = itemgetter(*_SDK_NUMERIC_KEYS)
#: ``$type`` values known to name a NumericMeasurement → full type name (filled as they are met; bounded)
_NUMERIC_TYPES: dict[str, str] = {}


def _sdk_numeric(m: dict[str, Any], index: int) -> dict[str, Any] | None:
    """The SDK-shaped NumericMeasurement fast path, None when `m` has any other shape.

    An object holding exactly the 8 (resp. 8 NumericValue) canonical keys is canonical, so no key-spelling
    check is needed; the output is the one `_measurement` builds, key for key.
    """
    try:
        tname, mv, uid, name, ts, seq, res, crds = _SDK_NUMERIC(m)
        full_type = _NUMERIC_TYPES.get(tname)
        if full_type is None or len(m) != 8 or type(mv) is not dict or len(mv) != 8:
            return None
        v, units, ev, expected_units, low, low_units, high, high_units = _NUMERIC_VALUE(mv)
    except (KeyError, TypeError):  # TypeError: not an object, or an unhashable $type
        return None
    result = _STEP_RESULTS.get(res) if type(res) is str else None
    if type(uid) is not str or not uid:
        uid = parse_str(uid)
    if type(name) is not str or not name:
        name = _s(name) or _s(crds) or uid or f"NumericMeasurement_{index + 1}"
    return {
        "name": name,
        "kind": "numeric",
        "value": v if type(v) is float and v - v == 0.0 else parse_float(v),
        "units": units if type(units) is str and units else parse_str(units),
        "expected_value": ev if type(ev) is float and ev - ev == 0.0 else _num_or_raw(ev),
        "expected_units": expected_units
        if type(expected_units) is str and expected_units
        else parse_str(expected_units),
        "low_limit": low if type(low) is float and low - low == 0.0 else parse_float(low),
        "low_limit_units": low_units if type(low_units) is str and low_units else parse_str(low_units),
        "high_limit": high if type(high) is float and high - high == 0.0 else parse_float(high),
        "high_limit_units": high_units if type(high_units) is str and high_units else parse_str(high_units),
        "result": result if result is not None else _step_result(res),
        "sequence": seq if type(seq) is int else parse_int(seq),
        "timestamp": (_DT_CACHE.get(ts) if type(ts) is str else None) or _dt(ts),
        "component_designators": [] if crds is None else _designators(crds),
        "measurement_id": uid,
        "source_type": full_type,
    }


def _measurement(m: Any, index: int) -> dict[str, Any]:
    """Any measurement shape (`_sdk_numeric` first: it is the common one)."""
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
        if tname is not None and type(raw_type) is str and len(_NUMERIC_TYPES) < 64:
            _NUMERIC_TYPES[raw_type] = tname
        if type(mv) is dict:
            mv = canonical(mv)
            try:  # SDK senders write every NumericValue property: one C-level fetch
                raw = _NUMERIC_VALUE(mv)
            except KeyError:
                raw = tuple(map(mv.get, _NUMERIC_VALUE_KEYS))
        else:  # some senders flatten NumericValue into the measurement
            raw = tuple(map(get, _NUMERIC_VALUE_KEYS))
            if mv is not None:
                raw = (mv, *raw[1:])
        v, units, ev, expected_units, low, low_units, high, high_units = raw
        value = v if type(v) is float and v - v == 0.0 else parse_float(v)
        expected = ev if type(ev) is float and ev - ev == 0.0 else _num_or_raw(ev)
        low = low if type(low) is float and low - low == 0.0 else parse_float(low)
        high = high if type(high) is float and high - high == 0.0 else parse_float(high)
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
        "sequence": seq if type(seq) is int else parse_int(seq),
        "timestamp": None if ts is None else _dt(ts),
        "component_designators": [] if crds is None else _designators(crds),
        "measurement_id": uid,
        "source_type": tname,
    }
    if attributes:
        out["attributes"] = attributes
    return out


def _measurements(v: Any) -> list[dict[str, Any]]:
    if not v:
        if v is None or type(v) is list:
            return []
    return [_sdk_numeric(m, i) or _measurement(m, i) for i, m in enumerate(_list(v, "Measurements"))]


def _symptom(s: Any) -> dict[str, Any]:
    s = canonical(_obj(s, "Symptom"))
    return {
        "code": parse_str(s.get("SymptomCode")),
        "category": parse_str(s.get("SymptomCategory")),
        "description": parse_str(s.get("Description")),
        "comments": parse_str(s.get("Comments")),
        "status": parse_str(s.get("Status")),
        "priority": parse_int(s.get("Priority")),
        "components": _designators(s.get("ComponentsOfInterest")),
        "measurements": _measurements(s.get("RelatedMeasurements")),
        "symptom_id": parse_str(s.get("UniqueIdentifier")),
    }


def _symptoms(v: Any) -> list[dict[str, Any]]:
    if not v and (v is None or type(v) is list):
        return []
    return [_symptom(s) for s in _list(v, "Symptoms")]


def _defect(d: Any) -> dict[str, Any]:
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
        "measurements": _measurements(d.get("RelatedMeasurements")),
        "symptoms": _symptoms(d.get("RelatedSymptoms")),
        "defect_id": parse_str(d.get("UniqueIdentifier")),
    }
    images = d.get("DefectImages")
    if isinstance(images, list) and images:
        out["image_count"] = len(images)  # images themselves stay out of events (base64, large)
    return out


def _defects(v: Any) -> list[dict[str, Any]]:
    if not v and (v is None or type(v) is list):
        return []
    return [_defect(d) for d in _list(v, "Defects")]


def _condition(c: Any) -> dict[str, Any]:
    c = canonical(_obj(c, "TestCondition"))
    short = _type(c.get("$type"))[1]
    return {
        "kind": short or parse_str(c.get("Kind")),
        "mean": parse_float(c.get("MeanValue")),
        "median": parse_float(c.get("MedianValue")),
        "minimum": parse_float(c.get("MinValue")),
        "maximum": parse_float(c.get("MaxValue")),
        "start": _dt(c.get("StartTime")),
        "end": _dt(c.get("EndTime")),
    }


#: a Test / an Inspection as the SDK writes it (every property, nulls included): fetched in one C-level call;
#: an object holding exactly these keys is canonical, so no key-spelling check is needed
_SDK_TEST_KEYS = (
    "UniqueIdentifier",
    "TestName",
    "TestStartTime",
    "TestEndTime",
    "TestProcedure",
    "Comments",
    "Result",
    "Error",
    "SymptomsFound",
    "DefectsFound",
    "Measurements",
    "TestConditions",
)
_SDK_INSPECTION_KEYS = (
    "UniqueIdentifier",
    "InspectionName",
    "InspectionStartTime",
    "InspectionEndTime",
    "TestProcedure",
    "Comments",
    "Result",
    "Error",
    "Symptoms",
    "DefectsFound",
    "Measurements",
    "Verification",
    "VerificationDetail",
    "RefNo",
)
_SDK_TEST = itemgetter(*_SDK_TEST_KEYS)
_SDK_INSPECTION = itemgetter(*_SDK_INSPECTION_KEYS)


def _step(t: Any, index: int, inspection: bool) -> dict[str, Any]:
    if type(t) is not dict:
        t = _obj(t, "Inspection" if inspection else "Test")
    keys, fetch = (_SDK_INSPECTION_KEYS, _SDK_INSPECTION) if inspection else (_SDK_TEST_KEYS, _SDK_TEST)
    if len(t) == len(keys):
        try:
            values = fetch(t)
            exact = True
        except KeyError:
            exact = False
    else:
        exact = False
    if not exact:  # any other shape: canonical spelling, then read what is there
        t = canonical(t)
        values = tuple(map(t.get, keys))
    if inspection:
        (
            uid,
            name,
            start,
            end,
            procedure,
            comments,
            res,
            error,
            symptoms,
            defects,
            meas,
            ver,
            ver_detail,
            ref,
        ) = values
        conditions = None if exact else t.get("TestConditions")
        ref_no = parse_int(ref)
        name = name if type(name) is str and name else _s(name)
        if not name:
            name = f"Inspection {ref_no}" if ref_no is not None else f"Inspection {index + 1}"
    else:
        uid, name, start, end, procedure, comments, res, error, symptoms, defects, meas, conditions = values
        ver = None if exact else t.get("Verification")
        name = name if type(name) is str and name else (_s(name) or f"Test {index + 1}")
    out: dict[str, Any] = {
        "name": name,
        "result": _step_result(res),
        "start": None if start is None else _dt(start),
        "end": None if end is None else _dt(end),
        "procedure": procedure
        if type(procedure) is str and procedure
        else (None if procedure is None else parse_str(procedure)),
        "comments": comments
        if type(comments) is str and comments
        else (None if comments is None else parse_str(comments)),
        "error": error if type(error) is str and error else (None if error is None else parse_str(error)),
        "measurements": [] if meas is None or meas == [] else _measurements(meas),
        "symptoms": [] if symptoms is None or symptoms == [] else _symptoms(symptoms),
        "defects": [] if defects is None or defects == [] else _defects(defects),
        "conditions": [_condition(c) for c in _list(conditions, "TestConditions")] if conditions else [],
        "verification": _s(ver),
        "step_id": uid if type(uid) is str and uid else parse_str(uid),
    }
    if inspection:
        out["verification_detail"] = _s(ver_detail)
        out["ref_no"] = ref_no
    return out


# --------------------------------------------------------------------------- event assembly


_NS_BYTES = _NS.bytes


def event_id(message_id: str, message_name: str, index: int) -> str:
    """Deterministic event id: ``uuid5(namespace, f"{message_id}/{message_name}/{index}")`` computed without
    `uuid.UUID` (three times cheaper), so a redelivered message yields the same event ids."""
    d = bytearray(hashlib.sha1(_NS_BYTES + f"{message_id}/{message_name}/{index}".encode()).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x50
    d[8] = (d[8] & 0x3F) | 0x80
    h = d.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Ctx:
    """Per-message facts shared by all events of one envelope."""

    __slots__ = ("body", "env", "extras", "facts", "handle", "name", "topic", "ts", "ts_text", "txn", "uid")

    def __init__(
        self,
        env: CFXEnvelope,
        body: dict[str, Any],
        topic: str | None,
        source_hint: str | None,
        received: datetime | None,
    ):
        self.env = env
        #: the MessageBody; its own keys are canonical (nested objects: see the module docstring)
        self.body = body
        self.name = env.message_name
        self.uid = env.unique_id
        self.handle = env.source or source_hint or parse_str(body.get("CFXHandle"))
        txn = body.get("TransactionID")
        if txn is None:
            fault = body.get("Fault")
            if isinstance(fault, dict):
                txn = canonical(fault).get("TransactionID")
        self.txn = parse_str(txn)
        extras: dict[str, Any] = {"message_name": env.message_name, "cfx_version": env.version}
        ts = env.timestamp
        if ts is None:
            ts = received or datetime.now(_UTC)
            extras["timestamp_missing"] = True
        elif env.timestamp_assumed_utc:
            extras["timestamp_assumed_utc"] = True
        if env.derived_id:
            extras["message_id_derived"] = True
        if env.bare:
            extras["bare_body"] = True
        self.ts = ts
        self.ts_text = _fmt_dt(ts) if env.timestamp is not None else None
        self.topic = topic
        self.extras = extras
        self.facts = {
            "station": self.handle,
            "message_id": self.uid,
            "transaction_id": self.txn,
            "timestamp": self.ts_text,
            "message_name": env.message_name,
        }

    def event(self, event_type: EventType, payload: dict[str, Any], index: int, key: str | None) -> Event:
        meta = EventMetadata(
            event_id=event_id(self.uid, self.name, index) if self.uid else str(uuid.uuid4()),
            correlation_id=self.txn or self.uid,
            causation_id=self.uid,
            timestamp=self.ts,
            source=self.handle,
            source_topic=self.topic,
            ordering_key=key or self.handle,
            extras=dict(self.extras),
        )
        return Event(event_type=event_type, payload=payload, metadata=meta)


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


_DEFECTS, _SYMPTOMS, _START, _END = (itemgetter(k) for k in ("defects", "symptoms", "start", "end"))


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
    records: list[tuple[dict[str, Any], bool]] = [(_obj(u, units_key[:-1]), False) for u in units]
    if panel is not None and (not records or _list(panel.get("Inspections"), "Inspections")):
        records.append((panel, True))
    events = []
    for i, (u, is_panel) in enumerate(records):
        serial = _unit_serial(u)
        steps = [
            _step(t, j, inspection)
            for j, t in enumerate(_list(u.get("Inspections" if inspection else "Tests"), "Tests"))
        ]
        defects = list(_chain.from_iterable(map(_DEFECTS, steps)))
        symptoms = list(_chain.from_iterable(map(_SYMPTOMS, steps)))
        starts = list(filter(None, map(_START, steps)))
        ends = list(filter(None, map(_END, steps)))
        payload = {
            **ctx.facts,
            "unit_serial": serial,
            "unit_position": None if is_panel else parse_int(u.get("UnitPositionNumber")),
            "panel_serial": None if is_panel else (panel_serial or (serial if serial in shared else None)),
            "result": _step_result(u.get("OverallResult")),
            "kind": common["kind"],
            "method": common["method"],
            "tests": steps,
            "defects": defects,
            "symptoms": symptoms,
            "operator": common["operator"],
            "recipe": common["recipe"],
            "recipe_revision": common["recipe_revision"],
            "start": _earliest(starts) if starts else None,
            "end": _latest(ends) if ends else None,
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


_EPOCH_MIN = datetime.min.replace(tzinfo=_UTC)
_KEY_CACHE: dict[str, datetime] = {}


def _sort_key(text: str) -> datetime:
    key = _KEY_CACHE.get(text)
    if key is None:
        key = parse_datetime(text) or _EPOCH_MIN
        if len(_KEY_CACHE) >= _DT_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[text] = key
    return key


def _earliest(texts: list[str]) -> str:
    try:  # all keys known already: C-level lookups
        return min(texts, key=_KEY_CACHE.__getitem__)
    except KeyError:
        return min(texts, key=_sort_key)


def _latest(texts: list[str]) -> str:
    try:
        return max(texts, key=_KEY_CACHE.__getitem__)
    except KeyError:
        return max(texts, key=_sort_key)


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


_MAPPERS: dict[str, tuple[EventType, Callable[[_Ctx], list[Event]]]] = {
    "CFX.Production.TestAndInspection.UnitsTested": (EventType.TEST_RESULT, lambda c: _map_tested(c, False)),
    "CFX.Production.TestAndInspection.UnitsInspected": (
        EventType.INSPECTION_RESULT,
        lambda c: _map_tested(c, True),
    ),
    "CFX.Production.WorkStarted": (EventType.WORK_STARTED, _map_work_started),
    "CFX.Production.WorkCompleted": (EventType.WORK_COMPLETED, _map_work_completed),
    "CFX.Production.UnitsDisqualified": (EventType.UNIT_DISQUALIFIED, _map_disqualified),
    "CFX.Production.UnitsArrived": (EventType.UNITS_ARRIVED, _map_moved(EventType.UNITS_ARRIVED)),
    "CFX.Production.UnitsDeparted": (EventType.UNITS_DEPARTED, _map_moved(EventType.UNITS_DEPARTED)),
    "CFX.Production.Assembly.MaterialsInstalled": (EventType.MATERIAL_INSTALLED, _map_installed),
    "CFX.Materials.Storage.MaterialsLoaded": (EventType.MATERIALS_LOADED, _map_loaded),
    "CFX.Materials.Storage.MaterialsUnloaded": (EventType.MATERIALS_UNLOADED, _map_unloaded),
    "CFX.ResourcePerformance.FaultOccurred": (EventType.ASSET_FAULT, _map_fault),
    "CFX.ResourcePerformance.FaultCleared": (EventType.ASSET_FAULT_CLEARED, _map_fault_cleared(False)),
    "CFX.ResourcePerformance.FaultAcknowledged": (
        EventType.ASSET_FAULT_ACKNOWLEDGED,
        _map_fault_cleared(True),
    ),
    "CFX.ResourcePerformance.StationStateChanged": (EventType.ASSET_STATE_CHANGED, _map_state),
    "CFX.EndpointConnected": (EventType.ENDPOINT_CONNECTED, _map_endpoint(EventType.ENDPOINT_CONNECTED)),
    "CFX.EndpointShuttingDown": (
        EventType.ENDPOINT_SHUTTING_DOWN,
        _map_endpoint(EventType.ENDPOINT_SHUTTING_DOWN),
    ),
    "CFX.Heartbeat": (EventType.ENDPOINT_HEARTBEAT, _map_endpoint(EventType.ENDPOINT_HEARTBEAT)),
}
_BY_LOWER = {k.lower(): v for k, v in _MAPPERS.items()}

#: CFX message names with a domain mapping → the event type they produce
MAPPED_MESSAGES: dict[str, EventType] = {name: et for name, (et, _) in _MAPPERS.items()}


def event_type_for(message_name: str) -> EventType:
    """The event type a message name maps to (`PASSTHROUGH` for unmapped names)."""
    entry = _BY_LOWER.get(message_name.lower())
    return entry[0] if entry else EventType.PASSTHROUGH


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
        return entry[1](ctx)
    except MappingError as exc:
        raise MappingError(f"{env.message_name}: {exc}") from None
    except (TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise MappingError(
            f"{env.message_name}: unexpected structure ({type(exc).__name__}: {exc})"
        ) from None
