"""The webhook transport against a real uvicorn server on loopback, driven by a real HTTP client (httpx).

What a caller relies on: 202 only after submit returned, 400 + quarantine for undecodable bodies, 401 for a
wrong secret or a stale timestamp, 413 above the limits (a gzip bomb included), 429/503 with Retry-After
while the bus pushes back, and no duplicate when a request is retried with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from transport_doubles import RecordingContext

from pywats_events import ConfigurationError, Event, EventType
from pywats_events.config import load_settings
from pywats_events.event_codec import EventJsonCodec
from pywats_events.listener.builtin_transports import webhook_transport
from pywats_events.plugins import PluginContext
from pywats_events.transports import ConnectionState
from pywats_events.transports.mqtt import TopicTemplateCodec
from pywats_events.transports.webhook import (
    Hook,
    HookAuth,
    WebhookSettings,
    WebhookTransport,
    sign,
)

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cret-for-tests"
TOKEN = "bearer-token-for-tests"


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {"X-Pywats-Timestamp": stamp, "X-Pywats-Signature": sign(secret, stamp, body)}


def event_body(event_id: str | None = None, **payload: Any) -> bytes:
    event = Event(event_type=EventType.PASSTHROUGH, payload=payload)
    if event_id is not None:
        event.metadata.event_id = event_id
    return event.to_json().encode()


class Server:
    def __init__(self, transport: WebhookTransport, context: RecordingContext) -> None:
        self.transport = transport
        self.context = context
        self.client = httpx.AsyncClient(base_url=transport.url, timeout=30)

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(path, content=body, headers=headers or {})


async def start_server(tmp_path: Path, context: RecordingContext, **settings: Any) -> Server:
    s = WebhookSettings(port=0, **settings)
    hooks = {
        "events": Hook("events", EventJsonCodec(), HookAuth("hmac", SecretStr(SECRET), s.replay_window)),
        "token": Hook("token", EventJsonCodec(), HookAuth("bearer", SecretStr(TOKEN))),
        "sensors": Hook(
            "sensors",
            TopicTemplateCodec("{line}/{station}/temperature"),
            HookAuth("hmac", SecretStr(SECRET)),
            template=True,
        ),
    }
    transport = WebhookTransport(s, hooks, keys_path=tmp_path / "keys.db", drain_timeout=1.0)
    await transport.start(context)
    return Server(transport, context)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    made = await start_server(tmp_path, RecordingContext())
    yield made
    await made.client.aclose()
    await made.transport.stop()


async def test_a_signed_event_is_accepted_after_submit_and_a_retry_duplicates_nothing(server: Server) -> None:
    body = event_body("0f0e0d0c-0000-4000-8000-000000000001", unit="SN1")
    first = await server.post("/hooks/events", body, signed(body))
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert [e.payload["unit"] for e in server.context.events] == ["SN1"]
    again = await server.post("/hooks/events", body, signed(body))  # the caller lost the first response
    assert again.status_code == 202
    assert again.json() == {"accepted": 0, "duplicates": 1}
    assert len(server.context.events) == 1


async def test_idempotency_key_makes_a_retry_a_no_op(server: Server) -> None:
    # template events get fresh ids on every decode: only the key recognises the retry
    body = b"23.5"
    headers = {**signed(body), "Idempotency-Key": "reading-1"}
    assert (await server.post("/hooks/sensors/L1/ICT-01/temperature", body, headers)).status_code == 202
    retry = await server.post("/hooks/sensors/L1/ICT-01/temperature", body, headers)
    assert retry.status_code == 202 and retry.json()["accepted"] == 0
    other = {**signed(body), "Idempotency-Key": "reading-2"}
    assert (await server.post("/hooks/sensors/L1/ICT-01/temperature", body, other)).json()["accepted"] == 1
    assert [e.payload for e in server.context.events] == [
        {"value": 23.5, "line": "L1", "station": "ICT-01"}
    ] * 2


async def test_a_retry_racing_its_first_attempt_waits_and_is_not_submitted_twice(tmp_path: Path) -> None:
    context = RecordingContext(gate=asyncio.Event())
    server = await start_server(tmp_path, context)
    try:
        body = event_body("0f0e0d0c-0000-4000-8000-000000000002", unit="SN2")
        first = asyncio.create_task(server.post("/hooks/events", body, signed(body)))
        await asyncio.wait_for(context.submitting.wait(), 10)
        second = asyncio.create_task(server.post("/hooks/events", body, signed(body)))
        await asyncio.sleep(0)
        assert context.gate is not None
        context.gate.set()
        answers = await asyncio.gather(first, second)
        assert sorted(a.json()["accepted"] for a in answers) == [0, 1]
        assert len(context.events) == 1
    finally:
        await server.client.aclose()
        await server.transport.stop()


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Pywats-Timestamp": "now", "X-Pywats-Signature": "sha256=00"}, "unix seconds"),
        ("wrong-secret", "bad signature"),
        ("stale", "stale timestamp"),
    ],
)
async def test_a_wrong_signature_or_stale_timestamp_is_401(server: Server, headers: Any, reason: str) -> None:
    body = event_body(unit="SN3")
    if headers == "wrong-secret":
        headers = signed(body, secret="not-the-secret")
    elif headers == "stale":
        headers = signed(body, at=time.time() - 3600)
    answer = await server.post("/hooks/events", body, headers)
    assert answer.status_code == 401
    assert reason in answer.json()["error"]
    assert server.context.events == [] and server.context.quarantined == []


async def test_bearer_token(server: Server) -> None:
    body = event_body(unit="SN4")
    wrong = await server.post("/hooks/token", body, {"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = await server.post("/hooks/token", body, {"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 202
    assert [e.payload["unit"] for e in server.context.events] == ["SN4"]


async def test_bad_json_is_400_with_the_reason_and_quarantined_with_its_bytes(server: Server) -> None:
    body = b'{"event_type": "passthrough", '
    answer = await server.post("/hooks/events", body, signed(body))
    assert answer.status_code == 400
    assert "invalid JSON" in answer.json()["error"]
    [record] = server.context.quarantined
    assert record.raw == body and record.topic == "events"
    assert "x-pywats-signature" not in record.headers
    valid = event_body(unit="SN5")
    assert (await server.post("/hooks/events", valid, signed(valid))).status_code == 202


async def test_gzip_bodies_are_inflated(server: Server) -> None:
    body = gzip.compress(event_body(unit="SN6"))
    answer = await server.post("/hooks/events", body, {**signed(body), "Content-Encoding": "gzip"})
    assert answer.status_code == 202, answer.text
    assert [e.payload["unit"] for e in server.context.events] == ["SN6"]
    broken = b"\x1f\x8b not really gzip"
    answer = await server.post("/hooks/events", broken, {**signed(broken), "Content-Encoding": "gzip"})
    assert answer.status_code == 400 and "not gzip" in answer.json()["error"]
    assert server.context.quarantined[0].raw == broken


async def test_oversized_bodies_and_gzip_bombs_are_413(tmp_path: Path) -> None:
    server = await start_server(
        tmp_path, RecordingContext(), max_body_bytes=10_000, max_inflated_bytes=100_000
    )
    try:
        big = event_body(unit="x" * 20_000)
        answer = await server.post("/hooks/events", big, signed(big))
        assert answer.status_code == 413
        bomb = gzip.compress(b"[" + b" " * 10_000_000 + b"]")
        assert len(bomb) < 10_000
        answer = await server.post("/hooks/events", bomb, {**signed(bomb), "Content-Encoding": "gzip"})
        assert answer.status_code == 413 and "inflates" in answer.json()["error"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"x" * 5000

        chunked = await server.client.post("/hooks/events", content=chunks(), headers=signed(b""))
        assert chunked.status_code == 413  # no Content-Length: the streamed body is capped as it arrives
        assert server.context.events == [] and server.context.quarantined == []
    finally:
        await server.client.aclose()
        await server.transport.stop()


async def test_unknown_hook_is_404_and_other_methods_405(server: Server) -> None:
    assert (await server.post("/hooks/nope", b"{}")).status_code == 404
    assert (await server.client.get("/hooks/events")).status_code == 405


async def test_a_bus_that_pushes_back_gets_503_with_retry_after(tmp_path: Path) -> None:
    context = RecordingContext(gate=asyncio.Event())
    server = await start_server(tmp_path, context, accept_timeout=0.3, retry_after=7)
    try:
        body = event_body("0f0e0d0c-0000-4000-8000-000000000003", unit="SN7")
        answer = await server.post("/hooks/events", body, signed(body))
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "7"
        assert context.events == []
        assert context.gate is not None
        context.gate.set()
        retry = await server.post("/hooks/events", body, signed(body))  # not remembered: accepted now
        assert retry.status_code == 202 and retry.json()["accepted"] == 1
    finally:
        await server.client.aclose()
        await server.transport.stop()


async def test_requests_above_max_concurrent_get_429(tmp_path: Path) -> None:
    context = RecordingContext(gate=asyncio.Event())
    server = await start_server(tmp_path, context, max_concurrent=1, retry_after=3)
    try:
        body = event_body(unit="SN8")
        held = asyncio.create_task(server.post("/hooks/events", body, signed(body)))
        await asyncio.wait_for(context.submitting.wait(), 10)
        other = event_body(unit="SN9")
        answer = await server.post("/hooks/events", other, signed(other))
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
        assert context.gate is not None
        context.gate.set()
        assert (await held).status_code == 202
    finally:
        await server.client.aclose()
        await server.transport.stop()


async def test_stop_answers_waiting_requests_503_and_closes(tmp_path: Path) -> None:
    context = RecordingContext(gate=asyncio.Event())
    server = await start_server(tmp_path, context)
    body = event_body(unit="SN10")
    waiting = asyncio.create_task(server.post("/hooks/events", body, signed(body)))
    await asyncio.wait_for(context.submitting.wait(), 10)
    await server.transport.stop()
    assert (await waiting).status_code == 503
    assert context.states[-1] is ConnectionState.CLOSED
    with pytest.raises(httpx.TransportError):
        await server.post("/hooks/events", body, signed(body))
    await server.client.aclose()


# ------------------------------------------------------------------ configuration (the plugin factory)


def factory_transport(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> Any:
    cfg = tmp_path / "listener.toml"
    cfg.write_text(f'[listener]\ndata_dir = "{tmp_path.as_posix()}/data"\n' + toml)
    settings = load_settings(cfg, environ=environ or {})
    ctx = PluginContext(name="webhook", settings=settings, options={}, codec=EventJsonCodec())
    return webhook_transport(ctx)


def test_a_hook_without_a_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"webhook\.hooks\.line1\.auth.*needs a secret"):
        factory_transport(tmp_path, "[webhook.hooks.line1]\ncodec = 'event'\n")


def test_an_insecure_hook_needs_a_loopback_host(tmp_path: Path) -> None:
    hook = "[webhook.hooks.t]\nauth = 'none'\ninsecure = true\n"
    assert factory_transport(tmp_path, "[webhook]\nport = 0\n" + hook) is not None
    with pytest.raises(ConfigurationError, match=r"webhook\.hooks\.t\.insecure.*loopback"):
        factory_transport(tmp_path, "[webhook]\nhost = '0.0.0.0'\n" + hook)


def test_secrets_come_from_a_file_or_the_environment_and_are_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    toml = (
        f"[webhook.hooks.a]\nsecret_file = '{(tmp_path / 'secret').as_posix()}'\n"
        "[webhook.hooks.b]\nauth = 'bearer'\nsecret_env = 'HOOK_B_SECRET'\n"
    )
    with pytest.raises(ConfigurationError, match="HOOK_B_SECRET is not set"):
        factory_transport(tmp_path, toml)
    monkeypatch.setenv("HOOK_B_SECRET", "from-the-env")
    transport = factory_transport(tmp_path, toml)
    assert transport.hooks["a"].auth.scheme == "hmac"
    text = repr(transport.hooks) + repr(transport.settings)
    assert "from-a-file" not in text and "from-the-env" not in text
    body = b"{}"
    transport.hooks["a"].auth.check(
        {k.lower(): v for k, v in signed(body, secret="from-a-file").items()}, body
    )
    transport.hooks["b"].auth.check({"authorization": "Bearer from-the-env"}, body)


def test_an_unknown_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"webhook\.hooks\.a\.secret"):
        factory_transport(tmp_path, "[webhook.hooks.a]\nsecret = 'inline'\n")


async def test_plain_json_bodies_reach_the_codec_with_the_path_as_topic(server: Server) -> None:
    body = json.dumps(json.loads(event_body(unit="SN11"))).encode()
    assert (await server.post("/hooks/events/extra/path", body, signed(body))).status_code == 202
    assert server.context.events[0].metadata.source_topic == "events/extra/path"


async def test_an_overlong_idempotency_key_is_400(server: Server) -> None:
    body = event_body(unit="SN12")
    answer = await server.post("/hooks/events", body, {**signed(body), "Idempotency-Key": "k" * 257})
    assert answer.status_code == 400 and "Idempotency-Key" in answer.json()["error"]
    assert server.context.events == []
