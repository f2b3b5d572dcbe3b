"""A WorkCompleted naming no unit (CFX allows it when WorkStarted named them): the production handler
applies it to the units its transaction's WorkStarted named, and dead-letters one it cannot place."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from handler_helpers import STATION, base_config, event, server_sink
from pydantic import ValidationError

from handlers import ProductionHandler, RecordingSink, ResolutionError, WatsHandlersConfig
from pywats_events import Event, EventType
from pywats_events.payloads import WorkCompletedEvent, WorkResult, WorkStartedEvent


def started(serial: str, tx: str, position: int | None = None) -> Event:
    payload = WorkStartedEvent(
        unit_serial=serial,
        unit_position=position,
        station=STATION,
        recipe="PCBA-100-ICT",
        transaction_id=tx,
        message_id=f"ws-{tx}",
    )
    return event(EventType.WORK_STARTED, payload)


def completed(tx: str | None, result: WorkResult = WorkResult.FAILED) -> Event:
    payload = WorkCompletedEvent(unit_serial="", station=STATION, result=result, transaction_id=tx)
    return event(EventType.WORK_COMPLETED, payload)


def phases_set(sink: RecordingSink) -> list[tuple[str, str, int]]:
    return [
        (r.params["serialNumber"], r.params["partNumber"], r.params["phase"])
        for r in sink.requests
        if r.operation == "set_unit_phase"
    ]


async def test_unitless_failure_sets_the_failure_phase_on_every_started_unit_in_position_order() -> None:
    sink, _ = server_sink()
    handler = ProductionHandler(sink, base_config())
    await handler.handle(started("SN-B", "tx-1", position=2))
    await handler.handle(started("SN-A", "tx-1", position=1))
    sink.clear()

    await handler.handle(completed("tx-1"))

    # the part number comes from WorkStarted (its recipe), so WATS is not asked again
    assert [r.method for r in sink.requests] == ["PUT", "PUT"]
    assert phases_set(sink) == [("SN-A", "PCBA-100", 4), ("SN-B", "PCBA-100", 4)]
    assert {r.params["comment"] for r in sink.requests} == {"Work failed at ICT-01"}


async def test_unitless_completion_without_phase_change_sends_nothing() -> None:
    sink, _ = server_sink()
    handler = ProductionHandler(sink, base_config())
    await handler.handle(started("SN-A", "tx-1", position=1))
    sink.clear()
    await handler.handle(completed("tx-1", WorkResult.COMPLETED))  # not a last-operation station
    assert sink.requests == []


NO_WAIT = {"transaction_wait": 0}


async def test_unknown_transaction_is_a_resolution_error_and_changes_nothing() -> None:
    sink, _ = server_sink()
    handler = ProductionHandler(sink, base_config(phases={"transaction_wait": 0.2}))
    await handler.handle(started("SN-A", "tx-1"))
    sink.clear()
    reason = r"no WorkStarted of transaction tx-9 was seen \(within phases.transaction_wait = 0.2 s\)"
    with pytest.raises(ResolutionError, match=reason):
        await handler.handle(completed("tx-9"))
    with pytest.raises(ResolutionError, match="neither a unit nor a transaction"):
        await handler.handle(completed(None))
    assert sink.requests == []


async def test_a_completion_handled_before_its_start_waits_for_it() -> None:
    """The WorkStarted's units run on their own lanes: its WorkCompleted may be handled a moment earlier."""
    sink, _ = server_sink()
    handler = ProductionHandler(sink, base_config())
    waiting = asyncio.create_task(handler.handle(completed("tx-late")))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await handler.handle(started("SN-L", "tx-late", position=1))
    await asyncio.wait_for(waiting, 5)
    assert ("SN-L", "PCBA-100", 4) in phases_set(sink)


async def test_without_a_state_file_a_restarted_handler_does_not_know_earlier_transactions() -> None:
    sink, _ = server_sink()
    await ProductionHandler(sink, base_config()).handle(started("SN-A", "tx-1"))
    with pytest.raises(ResolutionError, match="transaction tx-1 was seen"):
        await ProductionHandler(sink, base_config(phases=NO_WAIT)).handle(completed("tx-1"))


async def test_with_a_state_file_a_restart_keeps_open_transactions(tmp_path: Path) -> None:
    """A WorkStarted before a listener restart, its unit-less WorkCompleted after it: the units come from the
    state file (as the listener configures it, in its data directory)."""
    sink, _ = server_sink()
    config = base_config(state_file=str(tmp_path / "wats-state.db"), phases=NO_WAIT)
    before = ProductionHandler(sink, config)
    await before.handle(started("SN-B", "tx-1", position=2))
    await before.handle(started("SN-A", "tx-1", position=1))
    # no on_stop: the process was killed
    sink.clear()
    after = ProductionHandler(sink, config)
    await after.handle(completed("tx-1"))
    await after.on_stop()
    assert phases_set(sink) == [("SN-A", "PCBA-100", 4), ("SN-B", "PCBA-100", 4)]


async def test_memory_keeps_only_the_most_recently_used_transactions() -> None:
    sink, _ = server_sink()
    handler = ProductionHandler(sink, base_config(phases={"remembered_transactions": 2, **NO_WAIT}))
    await handler.handle(started("SN-A", "tx-a"))
    await handler.handle(started("SN-B", "tx-b"))
    await handler.handle(completed("tx-a"))  # use makes tx-a the most recent; tx-b goes next
    await handler.handle(started("SN-C", "tx-c"))
    assert len(handler.transactions) == 2

    with pytest.raises(ResolutionError, match="transaction tx-b was seen"):
        await handler.handle(completed("tx-b"))
    sink.clear()
    await handler.handle(completed("tx-a"))
    await handler.handle(completed("tx-c"))
    assert [serial for serial, _, _ in phases_set(sink)] == ["SN-A", "SN-C"]

    for i in range(50):
        await handler.handle(started(f"SN-{i}", f"tx-{i}"))
    assert len(handler.transactions) == 2


def test_the_state_file_is_trimmed_to_the_remembered_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.transactions as transactions

    monkeypatch.setattr(transactions, "_TRIM_EVERY", 10)
    memory = transactions.TransactionUnits(3, tmp_path / "state.db")
    for i in range(40):
        memory.remember(f"tx-{i}", f"SN-{i}", None, None)
    memory.close()
    reopened = transactions.TransactionUnits(3, tmp_path / "state.db")
    known = [i for i in range(40) if reopened.units(f"tx-{i}") is not None]
    reopened.close()
    assert known == [37, 38, 39]


async def test_redelivered_work_started_does_not_duplicate_a_unit() -> None:
    sink, _ = server_sink()
    handler = ProductionHandler(sink, base_config())
    for _ in range(3):
        await handler.handle(started("SN-A", "tx-1", position=1))
    sink.clear()
    await handler.handle(completed("tx-1"))
    assert phases_set(sink) == [("SN-A", "PCBA-100", 4)]


def test_memory_size_setting_has_a_default_and_must_be_positive() -> None:
    assert WatsHandlersConfig().phases.remembered_transactions == 10_000
    with pytest.raises(ValidationError):
        WatsHandlersConfig.model_validate({"phases": {"remembered_transactions": 0}})


async def test_cfx_messages_through_the_codec() -> None:
    """A two-unit CFX WorkStarted, then a WorkCompleted (Failed) with empty Units and no identifier."""
    from pywats_cfx.codec import CFXCodec
    from pywats_cfx.samples import load_sample_dict

    start: dict[str, Any] = load_sample_dict("work_started")
    unit = start["MessageBody"]["Units"][0]
    start["MessageBody"]["Units"] = [
        {**unit, "UnitIdentifier": "MB-2", "PositionNumber": 2},
        {**unit, "UnitIdentifier": "MB-1", "PositionNumber": 1},
    ]
    start["MessageBody"]["UnitCount"] = 2
    done: dict[str, Any] = load_sample_dict("work_completed_fail")
    done["MessageBody"].update(Units=[], PrimaryIdentifier=None, UnitCount=None)
    tx = done["MessageBody"]["TransactionID"]
    assert start["MessageBody"]["TransactionID"] == tx

    codec = CFXCodec()
    events = [e for msg in (start, done) for e in codec.decode(json.dumps(msg).encode()).events]
    assert [e.event_type for e in events][-1] == EventType.WORK_COMPLETED
    assert events[-1].payload["unit_serial"] == ""

    sink, _ = server_sink()
    products = [{"station": "*", "part_number": "MB-4471", "revision": "C"}]
    cfg = base_config(products=products, default_process_code=200)
    handler = ProductionHandler(sink, cfg)
    for e in events:
        await handler.handle(e)
    failed = [(sn, phase) for sn, _, phase in phases_set(sink) if phase == 4]
    assert failed == [("MB-1", 4), ("MB-2", 4)]
