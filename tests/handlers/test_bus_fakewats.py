"""Handlers on the real bus against FakeWATS over HTTP: redelivery, a refused report, and an outage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sample_plant import FCT, PN, TOKEN, fast_sender, fct_event, plant_config, sample_events, seed

from handlers import WatsHandlersConfig, create_handlers
from handlers.wats.fake import FakeWATS
from pywats_events import AsyncEventBus, Event, EventType
from pywats_events.payloads import (
    Measurement,
    StepResult,
    TestResultEvent,
    TestStep,
    WorkCompletedEvent,
    WorkResult,
    WorkStartedEvent,
)
from pywats_events.policies import DeadLetterQueue, RetryPolicy

T0 = datetime(2026, 3, 12, 9, 0, tzinfo=timezone(timedelta(hours=1)))


def unit_story(serial: str, *, station: str = FCT) -> list[Event]:
    """WorkStarted, UnitsTested (one passing measurement), WorkCompleted for one unit at FCT."""
    test = TestResultEvent(
        unit_serial=serial,
        station=station,
        message_id=f"tested-{serial}",
        method="FCT",
        result=StepResult.PASSED,
        start=T0,
        end=T0 + timedelta(seconds=3),
        tests=[
            TestStep(
                name="VCC",
                measurements=[
                    Measurement(
                        name="VCC", value=3.3, low_limit=3.1, high_limit=3.5, result=StepResult.PASSED
                    )
                ],
            )
        ],
    )
    return [
        fct_event(
            EventType.WORK_STARTED,
            WorkStartedEvent(unit_serial=serial, station=station, message_id=f"ws-{serial}"),
        ),
        fct_event(EventType.TEST_RESULT, test),
        fct_event(
            EventType.WORK_COMPLETED,
            WorkCompletedEvent(
                unit_serial=serial, station=station, result=WorkResult.COMPLETED, message_id=f"wc-{serial}"
            ),
        ),
    ]


@asynccontextmanager
async def running(
    wats: FakeWATS, config: WatsHandlersConfig | None = None
) -> AsyncIterator[tuple[AsyncEventBus, DeadLetterQueue]]:
    sender = fast_sender(wats)
    dlq = DeadLetterQueue(1000)
    bus = AsyncEventBus(
        max_concurrency=16,
        dead_letter_queue=dlq,
        retry_policy=RetryPolicy(max_retries=2, initial_delay=0.05, max_delay=0.5),
    )
    for h in create_handlers(config or plant_config(), sender):
        bus.subscribe(h)
    await bus.start()
    try:
        yield bus, dlq
    finally:
        report = await bus.stop(timeout=40.0)
        await sender.aclose()
        assert report.clean, report


async def test_same_message_three_times_yields_one_report_per_unit() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with running(wats) as (bus, dlq):
            for _ in range(3):
                for ev in sample_events("units_tested_ict"):  # decoded afresh each time, as a redelivery is
                    await bus.publish(ev)
        assert len(dlq) == 0
        assert len(wats.reports) == 2  # two units on the panel, one report each
        assert sorted(wats.submissions.values()) == [3, 3]  # overwritten by id, never duplicated


async def test_a_400_dead_letters_that_event_with_the_server_message_and_others_continue() -> None:
    # the WIP process 200 is not a test operation: FakeWATS refuses such a report with 400
    bad = "Acme.FCT5000.FCT-BAD-09"
    cfg = plant_config(
        lookup_processes=False,
        processes={bad: 200},
        stations={FCT: {"process": 50, "last_operation": True}},
    )
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        good_events = [ev for sn in ("U-1", "U-2") for ev in unit_story(sn)]
        bad_result = unit_story("U-BAD", station=bad)[1]
        async with running(wats, cfg) as (bus, dlq):
            await bus.publish(good_events[0])
            await bus.publish(bad_result)
            for ev in good_events[1:]:
                await bus.publish(ev)
        [entry] = dlq.get_entries()
        assert entry.event.id == bad_result.id
        assert entry.handler.startswith("ReportHandler")
        assert "400" in entry.error and "test operation" in entry.error  # FakeWATS's own message
        assert {r["sn"] for r in wats.reports.values()} == {"U-1", "U-2"}
        assert wats.units[("U-2", PN)]["unitPhaseId"] == 16


async def _outage_then_recovery(outage: float, units: int) -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats, units=False)
        async with running(wats) as (bus, dlq):
            wats.clear_requests()
            started = time.monotonic()
            wats.inject("error", status=503, duration=outage)
            for i in range(units):
                for ev in unit_story(f"OUT-{i:03d}"):
                    await bus.publish(ev)
        assert time.monotonic() - started >= outage  # nothing could have succeeded before recovery
        assert len(dlq) == 0
        assert len(wats.reports) == units
        ok = [r for r in wats.requests if r.status is not None and 200 <= r.status < 300]
        assert ok and min(r.monotonic for r in ok) >= started + outage - 0.1
        for i in range(units):
            sn = f"OUT-{i:03d}"
            assert wats.units[(sn, PN)]["unitPhaseId"] == 16
            process = next(
                k
                for k, r in enumerate(ok)
                if r.path.endswith("SetUnitProcess") and r.params["serialNumber"] == sn
            )
            report = next(k for k, r in enumerate(ok) if r.path == "/api/Report/WSJF" and r.json["sn"] == sn)
            finalized = next(
                k
                for k, r in enumerate(ok)
                if r.path.endswith("SetUnitPhase")
                and r.params["serialNumber"] == sn
                and r.params["phase"] == "16"
            )
            assert process < report < finalized, sn  # WorkStarted, then the report, then WorkCompleted


async def test_outage_of_5s_then_recovery_delivers_everything_in_order() -> None:
    await _outage_then_recovery(5.0, units=20)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_outage_of_30s_then_recovery_delivers_everything_in_order() -> None:
    await _outage_then_recovery(30.0, units=20)
