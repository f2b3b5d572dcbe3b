"""Request builders: the one place that knows WATS paths, verbs and parameter names.

Every request a handler sends is built here, so the wire format (WATS_API.md §0) is written down once.
Builders check identifiers WATS refuses (`* % ? [ ] ^ ! / \\`, empty, > 100 chars) and raise
`ResolutionError` before anything is sent: such a value can never succeed, so the event is dead-lettered
with the reason instead of being retried.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .._exceptions import ResolutionError
from .sink import WatsRequest

__all__ = [
    "FORBIDDEN_CHARACTERS",
    "add_asset_message",
    "add_child_unit",
    "check_identifier",
    "create_unit",
    "get_asset",
    "get_asset_log",
    "get_processes",
    "get_unit",
    "increment_asset_count",
    "query_units_by_serial",
    "remove_child_unit",
    "set_asset_state",
    "set_unit_phase",
    "set_unit_process",
    "submit_report",
]

#: characters WATS rejects in serial and part numbers (and that break path-style routes)
FORBIDDEN_CHARACTERS = frozenset("*%?[]^!/\\")


def check_identifier(value: str | None, what: str) -> str:
    """Return `value` if WATS accepts it as a serial/part number/revision, else raise `ResolutionError`."""
    if value is None or not str(value).strip():
        raise ResolutionError(f"{what} is empty")
    text = str(value)
    if len(text) > 100:
        raise ResolutionError(f"{what} {text[:20]!r}... is longer than 100 characters")
    bad = sorted(set(text) & FORBIDDEN_CHARACTERS)
    if bad:
        raise ResolutionError(f"{what} {text!r} contains characters WATS refuses: {' '.join(bad)}")
    return text


def _segment(value: str) -> str:
    return quote(value, safe="")


def _unit_params(serial: str, part_number: str) -> dict[str, Any]:
    return {
        "serialNumber": check_identifier(serial, "serial number"),
        "partNumber": check_identifier(part_number, "part number"),
    }


# -- reports -------------------------------------------------------------------------------------------


def submit_report(wsjf: dict[str, Any]) -> WatsRequest:
    """POST a WSJF document. Safe to resend: the report `id` is deterministic and WATS overwrites by id."""
    if not wsjf.get("id"):
        raise ValueError("a WSJF report needs a deterministic 'id' to be safely resent")
    return WatsRequest("POST", "/api/Report/WSJF", json=wsjf, idempotent=True, operation="submit_report")


# -- production ----------------------------------------------------------------------------------------


def get_unit(serial: str, part_number: str) -> WatsRequest:
    sn = check_identifier(serial, "serial number")
    pn = check_identifier(part_number, "part number")
    return WatsRequest("GET", f"/api/Production/Unit/{_segment(sn)}/{_segment(pn)}", operation="get_unit")


def query_units_by_serial(serial: str, *, top: int = 2) -> WatsRequest:
    """Units with this serial number (any part number): resolves a test result without a part number."""
    sn = check_identifier(serial, "serial number")
    escaped = _odata_text(sn)
    return WatsRequest(
        "GET",
        "/api/Production/Unit/Query",
        params={"$filter": f"serialNumber eq '{escaped}'", "$top": top},
        operation="query_units",
    )


def create_unit(
    serial: str,
    part_number: str,
    revision: str,
    *,
    current_location: str | None = None,
    serial_date: str | None = None,
) -> WatsRequest:
    """POST a new unit. Resendable: a repeat answers 409 (exists), which the handler treats as done."""
    body: dict[str, Any] = {
        "serialNumber": check_identifier(serial, "serial number"),
        "partNumber": check_identifier(part_number, "part number"),
        "revision": check_identifier(revision, "revision"),
    }
    if current_location:
        body["currentLocation"] = current_location
    if serial_date:
        body["serialDate"] = serial_date
    return WatsRequest("POST", "/api/Production/Unit", json=body, idempotent=True, operation="create_unit")


def set_unit_phase(serial: str, part_number: str, phase: int, comment: str | None = None) -> WatsRequest:
    """PUT the unit's phase by numeric id (WATS_API.md §4.2); absolute, so safe to resend."""
    params = _unit_params(serial, part_number)
    params["phase"] = int(phase)
    if comment:
        params["comment"] = comment
    return WatsRequest("PUT", "/api/Production/SetUnitPhase", params=params, operation="set_unit_phase")


def set_unit_process(
    serial: str, part_number: str, process_code: int | None, comment: str | None = None
) -> WatsRequest:
    """PUT the unit's current process; `None` clears it."""
    params = _unit_params(serial, part_number)
    if process_code is not None:
        params["processCode"] = int(process_code)
    if comment:
        params["comment"] = comment
    return WatsRequest("PUT", "/api/Production/SetUnitProcess", params=params, operation="set_unit_process")


def _relation_params(
    parent_serial: str, parent_part_number: str, child_serial: str, child_part_number: str
) -> dict[str, Any]:
    return {
        "parentSerialNumber": check_identifier(parent_serial, "parent serial number"),
        "parentPartNumber": check_identifier(parent_part_number, "parent part number"),
        "childSerialNumber": check_identifier(child_serial, "child serial number"),
        "childPartNumber": check_identifier(child_part_number, "child part number"),
    }


def add_child_unit(
    parent_serial: str, parent_part_number: str, child_serial: str, child_part_number: str
) -> WatsRequest:
    """POST a parent/child relation. Not idempotent on the wire (a repeat may be refused: the child
    already has a parent); the handler reads the parent's `subUnits` before and after instead."""
    params = _relation_params(parent_serial, parent_part_number, child_serial, child_part_number)
    return WatsRequest(
        "POST", "/api/Production/AddChildUnit", params=params, idempotent=False, operation="add_child_unit"
    )


def remove_child_unit(
    parent_serial: str, parent_part_number: str, child_serial: str, child_part_number: str
) -> WatsRequest:
    """POST the removal of a parent/child relation; verified like `add_child_unit`."""
    params = _relation_params(parent_serial, parent_part_number, child_serial, child_part_number)
    return WatsRequest(
        "POST",
        "/api/Production/RemoveChildUnit",
        params=params,
        idempotent=False,
        operation="remove_child_unit",
    )


# -- assets --------------------------------------------------------------------------------------------


def get_asset(serial_or_id: str) -> WatsRequest:
    """GET one asset by serial number or id; the answer carries the `assetId` log messages need."""
    key = check_identifier(serial_or_id, "asset serial number")
    return WatsRequest("GET", f"/api/Asset/{_segment(key)}", operation="get_asset")


def get_asset_log(asset_id: str, comment: str | None = None, *, top: int = 100) -> WatsRequest:
    """GET the asset's log entries (optionally only those with exactly this comment), via OData."""
    if not asset_id:
        raise ResolutionError("asset id is empty")
    terms = [f"assetId eq '{_odata_text(asset_id)}'"]
    if comment is not None:
        terms.append(f"comment eq '{_odata_text(comment)}'")
    params: dict[str, Any] = {"$filter": " and ".join(terms), "$top": top}
    return WatsRequest("GET", "/api/Asset/Log", params=params, operation="get_asset_log")


def _odata_text(value: str) -> str:
    return value.replace("'", "''")


def set_asset_state(serial: str, state: int) -> WatsRequest:
    """PUT the asset state (0 Unknown … 6 Scrapped, WATS_API.md §3.1); absolute, so safe to resend."""
    if not 0 <= int(state) <= 6:
        raise ValueError(f"WATS asset state must be 0..6, got {state}")
    params = {"serialNumber": check_identifier(serial, "asset serial number"), "state": int(state)}
    return WatsRequest("PUT", "/api/Asset/State", params=params, operation="set_asset_state")


def add_asset_message(asset_id: str, comment: str, user: str | None = None) -> WatsRequest:
    """POST a log message; WATS wants the asset *id* here, not its serial number. Not idempotent: a
    resend logs the line twice, so after a lost answer the handler looks for it in the log first."""
    if not asset_id:
        raise ResolutionError("asset id is empty")
    body: dict[str, Any] = {"assetId": asset_id, "comment": comment}
    if user:
        body["user"] = user
    return WatsRequest(
        "POST", "/api/Asset/Message", json=body, idempotent=False, operation="add_asset_message"
    )


def increment_asset_count(
    serial: str, increment_by: int = 1, *, increment_children: bool = False
) -> WatsRequest:
    """PUT a usage count increment. Never idempotent: a resend counts twice (WATS_API.md §1.4)."""
    params: dict[str, Any] = {
        "serialNumber": check_identifier(serial, "asset serial number"),
        "incrementBy": int(increment_by),
    }
    if increment_children:
        params["incrementChildren"] = "true"
    return WatsRequest(
        "PUT", "/api/Asset/Count", params=params, idempotent=False, operation="increment_asset_count"
    )


# -- processes -----------------------------------------------------------------------------------------


def get_processes(*, include_inactive: bool = False) -> WatsRequest:
    """GET the process list (codes, names, isTestOperation...), read once at start-up."""
    params: dict[str, Any] = {}
    if include_inactive:
        params["includeInactiveProcesses"] = "true"
    return WatsRequest("GET", "/api/App/Processes", params=params, operation="get_processes")
