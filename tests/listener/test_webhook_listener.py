"""Acceptance: CFX traffic over HTTP into the real `pywats-events run` process, FakeWATS behind it.

Real clients only: httpx (8 concurrent senders, every request retried once with the same key) and `curl` in a
subprocess for the refusals a misconfigured or hostile sender gets.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from listener_support import (
    LISTENER_TOKEN,
    UNITS_TESTED,
    ListenerProcess,
    clean_env,
    cli_path,
    free_port,
    reported_message_ids,
    units_tested,
    wait_until,
    wats_settings_toml,
    wats_toml,
)

from handlers.wats.fake import FakeWATS
from pywats_events.transports.webhook import sign

pytestmark = pytest.mark.timeout(120)

HOOK_SECRET = "hook-secret-for-tests"


def start_listener(
    tmp_path: Path, wats: FakeWATS, port: int | None = None, **webhook: Any
) -> tuple[ListenerProcess, str]:
    (tmp_path / "hook.secret").write_text(HOOK_SECRET + "\n")
    port = port or free_port()
    lines = [
        "[webhook]",
        f"port = {port}",
        *(f"{k} = {json.dumps(v)}" for k, v in webhook.items()),
        "[webhook.hooks.line1]",
        'codec = "cfx"',
        f'secret_file = "{(tmp_path / "hook.secret").as_posix()}"',
        wats_toml(wats.url),
        wats_settings_toml(),
    ]
    listener = ListenerProcess(
        tmp_path, "\n".join(lines), env=clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN)
    ).start()
    return listener, f"http://127.0.0.1:{port}/hooks/line1"


def signed(body: bytes, *, secret: str = HOOK_SECRET, at: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {"X-Pywats-Timestamp": stamp, "X-Pywats-Signature": sign(secret, stamp, body)}


def test_1000_units_from_8_concurrent_senders_each_retrying_become_one_report_per_unit(
    tmp_path: Path, wats: FakeWATS
) -> None:
    listener, url = start_listener(tmp_path, wats)
    messages = [units_tested(i, f"WH-{i:04d}", "webhook-1000") for i in range(1000)]
    statuses: list[int] = []

    async def sender(queue: asyncio.Queue[tuple[int, bytes]]) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            while not queue.empty():
                i, body = queue.get_nowait()
                headers = {"Idempotency-Key": f"unit-{i}", "Content-Type": "application/json"}
                if i % 2:
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                for _attempt in range(2):  # the first response "lost": the same request once more
                    answer = await client.post(url, content=body, headers={**headers, **signed(body)})
                    statuses.append(answer.status_code)

    async def send_all() -> None:
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        for i, (_uid, body) in enumerate(messages):
            queue.put_nowait((i, body))
        await asyncio.gather(*(sender(queue) for _ in range(8)))

    try:
        asyncio.run(send_all())
        assert statuses == [202] * 2000
        wait_until(lambda: len(wats.submissions) >= 1000, 90, what="1000 reports in FakeWATS")
    finally:
        assert listener.stop() == 0
    assert reported_message_ids(wats) == {uid for uid, _body in messages}
    assert set(wats.submissions.values()) == {1}, "every report submitted exactly once"


def test_a_kill_9_mid_stream_loses_nothing_that_got_a_202(tmp_path: Path, wats: FakeWATS) -> None:
    wats.latency = 0.01  # WATS slower than the senders: the journal holds accepted work when the kill lands
    port = free_port()
    listener, url = start_listener(tmp_path, wats, port)
    messages = [units_tested(i, f"K9-{i:03d}", "webhook-kill9") for i in range(400)]
    accepted: set[str] = set()
    accepted_before_kill: set[str] = set()
    hundred_accepted = asyncio.Event()

    async def sender(queue: asyncio.Queue[tuple[str, bytes]]) -> None:
        """A webhook sender: retries each request (connection refused, 5xx) until it is answered 202."""
        async with httpx.AsyncClient(timeout=30) as client:
            while not queue.empty():
                uid, body = queue.get_nowait()
                while True:
                    try:
                        answer = await client.post(url, content=body, headers=signed(body))
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                        continue
                    if answer.status_code == 202:
                        accepted.add(uid)
                        if len(accepted) >= 100:
                            hundred_accepted.set()
                        break
                    assert answer.status_code in (429, 503), answer.text
                    await asyncio.sleep(0.1)

    async def kill_and_restart() -> ListenerProcess:
        await hundred_accepted.wait()
        await asyncio.to_thread(listener.kill)
        accepted_before_kill.update(accepted)
        restarted, _url = await asyncio.to_thread(start_listener, tmp_path, wats, port)
        return restarted

    async def run() -> ListenerProcess:
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        for message in messages:
            queue.put_nowait(message)
        restarted, *_ = await asyncio.gather(kill_and_restart(), *(sender(queue) for _ in range(4)))
        return restarted

    restarted = asyncio.run(run())
    try:
        assert len(accepted_before_kill) < len(messages), "the kill must land mid-stream"
        wait_until(lambda: len(wats.submissions) >= len(messages), 90, what="every unit reported")
    finally:
        assert restarted.stop() == 0
    assert reported_message_ids(wats) == {uid for uid, _body in messages} == accepted


def curl(url: str, body: bytes, tmp_path: Path, *headers: str) -> tuple[int, dict[str, Any]]:
    """POSTs `body` with curl; (status, JSON answer)."""
    payload = tmp_path / "curl-body"
    payload.write_bytes(body)
    out = tmp_path / "curl-answer"
    args = ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "--data-binary", f"@{payload}"]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=30, check=True)
    text = out.read_text() if out.exists() else ""
    return int(done.stdout), (json.loads(text) if text else {})


def curl_signed(url: str, body: bytes, tmp_path: Path, *headers: str, **sign_kw: Any) -> tuple[int, Any]:
    return curl(url, body, tmp_path, *(f"{k}: {v}" for k, v in signed(body, **sign_kw).items()), *headers)


def test_refusals_from_curl_each_get_their_status_and_valid_traffic_flows(
    tmp_path: Path, wats: FakeWATS
) -> None:
    listener, url = start_listener(tmp_path, wats, max_body_bytes=200_000, max_inflated_bytes=1_000_000)
    good = [units_tested(i, f"CURL-{i}", "webhook-curl") for i in range(4)]
    try:
        uid0, body0 = good[0]
        assert curl_signed(url, body0, tmp_path)[0] == 202

        status, answer = curl_signed(url, body0, tmp_path, secret="wrong")
        assert (status, answer["error"]) == (401, "bad signature")
        status, answer = curl_signed(url, good[1][1], tmp_path, at=time.time() - 3600)
        assert status == 401 and answer["error"].startswith("stale timestamp")
        assert curl(url, good[1][1], tmp_path)[0] == 401  # unsigned

        bad_json = b'{"MessageName": "CFX.Production.UnitsTested", '
        status, answer = curl_signed(url, bad_json, tmp_path)
        assert status == 400 and "invalid JSON" in answer["error"]
        wrong_schema = json.dumps(
            {"MessageName": UNITS_TESTED, "UniqueID": "x-1", "MessageBody": {"TestedUnits": "no"}}
        ).encode()
        status, answer = curl_signed(url, wrong_schema, tmp_path)
        assert status == 400 and answer["error"]

        assert curl_signed(url, b"[" + b" " * 300_000 + b"]", tmp_path)[0] == 413
        bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
        status, answer = curl_signed(url, bomb, tmp_path, "Content-Encoding: gzip")
        assert status == 413 and "inflates" in answer["error"]
        assert curl_signed(url.replace("line1", "nope"), body0, tmp_path)[0] == 404

        # bare MessageBodies, named (with the sender's handle) by the path or by headers
        bare1 = json.dumps(json.loads(good[1][1])["MessageBody"]).encode()
        assert curl_signed(f"{url}/Acme.ICT.SN1000.{UNITS_TESTED}", bare1, tmp_path)[0] == 202
        bare2 = json.dumps(json.loads(good[2][1])["MessageBody"]).encode()
        named = (f"CFX-Message: {UNITS_TESTED}", "CFX-Handle: Acme.ICT.SN1001")
        assert curl_signed(url, bare2, tmp_path, *named)[0] == 202
        # an array of envelopes, gzip-compressed
        batch = gzip.compress(b"[" + good[3][1] + b"]")
        status, answer = curl_signed(url, batch, tmp_path, "Content-Encoding: gzip")
        assert (status, answer["accepted"]) == (202, 1)

        wait_until(lambda: len(wats.submissions) >= 4, 20, what="the 4 valid messages reported")
        assert listener.proc is not None and listener.proc.poll() is None
        assert listener.metric("pywats_webhook_requests_total") == 12  # every request above, counted
    finally:
        assert listener.stop() == 0
    assert {r["sn"] for r in wats.reports.values()} == {f"CURL-{i}" for i in range(4)}
    assert uid0 in reported_message_ids(wats)
    listed = subprocess.run(
        [cli_path(), "quarantine", "list", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(item["size"] for item in items) == sorted([len(bad_json), len(wrong_schema)])
    assert all(item["topic"] == "line1" for item in items)


def test_the_line_simulator_drives_the_pipeline_over_http(tmp_path: Path, wats: FakeWATS) -> None:
    root = Path(__file__).resolve().parents[2]
    port = free_port()
    config = (root / "samples" / "config" / "line-simulator.toml").read_text("utf-8")
    config += f'\n[webhook]\nport = {port}\n[webhook.hooks.line1]\nsecret_env = "LINE1_HOOK_SECRET"\n'
    env = clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN, LINE1_HOOK_SECRET=HOOK_SECRET)
    listener = ListenerProcess(tmp_path, config, "--wats-url", wats.url, env=env).start()
    try:
        simulator = subprocess.run(
            [sys.executable, str(root / "samples" / "line_simulator.py"),
             "--webhook", f"http://127.0.0.1:{port}/hooks/line1", "--count", "10", "--rate", "0",
             "--fault-rate", "0", "--seed", "3"],
            capture_output=True, text=True, timeout=60, check=False,
            env=clean_env(PYWATS_WEBHOOK_SECRET=HOOK_SECRET),
        )  # fmt: skip
        assert simulator.returncode == 0, simulator.stderr
        assert HOOK_SECRET not in simulator.stdout + simulator.stderr
        wait_until(lambda: len(wats.submissions) >= 10, 60, what="10 reports")
    finally:
        assert listener.stop() == 0
    assert {r["pn"] for r in wats.reports.values()} == {"PCB-4711"}
    assert HOOK_SECRET not in listener.log.read_text()
