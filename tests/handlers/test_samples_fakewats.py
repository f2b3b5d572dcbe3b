"""Every bundled CFX sample through the handlers, over real HTTP to FakeWATS: the requests WATS receives
and the state they leave, field by field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sample_plant import ASSET_IDS, PN, PSU, REV, TOKEN, UNITS, plant_config, sample_events, seed

from handlers import create_handlers
from handlers.wats.fake import FakeWATS
from handlers.wats.sender import HttpSender
from handlers.wats.wsjf import report_id
from pywats_events import BaseHandler, Event
from pywats_events._handlers import resolve_event_types

pytest.importorskip("pywats_cfx.samples")


class Rig:
    def __init__(self, wats: FakeWATS, sender: HttpSender, handlers: list[BaseHandler]) -> None:
        self.wats, self.sender, self.handlers = wats, sender, handlers

    async def run(self, name: str) -> list[Event]:
        events = sample_events(name)
        for ev in events:
            for h in self.handlers:
                if str(ev.event_type) in resolve_event_types(h):
                    await h.handle(ev)  # type: ignore[misc]
        return events

    def writes(self) -> list[tuple[str, str, dict[str, str], Any]]:
        return [(r.method, r.path, r.params, r.json) for r in self.wats.requests if r.method != "GET"]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        sender = HttpSender(wats.url, TOKEN)
        handlers = create_handlers(plant_config(), sender)
        for h in handlers:
            await h.on_start()  # type: ignore[misc]
        wats.clear_requests()
        try:
            yield Rig(wats, sender, handlers)
        finally:
            await sender.aclose()


def _report(rig: Rig, ev: Event) -> dict[str, Any]:
    p = ev.payload
    return rig.wats.reports[report_id(p["message_id"], p["unit_serial"], p["unit_position"])]


async def test_units_tested_ict(rig: Rig) -> None:
    events = await rig.run("units_tested_ict")
    assert len(rig.wats.reports) == 2
    for ev, sn in zip(events, UNITS, strict=True):
        doc = _report(rig, ev)
        assert (doc["sn"], doc["pn"], doc["rev"], doc["processCode"]) == (sn, PN, REV, 10)
        assert (doc["machineName"], doc["location"], doc["result"]) == ("ICT-L1-01", "Line L1", "P")
        assert doc["start"].endswith("+01:00")
        steps = doc["root"]["steps"]
        measured = [m for s in steps for m in s.get("numericMeas", [])]
        assert len(measured) >= 30 and all(m["status"] == "P" for m in measured)
        assert {m["compOp"] for m in measured} <= {"GELE", "GE", "LE", "EQ", "LOG"}
        for m in measured:
            if m["compOp"] == "GELE":
                assert m["lowLimit"] <= m["value"] <= m["highLimit"]
    assert [w[:2] for w in rig.writes()] == [("POST", "/api/Report/WSJF")] * 2


async def test_units_tested_fct_fails_on_ethernet(rig: Rig) -> None:
    [ev] = await rig.run("units_tested_fct")
    doc = _report(rig, ev)
    assert (doc["sn"], doc["processCode"], doc["machineName"], doc["result"]) == (
        UNITS[0],
        50,
        "FCT-L1-02",
        "F",
    )
    steps = {s["name"]: s for s in doc["root"]["steps"]}
    eth = steps["ETHERNET_LINK"]
    assert eth["status"] == "F"
    assert "Link LED stays off" in eth["reportText"]
    assert steps["LED_CHECK"]["status"] == "S"
    assert steps["FIRMWARE_VERSION"]["stringMeas"][0] == {
        "value": "4.2.17",
        "compOp": "CASESENSIT",
        "limit": "4.2.17",
        "status": "P",
    }
    rails = steps["POWER_RAILS"]["numericMeas"][0]
    assert (rails["compOp"], rails["lowLimit"], rails["highLimit"], rails["unit"]) == (
        "GELE",
        3.135,
        3.465,
        "V",
    )
    misc = {m["description"]: m["text"] for m in doc["miscInfos"]}
    assert misc["Defect 1"].startswith("Defect SOLDER_BRIDGE")
    assert misc["Symptom 1"].startswith("Symptom ETH-NOLINK")
    assert doc["uut"]["comment"] == "First failed step: ETHERNET_LINK"


@pytest.mark.parametrize(
    ("sample", "code", "machine", "results"),
    [
        ("units_inspected_aoi", 20, "AOI-L1-01", ["F", "P"]),  # CFX says unit 1 failed (tombstone on C4)
        ("units_inspected_spi", 25, "SPI-L1-01", ["P", "P"]),
    ],
)
async def test_inspections(rig: Rig, sample: str, code: int, machine: str, results: list[str]) -> None:
    events = await rig.run(sample)
    assert len(events) == 2 and len(rig.wats.reports) == 2
    docs = [_report(rig, ev) for ev in events]
    assert [d["sn"] for d in docs] == list(UNITS)
    assert [d["result"] for d in docs] == results
    for doc in docs:
        assert (doc["processCode"], doc["machineName"], doc["pn"], doc["rev"]) == (code, machine, PN, REV)
        assert all(s["stepType"] == "ET_MNLT" for s in doc["root"]["steps"])
    if sample == "units_inspected_aoi":
        c4 = next(s for s in docs[0]["root"]["steps"] if s["name"] == "C4_PLACEMENT")
        assert c4["status"] == "F"
        misc = {m["description"]: m["text"] for m in docs[0]["miscInfos"]}
        assert (
            misc["Defect 1"]
            == "Defect TOMBSTONE / ComponentPlacement / Component lifted on one terminal at C4"
        )


async def test_work_started_creates_unit_and_sets_process() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats, units=False)
        async with HttpSender(wats.url, TOKEN) as sender:
            handlers = create_handlers(plant_config(), sender)
            rig = Rig(wats, sender, handlers)
            wats.clear_requests()
            await rig.run("work_started")
            assert rig.writes() == [
                (
                    "POST",
                    "/api/Production/Unit",
                    {},
                    {
                        "serialNumber": UNITS[0],
                        "partNumber": PN,
                        "revision": REV,
                        "currentLocation": "Line L1",
                    },
                ),
                (
                    "PUT",
                    "/api/Production/SetUnitPhase",
                    {"serialNumber": UNITS[0], "partNumber": PN, "phase": "2"},
                    None,
                ),
                (
                    "PUT",
                    "/api/Production/SetUnitProcess",
                    {"serialNumber": UNITS[0], "partNumber": PN, "processCode": "50"},
                    None,
                ),
            ]
            unit = wats.units[(UNITS[0], PN)]
            assert (unit["revision"], unit["unitPhaseId"], unit["processCode"]) == (REV, 2, 50)


async def test_work_completed_pass_at_ict_changes_no_phase(rig: Rig) -> None:
    await rig.run("work_completed_pass")
    assert rig.writes() == []


async def test_work_completed_fail_moves_to_production_repair(rig: Rig) -> None:
    await rig.run("work_completed_fail")
    assert rig.writes() == [
        (
            "PUT",
            "/api/Production/SetUnitPhase",
            {"serialNumber": UNITS[0], "partNumber": PN, "phase": "4", "comment": "Work failed at FCT-L1-02"},
            None,
        )
    ]
    assert rig.wats.units[(UNITS[0], PN)]["unitPhaseId"] == 4


async def test_units_disqualified_scraps(rig: Rig) -> None:
    await rig.run("units_disqualified")
    [(method, path, params, _)] = rig.writes()
    assert (method, path, params["phase"]) == ("PUT", "/api/Production/SetUnitPhase", "32")
    assert params["comment"].startswith("DefectiveRepairNotFeasible; U12 pad lifted")
    assert rig.wats.units[(UNITS[0], PN)]["unitPhaseId"] == 32


async def test_materials_th_attaches_the_psu_only(rig: Rig) -> None:
    await rig.run("materials_th")
    assert rig.writes() == [
        (
            "POST",
            "/api/Production/AddChildUnit",
            {
                "parentSerialNumber": UNITS[0],
                "parentPartNumber": PN,
                "childSerialNumber": PSU[0],
                "childPartNumber": PSU[1],
            },
            None,
        )
    ]
    assert rig.wats.units[PSU]["parentSerialNumber"] == UNITS[0]
    await rig.run("materials_th")  # redelivery: already attached, nothing sent again
    assert len(rig.writes()) == 1


@pytest.mark.parametrize("sample", ["materials_smt", "materials_loaded", "work_completed_pass"])
async def test_samples_without_wats_effect(rig: Rig, sample: str) -> None:
    await rig.run(sample)
    assert rig.writes() == []


async def test_faults_and_clear_become_asset_log(rig: Rig) -> None:
    await rig.run("fault_feeder")
    await rig.run("fault_temp")
    await rig.run("fault_cleared")
    log = rig.wats.asset_log
    assert [(e["serialNumber"], e["logType"], e["user"]) for e in log] == [
        ("SMT-L1-03", 0, "pywats-events"),
        ("REFLOW-L1-01", 0, "pywats-events"),
        ("SMT-L1-03", 0, "pywats-events"),
    ]
    assert log[0]["comment"].startswith("Fault E-PICK-0214 [Error]: 3 consecutive pick-up failures")
    assert log[1]["comment"].startswith("Fault ZONE5-OVERTEMP [Warning]")
    assert log[2]["comment"].startswith("Fault e289ae9c-ad80-5a73-b93c-a5e0a793bf6a cleared by")
    assert {w[3]["assetId"] for w in rig.writes()} == {ASSET_IDS["SMT-L1-03"], ASSET_IDS["REFLOW-L1-01"]}


async def test_station_state_changed_to_error_is_logged_not_stated(rig: Rig) -> None:
    await rig.run("station_state_changed")
    [entry] = rig.wats.asset_log
    assert entry["comment"].startswith("State productive -> unscheduled_downtime (E10 5500)")
    assert rig.wats.assets["SMT-L1-03"]["state"] == 1


async def test_fault_with_maintenance_setting_sets_state_3() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with HttpSender(wats.url, TOKEN) as sender:
            cfg = plant_config(asset={"fault_sets_maintenance": True})
            await Rig(wats, sender, create_handlers(cfg, sender)).run("fault_feeder")
            assert wats.assets["SMT-L1-03"]["state"] == 3


async def test_every_sample_is_covered() -> None:
    from pywats_cfx.samples import list_samples

    covered = {
        "units_tested_ict",
        "units_tested_fct",
        "units_inspected_aoi",
        "units_inspected_spi",
        "work_started",
        "work_completed_pass",
        "work_completed_fail",
        "units_disqualified",
        "materials_th",
        "materials_smt",
        "materials_loaded",
        "fault_feeder",
        "fault_temp",
        "fault_cleared",
        "station_state_changed",
    }
    assert set(list_samples()) <= covered, set(list_samples()) - covered
