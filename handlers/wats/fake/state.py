"""The server-side state of FakeWATS and the behaviour of each endpoint, independent of HTTP.

Each endpoint method takes the query parameters (strings) and the JSON body and returns the response
body, or raises `ApiError(status, message)`. Behaviour follows the WATS API spec; where the real server's
behaviour is not documented (duplicate unit create → 409, re-attaching a child to the same parent → no-op,
units created implicitly by the first report) the choice is marked as such.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from .validation import ASSET_STATES, UNIT_PHASES, check_identifier, validate_wsjf

__all__ = ["DEFAULT_PROCESSES", "ApiError", "WatsState"]

VERSION = "25.3.0 (FakeWATS)"

DEFAULT_PROCESSES: list[dict[str, Any]] = [
    {"code": 10, "name": "ICT", "description": "In-circuit test", "isTestOperation": True},
    {"code": 20, "name": "AOI", "description": "Automated optical inspection", "isTestOperation": True},
    {"code": 25, "name": "SPI", "description": "Solder paste inspection", "isTestOperation": True},
    {"code": 50, "name": "FCT", "description": "Functional test", "isTestOperation": True},
    {"code": 100, "name": "End of line test", "description": "End of line test", "isTestOperation": True},
    {"code": 200, "name": "Assembly", "description": "Assembly", "isWipOperation": True},
    {"code": 500, "name": "Repair", "description": "Repair", "isRepairOperation": True},
    {"code": 510, "name": "RMA repair", "description": "RMA repair", "isRepairOperation": True},
]


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _param(params: dict[str, str], name: str, *, required: bool = True) -> str | None:
    for key, value in params.items():
        if key.lower() == name.lower():
            return value
    if required:
        raise ApiError(400, f"The parameter '{name}' is required")
    return None


def _int_param(params: dict[str, str], name: str, *, required: bool = True) -> int | None:
    raw = _param(params, name, required=required)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"The value '{raw}' is not valid for {name}") from None


def _bool_param(params: dict[str, str], name: str, default: bool) -> bool:
    raw = _param(params, name, required=False)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise ApiError(400, f"The value '{raw}' is not valid for {name}")
    return raw.lower() == "true"


_FILTER_TERM = re.compile(r"^\s*(\w+)\s+eq\s+(?:'((?:[^']|'')*)'|(-?\d+))\s*$")


def _odata_filter(expression: str | None) -> list[tuple[str, Any]]:
    """The subset of OData $filter FakeWATS understands: ``field eq 'text'|number`` joined by ``and``."""
    if not expression:
        return []
    terms = []
    for part in re.split(r"\s+and\s+", expression.strip()):
        match = _FILTER_TERM.match(part)
        if not match:
            raise ApiError(400, f"FakeWATS cannot evaluate the $filter term '{part}'")
        field, text, number = match.groups()
        terms.append((field, text.replace("''", "'") if text is not None else int(number)))
    return terms


def _matches(item: dict[str, Any], terms: list[tuple[str, Any]]) -> bool:
    lowered = {k.lower(): v for k, v in item.items()}
    return all(lowered.get(field.lower()) == value for field, value in terms)


def _top(params: dict[str, str], default: int, maximum: int) -> int:
    top = _int_param(params, "$top", required=False)
    return default if top is None else max(0, min(top, maximum))


class WatsState:
    """Reports, units, assets and processes of one FakeWATS; every method is thread-safe."""

    def __init__(
        self,
        processes: list[dict[str, Any]] | None = None,
        *,
        implicit_units: bool = True,
        strict_assembly: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        #: [DOC]: a child must be Finalized before it is attached; False relaxes that for tests
        self.strict_assembly = strict_assembly
        self.processes: list[dict[str, Any]] = []
        self.set_processes(processes if processes is not None else DEFAULT_PROCESSES)
        self.implicit_units = implicit_units
        self.reports: dict[str, dict[str, Any]] = {}
        self.submissions: Counter[str] = Counter()
        self.units: dict[tuple[str, str], dict[str, Any]] = {}
        self.unit_history: list[dict[str, Any]] = []
        self.assets: dict[str, dict[str, Any]] = {}  # by assetId
        self.asset_log: list[dict[str, Any]] = []

    # -- seeding -----------------------------------------------------------------------------------

    def set_processes(self, processes: list[dict[str, Any]]) -> None:
        normalised = []
        for index, proc in enumerate(processes):
            entry = {
                "code": int(proc["code"]),
                "name": str(proc["name"]),
                "description": proc.get("description", proc["name"]),
                "isTestOperation": bool(proc.get("isTestOperation", False)),
                "isRepairOperation": bool(proc.get("isRepairOperation", False)),
                "isWipOperation": bool(proc.get("isWipOperation", False)),
                "processIndex": proc.get("processIndex", index),
                "state": proc.get("state", 1),
            }
            if entry["isRepairOperation"]:
                entry["repairOperation"] = proc.get("repairOperation", {"categories": []})
            normalised.append(entry)
        with self.lock:
            self.processes = normalised

    def add_unit(
        self,
        serial_number: str,
        part_number: str,
        revision: str = "A",
        *,
        phase: int = 2,
        process_code: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        with self.lock:
            unit = {
                "serialNumber": serial_number,
                "partNumber": part_number,
                "revision": revision,
                "unitPhaseId": phase,
                "unitPhase": UNIT_PHASES.get(phase, "Unknown"),
                "processCode": process_code,
                "parentSerialNumber": None,
                "parentPartNumber": None,
                "tags": [],
                "subUnits": [],
                **extra,
            }
            self.units[(serial_number, part_number)] = unit
            return copy.deepcopy(unit)

    def add_asset(
        self,
        serial_number: str,
        *,
        asset_id: str | None = None,
        name: str | None = None,
        state: int = 1,
        type_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        with self.lock:
            asset = {
                "assetId": asset_id or str(uuid.uuid4()),
                "serialNumber": serial_number,
                "assetName": name or serial_number,
                "typeId": type_id or "00000000-0000-0000-0000-000000000001",
                "state": state,
                "totalCount": 0,
                "runningCount": 0,
                "tags": [],
                "parentSerialNumber": None,
                **extra,
            }
            self.assets[asset["assetId"]] = asset
            return copy.deepcopy(asset)

    # -- lookups -----------------------------------------------------------------------------------

    def _codes(self, flag: str) -> set[int]:
        return {p["code"] for p in self.processes if p[flag]}

    def _unit(self, sn: str, pn: str) -> dict[str, Any]:
        unit = self.units.get((sn, pn))
        if unit is None:
            raise ApiError(404, f"Unit with serial number '{sn}' and part number '{pn}' was not found")
        return unit

    def _asset_by(self, params: dict[str, str]) -> dict[str, Any]:
        asset_id = _param(params, "id", required=False)
        serial = _param(params, "serialNumber", required=False)
        if not asset_id and not serial:
            raise ApiError(400, "Either 'id' or 'serialNumber' is required")
        asset = self._find_asset(asset_id or serial or "")
        if asset is None:
            raise ApiError(404, f"Asset '{asset_id or serial}' was not found")
        return asset

    def _find_asset(self, key: str) -> dict[str, Any] | None:
        if key in self.assets:
            return self.assets[key]
        for asset in self.assets.values():
            if asset["serialNumber"] == key or asset["assetId"].lower() == key.lower():
                return asset
        return None

    def _log(self, asset: dict[str, Any], log_type: int, comment: str, user: str | None = None) -> None:
        self.asset_log.append(
            {
                "id": len(self.asset_log) + 1,
                "assetId": asset["assetId"],
                "serialNumber": asset["serialNumber"],
                "logType": log_type,
                "comment": comment,
                "user": user,
                "date": _now(),
            }
        )

    # -- App -----------------------------------------------------------------------------------------

    def version(self, params: dict[str, str], body: Any) -> Any:
        return VERSION

    def get_processes(self, params: dict[str, str], body: Any) -> Any:
        test = _bool_param(params, "includeTestOperations", True)
        repair = _bool_param(params, "includeRepairOperations", True)
        wip = _bool_param(params, "includeWipOperations", True)
        inactive = _bool_param(params, "includeInactiveProcesses", False)
        with self.lock:
            out = []
            for proc in self.processes:
                if proc["state"] != 1 and not inactive:
                    continue
                if (
                    (proc["isTestOperation"] and test)
                    or (proc["isRepairOperation"] and repair)
                    or (proc["isWipOperation"] and wip)
                ):
                    out.append(copy.deepcopy(proc))
            return out

    def get_unit_phases(self, params: dict[str, str], body: Any) -> Any:
        return [
            {"UnitPhaseId": pid, "Code": name.replace(" ", "_"), "Name": name, "Description": name}
            for pid, name in UNIT_PHASES.items()
        ]

    # -- Report --------------------------------------------------------------------------------------

    def submit_wsjf(self, params: dict[str, str], body: Any) -> Any:
        with self.lock:
            problems = validate_wsjf(
                body, test_codes=self._codes("isTestOperation"), repair_codes=self._codes("isRepairOperation")
            )
            if problems:
                raise ApiError(400, "The report is not valid: " + "; ".join(problems[:10]), problems)
            report = copy.deepcopy(body)
            report_id = str(report.setdefault("id", str(uuid.uuid4()))).lower()
            self.reports[report_id] = report
            self.submissions[report_id] += 1
            key = (report["sn"], report["pn"])
            if self.implicit_units and key not in self.units:
                # [DOC]: units are created implicitly by the first report (not verified against a server)
                self.add_unit(report["sn"], report["pn"], report["rev"])
            return {"ID": report_id}

    def get_wsjf(self, params: dict[str, str], body: Any, report_id: str) -> Any:
        with self.lock:
            report = self.reports.get(report_id.lower())
            if report is None:
                raise ApiError(404, f"Report '{report_id}' was not found")
            return copy.deepcopy(report)

    # -- Production ----------------------------------------------------------------------------------

    def get_unit(self, params: dict[str, str], body: Any, sn: str, pn: str) -> Any:
        with self.lock:
            return copy.deepcopy(self._unit(sn, pn))

    def get_unit_internal(self, params: dict[str, str], body: Any) -> Any:
        sn = _param(params, "serialNumber") or ""
        pn = _param(params, "partNumber", required=False)
        with self.lock:
            for (usn, upn), unit in self.units.items():
                if usn == sn and (pn is None or upn == pn):
                    return copy.deepcopy(unit)
        raise ApiError(404, f"Unit with serial number '{sn}' was not found")

    def query_units(self, params: dict[str, str], body: Any) -> Any:
        terms = _odata_filter(_param(params, "$filter", required=False))
        top = _top(params, 100, 1000)
        with self.lock:
            return [copy.deepcopy(u) for u in self.units.values() if _matches(u, terms)][:top]

    def create_unit(self, params: dict[str, str], body: Any) -> Any:
        if not isinstance(body, dict):
            raise ApiError(400, "The unit must be a JSON object")
        problems = check_identifier("serialNumber", body.get("serialNumber"))
        problems += check_identifier("partNumber", body.get("partNumber"))
        if not isinstance(body.get("revision"), str) or not body["revision"]:
            problems.append("revision is required")
        if body.get("parentSerialNumber"):
            problems.append("parentSerialNumber cannot be set here; use AddChildUnit")
        phase = body.get("unitPhaseId", 2)
        if phase not in UNIT_PHASES:
            problems.append(f"unitPhaseId {phase} is not a unit phase")
        if problems:
            raise ApiError(400, "; ".join(problems), problems)
        with self.lock:
            key = (body["serialNumber"], body["partNumber"])
            if key in self.units:
                # not documented; a conflict is what the client's error table suggests
                raise ApiError(409, f"Unit '{key[0]}' / '{key[1]}' already exists")
            extra = {k: v for k, v in body.items() if k in ("batchNumber", "serialDate", "currentLocation")}
            unit = self.add_unit(
                body["serialNumber"],
                body["partNumber"],
                body["revision"],
                phase=phase,
                process_code=body.get("processCode"),
                **extra,
            )
            if isinstance(body.get("tags"), list):
                self.units[key]["tags"] = copy.deepcopy(body["tags"])
                unit["tags"] = copy.deepcopy(body["tags"])
            return unit

    def update_unit(self, params: dict[str, str], body: Any) -> Any:
        if not isinstance(body, dict):
            raise ApiError(400, "The unit must be a JSON object")
        problems = check_identifier("serialNumber", body.get("serialNumber"))
        problems += check_identifier("partNumber", body.get("partNumber"))
        if problems:
            raise ApiError(400, "; ".join(problems), problems)
        with self.lock:
            unit = self._unit(body["serialNumber"], body["partNumber"])
            for key in ("revision", "currentLocation", "serialDate", "batchNumber", "tags", "xmlData"):
                if key in body:
                    unit[key] = copy.deepcopy(body[key])
            return copy.deepcopy(unit)

    def set_unit_phase(self, params: dict[str, str], body: Any) -> Any:
        sn = _param(params, "serialNumber") or ""
        pn = _param(params, "partNumber") or ""
        phase = _int_param(params, "phase")
        comment = _param(params, "comment", required=False)
        if phase not in UNIT_PHASES:
            raise ApiError(400, f"Phase {phase} is not a valid unit phase")
        with self.lock:
            unit = self._unit(sn, pn)
            unit["unitPhaseId"] = phase
            unit["unitPhase"] = UNIT_PHASES[phase]
            self.unit_history.append(
                {"serialNumber": sn, "partNumber": pn, "phase": phase, "comment": comment, "date": _now()}
            )
        return None

    def set_unit_process(self, params: dict[str, str], body: Any) -> Any:
        sn = _param(params, "serialNumber") or ""
        pn = _param(params, "partNumber") or ""
        code = _int_param(params, "processCode", required=False)
        comment = _param(params, "comment", required=False)
        with self.lock:
            if code is not None and code not in {p["code"] for p in self.processes}:
                raise ApiError(400, f"Process code {code} does not exist")
            unit = self._unit(sn, pn)
            unit["processCode"] = code
            self.unit_history.append(
                {
                    "serialNumber": sn,
                    "partNumber": pn,
                    "processCode": code,
                    "comment": comment,
                    "date": _now(),
                }
            )
        return None

    def _relation(self, params: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        names = ("parentSerialNumber", "parentPartNumber", "childSerialNumber", "childPartNumber")
        values = [_param(params, n) or "" for n in names]
        problems = [p for n, v in zip(names, values, strict=True) for p in check_identifier(n, v)]
        if problems:
            raise ApiError(400, "; ".join(problems), problems)
        parent = self._unit(values[0], values[1])
        child = self._unit(values[2], values[3])
        if parent is child:
            raise ApiError(400, "A unit cannot be its own child")
        return parent, child

    def add_child_unit(self, params: dict[str, str], body: Any) -> Any:
        with self.lock:
            parent, child = self._relation(params)
            if child["parentSerialNumber"] is not None:
                if (child["parentSerialNumber"], child["parentPartNumber"]) == (
                    parent["serialNumber"],
                    parent["partNumber"],
                ):
                    return None  # already attached here: a repeat is harmless (not verified against a server)
                raise ApiError(
                    400, f"Unit '{child['serialNumber']}' already has parent '{child['parentSerialNumber']}'"
                )
            if self.strict_assembly and child["unitPhaseId"] != 16:
                raise ApiError(
                    400,
                    f"Child unit '{child['serialNumber']}' must be Finalized (phase is {child['unitPhase']})",
                )
            child["parentSerialNumber"] = parent["serialNumber"]
            child["parentPartNumber"] = parent["partNumber"]
            parent["subUnits"].append(
                {
                    "serialNumber": child["serialNumber"],
                    "partNumber": child["partNumber"],
                    "revision": child["revision"],
                }
            )
        return None

    def remove_child_unit(self, params: dict[str, str], body: Any) -> Any:
        with self.lock:
            parent, child = self._relation(params)
            if (child["parentSerialNumber"], child["parentPartNumber"]) != (
                parent["serialNumber"],
                parent["partNumber"],
            ):
                raise ApiError(
                    400, f"Unit '{child['serialNumber']}' is not a child of '{parent['serialNumber']}'"
                )
            child["parentSerialNumber"] = child["parentPartNumber"] = None
            parent["subUnits"] = [
                s
                for s in parent["subUnits"]
                if (s["serialNumber"], s["partNumber"]) != (child["serialNumber"], child["partNumber"])
            ]
        return None

    # -- Asset ---------------------------------------------------------------------------------------

    def get_asset(self, params: dict[str, str], body: Any, key: str) -> Any:
        with self.lock:
            asset = self._find_asset(key)
            if asset is None:
                raise ApiError(404, f"Asset '{key}' was not found")
            # the asset JSON carries its log (WATS_API.md §3.2 `assetLog[]`), oldest first
            found = copy.deepcopy(asset)
            found["assetLog"] = [copy.deepcopy(e) for e in self.asset_log if e["assetId"] == asset["assetId"]]
            return found

    def list_assets(self, params: dict[str, str], body: Any) -> Any:
        terms = _odata_filter(_param(params, "$filter", required=False))
        with self.lock:
            return [copy.deepcopy(a) for a in self.assets.values() if _matches(a, terms)]

    def put_asset(self, params: dict[str, str], body: Any) -> Any:
        if not isinstance(body, dict):
            raise ApiError(400, "The asset must be a JSON object")
        problems = check_identifier("serialNumber", body.get("serialNumber"))
        if "state" in body and body["state"] not in ASSET_STATES:
            problems.append(f"state {body['state']} is not an asset state")
        if problems:
            raise ApiError(400, "; ".join(problems), problems)
        with self.lock:
            asset = self._find_asset(body.get("assetId") or body["serialNumber"])
            if asset is None:
                if not body.get("typeId"):
                    raise ApiError(400, "typeId is required to create an asset")
                asset = self.add_asset(
                    body["serialNumber"], asset_id=body.get("assetId"), type_id=body["typeId"]
                )
                asset = self.assets[asset["assetId"]]
                self._log(asset, 1, "Asset registered")
            for key, value in body.items():
                if key not in ("assetId", "totalCount", "runningCount", "assetLog"):
                    asset[key] = copy.deepcopy(value)
            return copy.deepcopy(asset)

    def set_asset_state(self, params: dict[str, str], body: Any) -> Any:
        state = _int_param(params, "state")
        if state not in ASSET_STATES:
            raise ApiError(400, f"State {state} is not a valid asset state")
        with self.lock:
            asset = self._asset_by(params)
            if asset["state"] != state:
                asset["state"] = state
                self._log(asset, 6, f"State changed to {ASSET_STATES[state]}")
        return None

    def increment_asset_count(self, params: dict[str, str], body: Any) -> Any:
        increment = _int_param(params, "incrementBy", required=False)
        total = _int_param(params, "totalCount", required=False)
        children = _bool_param(params, "incrementChildren", False)
        if increment is None and total is None:
            raise ApiError(400, "Either 'incrementBy' or 'totalCount' is required")
        if increment is not None and increment < 0:
            raise ApiError(400, "incrementBy must not be negative")
        with self.lock:
            asset = self._asset_by(params)
            targets = [asset]
            if children:
                targets += [
                    a for a in self.assets.values() if a.get("parentSerialNumber") == asset["serialNumber"]
                ]
            for target in targets:
                if increment is not None:
                    target["runningCount"] += increment
                    target["totalCount"] += increment
                else:
                    target["totalCount"] = total
        return None

    def add_asset_message(self, params: dict[str, str], body: Any) -> Any:
        if not isinstance(body, dict):
            raise ApiError(400, "The message must be a JSON object")
        asset_id, comment, user = body.get("assetId"), body.get("comment"), body.get("user")
        problems = []
        try:
            uuid.UUID(str(asset_id))
        except ValueError:
            problems.append(f"assetId '{asset_id}' is not a GUID")
        if not isinstance(comment, str) or not comment.strip():
            problems.append("comment is required")
        if user is not None and not isinstance(user, str):
            problems.append("user must be a string")
        if problems:
            raise ApiError(400, "; ".join(problems), problems)
        with self.lock:
            asset = self.assets.get(str(asset_id)) or self._find_asset(str(asset_id))
            if asset is None:
                raise ApiError(404, f"Asset '{asset_id}' was not found")
            self._log(asset, 0, str(comment), user)
        return None

    def get_asset_log(self, params: dict[str, str], body: Any) -> Any:
        terms = _odata_filter(_param(params, "$filter", required=False))
        top = _top(params, 1000, 10000)
        with self.lock:
            return [copy.deepcopy(e) for e in self.asset_log if _matches(e, terms)][:top]

    def get_asset_status(self, params: dict[str, str], body: Any) -> Any:
        with self.lock:
            asset = self._asset_by(params)
            return {"assetId": asset["assetId"], "serialNumber": asset["serialNumber"], "alarmState": 0}
