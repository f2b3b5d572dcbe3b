"""`UsageCountWriter`: the single writer of asset usage counts in distributed mode (FakeWATS over HTTP).

A writer that takes over reads only the ledger its predecessor left; these tests hand a fresh writer the
records a dead one appended and check what it concludes from them and from WATS's `totalCount`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from sample_plant import TOKEN, fast_sender

from handlers.usage_writer import UsageCountWriter
from handlers.wats import request_builders
from handlers.wats.fake import FakeWATS
from handlers.wats.sender import HttpSender
from pywats_events import TransientError
from pywats_events.single_writer import WorkItem

ASSET = "FX-7"
COUNT = "/api/Asset/Count"


class MemoryLedger:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def append(self, record: Mapping[str, Any]) -> None:
        self.records.append({**record, "seq": len(self.records) + 1})


@pytest.fixture
def wats() -> Iterator[FakeWATS]:
    with FakeWATS(token=TOKEN) as server:
        server.add_asset(ASSET)
        yield server


@pytest.fixture
async def live(wats: FakeWATS) -> AsyncIterator[HttpSender]:
    async with fast_sender(wats, max_attempts=1) as sender:
        yield sender


def units(*keys: str, serial: str = ASSET) -> list[WorkItem]:
    return [WorkItem(key, {"serial": serial, "increment": 1}) for key in keys]


def increments(wats: FakeWATS) -> list[str]:
    return [r.params.get("incrementBy", "") for r in wats.requests if r.path == COUNT and r.fault is None]


async def test_a_batch_is_one_increment_and_a_repeated_key_is_not_counted_again(
    wats: FakeWATS, live: HttpSender
) -> None:
    ledger = MemoryLedger()
    writer = UsageCountWriter(live.send)
    await writer.take_over([])
    assert await writer.serve(units("u1", "u2", "u2", "u3"), ledger) == {}
    assert await writer.serve(units("u2", "u4"), ledger) == {}
    assert wats.assets[ASSET]["totalCount"] == 4
    assert increments(wats) == ["3", "1"]
    assert [(r["before"], r["n"], r["keys"]) for r in ledger.records] == [
        (0, 3, ["u1", "u2", "u3"]),
        (3, 1, ["u4"]),
    ]


async def test_the_next_writer_knows_the_units_its_predecessor_counted(
    wats: FakeWATS, live: HttpSender
) -> None:
    ledger = MemoryLedger()
    first = UsageCountWriter(live.send)
    await first.take_over([])
    await first.serve(units("u1", "u2"), ledger)
    await first.serve(units("u3"), ledger)
    second = UsageCountWriter(live.send)  # the first one's process is gone
    await second.take_over(ledger.records)
    # copies submitted again by listeners whose acks were lost, and one new unit
    again = [WorkItem(k, {"serial": ASSET}, True) for k in ("u1", "u3")]
    await second.serve(again + units("u4"), ledger)
    assert wats.assets[ASSET]["totalCount"] == 4


@pytest.mark.parametrize("applied", [True, False], ids=["sent-then-died", "died-before-sending"])
async def test_a_writer_that_died_mid_increment_is_settled_by_total_count(
    applied: bool, wats: FakeWATS, live: HttpSender
) -> None:
    """The dead writer appended its record; whether its increment reached WATS, only `totalCount` says."""
    ledger = MemoryLedger()
    first = UsageCountWriter(live.send)
    await first.take_over([])
    await first.serve(units("u1"), ledger)
    await ledger.append({"serial": ASSET, "before": 1, "n": 2, "keys": ["u2", "u3"]})
    if applied:
        await live.send(request_builders.increment_asset_count(ASSET, 2))
    second = UsageCountWriter(live.send)
    await second.take_over(ledger.records)
    # the broker hands the dead writer's unacknowledged items to the next one
    redelivered = [WorkItem(k, {"serial": ASSET}, True) for k in ("u2", "u3")]
    assert await second.serve(redelivered + units("u4"), ledger) == {}
    assert wats.assets[ASSET]["totalCount"] == 4
    assert increments(wats) == (["1", "2", "1"] if applied else ["1", "3"])


async def test_an_older_record_is_settled_by_the_next_record_of_its_asset() -> None:
    """A record followed by one whose `before` does not include it: that increment never happened (it was
    refused, say), so its units are not counted and are counted when they come again."""
    with FakeWATS(token=TOKEN) as wats:
        wats.add_asset(ASSET, totalCount=12)
        records = [
            {"serial": ASSET, "before": 10, "n": 1, "keys": ["lost"], "seq": 1},
            {"serial": ASSET, "before": 10, "n": 1, "keys": ["kept"], "seq": 2},
            {"serial": ASSET, "before": 11, "n": 1, "keys": ["last"], "seq": 3},
        ]
        async with fast_sender(wats) as live:
            writer = UsageCountWriter(live.send)
            await writer.take_over(records)
            await writer.serve(units("lost", "kept", "last"), MemoryLedger())
        assert wats.assets[ASSET]["totalCount"] == 13
        assert increments(wats) == ["1"]


async def test_wats_down_fails_the_batch_transiently_and_keeps_the_outcome_to_verify(
    wats: FakeWATS, live: HttpSender
) -> None:
    ledger = MemoryLedger()
    writer = UsageCountWriter(live.send)
    await writer.take_over([])
    wats.inject("error", status=500, after=True, count=1, path=COUNT)  # done, answer lost
    failures = await writer.serve(units("u1", "u2"), ledger)
    assert set(failures) == {"u1", "u2"}
    assert all(isinstance(e, TransientError) for e in failures.values())
    wats.inject("error", status=503)
    failures = await writer.serve(units("u1", "u2"), ledger)
    assert all(isinstance(e, TransientError) for e in failures.values())
    wats.clear_faults()
    assert await writer.serve(units("u1", "u2"), ledger) == {}
    assert wats.assets[ASSET]["totalCount"] == 2
    # the only increment's answer was lost: it was verified, never sent again
    assert [r.fault for r in wats.requests if r.path == COUNT] == ["error-after"]


async def test_an_item_that_is_no_usage_count_fails_alone(wats: FakeWATS, live: HttpSender) -> None:
    writer = UsageCountWriter(live.send)
    await writer.take_over([])
    failures = await writer.serve([WorkItem("bad", {"increment": 1}), *units("u1")], MemoryLedger())
    assert list(failures) == ["bad"] and not isinstance(failures["bad"], TransientError)
    assert wats.assets[ASSET]["totalCount"] == 1
