"""HttpSender against FakeWATS over real HTTP: success, classification, safe retry, Retry-After,
rate limit, configuration and token redaction."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from email.utils import formatdate

import pytest
from wats_helpers import TOKEN, make_report

from handlers._exceptions import WatsPermanentError, WatsTransientError
from handlers.wats.fake import FakeWATS
from handlers.wats.sender import HttpSender, WatsAuthError, WatsOutcomeUnknownError, parse_retry_after
from handlers.wats.sink import WatsRequest
from pywats_events import ConfigurationError, PermanentError, TransientError

VERSION = WatsRequest("GET", "/api/App/Version", operation="version")


def submit(doc: dict[str, object]) -> WatsRequest:
    return WatsRequest("POST", "/api/Report/WSJF", json=doc, idempotent=True, operation="submit_report")


def count(serial: str) -> WatsRequest:
    return WatsRequest(
        "PUT",
        "/api/Asset/Count",
        params={"serialNumber": serial, "incrementBy": 1},
        idempotent=False,
        operation="asset_count",
    )


def fast_sender(url: str, **kw: object) -> HttpSender:
    options: dict[str, object] = {
        "timeout": 2.0,
        "rate_limit_per_minute": 60_000,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
    }
    options.update(kw)
    return HttpSender(url, TOKEN, **options)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- success ----------------------------------------------------------------------------------------


async def test_report_is_stored_and_connections_are_kept_alive(wats: FakeWATS) -> None:
    doc = make_report()
    async with fast_sender(wats.url) as sender:
        response = await sender.send(submit(doc))
        for _ in range(4):
            await sender.send(VERSION)
    assert response.status == 200
    assert response.json == {"ID": doc["id"]}
    assert wats.reports[doc["id"]]["sn"] == "SN000123"
    assert len({r.peer for r in wats.requests}) == 1  # one pooled connection for 5 requests


async def test_query_params_are_sent_and_booleans_lowercased(wats: FakeWATS) -> None:
    async with fast_sender(wats.url) as sender:
        response = await sender.send(
            WatsRequest(
                "GET",
                "/api/App/Processes",
                params={"includeTestOperations": False, "includeWipOperations": False, "unused": None},
            )
        )
    assert {p["code"] for p in response.json} == {500, 510}
    assert wats.requests[-1].params == {"includeTestOperations": "false", "includeWipOperations": "false"}


async def test_internal_endpoints_get_a_referer(wats: FakeWATS) -> None:
    wats.add_unit("SN1", "PN1")
    async with fast_sender(wats.url + "/api/") as sender:  # trailing /api is stripped
        response = await sender.send(
            WatsRequest("GET", "/api/internal/Production/GetUnit", params={"serialNumber": "SN1"})
        )
    assert response.json["partNumber"] == "PN1"


# -- configuration ----------------------------------------------------------------------------------


async def test_settings_come_from_the_environment(wats: FakeWATS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATS_BASE_URL", wats.url)
    monkeypatch.setenv("WATS_AUTH_TOKEN", TOKEN)
    async with HttpSender() as sender:
        assert (await sender.send(VERSION)).status == 200


@pytest.mark.parametrize(
    ("url", "token", "setting"),
    [
        (None, TOKEN, "WATS_BASE_URL"),
        ("http://127.0.0.1:1", None, "WATS_AUTH_TOKEN"),
        ("ftp://wats.example", TOKEN, "WATS_BASE_URL"),
        ("not a url", TOKEN, "WATS_BASE_URL"),
        ("http://127.0.0.1:1", "Basic  ", "WATS_AUTH_TOKEN"),
        ("http://127.0.0.1:1", "abc def", "WATS_AUTH_TOKEN"),
    ],
)
def test_missing_or_invalid_settings_name_the_setting(
    url: str | None, token: str | None, setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATS_BASE_URL", raising=False)
    monkeypatch.delenv("WATS_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigurationError) as info:
        HttpSender(url, token)
    assert info.value.setting == setting
    assert "abc def" not in str(info.value)  # a secret is never echoed


# -- classification ---------------------------------------------------------------------------------


async def test_400_is_permanent_with_the_server_message_and_not_retried(wats: FakeWATS) -> None:
    async with fast_sender(wats.url) as sender:
        with pytest.raises(WatsPermanentError) as info:
            await sender.send(submit(make_report(sn="SN*1")))
    assert isinstance(info.value, PermanentError)
    assert info.value.status == 400
    assert "sn 'SN*1' contains forbidden characters: *" in str(info.value)
    assert len(wats.requests) == 1


async def test_401_is_transient_not_retried_inside_and_names_the_token_fix(
    wats: FakeWATS, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "d3Jvbmc6dG9rZW4="
    caplog.set_level(logging.ERROR, logger="handlers.wats.sender")
    async with HttpSender(wats.url, wrong, rate_limit_per_minute=60_000, max_attempts=3) as sender:
        for _ in range(2):
            with pytest.raises(WatsAuthError) as info:
                await sender.send(submit(make_report()))
    # an auth failure belongs to the sink, not the event: the bus defers instead of dead-lettering
    assert isinstance(info.value, TransientError) and not isinstance(info.value, PermanentError)
    assert info.value.status == 401
    assert "WATS_AUTH_TOKEN" in str(info.value) and wrong not in str(info.value)
    assert len(wats.requests) == 2  # the same token fails the same way: no in-sender retries
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "one ERROR per spell of auth failures, not one per request"
    assert "WATS_AUTH_TOKEN" in errors[0].getMessage() and wrong not in caplog.text


async def test_403_is_transient_even_for_a_non_idempotent_request(wats: FakeWATS) -> None:
    wats.add_asset("FX-1")
    wats.inject("error", status=403, count=1)
    async with fast_sender(wats.url) as sender:
        with pytest.raises(WatsAuthError) as info:
            await sender.send(count("FX-1"))
        assert info.value.status == 403
        assert (await sender.send(count("FX-1"))).status == 200  # the server declined, nothing was done
    assert wats.assets["FX-1"]["totalCount"] == 1


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_other_client_errors_stay_permanent(wats: FakeWATS, status: int) -> None:
    wats.inject("error", status=status, count=1)
    async with fast_sender(wats.url) as sender:
        with pytest.raises(WatsPermanentError) as info:
            await sender.send(VERSION)
    assert info.value.status == status
    assert not isinstance(info.value, TransientError)


async def test_500_is_retried_then_transient(wats: FakeWATS) -> None:
    wats.inject("error", status=502)
    async with fast_sender(wats.url, max_attempts=3) as sender:
        with pytest.raises(WatsTransientError) as info:
            await sender.send(VERSION)
    assert isinstance(info.value, TransientError)
    assert info.value.status == 502
    assert len(wats.requests) == 3


async def test_a_short_outage_is_absorbed_by_in_sender_retry(wats: FakeWATS) -> None:
    doc = make_report()
    wats.inject("error", count=2)
    async with fast_sender(wats.url, max_attempts=3) as sender:
        assert (await sender.send(submit(doc))).status == 200
    assert [r.status for r in wats.requests] == [500, 500, 200]
    assert wats.submissions == {doc["id"]: 1}


async def test_timeout_is_transient_for_idempotent_requests(wats: FakeWATS) -> None:
    wats.inject("hang", hang=5)
    async with fast_sender(wats.url, timeout=0.3, max_attempts=2) as sender:
        started = time.monotonic()
        with pytest.raises(WatsTransientError) as info:
            await sender.send(VERSION)
    assert time.monotonic() - started < 3
    assert "no answer" in str(info.value)
    assert len(wats.requests) == 2


async def test_dropped_connection_is_transient_for_idempotent_requests(wats: FakeWATS) -> None:
    wats.inject("drop", count=1)
    async with fast_sender(wats.url) as sender:
        assert (await sender.send(VERSION)).status == 200
    assert [r.fault for r in wats.requests] == ["drop", None]


async def test_connection_refused_is_transient(wats: FakeWATS) -> None:
    async with fast_sender(f"http://127.0.0.1:{free_port()}", max_attempts=2) as sender:
        with pytest.raises(WatsTransientError, match="cannot reach WATS"):
            await sender.send(submit(make_report()))
        # nothing reached a server, so even a non-idempotent request is a plain transient failure
        with pytest.raises(WatsTransientError, match="cannot reach WATS"):
            await sender.send(count("FX-1"))


# -- non-idempotent requests ------------------------------------------------------------------------


async def test_count_with_lost_answer_is_not_retried_and_reports_unknown_outcome(wats: FakeWATS) -> None:
    wats.add_asset("FX-1")
    wats.inject("drop", after=True, count=1)  # carried out, then the answer is lost
    async with fast_sender(wats.url, max_attempts=3) as sender:
        with pytest.raises(WatsOutcomeUnknownError, match="outcome unknown") as info:
            await sender.send(count("FX-1"))
    # permanent for callers that cannot check WATS (the outbox keeps it for a person), flagged so that
    # the handlers, which can check, retry it as an outage instead
    assert isinstance(info.value, WatsPermanentError) and info.value.outcome_unknown
    transient = info.value.as_transient()
    assert isinstance(transient, WatsTransientError) and "checked before it is sent again" in str(transient)
    assert wats.assets["FX-1"]["totalCount"] == 1  # counted once, not twice
    assert len(wats.requests) == 1


async def test_count_timeout_and_500_are_not_retried(wats: FakeWATS) -> None:
    wats.add_asset("FX-1")
    async with fast_sender(wats.url, timeout=0.3, max_attempts=3) as sender:
        wats.inject("hang", hang=5, count=1)
        with pytest.raises(WatsOutcomeUnknownError):
            await sender.send(count("FX-1"))
        wats.inject("error", status=500, count=1)
        with pytest.raises(WatsOutcomeUnknownError) as info:
            await sender.send(count("FX-1"))
    assert info.value.status == 500
    assert len(wats.requests) == 2


async def test_count_declined_with_503_or_429_is_retried(wats: FakeWATS) -> None:
    wats.add_asset("FX-1")
    wats.inject("error", status=503, count=1, retry_after=None)
    wats.inject("429", count=1, retry_after=0)
    async with fast_sender(wats.url, max_attempts=3) as sender:
        assert (await sender.send(count("FX-1"))).status == 200
    assert [r.status for r in wats.requests] == [503, 429, 200]
    assert wats.assets["FX-1"]["totalCount"] == 1


# -- 429 and Retry-After ----------------------------------------------------------------------------


async def test_429_retry_after_seconds_is_honoured(wats: FakeWATS) -> None:
    wats.inject("429", count=1, retry_after=1)
    async with fast_sender(wats.url) as sender:
        await sender.send(VERSION)
    first, second = wats.requests
    assert first.status == 429 and second.status == 200
    assert second.monotonic - first.monotonic >= 0.95


async def test_long_retry_after_is_handed_to_the_bus(wats: FakeWATS) -> None:
    wats.inject("429", retry_after=120)
    async with fast_sender(wats.url, max_retry_wait=5) as sender:
        started = time.monotonic()
        with pytest.raises(WatsTransientError) as info:
            await sender.send(VERSION)
    assert time.monotonic() - started < 1
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(120)
    assert len(wats.requests) == 1


async def test_retry_after_as_http_date(wats: FakeWATS) -> None:
    wats.inject("429", retry_after=formatdate(time.time() + 90, usegmt=True))
    async with fast_sender(wats.url, max_retry_wait=5) as sender:
        with pytest.raises(WatsTransientError) as info:
            await sender.send(VERSION)
    assert info.value.retry_after is not None
    assert 85 <= info.value.retry_after <= 91


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- rate limit -------------------------------------------------------------------------------------


async def test_rate_limit_spaces_requests(wats: FakeWATS) -> None:
    async with fast_sender(wats.url, rate_limit_per_minute=600, rate_limit_burst=1) as sender:
        await sender.send(VERSION)  # opens the connection; spends the burst
        wats.clear_requests()
        await asyncio.gather(*(sender.send(VERSION) for _ in range(8)))
    times = [r.monotonic for r in wats.requests]
    assert len(times) == 8
    # 10 requests/s: after the first, each waits 0.1 s for its token, however they were issued
    assert times[-1] - times[0] >= 0.6


# -- token redaction --------------------------------------------------------------------------------


async def test_token_never_appears_in_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    secret = "c2VjcmV0/dG9rZW4="  # contains '/', so a serial number equal to it is echoed in a 400
    errors: list[BaseException] = []
    caplog.set_level(logging.DEBUG)
    with FakeWATS(token=secret) as wats:
        sender = HttpSender(
            wats.url, secret, timeout=0.5, rate_limit_per_minute=60_000, backoff_base=0.01, max_attempts=2
        )
        assert secret not in repr(sender) and secret not in str(sender)
        await sender.send(VERSION)
        for fault in ("error", "hang", "drop"):
            wats.inject(fault, hang=2)
            try:
                await sender.send(VERSION)
            except WatsTransientError as exc:
                errors.append(exc)
            wats.clear_faults()
        try:
            await sender.send(submit(make_report(sn=secret)))
        except WatsPermanentError as exc:
            errors.append(exc)
        await sender.aclose()
    assert len(errors) == 4
    assert "***" in str(errors[-1])  # the echoed value was scrubbed
    for error in errors:
        assert secret not in str(error) and secret not in repr(error)
        assert error.__cause__ is None
    assert caplog.records, "expected debug logging from the HTTP stack"
    assert secret not in caplog.text


async def test_a_short_token_does_not_mangle_messages_but_is_still_scrubbed_where_it_stands() -> None:
    async with HttpSender(f"http://127.0.0.1:{free_port()}", "T", max_attempts=1) as sender:
        with pytest.raises(WatsTransientError) as info:
            await sender.send(submit(make_report()))
        assert str(info.value).startswith("POST /api/Report/WSJF: cannot reach WATS"), str(info.value)
        assert sender._scrub("token T was refused") == "token *** was refused"


async def test_a_real_token_is_scrubbed_even_inside_other_text() -> None:
    token = FakeWATS.make_token("bus-user", "s3cret")
    async with HttpSender("http://127.0.0.1:9", token) as sender:
        assert token not in sender._scrub(f"prefix{token}suffix")


async def test_body_that_is_not_json_is_a_permanent_error(wats: FakeWATS) -> None:
    async with fast_sender(wats.url) as sender:
        with pytest.raises(WatsPermanentError, match="cannot be sent as JSON"):
            await sender.send(submit(make_report(root={"value": float("nan")})))
        with pytest.raises(WatsPermanentError, match="cannot be sent as JSON"):
            await sender.send(submit(make_report(start=time)))
    assert wats.requests == []
