"""Strict checks of what FakeWATS receives, per the WATS API spec (§1.5 characters, §2 WSJF, §3 assets,
§4 production). Each check returns a list of problems; an empty list means valid. The server answers
400 with the problems joined into one message, as a real server names what it rejects.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

__all__ = [
    "ASSET_STATES",
    "COMP_OPS_DUAL",
    "COMP_OPS_SINGLE",
    "FORBIDDEN_CHARACTERS",
    "UNIT_PHASES",
    "check_identifier",
    "validate_wsjf",
]

FORBIDDEN_CHARACTERS = frozenset("*%?[]^!/\\")

UNIT_PHASES: dict[int, str] = {
    1: "Unknown",
    2: "Under production",
    4: "Production repair",
    8: "Service repair",
    16: "Finalized",
    32: "Scrapped",
    64: "Extended test",
    128: "Customization",
    256: "Repaired",
    512: "Missing",
    1024: "In storage",
    2048: "Shipped",
}

ASSET_STATES: dict[int, str] = {
    0: "Unknown",
    1: "In Operation",
    2: "In Transit",
    3: "In Maintenance",
    4: "In Calibration",
    5: "In Storage",
    6: "Scrapped",
}

REPORT_RESULTS = frozenset("PFDET")
STEP_STATUSES = frozenset("PFSDET")
STEP_GROUPS = frozenset("SMC")
COMP_OPS_NONE = frozenset({"LOG"})
COMP_OPS_SINGLE = frozenset({"EQ", "NE", "GT", "GE", "LT", "LE", "EQT", "CASESENSIT", "IGNORECASE"})
COMP_OPS_DUAL = frozenset({"GELE", "GELT", "GTLE", "GTLT", "LTGT", "LEGE", "LEGT", "LTGE"})
STRING_COMP_OPS = frozenset({"LOG", "EQ", "NE", "CASESENSIT", "IGNORECASE"})
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity", "Inf", "-Inf"})

_SEQUENCE_TYPES = frozenset({"SequenceCall", "WATS_SeqCall"})
_NUMERIC = {"ET_NLT": False, "NumericLimitTest": False, "ET_MNLT": True, "MultiNumericLimitTest": True}
_BOOLEAN = {"ET_PFT": False, "PassFailTest": False, "ET_MPFT": True, "MultiBooleanTest": True}
_STRING = {"ET_SVT": False, "StringValueTest": False, "ET_MSVT": True, "MultiStringTest": True}
_OTHER_TYPES = frozenset({"Action", "GenericTest", "Label", "Goto", "Statement", "NONE", "Chart"})
_MAX_DEPTH = 64


def _is_str(value: Any, lo: int = 1, hi: int = 100) -> bool:
    return isinstance(value, str) and lo <= len(value) <= hi


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    return isinstance(value, str) and value in _NON_FINITE


def check_identifier(name: str, value: Any, *, required: bool = True) -> list[str]:
    """A serial or part number: 1 to 100 characters, none of ``* % ? [ ] ^ ! / \\``."""
    if value is None or value == "":
        return [f"{name} is required"] if required else []
    if not isinstance(value, str):
        return [f"{name} must be a string"]
    if len(value) > 100:
        return [f"{name} is longer than 100 characters"]
    bad = sorted({c for c in value if c in FORBIDDEN_CHARACTERS})
    if bad:
        return [f"{name} '{value}' contains forbidden characters: {' '.join(bad)}"]
    return []


def _check_start(value: Any, where: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{where} must be an ISO-8601 string"]
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return [f"{where} '{value}' is not an ISO-8601 date-time"]
    if parsed.tzinfo is None:
        return [f"{where} '{value}' has no UTC offset"]
    return []


def _check_numeric_meas(meas: Any, where: str) -> list[str]:
    if not isinstance(meas, dict):
        return [f"{where} must be an object"]
    problems: list[str] = []
    if "value" not in meas or not _is_number(meas["value"]):
        problems.append(f"{where}.value must be a number")
    comp = meas.get("compOp", "LOG")
    if not isinstance(comp, str) or comp.upper() not in COMP_OPS_NONE | COMP_OPS_SINGLE | COMP_OPS_DUAL:
        return [*problems, f"{where}.compOp '{comp}' is not a valid comparison operator"]
    comp = comp.upper()
    low, high = meas.get("lowLimit"), meas.get("highLimit")
    for key, limit in (("lowLimit", low), ("highLimit", high)):
        if limit is not None and not _is_number(limit):
            problems.append(f"{where}.{key} must be a number")
    if comp in COMP_OPS_NONE and (low is not None or high is not None):
        problems.append(f"{where}: compOp LOG takes no limits")
    elif comp in COMP_OPS_SINGLE:
        if low is None:
            problems.append(f"{where}: compOp {comp} needs lowLimit")
        if high is not None:
            problems.append(f"{where}: compOp {comp} takes lowLimit only, not highLimit")
    elif comp in COMP_OPS_DUAL:
        if low is None or high is None:
            problems.append(f"{where}: compOp {comp} needs lowLimit and highLimit")
        elif _is_number(low) and _is_number(high) and not isinstance(low, str) and not isinstance(high, str):
            if low > high:
                problems.append(f"{where}: lowLimit {low} is greater than highLimit {high}")
    problems += _check_status(meas, where, required=False)
    return problems


def _check_bool_meas(meas: Any, where: str) -> list[str]:
    if not isinstance(meas, dict):
        return [f"{where} must be an object"]
    problems = [] if isinstance(meas.get("value"), bool) else [f"{where}.value must be true or false"]
    return problems + _check_status(meas, where, required=False)


def _check_string_meas(meas: Any, where: str) -> list[str]:
    if not isinstance(meas, dict):
        return [f"{where} must be an object"]
    problems: list[str] = []
    if not isinstance(meas.get("value"), str):
        problems.append(f"{where}.value must be a string")
    comp = meas.get("compOp", "LOG")
    if not isinstance(comp, str) or comp.upper() not in STRING_COMP_OPS:
        problems.append(f"{where}.compOp '{comp}' is not valid for a string step")
    elif comp.upper() != "LOG" and not isinstance(meas.get("limit"), str):
        problems.append(f"{where}: compOp {comp.upper()} needs a string limit")
    return problems + _check_status(meas, where, required=False)


def _check_status(obj: dict[str, Any], where: str, *, required: bool) -> list[str]:
    status = obj.get("status")
    if status is None:
        return [f"{where}.status is required"] if required else []
    if status not in STEP_STATUSES:
        return [f"{where}.status '{status}' is not one of P F S D E T"]
    return []


def _check_meas_list(step: dict[str, Any], key: str, multi: bool, check: Any, where: str) -> list[str]:
    items = step.get(key)
    if not isinstance(items, list) or not items:
        return [f"{where}.{key} must be a non-empty array"]
    if not multi and len(items) != 1:
        return [f"{where}.{key} must have exactly one element for {step.get('stepType')}"]
    problems: list[str] = []
    names: set[str] = set()
    for i, meas in enumerate(items):
        problems += check(meas, f"{where}.{key}[{i}]")
        if multi and isinstance(meas, dict):
            name = meas.get("name")
            if not isinstance(name, str) or not _is_str(name):
                problems.append(f"{where}.{key}[{i}].name is required in a multi-measurement step")
            elif name in names:
                problems.append(f"{where}.{key}[{i}].name '{name}' is not unique")
            else:
                names.add(name)
    return problems


def _check_step(step: Any, where: str, depth: int) -> list[str]:
    if depth > _MAX_DEPTH:
        return [f"{where}: steps nested too deeply"]
    if not isinstance(step, dict):
        return [f"{where} must be an object"]
    problems: list[str] = []
    step_type = step.get("stepType")
    if not isinstance(step_type, str) or not step_type:
        return [f"{where}.stepType is required"]
    if not _is_str(step.get("name")):
        problems.append(f"{where}.name must be 1-100 characters")
    if "group" in step and step["group"] not in STEP_GROUPS:
        problems.append(f"{where}.group '{step['group']}' is not one of S M C")
    problems += _check_status(step, where, required=True)
    if step_type in _SEQUENCE_TYPES:
        seq = step.get("seqCall")
        if not isinstance(seq, dict) or not all(
            _is_str(seq.get(k), 1, 500) for k in ("path", "name", "version")
        ):
            problems.append(f"{where}.seqCall needs path, name and version")
        children = step.get("steps", [])
        if not isinstance(children, list):
            problems.append(f"{where}.steps must be an array")
        else:
            for i, child in enumerate(children):
                problems += _check_step(child, f"{where}.steps[{i}]", depth + 1)
    elif step_type in _NUMERIC:
        problems += _check_meas_list(step, "numericMeas", _NUMERIC[step_type], _check_numeric_meas, where)
    elif step_type in _BOOLEAN:
        problems += _check_meas_list(step, "booleanMeas", _BOOLEAN[step_type], _check_bool_meas, where)
    elif step_type in _STRING:
        problems += _check_meas_list(step, "stringMeas", _STRING[step_type], _check_string_meas, where)
    elif step_type not in _OTHER_TYPES and not step_type.startswith("NI_"):
        problems.append(f"{where}.stepType '{step_type}' is not a known step type")
    return problems


def validate_wsjf(
    doc: Any, *, test_codes: set[int] | None = None, repair_codes: set[int] | None = None
) -> list[str]:
    """Problems with a WSJF report; `test_codes`/`repair_codes` restrict `processCode` when given."""
    if not isinstance(doc, dict):
        return ["the report must be a JSON object"]
    problems: list[str] = []
    kind = doc.get("type", "T")
    if kind not in ("T", "R"):
        problems.append(f"type '{kind}' must be T (UUT) or R (UUR)")
    if "id" in doc:
        try:
            uuid.UUID(str(doc["id"]))
        except ValueError:
            problems.append(f"id '{doc['id']}' is not a GUID")
    problems += check_identifier("pn", doc.get("pn"))
    problems += check_identifier("sn", doc.get("sn"))
    if not _is_str(doc.get("rev")):
        problems.append("rev is required (1-100 characters)")
    for key in ("machineName", "location", "purpose"):
        if not _is_str(doc.get(key)):
            problems.append(f"{key} is required (1-100 characters)")
    code = doc.get("processCode")
    if not _is_int(code):
        problems.append("processCode is required and must be an integer")
    elif kind == "T" and test_codes is not None and code not in test_codes:
        problems.append(f"processCode {code} is not a test operation")
    elif kind == "R" and repair_codes is not None and code not in repair_codes:
        problems.append(f"processCode {code} is not a repair operation")
    if doc.get("result", "P") not in REPORT_RESULTS:
        problems.append(f"result '{doc.get('result')}' is not one of P F D E T")
    if "start" in doc:
        problems += _check_start(doc["start"], "start")
    if kind == "T":
        if not isinstance(doc.get("uut"), dict):
            problems.append("uut is required for a UUT report")
        root = doc.get("root")
        if root is None:
            problems.append("root is required for a UUT report")
        elif not isinstance(root, dict) or root.get("stepType") not in _SEQUENCE_TYPES:
            problems.append("root must be a SequenceCall step")
        else:
            problems += _check_step(root, "root", 0)
    elif kind == "R":
        uur = doc.get("uur")
        if not isinstance(uur, dict):
            problems.append("uur is required for a UUR report")
        else:
            for key in ("processCode", "confirmDate", "finalizeDate", "execTime"):
                if key not in uur:
                    problems.append(f"uur.{key} is required")
        if "root" in doc:
            problems.append("a UUR report has no root")
    problems += _check_sub_units(doc.get("subUnits"))
    problems += _check_misc(doc.get("miscInfos"))
    return problems


def _check_sub_units(items: Any) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list):
        return ["subUnits must be an array"]
    problems: list[str] = []
    for i, sub in enumerate(items):
        if not isinstance(sub, dict):
            problems.append(f"subUnits[{i}] must be an object")
            continue
        problems += check_identifier(f"subUnits[{i}].pn", sub.get("pn"))
        problems += check_identifier(f"subUnits[{i}].sn", sub.get("sn"))
        if "partType" in sub and not _is_str(sub["partType"], 0, 50):
            problems.append(f"subUnits[{i}].partType must be at most 50 characters")
    return problems


def _check_misc(items: Any) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list):
        return ["miscInfos must be an array"]
    problems: list[str] = []
    for i, info in enumerate(items):
        if not isinstance(info, dict) or not _is_str(info.get("description")):
            problems.append(f"miscInfos[{i}].description is required (1-100 characters)")
        elif "text" in info and not _is_str(info["text"], 0, 100):
            problems.append(f"miscInfos[{i}].text must be a string of at most 100 characters")
    return problems
