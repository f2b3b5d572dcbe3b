"""Acceptance: the real `pywats-events run` process, real RabbitMQ, FakeWATS over HTTP.

Each test owns its exchange/queue (uuid names, deleted afterwards) and its data directory.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from listener_support import (
    LISTENER_TOKEN,
    UNITS_TESTED,
    ListenerProcess,
    amqp_toml,
    clean_env,
    order_kept,
    publish,
    reported_message_ids,
    unit_messages,
    wait_until,
    wats_settings_toml,
    wats_toml,
)

from handlers.wats.fake import FakeWATS

pytestmark = [pytest.mark.broker]


def _config(topology: tuple[str, str, str], wats: FakeWATS, **listener: Any) -> str:
    exchange, queue, dlx = topology
    lines = [
        amqp_toml(exchange, queue, dlx),
        wats_toml(wats.url, **listener),
        wats_settings_toml(),
    ]
    return "\n".join(lines)


def _env() -> dict[str, str]:
    return clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN)


def _dead_letters(tmp: Path) -> int:
    out = subprocess.run(
        [*_cli(), "status", "--json"], cwd=tmp, env=clean_env(), capture_output=True, text=True, timeout=30
    )
    return int(json.loads(out.stdout)["dlq_size"] or 0)


def _events_of_type(listener: ListenerProcess, event_type: str) -> float:
    """`pywats_events_accepted_total{event_type=...}` from the listener's /metrics."""
    _, text = listener.http("/metrics")
    prefix = f'pywats_events_accepted_total{{event_type="{event_type}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def _cli() -> list[str]:
    from listener_support import cli_path

    return [cli_path()]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_poison_input_is_quarantined_and_good_traffic_flows(
    tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS
) -> None:
    listener = ListenerProcess(tmp_path, _config(topology, wats), env=_env()).start()
    try:
        good, index = unit_messages(60, 6, "poison")
        bad_names = [
            json.dumps({"MessageName": name, "UniqueID": f"n-{i}", "MessageBody": {}}).encode()
            for i, name in enumerate(["Not a CFX name", 42, "", "CFX..Broken"])
        ] + [json.dumps({"UniqueID": "n-missing", "MessageBody": {"Foo": 1}}).encode()]
        bad = [
            b"{not json at all",
            json.dumps(
                {"MessageName": UNITS_TESTED, "UniqueID": "x", "MessageBody": {"TestedUnits": "no"}}
            ).encode(),
            b"\xff\xfe\xfa\x00 not utf-8",
            b'{"a":"' + b"x" * 20_000_000 + b'"}',
            gzip.compress(b"{" + b" " * 100_000_000),
            b"",
            *bad_names,
        ]
        vendor = json.dumps(
            {
                "MessageName": "CFX.HaiNa.ProgramInitialized",
                "Version": "2.1",
                "UniqueID": "u-1",
                "MessageBody": {"ProgramName": "P-7"},
            }
        ).encode()
        stream: list[bytes] = []
        pending = list(bad)
        for i, body in enumerate(good):
            stream.append(body)
            if i % 5 == 2 and pending:
                stream.append(pending.pop(0))
        assert not pending, "every poison message is interleaved with good traffic"
        stream.append(vendor)
        asyncio.run(publish(topology[0], stream))
        wait_until(lambda: len(reported_message_ids(wats)) >= len(good), 60, what="good reports in FakeWATS")
        wait_until(
            lambda: listener.metric("pywats_messages_quarantined_total") >= len(bad), 20, what="quarantine"
        )
        wait_until(
            lambda: _events_of_type(listener, "passthrough") >= 1,
            20,
            what="the vendor message as passthrough",
        )
        assert listener.http("/healthz")[0] == 200
        assert listener.proc is not None and listener.proc.poll() is None, "the listener keeps running"
    finally:
        assert listener.stop() == 0
    assert reported_message_ids(wats) == set(index)
    q = subprocess.run(
        [*_cli(), "quarantine", "list", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    items = [json.loads(x) for x in q.stdout.splitlines()]
    assert len(items) == len(bad), "the vendor message is not quarantined, every poison one is"
    sizes = sorted(i["size"] for i in items)
    assert sizes[0] == 0 and sizes[-1] >= 20_000_000, "raw bytes kept, including the empty and the huge body"
    assert all(i["reason"] for i in items)
    name_reasons = [i["reason"] for i in items if i["reason"].startswith("not a CFX message name: ")]
    assert len(name_reasons) == len(bad_names), name_reasons
    assert _dead_letters(tmp_path) == 0


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_kill_9_mid_stream_then_restart_loses_nothing(
    tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS
) -> None:
    wats.latency = 0.01  # slow WATS down so the kill lands mid-stream
    listener = ListenerProcess(tmp_path, _config(topology, wats), env=_env()).start()
    bodies, index = unit_messages(2000, 40, "kill9")
    asyncio.run(publish(topology[0], bodies))
    wait_until(lambda: len(reported_message_ids(wats)) >= 200, 60, interval=0.1, what="first reports")
    listener.kill()
    before = len(reported_message_ids(wats))
    assert before < 2000, "the kill must land mid-stream"
    listener = ListenerProcess(tmp_path, _config(topology, wats), env=_env())
    listener.cfg.write_text(_config(topology, wats))
    listener.start()
    try:
        wait_until(
            lambda: len(reported_message_ids(wats)) >= 2000, 100, what="all 2000 reports after restart"
        )
    finally:
        assert listener.stop() == 0
    assert reported_message_ids(wats) == set(index)
    # duplicates only as overwrites of the same report id
    assert len(wats.reports) == 2000


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_wats_outage_of_60s_loses_and_dead_letters_nothing(
    tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS
) -> None:
    listener = ListenerProcess(tmp_path, _config(topology, wats), env=_env()).start()
    try:
        bodies, index = unit_messages(2000, 50, "outage")
        asyncio.run(publish(topology[0], bodies[:200]))
        wait_until(
            lambda: len(reported_message_ids(wats)) >= 100, 30, interval=0.1, what="traffic before the outage"
        )
        wats.inject("error", status=503, duration=60)
        t_outage = time.monotonic()
        asyncio.run(publish(topology[0], bodies[200:]))
        # the broker messages are acknowledged (journaled) during the outage, not held
        wait_until(
            lambda: listener.metric("pywats_messages_received_total") >= 2000,
            50,
            what="all messages accepted",
        )
        assert time.monotonic() - t_outage < 60, "intake finished while WATS was still down"
        wait_until(lambda: len(reported_message_ids(wats)) >= 2000, 150, what="all reports after recovery")
    finally:
        assert listener.stop() == 0
    assert reported_message_ids(wats) == set(index)
    order_kept(wats, index)
    assert _dead_letters(tmp_path) == 0


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_broker_restart_mid_stream(tmp_path: Path, topology: tuple[str, str, str], wats: FakeWATS) -> None:
    wats.latency = 0.01
    listener = ListenerProcess(tmp_path, _config(topology, wats), env=_env()).start()
    try:
        bodies, index = unit_messages(2000, 40, "restart")
        asyncio.run(publish(topology[0], bodies))
        wait_until(
            lambda: len(reported_message_ids(wats)) >= 300,
            60,
            interval=0.1,
            what="traffic before the restart",
        )
        try:
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
            time.sleep(3)
        finally:  # whatever happens, the broker comes back for the tests that follow
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        wait_until(
            lambda: len(reported_message_ids(wats)) >= 2000, 150, what="all 2000 reports after the restart"
        )
        # the journal may deliver the last reports before the consumer has reconnected (backoff on a
        # loaded machine): wait for readiness instead of expecting it at that moment
        wait_until(lambda: listener.http("/readyz")[0] == 200, 90, what="the consumer re-attached")
    finally:
        assert listener.stop(signal.SIGINT) == 0
    assert reported_message_ids(wats) == set(index)
    assert len(wats.reports) == 2000
