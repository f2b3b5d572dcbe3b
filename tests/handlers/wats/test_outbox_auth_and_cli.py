"""Outbox push with a wrong token, a unit that already exists, and the `outbox` commands as users run them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from wats_helpers import TOKEN, make_report

from handlers.cli import outbox_app
from handlers.wats import request_builders as requests
from handlers.wats.fake import FakeWATS
from handlers.wats.outbox import Outbox
from handlers.wats.sender import HttpSender
from handlers.wats.sink import WatsRequest

WRONG = FakeWATS.make_token("bus-user", "wrong-password")


def submit(doc: dict[str, object]) -> WatsRequest:
    return WatsRequest("POST", "/api/Report/WSJF", json=doc, idempotent=True, operation="submit_report")


def sender(url: str, token: str) -> HttpSender:
    return HttpSender(url, token, timeout=2, rate_limit_per_minute=60_000, backoff_base=0.01, max_attempts=2)


async def test_push_with_a_wrong_token_keeps_everything_pending_for_the_right_one(
    tmp_path: Path, wats: FakeWATS
) -> None:
    box = Outbox(tmp_path / "outbox.db")
    try:
        docs = [make_report(sn=f"SN{n}") for n in range(3)]
        for doc in docs:
            await box.send(submit(doc))
        async with sender(wats.url, WRONG) as wrong:
            refused = await box.push(wrong)
        assert (refused.sent, refused.failed, refused.pending) == (0, 0, 3)
        assert refused.stopped is not None and "401" in refused.stopped
        assert "WATS_AUTH_TOKEN" in refused.stopped and WRONG not in refused.stopped
        assert len(wats.requests) == 1  # stopped at the first refusal
        async with sender(wats.url, TOKEN) as right:
            fixed = await box.push(right)
        assert (fixed.sent, fixed.failed, fixed.pending, fixed.stopped) == (3, 0, 0, None)
        assert wats.submissions == {d["id"]: 1 for d in docs}
    finally:
        box.close()


async def test_push_counts_409_to_create_unit_as_sent(tmp_path: Path, wats: FakeWATS) -> None:
    wats.add_unit("MB-1", "PCBA-100", "A")  # e.g. created by a report submitted earlier
    box = Outbox(tmp_path / "outbox.db")
    try:
        await box.send(requests.create_unit("MB-1", "PCBA-100", "A"))
        await box.send(requests.set_unit_phase("MB-1", "PCBA-100", 2))
        async with sender(wats.url, TOKEN) as live:
            result = await box.push(live)
        assert (result.sent, result.failed, result.pending) == (2, 0, 0)
        assert [r.status for r in wats.requests] == [409, 200]
        assert [e.state for e in box.list()] == ["sent", "sent"]
    finally:
        box.close()


async def test_push_still_fails_a_409_to_other_requests(tmp_path: Path, wats: FakeWATS) -> None:
    wats.inject("error", status=409, count=1)
    box = Outbox(tmp_path / "outbox.db")
    try:
        await box.send(requests.set_unit_phase("MB-1", "PCBA-100", 2))
        async with sender(wats.url, TOKEN) as live:
            result = await box.push(live)
        assert (result.sent, result.failed) == (0, 1)
    finally:
        box.close()


# -- the commands ---------------------------------------------------------------------------------


@pytest.fixture
def outbox_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("WATS_AUTH_TOKEN", "WATS_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "outbox"


def _fill(directory: Path, *requests_: WatsRequest) -> None:
    async def store() -> None:
        box = Outbox(directory / "outbox.db")
        try:
            for request in requests_:
                await box.send(request)
        finally:
            box.close()

    asyncio.run(store())


def _run(*args: str, token: str | None = None) -> tuple[int, str, str]:
    env = {"WATS_AUTH_TOKEN": token} if token else None
    result = CliRunner().invoke(outbox_app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_push_with_a_wrong_token_exits_nonzero_and_a_later_push_sends_everything(
    outbox_dir: Path, wats: FakeWATS
) -> None:
    docs = [make_report(sn=f"SN{n}") for n in range(2)]
    _fill(outbox_dir, *(submit(d) for d in docs))
    where = ("--outbox", str(outbox_dir), "--wats-url", wats.url)

    code, out, err = _run("push", *where, token=WRONG)
    assert code != 0
    assert "sent 0, failed 0, pending 2" in out
    assert "401" in err and "WATS_AUTH_TOKEN" in err and WRONG not in out + err

    code, out, err = _run("push", *where, token=TOKEN)
    assert code == 0, err
    assert "sent 2, failed 0, pending 0" in out
    assert wats.submissions == {d["id"]: 1 for d in docs}


def test_cli_retry_failed_requeues_refused_requests_in_order(outbox_dir: Path, wats: FakeWATS) -> None:
    docs = [make_report(sn=f"SN{n}") for n in range(3)]
    _fill(outbox_dir, *(submit(d) for d in docs))
    where = ("--outbox", str(outbox_dir), "--wats-url", wats.url)
    wats.inject("error", status=422, count=2)  # refused: the first two fail for good, the third is sent

    code, out, err = _run("push", *where, token=TOKEN)
    assert code != 0 and "sent 1, failed 2, pending 0" in out
    assert "retry-failed" in err

    code, out, err = _run("retry-failed", "--outbox", str(outbox_dir))
    assert code == 0, err
    assert "2 failed request(s) back to pending" in out

    code, out, err = _run("push", *where, token=TOKEN)
    assert code == 0, err
    assert "sent 2, failed 0, pending 0" in out
    sent = [r.json["sn"] for r in wats.requests if r.status == 200]
    assert sent == ["SN2", "SN0", "SN1"]


def test_cli_retry_failed_keeps_unknown_outcomes_unless_asked(outbox_dir: Path) -> None:
    count = WatsRequest(
        "PUT", "/api/Asset/Count", params={"serialNumber": "FX-1", "incrementBy": 1}, idempotent=False
    )
    _fill(outbox_dir, count)
    box = Outbox(outbox_dir / "outbox.db")
    lost = "no answer from WATS; outcome unknown and the request is not idempotent"
    box._set_state(1, "failed", error=lost)
    box.close()

    code, out, err = _run("retry-failed", "--outbox", str(outbox_dir))
    assert code == 0 and "0 failed request(s) back to pending" in out and "--include-unknown" in err
    code, out, _ = _run("retry-failed", "--outbox", str(outbox_dir), "--include-unknown")
    assert code == 0 and "1 failed request(s) back to pending" in out


def test_cli_list_json_prints_exactly_the_request_fields(outbox_dir: Path) -> None:
    _fill(outbox_dir, submit(make_report(sn="SN1")))
    code, out, err = _run("list", "--outbox", str(outbox_dir), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1 and set(rows[0]) == {"method", "path", "params", "json"}
