"""FakeWATS: strict validation, endpoint state, auth, fault injection and the command line."""

from __future__ import annotations

import copy
import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from wats_helpers import TOKEN, make_report

from handlers.wats.fake import FakeWATS, validate_wsjf

AUTH = {"Authorization": f"Basic {TOKEN}"}


@pytest.fixture
def client(wats: FakeWATS) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=wats.url, headers=AUTH, timeout=5) as c:
        yield c


def numeric(**meas: Any) -> dict[str, Any]:
    return {"stepType": "ET_NLT", "name": "3V3", "status": "P", "numericMeas": [{"status": "P", **meas}]}


def with_steps(*steps: dict[str, Any]) -> dict[str, Any]:
    doc = make_report()
    doc["root"]["steps"] = list(steps)
    return doc


# -- WSJF validation --------------------------------------------------------------------------------


def test_the_spec_examples_are_valid() -> None:
    assert validate_wsjf(make_report()) == []
    fuller = with_steps(
        numeric(value=3.31, unit="V", compOp="GELE", lowLimit=3.2, highLimit=3.4),
        numeric(value=41.0, unit="C", compOp="LOG"),
        numeric(value=5, compOp="GE", lowLimit=4),
        numeric(value="NaN", compOp="LOG"),
        {
            "stepType": "ET_PFT",
            "name": "BScan",
            "status": "F",
            "booleanMeas": [{"status": "F", "value": False}],
        },
        {
            "stepType": "ET_SVT",
            "name": "FW",
            "status": "P",
            "stringMeas": [{"status": "P", "value": "1.2.3", "compOp": "IGNORECASE", "limit": "1.2.3"}],
        },
        {
            "stepType": "ET_MNLT",
            "name": "Rails",
            "status": "P",
            "numericMeas": [
                {"name": "5V", "value": 5.01, "compOp": "GELE", "lowLimit": 4.9, "highLimit": 5.1},
                {"name": "12V", "value": 12.0, "compOp": "LOG"},
            ],
        },
        {"stepType": "Action", "name": "Power on", "status": "P"},
    )
    fuller.update(
        subUnits=[{"pn": "PSU-200", "rev": "B", "sn": "SUB-001", "partType": "PCB"}],
        miscInfos=[{"description": "FixtureId", "text": "FX-7"}],
    )
    assert validate_wsjf(fuller) == []


@pytest.mark.parametrize("field", ["pn", "sn", "rev", "processCode", "machineName", "location", "purpose"])
def test_required_fields(field: str) -> None:
    doc = make_report()
    del doc[field]
    assert any(p.startswith(field) for p in validate_wsjf(doc))


@pytest.mark.parametrize("char", list("*%?[]^!/\\"))
def test_forbidden_characters_in_serial_and_part_numbers(char: str) -> None:
    assert validate_wsjf(make_report(sn=f"SN{char}1")) == [
        f"sn 'SN{char}1' contains forbidden characters: {char}"
    ]
    assert validate_wsjf(make_report(pn=f"P{char}")) != []
    sub = {"pn": "ok", "sn": f"x{char}", "rev": "A"}
    assert validate_wsjf(make_report(subUnits=[sub])) != []


@pytest.mark.parametrize(
    ("meas", "problem"),
    [
        ({"value": 1, "compOp": "LOG", "lowLimit": 0}, "LOG takes no limits"),
        ({"value": 1, "compOp": "GELE", "lowLimit": 0}, "GELE needs lowLimit and highLimit"),
        ({"value": 1, "compOp": "GE"}, "GE needs lowLimit"),
        ({"value": 1, "compOp": "LE", "lowLimit": 2, "highLimit": 3}, "takes lowLimit only"),
        ({"value": 1, "compOp": "GELT", "lowLimit": 5, "highLimit": 3}, "greater than highLimit"),
        ({"value": 1, "compOp": "BETWEEN", "lowLimit": 0}, "not a valid comparison operator"),
        ({"value": "3.3", "compOp": "LOG"}, "value must be a number"),
        ({"value": True, "compOp": "LOG"}, "value must be a number"),
        ({"value": 1, "compOp": "GE", "lowLimit": "0"}, "lowLimit must be a number"),
        ({"value": 1, "status": "Passed"}, "is not one of P F S D E T"),
    ],
)
def test_comp_op_and_limit_consistency(meas: dict[str, Any], problem: str) -> None:
    problems = validate_wsjf(with_steps(numeric(**meas)))
    assert any(problem in p for p in problems), problems


def test_step_structure_rules() -> None:
    two = numeric(value=1)
    two["numericMeas"].append({"value": 2})
    assert any("exactly one element" in p for p in validate_wsjf(with_steps(two)))
    multi = {
        "stepType": "ET_MNLT",
        "name": "x",
        "status": "P",
        "numericMeas": [{"name": "a", "value": 1}, {"name": "a", "value": 2}],
    }
    assert any("not unique" in p for p in validate_wsjf(with_steps(multi)))
    assert any(
        "status is required" in p for p in validate_wsjf(with_steps({"stepType": "Action", "name": "a"}))
    )
    assert any(
        "not a known step type" in p
        for p in validate_wsjf(with_steps({"stepType": "X", "name": "a", "status": "P"}))
    )
    no_seq = make_report()
    del no_seq["root"]["seqCall"]["version"]
    assert any("seqCall needs" in p for p in validate_wsjf(no_seq))
    pft = {"stepType": "ET_PFT", "name": "p", "status": "P", "booleanMeas": [{"value": "true"}]}
    assert any("true or false" in p for p in validate_wsjf(with_steps(pft)))
    svt = {"stepType": "ET_SVT", "name": "s", "status": "P", "stringMeas": [{"value": "a", "compOp": "EQ"}]}
    assert any("needs a string limit" in p for p in validate_wsjf(with_steps(svt)))


def test_header_types_and_values() -> None:
    assert "processCode is required and must be an integer" in validate_wsjf(make_report(processCode="100"))
    assert any("result" in p for p in validate_wsjf(make_report(result="Passed")))
    assert any("no UTC offset" in p for p in validate_wsjf(make_report(start="2026-01-30T12:00:00")))
    assert any("not a GUID" in p for p in validate_wsjf(make_report(id="report-1")))
    assert any(
        "uut is required" in p for p in validate_wsjf({k: v for k, v in make_report().items() if k != "uut"})
    )
    assert validate_wsjf(make_report(processCode=999), test_codes={100}) == [
        "processCode 999 is not a test operation"
    ]


def test_uur_rules() -> None:
    uur = make_report(type="R", processCode=500, purpose="Repair")
    del uur["root"], uur["uut"]
    assert any("uur is required" in p for p in validate_wsjf(uur))
    uur["uur"] = {"processCode": 100, "confirmDate": "x", "finalizeDate": "x", "execTime": 0}
    assert validate_wsjf(uur, repair_codes={500}) == []
    assert validate_wsjf({**uur, "processCode": 100}, repair_codes={500}) == [
        "processCode 100 is not a repair operation"
    ]


# -- endpoints over HTTP ----------------------------------------------------------------------------


def test_auth_is_required_when_configured(wats: FakeWATS) -> None:
    with httpx.Client(base_url=wats.url) as anonymous:
        response = anonymous.get("/api/App/Version")
        assert response.status_code == 401
        assert anonymous.get("/api/App/Version", headers={"Authorization": "Basic nope"}).status_code == 401
    assert wats.requests[0].status == 401


def test_report_overwrite_by_id_and_400_message(wats: FakeWATS, client: httpx.Client) -> None:
    doc = make_report()
    assert client.post("/api/Report/WSJF", json=doc).json() == {"ID": doc["id"]}
    changed = copy.deepcopy(doc)
    changed["result"] = "F"
    client.post("/api/Report/WSJF", json=changed)
    assert wats.reports[doc["id"]]["result"] == "F"
    assert wats.submissions == {doc["id"]: 2}
    assert client.get(f"/api/Report/Wsjf/{doc['id']}").json()["result"] == "F"
    bad = client.post("/api/Report/WSJF", json=make_report(processCode=999))
    assert bad.status_code == 400
    assert bad.json()["message"] == "The report is not valid: processCode 999 is not a test operation"
    not_json = client.post("/api/Report/WSJF", content=b"{nope")
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
    # [DOC]: the first report creates the unit
    assert ("SN000123", "PCBA-100") in wats.units


def test_unit_life_cycle(wats: FakeWATS, client: httpx.Client) -> None:
    assert client.get("/api/Production/Unit/SN1/PN1").status_code == 404
    unit = {"serialNumber": "SN1", "partNumber": "PN1", "revision": "A"}
    assert client.post("/api/Production/Unit", json=unit).status_code == 200
    assert client.post("/api/Production/Unit", json=unit).status_code == 409
    assert client.post("/api/Production/Unit", json={**unit, "serialNumber": "S?1"}).status_code == 400
    bad_parent = client.post(
        "/api/Production/Unit", json={**unit, "serialNumber": "S2", "parentSerialNumber": "X"}
    )
    assert bad_parent.status_code == 400
    assert client.get("/api/Production/Unit/SN1/PN1").json()["unitPhaseId"] == 2

    params = {"serialNumber": "SN1", "partNumber": "PN1"}
    assert client.put("/api/Production/SetUnitPhase", params={**params, "phase": 3}).status_code == 400
    ok = client.put("/api/Production/SetUnitPhase", params={**params, "phase": 32, "comment": "burnt"})
    assert ok.status_code == 200
    assert (
        client.put("/api/Production/SetUnitProcess", params={**params, "processCode": 77}).status_code == 400
    )
    assert (
        client.put("/api/Production/SetUnitProcess", params={**params, "processCode": 50}).status_code == 200
    )
    assert (
        client.put(
            "/api/Production/SetUnitPhase", params={"serialNumber": "SN9", "partNumber": "PN1", "phase": 2}
        ).status_code
        == 404
    )
    stored = wats.units[("SN1", "PN1")]
    assert (stored["unitPhaseId"], stored["unitPhase"], stored["processCode"]) == (32, "Scrapped", 50)
    assert wats.unit_history[0]["comment"] == "burnt"
    found = client.get("/api/Production/Unit/Query", params={"$filter": "serialNumber eq 'SN1'"}).json()
    assert [u["partNumber"] for u in found] == ["PN1"]


def test_child_units(wats: FakeWATS, client: httpx.Client) -> None:
    wats.add_unit("BOX1", "BOX")
    wats.add_unit("PCB1", "PCB", phase=2)
    rel = {
        "parentSerialNumber": "BOX1",
        "parentPartNumber": "BOX",
        "childSerialNumber": "PCB1",
        "childPartNumber": "PCB",
    }
    refused = client.post("/api/Production/AddChildUnit", params=rel)
    assert refused.status_code == 400 and "Finalized" in refused.json()["message"]
    client.put(
        "/api/Production/SetUnitPhase", params={"serialNumber": "PCB1", "partNumber": "PCB", "phase": 16}
    )
    assert client.post("/api/Production/AddChildUnit", params=rel).status_code == 200
    assert client.post("/api/Production/AddChildUnit", params=rel).status_code == 200  # same parent again
    assert wats.units[("BOX1", "BOX")]["subUnits"] == [
        {"serialNumber": "PCB1", "partNumber": "PCB", "revision": "A"}
    ]
    assert wats.units[("PCB1", "PCB")]["parentSerialNumber"] == "BOX1"
    assert client.post("/api/Production/RemoveChildUnit", params=rel).status_code == 200
    assert client.post("/api/Production/RemoveChildUnit", params=rel).status_code == 400
    assert wats.units[("BOX1", "BOX")]["subUnits"] == []
    missing = client.post(
        "/api/Production/AddChildUnit", params={k: v for k, v in rel.items() if k != "childPartNumber"}
    )
    assert missing.status_code == 400 and "childPartNumber" in missing.json()["message"]


def test_assets(wats: FakeWATS, client: httpx.Client) -> None:
    asset = wats.add_asset("ST-1", name="Station 1")
    by_serial = client.get("/api/Asset/ST-1").json()
    assert by_serial == client.get(f"/api/Asset/{asset['assetId']}").json()
    assert client.get("/api/Asset/NOPE").status_code == 404
    assert client.put("/api/Asset/State", params={"serialNumber": "ST-1", "state": 3}).status_code == 200
    assert client.put("/api/Asset/State", params={"serialNumber": "ST-1", "state": 9}).status_code == 400
    for _ in range(2):
        client.put("/api/Asset/Count", params={"id": asset["assetId"], "incrementBy": 2})
    message = {"assetId": asset["assetId"], "comment": "E42: feeder jam [error]", "user": "event-bus"}
    assert client.post("/api/Asset/Message", json=message).status_code == 200
    assert client.post("/api/Asset/Message", json={**message, "assetId": "ST-1"}).status_code == 400
    assert client.post("/api/Asset/Message", json={**message, "comment": " "}).status_code == 400
    state = wats.assets["ST-1"]
    assert (state["state"], state["runningCount"], state["totalCount"]) == (3, 4, 4)
    assert [(e["logType"], e["comment"]) for e in wats.asset_log] == [
        (6, "State changed to In Maintenance"),
        (0, "E42: feeder jam [error]"),
    ]
    assert wats.asset_log[1]["user"] == "event-bus"
    # the asset JSON carries its counts and its own log, which a client reads to verify a lost answer
    got = client.get("/api/Asset/ST-1").json()
    assert (got["totalCount"], got["runningCount"]) == (4, 4)
    assert [e["comment"] for e in got["assetLog"]] == [e["comment"] for e in wats.asset_log]
    wats.add_asset("ST-2")
    assert client.get("/api/Asset/ST-2").json()["assetLog"] == []
    only_messages = f"assetId eq '{asset['assetId']}' and logType eq 0"
    log = client.get("/api/Asset/Log", params={"$filter": only_messages})
    assert [e["comment"] for e in log.json()] == ["E42: feeder jam [error]"]


def test_processes_are_configurable_and_filtered(wats: FakeWATS, client: httpx.Client) -> None:
    wats.set_processes(
        [
            {"code": 30, "name": "Flying probe", "isTestOperation": True},
            {"code": 40, "name": "Old test", "isTestOperation": True, "state": 0},
            {"code": 600, "name": "Rework", "isRepairOperation": True},
        ]
    )
    everything = client.get("/api/App/Processes").json()
    assert [(p["code"], p["name"]) for p in everything] == [(30, "Flying probe"), (600, "Rework")]
    tests_only = client.get("/api/App/Processes", params={"includeRepairOperations": "false"}).json()
    assert [p["code"] for p in tests_only] == [30]
    inactive = client.get("/api/App/Processes", params={"includeInactiveProcesses": "true"}).json()
    assert [p["code"] for p in inactive] == [30, 40, 600]
    assert client.post("/api/Report/WSJF", json=make_report(processCode=100)).status_code == 400
    assert client.post("/api/Report/WSJF", json=make_report(processCode=30)).status_code == 200


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert client.get("/api/Nope").status_code == 404
    assert client.delete("/api/Report/WSJF").status_code == 405
    assert client.get("/api/internal/Mes/GetUnitPhases").status_code == 400  # needs a Referer
    phases = client.get("/api/internal/Mes/GetUnitPhases", headers={"Referer": "x"}).json()
    assert {p["UnitPhaseId"] for p in phases} >= {2, 4, 16, 32}


# -- faults -----------------------------------------------------------------------------------------


def test_fault_for_a_period_then_recovery(wats: FakeWATS, client: httpx.Client) -> None:
    wats.inject("error", status=503, duration=0.3)
    assert client.get("/api/App/Version").status_code == 503
    time.sleep(0.35)
    assert client.get("/api/App/Version").status_code == 200


def test_fault_for_a_fraction_of_requests(client: httpx.Client) -> None:
    with FakeWATS(seed=7) as wats, httpx.Client(base_url=wats.url) as c:
        wats.inject("429", fraction=0.3, retry_after=2)
        statuses = [c.get("/api/App/Version") for _ in range(200)]
    rate_limited = [r for r in statuses if r.status_code == 429]
    assert 35 <= len(rate_limited) <= 85
    assert rate_limited[0].headers["Retry-After"] == "2"
    assert {r.status_code for r in statuses} == {200, 429}


def test_faults_leave_no_trace_unless_after(wats: FakeWATS, client: httpx.Client) -> None:
    doc = make_report()
    wats.inject("drop", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/Report/WSJF", json=doc)
    assert wats.submissions == {}
    wats.inject("drop", count=1, after=True)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/Report/WSJF", json=doc)
    assert wats.submissions == {doc["id"]: 1}
    assert [r.fault for r in wats.requests] == ["drop", "drop-after"]


def test_after_fault_applies_the_request_and_skip_lets_the_first_ones_through(
    wats: FakeWATS, client: httpx.Client
) -> None:
    asset = wats.add_asset("FX-1")
    wats.inject("error", status=500, after=True, count=1, path="/api/Asset/Count")
    wats.inject("error", status=503, path="/api/Asset/FX-1", skip=1)
    assert client.get("/api/Asset/FX-1").json()["totalCount"] == 0  # skipped: answered normally
    count = {"id": asset["assetId"], "incrementBy": 1}
    assert client.put("/api/Asset/Count", params=count).status_code == 500
    assert client.get("/api/Asset/FX-1").status_code == 503
    assert wats.assets["FX-1"]["totalCount"] == 1  # the 500 came after the count was applied
    assert [r.fault for r in wats.requests] == [None, "error-after", "error"]


def test_hang_times_the_client_out_and_clear_ends_it(wats: FakeWATS, client: httpx.Client) -> None:
    wats.inject("hang", hang=10, path="/api/Asset")
    assert client.get("/api/App/Version").status_code == 200  # other paths are unaffected
    with pytest.raises(httpx.ReadTimeout):
        client.get("/api/Asset/X", timeout=0.3)
    wats.clear_faults()
    assert client.get("/api/Asset/X").status_code == 404


def test_request_log_keeps_arrival_order(wats: FakeWATS, client: httpx.Client) -> None:
    for n in range(5):
        client.put("/api/Asset/State", params={"serialNumber": f"A{n}", "state": 1})
    log = wats.requests
    assert [r.params["serialNumber"] for r in log] == [f"A{n}" for n in range(5)]
    assert [r.status for r in log] == [404] * 5
    assert all(a.monotonic <= b.monotonic for a, b in itertools.pairwise(log))


def test_unknown_fault_kind_is_rejected(wats: FakeWATS) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        wats.inject("explode")


# -- command line -----------------------------------------------------------------------------------


def test_command_line_server_with_control_api() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "handlers.wats.fake", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            assert c.get("/api/App/Version").status_code == 200
            c.post("/_fake/faults", content=json.dumps({"kind": "error", "status": 502}))
            assert c.get("/api/App/Version").status_code == 502
            c.delete("/_fake/faults")
            assert c.post("/api/Report/WSJF", json=make_report()).status_code == 200
            state = c.get("/_fake/state").json()
        assert len(state["reports"]) == 1 and state["faults"] == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
