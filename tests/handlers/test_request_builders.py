"""The request builders: exact WATS paths, verbs, parameters and idempotency flags (WATS_API.md §0)."""

from __future__ import annotations

import pytest

from handlers import ResolutionError
from handlers.wats import request_builders as rq


def test_submit_report_posts_wsjf_and_is_resendable() -> None:
    r = rq.submit_report({"id": "abc", "sn": "SN1"})
    assert (r.method, r.path, r.params, r.json) == (
        "POST",
        "/api/Report/WSJF",
        {},
        {"id": "abc", "sn": "SN1"},
    )
    assert r.idempotent is True and r.operation == "submit_report"


def test_submit_report_without_id_is_refused() -> None:
    with pytest.raises(ValueError, match="deterministic"):
        rq.submit_report({"sn": "SN1"})


def test_unit_requests() -> None:
    assert rq.get_unit("SN 1", "PN-1").path == "/api/Production/Unit/SN%201/PN-1"
    create = rq.create_unit("SN1", "PN1", "A", current_location="Line 3")
    assert (create.method, create.path) == ("POST", "/api/Production/Unit")
    assert create.json == {
        "serialNumber": "SN1",
        "partNumber": "PN1",
        "revision": "A",
        "currentLocation": "Line 3",
    }
    phase = rq.set_unit_phase("SN1", "PN1", 16, "done")
    assert (phase.method, phase.path) == ("PUT", "/api/Production/SetUnitPhase")
    assert phase.params == {"serialNumber": "SN1", "partNumber": "PN1", "phase": 16, "comment": "done"}
    assert phase.json is None and phase.idempotent
    process = rq.set_unit_process("SN1", "PN1", 10)
    assert process.params == {"serialNumber": "SN1", "partNumber": "PN1", "processCode": 10}
    assert "processCode" not in rq.set_unit_process("SN1", "PN1", None).params


def test_unit_query_escapes_quotes() -> None:
    r = rq.query_units_by_serial("O'Neil")
    assert r.params == {"$filter": "serialNumber eq 'O''Neil'", "$top": 2}
    assert (r.method, r.path) == ("GET", "/api/Production/Unit/Query")


def test_child_relations_are_not_blindly_resent() -> None:
    add = rq.add_child_unit("P1", "PPN", "C1", "CPN")
    assert (add.method, add.path, add.idempotent) == ("POST", "/api/Production/AddChildUnit", False)
    assert add.params == {
        "parentSerialNumber": "P1",
        "parentPartNumber": "PPN",
        "childSerialNumber": "C1",
        "childPartNumber": "CPN",
    }
    remove = rq.remove_child_unit("P1", "PPN", "C1", "CPN")
    assert remove.path == "/api/Production/RemoveChildUnit" and remove.params == add.params


def test_asset_requests() -> None:
    assert rq.get_asset("FX-7").path == "/api/Asset/FX-7"
    state = rq.set_asset_state("FX-7", 3)
    assert (state.method, state.path, state.params) == (
        "PUT",
        "/api/Asset/State",
        {"serialNumber": "FX-7", "state": 3},
    )
    msg = rq.add_asset_message("guid-1", "E42 feeder jam", "bus")
    assert (msg.method, msg.path) == ("POST", "/api/Asset/Message")
    assert msg.json == {"assetId": "guid-1", "comment": "E42 feeder jam", "user": "bus"} and msg.params == {}
    count = rq.increment_asset_count("FX-7")
    assert (count.method, count.path, count.params) == (
        "PUT",
        "/api/Asset/Count",
        {"serialNumber": "FX-7", "incrementBy": 1},
    )
    assert count.idempotent is False
    with pytest.raises(ValueError):
        rq.set_asset_state("FX-7", 9)


def test_processes() -> None:
    r = rq.get_processes()
    assert (r.method, r.path, r.params) == ("GET", "/api/App/Processes", {})


@pytest.mark.parametrize(
    "bad", ["A/B", "SN*1", "x%", "q?", "[1]", "a^b", "hi!", "back\\slash", "", " ", "x" * 101]
)
def test_identifiers_wats_refuses_are_a_resolution_error(bad: str) -> None:
    with pytest.raises(ResolutionError):
        rq.set_unit_phase(bad, "PN1", 2)
    with pytest.raises(ResolutionError):
        rq.get_asset(bad)


def test_asset_log_query_escapes_quotes_in_the_comment() -> None:
    r = rq.get_asset_log("0000-1", "it's [ref m-1]")
    assert (r.method, r.path, r.idempotent) == ("GET", "/api/Asset/Log", True)
    assert r.params == {"$filter": "assetId eq '0000-1' and comment eq 'it''s [ref m-1]'", "$top": 100}
