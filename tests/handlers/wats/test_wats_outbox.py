"""Outbox: durable store-and-forward of WATS requests, pushed in order, each exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from wats_helpers import TOKEN, make_report

from handlers._exceptions import WatsPermanentError, WatsTransientError
from handlers.wats.fake import FakeWATS
from handlers.wats.outbox import Outbox
from handlers.wats.sender import HttpSender
from handlers.wats.sink import WatsRequest, WatsResponse


def submit(doc: dict[str, object]) -> WatsRequest:
    return WatsRequest("POST", "/api/Report/WSJF", json=doc, idempotent=True, operation="submit_report")


def phase(sn: str, value: int) -> WatsRequest:
    return WatsRequest(
        "PUT",
        "/api/Production/SetUnitPhase",
        params={"serialNumber": sn, "partNumber": "PCBA-100", "phase": value},
        operation="set_unit_phase",
    )


def count(serial: str) -> WatsRequest:
    return WatsRequest(
        "PUT", "/api/Asset/Count", params={"serialNumber": serial, "incrementBy": 1}, idempotent=False
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def sender(url: str) -> HttpSender:
    return HttpSender(url, TOKEN, timeout=2, rate_limit_per_minute=60_000, backoff_base=0.01, max_attempts=2)


async def test_send_stores_durably_and_answers_202(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "outbox.db"
    box = Outbox(path)
    doc = make_report()
    response = await box.send(submit(doc))
    await box.send(phase("SN000123", 16))
    assert response == WatsResponse(status=202, json={"outboxId": 1, "queued": True}, text="")
    box.close()

    reopened = Outbox(path)  # a restart of the station
    entries = reopened.list()
    reopened.close()
    assert [(e.method, e.path, e.state) for e in entries] == [
        ("POST", "/api/Report/WSJF", "pending"),
        ("PUT", "/api/Production/SetUnitPhase", "pending"),
    ]
    assert entries[0].json == doc
    assert entries[0].operation == "submit_report"
    assert entries[1].params == {"serialNumber": "SN000123", "partNumber": "PCBA-100", "phase": 16}
    assert entries[0].created <= entries[1].created


async def test_list_pages_and_count(outbox: Outbox) -> None:
    for n in range(5):
        await outbox.send(phase(f"SN{n}", 2))
    assert outbox.count() == 5 and outbox.count("pending") == 5 and outbox.count("sent") == 0
    assert [e.params["serialNumber"] for e in outbox.list(limit=2, offset=1)] == ["SN1", "SN2"]


async def test_the_same_report_is_stored_once_and_replaced_in_place(outbox: Outbox) -> None:
    doc = make_report(result="F")
    await outbox.send(phase("SN000123", 2))
    await outbox.send(submit(doc))
    await outbox.send(phase("SN000123", 4))
    await outbox.send(submit({**doc, "result": "P"}))  # redelivery with a newer body
    await outbox.send(submit(make_report()))  # another report id: a new row
    entries = outbox.list()
    assert len(entries) == 4
    assert entries[1].json["result"] == "P"  # kept its place between the two phase changes
    assert entries[2].params["phase"] == 4


async def test_push_sends_in_order_exactly_once(outbox: Outbox, wats: FakeWATS) -> None:
    wats.add_unit("SN000123", "PCBA-100")
    wats.add_asset("FX-1")
    doc = make_report()
    requests = [phase("SN000123", 2), submit(doc), count("FX-1"), phase("SN000123", 16)]
    for request in requests:
        await outbox.send(request)
    await outbox.send(submit(doc))  # redelivered before the push

    async with sender(wats.url) as live:
        result = await outbox.push(live)
        again = await outbox.push(live)
    assert (result.sent, result.failed, result.pending, result.stopped) == (4, 0, 0, None)
    assert again.sent == 0
    assert [(r.method, r.path) for r in wats.requests] == [(r.method, r.path) for r in requests]
    assert wats.submissions == {doc["id"]: 1}
    assert wats.assets["FX-1"]["totalCount"] == 1
    assert outbox.count("sent") == 4
    # after sending, an identical redelivery is not queued again
    await outbox.send(submit(doc))
    assert outbox.count("pending") == 0
    assert outbox.purge_sent() == 4 and outbox.count() == 0


async def test_push_stops_on_outage_keeps_order_and_resumes(outbox: Outbox, wats: FakeWATS) -> None:
    docs = [make_report(sn=f"SN{n}") for n in range(4)]
    for doc in docs:
        await outbox.send(submit(doc))
    async with sender(wats.url) as live:
        wats.inject("error", status=503, retry_after=None)
        down = await outbox.push(live)
        assert (down.sent, down.failed, down.pending) == (0, 0, 4)
        assert down.stopped is not None and "503" in down.stopped
        entries = outbox.list()
        assert [(e.state, e.attempts) for e in entries] == [("pending", 1)] + [("pending", 0)] * 3
        assert entries[0].error is not None and "503" in entries[0].error

        wats.clear_faults()
        wats.inject("drop", count=1, path="/api/Report")  # one more hiccup, absorbed by the sender
        up = await outbox.push(live)
    assert (up.sent, up.failed, up.pending, up.stopped) == (4, 0, 0, None)
    delivered = [r.json["sn"] for r in wats.requests if r.status == 200]
    assert delivered == ["SN0", "SN1", "SN2", "SN3"]
    assert wats.submissions == {d["id"]: 1 for d in docs}


async def test_push_marks_a_refused_request_failed_and_continues(outbox: Outbox, wats: FakeWATS) -> None:
    good1, bad, good2 = make_report(sn="A1"), make_report(sn="B%2"), make_report(sn="C3")
    for doc in (good1, bad, good2):
        await outbox.send(submit(doc))
    async with sender(wats.url) as live:
        result = await outbox.push(live)
    assert (result.sent, result.failed, result.pending) == (2, 1, 0)
    failed = outbox.list(state="failed")
    assert len(failed) == 1 and failed[0].json["sn"] == "B%2"
    assert failed[0].status == 400
    assert failed[0].error is not None and "forbidden characters" in failed[0].error
    assert set(wats.submissions) == {good1["id"], good2["id"]}
    assert outbox.retry_failed() == 1 and outbox.count("pending") == 1


async def test_push_limit(outbox: Outbox, wats: FakeWATS) -> None:
    for n in range(3):
        await outbox.send(submit(make_report(sn=f"SN{n}")))
    async with sender(wats.url) as live:
        result = await outbox.push(live, limit=2)
    assert (result.sent, result.pending) == (2, 1)


async def test_interrupted_send_is_recovered_by_idempotency(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    await box.send(submit(make_report()))
    await box.send(count("FX-1"))
    box.close()
    with sqlite3.connect(path) as db:  # as if the process died with both requests in flight
        db.execute("UPDATE requests SET state='sending'")
    box = Outbox(path)
    report, counting = box.list()
    box.close()
    assert report.state == "pending"  # resending a report is harmless
    assert counting.state == "failed"  # resending a count could count twice
    assert counting.error is not None and "outcome unknown" in counting.error


async def test_get_needs_a_live_server(outbox: Outbox, wats: FakeWATS) -> None:
    with pytest.raises(WatsTransientError, match="stores writes only"):
        await outbox.send(WatsRequest("GET", "/api/App/Version"))
    assert outbox.count() == 0
    async with sender(wats.url) as live:
        outbox.reads = live
        assert (await outbox.send(WatsRequest("GET", "/api/App/Version"))).status == 200


async def test_unexpected_exception_stops_push_without_losing_anything(outbox: Outbox) -> None:
    class Broken:
        async def send(self, request: WatsRequest) -> WatsResponse:
            raise RuntimeError("bug in the sink")

        async def aclose(self) -> None:
            return None

    class Refusing(Broken):
        async def send(self, request: WatsRequest) -> WatsResponse:
            raise WatsPermanentError("no", status=422)

    await outbox.send(phase("SN1", 2))
    result = await outbox.push(Broken())
    assert result.stopped == "bug in the sink" and outbox.count("pending") == 1
    result = await outbox.push(Refusing())
    assert result.failed == 1 and outbox.list()[0].status == 422


async def test_push_never_resends_a_count_whose_answer_was_lost(outbox: Outbox, wats: FakeWATS) -> None:
    wats.add_asset("FX-1")
    await outbox.send(count("FX-1"))
    await outbox.send(submit(make_report()))
    wats.inject("error", status=500, after=True, count=1, path="/api/Asset/Count")
    async with sender(wats.url) as live:
        first = await outbox.push(live)
        second = await outbox.push(live)
    # the outbox cannot check the count, so it keeps the request for a person instead of guessing
    assert (first.sent, first.failed, second.sent) == (1, 1, 0)  # the report after it went on
    assert wats.assets["FX-1"]["totalCount"] == 1
    [failed] = outbox.list(state="failed")
    assert failed.status == 500 and failed.error is not None and "outcome unknown" in failed.error


async def test_concurrent_sends_are_stored_in_call_order_and_fail_alone(outbox: Outbox) -> None:
    """Handlers storing at once share commits: every request lands once, in the order `send` was called,
    and a request that cannot be stored fails only its own `send`."""
    circular: dict[str, object] = {"id": "loop"}
    circular["self"] = circular
    requests = [phase(f"SN{i}", i) for i in range(40)]
    requests.insert(17, submit(circular))
    results = await asyncio.gather(*(outbox.send(r) for r in requests), return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [17]
    assert isinstance(results[17], ValueError)
    stored = outbox.list()
    assert [e.params["serialNumber"] for e in stored] == [f"SN{i}" for i in range(40)]
    ids = [r.json["outboxId"] for r in results if isinstance(r, WatsResponse)]
    assert ids == [e.id for e in stored]
