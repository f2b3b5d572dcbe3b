"""Lost answers to non-idempotent WATS requests: no dead letters, no double counts, no lost log lines.

FakeWATS carries the request out and then fails the answer (500/502 or a dropped connection), which is
exactly the case in which a client cannot know whether its request took effect.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sample_plant import FCT, PN, PSU, TOKEN, UNITS, fast_sender, fct_event, plant_config, seed

from handlers import (
    AssetHandler,
    ProductionHandler,
    RecordingSink,
    WatsHandlersConfig,
    WatsPermanentError,
    create_handlers,
)
from handlers.wats.fake import FakeWATS
from handlers.wats.sender import WatsOutcomeUnknownError
from handlers.wats.sink import WatsRequest, WatsResponse
from pywats_events import AsyncEventBus, Event, EventType, TransientError
from pywats_events.payloads import (
    AssetFaultEvent,
    InstalledComponent,
    MaterialInstalledEvent,
    StepResult,
    TestResultEvent,
)
from pywats_events.policies import DeadLetterQueue, RetryPolicy

FCT_ASSET = "FCT-L1-02"
T0 = datetime(2026, 3, 12, 9, 0, tzinfo=timezone.utc)
COUNT = "/api/Asset/Count"
MESSAGE = "/api/Asset/Message"
ADD_CHILD = "/api/Production/AddChildUnit"


def unit_tested(serial: str) -> Event:
    result = TestResultEvent(
        unit_serial=serial,
        station=FCT,
        message_id=f"tested-{serial}",
        method="FCT",
        result=StepResult.PASSED,
        start=T0,
        end=T0 + timedelta(seconds=2),
    )
    return fct_event(EventType.TEST_RESULT, result)


def fault(n: int) -> Event:
    payload = AssetFaultEvent(
        station=FCT,
        message_id=f"fault-msg-{n}",
        fault_code=f"E{n}",
        severity="Error",
        description="Feeder jam",
        fault_occurrence_id=f"occ-{n}",
    )
    return fct_event(EventType.ASSET_FAULT, payload)


def installed(parent: str, child: str, child_pn: str) -> Event:
    payload = MaterialInstalledEvent(
        unit_serial=parent,
        station=FCT,
        message_id=f"mat-{parent}-{child}",
        components=[InstalledComponent(designator="J1", part_number=child_pn, serial=child)],
    )
    return fct_event(EventType.MATERIAL_INSTALLED, payload)


def counting_config(**overrides: Any) -> WatsHandlersConfig:
    return plant_config(asset={"count_usage": True}, **overrides)


@asynccontextmanager
async def running(
    wats: FakeWATS, config: WatsHandlersConfig
) -> AsyncIterator[tuple[AsyncEventBus, DeadLetterQueue]]:
    """The real bus with the real handlers, talking HTTP to `wats`; stop() drains everything."""
    live = fast_sender(wats)
    dlq = DeadLetterQueue(1000)
    bus = AsyncEventBus(
        max_concurrency=16,
        dead_letter_queue=dlq,
        retry_policy=RetryPolicy(max_retries=2, initial_delay=0.05, max_delay=0.5),
    )
    for h in create_handlers(config, live):
        bus.subscribe(h)
    await bus.start()
    try:
        yield bus, dlq
    finally:
        report = await bus.stop(timeout=40.0)
        await live.aclose()
        assert report.clean, report


def answered(wats: FakeWATS, path: str) -> list[Any]:
    """Requests to `path` the server carried out (2xx), whether or not the answer reached the client."""
    return [r for r in wats.requests if r.path == path and r.status is not None and 200 <= r.status < 300]


def log_lines(wats: FakeWATS, text: str) -> list[str]:
    return [e["comment"] for e in wats.asset_log if text in e["comment"]]


# -- on the bus: the answer is lost after WATS acted ------------------------------------------------


@pytest.mark.parametrize("kind", ["error", "drop"])
async def test_count_applied_then_answer_lost_counts_exactly_once(kind: str) -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with running(wats, counting_config()) as (bus, dlq):
            wats.inject(kind, status=500, after=True, count=1, path=COUNT)
            await bus.publish(unit_tested(UNITS[0]))
        assert len(dlq) == 0
        assert wats.assets[FCT_ASSET]["totalCount"] == 1
        assert len(answered(wats, COUNT)) == 1  # the re-read proved it: never sent again
        assert [r.fault for r in wats.requests if r.path == COUNT] == [f"{kind}-after"]


async def test_message_applied_then_connection_dropped_is_logged_once() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with running(wats, plant_config()) as (bus, dlq):
            wats.inject("drop", after=True, count=1, path=MESSAGE)
            await bus.publish(fault(42))
        assert len(dlq) == 0
        # at least once; exactly once whenever the log check can see the first copy, as here
        assert log_lines(wats, "Fault E42") == [
            "Fault E42 [Error]: Feeder jam (occurrence occ-42) [ref fault-msg-42]"
        ]
        assert [r.fault for r in wats.requests if r.path == MESSAGE] == ["drop-after"]


async def test_add_child_applied_then_500_attaches_once() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with running(wats, plant_config()) as (bus, dlq):
            wats.inject("error", status=500, after=True, count=1, path=ADD_CHILD)
            await bus.publish(installed(UNITS[0], PSU[0], PSU[1]))
        assert len(dlq) == 0
        assert wats.units[(UNITS[0], PN)]["subUnits"] == [
            {"serialNumber": PSU[0], "partNumber": PSU[1], "revision": "B"}
        ]
        assert wats.units[PSU]["parentSerialNumber"] == UNITS[0]
        assert len(answered(wats, ADD_CHILD)) == 1


async def _outage(seconds: float, units: int) -> None:
    children = [(f"PSU-{i:03d}", PSU[1]) for i in range(units)]
    with FakeWATS(token=TOKEN, seed=7) as wats:
        seed(wats, units=False)
        for i in range(units):
            wats.add_unit(f"OUT-{i:03d}", PN, "C")
            wats.add_unit(*children[i], "B", phase=16)
        async with running(wats, counting_config()) as (bus, dlq):
            wats.clear_requests()
            started = time.monotonic()
            # every request fails for `seconds` (500: the sender cannot tell whether WATS acted); after
            # that a third of the answers are lost after WATS did act, for a while longer
            wats.inject("error", status=500, duration=seconds)
            wats.inject("error", status=502, after=True, fraction=0.3, duration=seconds + 3)
            for i in range(units):
                await bus.publish(unit_tested(f"OUT-{i:03d}"))
                await bus.publish(fault(i))
                await bus.publish(installed(f"OUT-{i:03d}", *children[i]))
        assert time.monotonic() - started >= seconds
        assert len(dlq) == 0, [e.error for e in dlq.get_entries()]
        assert wats.assets[FCT_ASSET]["totalCount"] == units  # every unit counted, none twice
        for i in range(units):
            assert len(log_lines(wats, f"[ref fault-msg-{i}]")) == 1
            assert wats.units[children[i]]["parentSerialNumber"] == f"OUT-{i:03d}"
        assert len(wats.reports) == units
        lost = {r.path for r in wats.requests if r.fault == "error-after"}
        assert lost & {COUNT, MESSAGE, ADD_CHILD}  # answers to non-idempotent writes were lost (p≈1)


async def test_outage_then_recovery_delivers_faults_counts_and_children_without_dead_letters() -> None:
    await _outage(3.0, units=8)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_longer_outage_with_lost_answers_loses_and_doubles_nothing() -> None:
    await _outage(15.0, units=25)


# -- the handlers step by step (FakeWATS over HTTP, attempts driven by hand) --------------------------


async def test_count_waits_while_the_re_read_fails_and_verifies_later() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with fast_sender(wats, max_attempts=1) as live:
            h = AssetHandler(live, counting_config())
            ev = unit_tested(UNITS[0])
            wats.inject("error", status=500, after=True, count=1, path=COUNT)
            with pytest.raises(TransientError) as info:
                await h.handle(ev)
            assert isinstance(info.value.__cause__, WatsOutcomeUnknownError)  # an outage, not a refusal
            wats.inject("error", status=503)  # WATS down: the check cannot be made
            with pytest.raises(TransientError):
                await h.handle(ev)
            wats.clear_faults()
            await h.handle(ev)  # the baseline survived the failed attempt: 1 = 0 + 1, done
            await h.handle(ev)  # a redelivery of the same unit is not counted again
        assert wats.assets[FCT_ASSET]["totalCount"] == 1
        assert len(answered(wats, COUNT)) == 1


async def test_count_lost_before_it_reached_wats_is_sent_again() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with fast_sender(wats, max_attempts=1) as live:
            h = AssetHandler(live, counting_config())
            first, second = unit_tested(UNITS[0]), unit_tested(UNITS[1])
            wats.inject("drop", count=1, path=COUNT)  # dropped before WATS acted
            with pytest.raises(TransientError):
                await h.handle(first)
            await h.handle(second)  # our own increment meanwhile must not pass for the lost one
            assert wats.assets[FCT_ASSET]["totalCount"] == 1
            await h.handle(first)  # 1 < 0 + 1 + 1 (ours): provably missing, so sent again
        assert wats.assets[FCT_ASSET]["totalCount"] == 2
        assert len(answered(wats, COUNT)) == 2


@pytest.mark.parametrize("state", ["file", "memory"])
async def test_a_restart_between_the_increment_and_its_record_does_not_count_twice(
    state: str, tmp_path: Path
) -> None:
    """WATS applied the increment, then the process died before anything recorded it (here: the answer was
    lost, then a new handler takes over, as after kill -9 and a journal replay). With the listener's state
    file the new process finds the pending increment and verifies it; memory alone counts it twice."""
    config = (
        counting_config(state_file=str(tmp_path / "wats-state.db")) if state == "file" else counting_config()
    )
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with fast_sender(wats, max_attempts=1) as live:
            ev = unit_tested(UNITS[0])
            before = AssetHandler(live, config)
            wats.inject("error", status=500, after=True, count=1, path=COUNT)
            with pytest.raises(TransientError):
                await before.handle(ev)
            # killed: no on_stop, the event comes back from the journal as a first attempt
            after = AssetHandler(live, config)
            await after.handle(ev)
            await after.handle(ev)  # and a broker redelivery on top
            await after.on_stop()
            restarted_again = AssetHandler(live, config)
            await restarted_again.handle(ev)  # counted units are remembered across restarts too
            await restarted_again.on_stop()
    if state == "file":
        assert wats.assets[FCT_ASSET]["totalCount"] == 1
        assert len(answered(wats, COUNT)) == 1
    else:
        assert wats.assets[FCT_ASSET]["totalCount"] == 3, "the limit the state file removes"


async def test_message_not_applied_is_sent_again_and_a_fresh_handler_does_not_duplicate() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with fast_sender(wats, max_attempts=1) as live:
            ev = fault(7)
            h = AssetHandler(live, plant_config())
            wats.inject("drop", count=1, path=MESSAGE)  # lost before WATS acted
            with pytest.raises(TransientError):
                await h.handle(ev)
            await h.handle(ev)
            assert len(log_lines(wats, "[ref fault-msg-7]")) == 1
            # a retry after a restart (no memory of the lost answer) still checks the log first
            retry = ev.model_copy(update={"metadata": ev.metadata.model_copy(update={"attempt": 1})})
            await AssetHandler(live, plant_config()).handle(retry)
        assert len(log_lines(wats, "[ref fault-msg-7]")) == 1
        assert len(answered(wats, MESSAGE)) == 1


async def test_remove_child_applied_then_500_is_done_and_a_repeat_sends_nothing() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with fast_sender(wats, max_attempts=1) as live:
            h = ProductionHandler(live, plant_config())
            await h.handle(installed(UNITS[0], PSU[0], PSU[1]))
            assert wats.units[PSU]["parentSerialNumber"] == UNITS[0]
            wats.inject("error", status=500, after=True, count=1, path="/api/Production/RemoveChildUnit")
            await h.detach_child_unit(UNITS[0], PN, *PSU)  # lost answer, verified: no exception
            await h.detach_child_unit(UNITS[0], PN, *PSU)
        assert wats.units[PSU]["parentSerialNumber"] is None
        assert wats.units[(UNITS[0], PN)]["subUnits"] == []
        assert len([r for r in wats.requests if r.path.endswith("RemoveChildUnit")]) == 1


async def test_add_child_while_wats_is_down_is_transient() -> None:
    with FakeWATS(token=TOKEN) as wats:
        seed(wats)
        async with fast_sender(wats, max_attempts=1) as live:
            h = ProductionHandler(live, plant_config())
            ev = installed(UNITS[0], PSU[0], PSU[1])
            wats.inject("error", status=500, after=True, count=1, path=ADD_CHILD)
            # the check before passes, the one after the lost answer fails: WATS went down meanwhile
            wats.inject("error", status=500, path="/api/Production/Unit/", skip=1)
            with pytest.raises(TransientError):
                await h.handle(ev)
            wats.clear_faults()
            await h.handle(ev)  # the child is already there: nothing sent
        assert wats.units[PSU]["parentSerialNumber"] == UNITS[0]
        assert len([r for r in wats.requests if r.path == ADD_CHILD]) == 1


# -- servers that leave things out (recording sink) --------------------------------------------------


class _Sparse:
    """A WATS whose asset JSON has neither `assetLog` nor `totalCount`; the first write's answer is lost."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.lost = False

    def __call__(self, r: WatsRequest) -> WatsResponse:
        if r.method == "GET" and r.path == "/api/Asset/Log":
            wanted = r.params["$filter"].split("comment eq '", 1)[1][:-1].replace("''", "'")
            return WatsResponse(200, [e for e in self.log if e["comment"] == wanted])
        if r.method == "GET" and r.path.startswith("/api/Asset/"):
            return WatsResponse(200, {"assetId": "11111111-1111-1111-1111-111111111111"})
        if r.method == "POST" and r.path == MESSAGE:
            self.log.append(dict(r.json))
        if r.method != "GET" and not self.lost:
            self.lost = True
            raise WatsOutcomeUnknownError(f"{r.method} {r.path}: no answer from WATS; outcome unknown")
        return WatsResponse(200, None)


async def test_log_check_falls_back_to_the_asset_log_query() -> None:
    server = _Sparse()
    sink = RecordingSink(server)
    h = AssetHandler(sink, plant_config())
    ev = fault(3)
    with pytest.raises(TransientError):
        await h.handle(ev)
    await h.handle(ev)
    assert len(server.log) == 1  # found through GET /api/Asset/Log, not posted again
    query = next(r for r in sink.requests if r.path == "/api/Asset/Log")
    assert (
        "comment eq 'Fault E3 [Error]: Feeder jam (occurrence occ-3) [ref fault-msg-3]'"
        in (query.params["$filter"])
    )


async def test_count_without_total_count_is_sent_and_a_lost_answer_is_a_clear_dead_letter() -> None:
    server = _Sparse()
    h = AssetHandler(RecordingSink(server), counting_config())
    ev = unit_tested(UNITS[0])
    with pytest.raises(TransientError):
        await h.handle(ev)
    with pytest.raises(WatsPermanentError, match="no totalCount to verify"):
        await h.handle(ev)
    await h.handle(unit_tested(UNITS[1]))  # answered: counted without verification
