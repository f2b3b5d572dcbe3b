"""Distributed mode, the issue's traffic with assets and production on, and a kill -9 mid-stream.

Per unit WorkStarted -> UnitsTested -> WorkCompleted, plus station faults (asset log lines), over three
sharded listeners; one is killed while traffic flows, so messages it had handled but not acknowledged
are redelivered to another process. WATS calls that are not idempotent must not repeat across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brokers import RABBITMQ_URL
from listener_support import (
    LISTENER_TOKEN,
    ListenerProcess,
    amqp_toml,
    clean_env,
    distributed_names,
    queue_depth,
    wait_until,
    wats_toml,
)

from handlers.wats.fake import FakeWATS
from pywats_cfx.samples import load_sample

pytestmark = [pytest.mark.broker]

SHARDS = 6
STATION = "Acme.FCT5000.FCT-L1-02"
ASSET = "FX-7"


@pytest.fixture
def names() -> Iterator[tuple[str, str, str]]:
    with distributed_names(SHARDS) as found:
        yield found


def _envelope(sample: str, unique: str) -> dict[str, Any]:
    env = copy.deepcopy(json.loads(load_sample(sample)))
    env["UniqueID"] = unique
    env["Source"] = STATION
    return env


def _traffic(
    units: int, run: str, *, unitless_completed: bool = False
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(routing key, body) in publishing order, and the UniqueIDs of the fault messages. With
    `unitless_completed` each WorkCompleted names nothing but its TransactionID (as CFX allows)."""
    out: list[tuple[str, bytes]] = []
    faults: list[str] = []
    for i in range(units):
        serial = f"SN-{run}-{i:04d}"
        txn = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{run}/{i}"))
        started = _envelope("work_started", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/ws/{i}")))
        body = started["MessageBody"]
        body["TransactionID"], body["PrimaryIdentifier"] = txn, serial
        body["Units"] = body["Units"][:1]
        body["Units"][0]["UnitIdentifier"] = serial
        tested = _envelope("units_tested_fct", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/ut/{i}")))
        body = tested["MessageBody"]
        body["TransactionId"] = txn
        body["TestedUnits"] = body["TestedUnits"][:1]
        body["TestedUnits"][0]["UnitIdentifier"] = serial
        body["TestedUnits"][0]["Tests"] = body["TestedUnits"][0]["Tests"][:2]
        completed = _envelope("work_completed_pass", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/wc/{i}")))
        body = completed["MessageBody"]
        body["TransactionID"], body["PrimaryIdentifier"], body["UnitCount"] = txn, serial, 1
        body["Units"] = body["Units"][:1]
        body["Units"][0]["UnitIdentifier"] = serial
        if unitless_completed:
            for name in ("PrimaryIdentifier", "HermesIdentifier", "Units"):
                body.pop(name, None)
        for env in (started, tested, completed):
            out.append((f"line1.{env['MessageName']}", json.dumps(env).encode()))
        if i % 3 == 0:
            fault_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/fault/{i}"))
            fault = _envelope("fault_temp", fault_id)
            fault["MessageBody"]["Fault"]["FaultOccurrenceId"] = fault_id
            out.append((f"line1.{fault['MessageName']}", json.dumps(fault).encode()))
            faults.append(fault_id)
    return out, faults


async def _publish(exchange: str, messages: list[tuple[str, bytes]]) -> None:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        for key, body in messages:  # one by one: the per-unit order is the publishing order
            await ex.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), key)


def _config(names: tuple[str, str, str], wats: FakeWATS, *, shards: int = SHARDS) -> str:
    exchange, queue, dlx = names
    topology: dict[str, Any] = (
        {"shards": shards, "shard_rebalance_interval": 0.5}
        if shards
        else {"queue_type": "quorum", "single_active_consumer": True}
    )
    return "\n".join(
        [
            amqp_toml(exchange, queue, dlx, retry_delays=[1, 2], **topology),
            wats_toml(wats.url, distributed=True),
            "[handlers.wats]",
            'location = "Test line"',
            'default_part_number = "MB-4471"',
            'default_revision = "C"',
            "default_process_code = 10",
            "lookup_part_number = false",
            "lookup_processes = false",
            "enable_assets = true",
            "enable_production = true",
            "[handlers.wats.phases]",
            "completed = 16",
            "transaction_wait = 1",
            "[handlers.wats.asset]",
            "count_usage = true",
            "[handlers.wats.assets]",
            f'"{STATION}" = "{ASSET}"',
        ]
    )


def _fault_refs(wats: FakeWATS) -> Counter[str]:
    refs: Counter[str] = Counter()
    for entry in wats.asset_log:
        comment = str(entry.get("comment") or "")
        if "[ref " in comment:
            refs[comment.rsplit("[ref ", 1)[1].rstrip("]")] += 1
    return refs


@pytest.mark.timeout(240)
def test_kill_9_mid_stream_repeats_no_asset_log_line_or_usage_count_and_loses_nothing(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    """The listener killed is the one counting usage (the single writer), and it owns shards too: units it
    submitted but had not acknowledged come again from another process, and the next writer must tell
    from the ledger on the broker what the dead one counted, including the increment it was sending."""
    units = 240
    with FakeWATS(token=LISTENER_TOKEN) as wats:
        wats.latency = 0.005
        wats.add_asset(ASSET)
        with _three_listeners(tmp_path, names, wats) as listeners:
            messages, faults = _traffic(units, names[1][-6:])
            # the writer's fourth increment reaches WATS and its answer hangs: the writer is killed then,
            # with the batch counted and nothing acknowledged; the rest of the traffic comes after
            hung = wats.inject("hang", hang=10, after=True, path="/api/Asset/Count", count=1, skip=3)
            cut = next(
                i for i, (key, _b) in enumerate(messages) if i >= len(messages) * 3 // 4 and "Started" in key
            )
            asyncio.run(_publish(names[0], messages[:cut]))
            wait_until(lambda: hung.struck >= 1, 90, interval=0.05, what="an increment whose answer hangs")
            writer = _writer(listeners)
            assert writer.metric("pywats_amqp_shards_owned") > 0
            writer.kill()
            asyncio.run(_publish(names[0], messages[cut:]))
            wait_until(lambda: len(wats.reports) >= units, 120, what=f"all {units} reports")
            _settled(wats, names[1], units, faults)
            survivors = [p for p in listeners if p is not writer]
            assert sum(p.metric("pywats_amqp_single_writer_takeovers") for p in survivors) >= 1
        refs = _fault_refs(wats)
        assert set(refs) == set(faults)
        assert [ref for ref, n in refs.items() if n > 1] == [], "an asset log line was written twice"
        assert _count(wats) == units, "each unit counted exactly once"


def _writer(listeners: list[ListenerProcess]) -> ListenerProcess:
    """The listener doing the usage counts now (the broker gives the writer queue to one at a time)."""
    wait_until(
        lambda: any(p.metric("pywats_amqp_single_writer_items") > 0 for p in listeners), 60, what="a writer"
    )
    (writer,) = [p for p in listeners if p.metric("pywats_amqp_single_writer_items") > 0]
    return writer


@contextlib.contextmanager
def _three_listeners(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS
) -> Iterator[list[ListenerProcess]]:
    """Three sharded listener processes, every shard owned; stopped (those still running) on the way out."""
    config = _config(names, wats)
    env = clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN)
    listeners = []
    for n in ("a", "b", "c"):
        (tmp_path / n).mkdir()
        listeners.append(ListenerProcess(tmp_path / n, config, env=env).start())
    try:
        wait_until(
            lambda: sum(p.metric("pywats_amqp_shards_owned") for p in listeners) == SHARDS,
            30,
            what="all shards owned",
        )
        yield listeners
    finally:
        for p in listeners:
            if p.proc is not None and p.proc.poll() is None:
                p.stop()


def _settled(wats: FakeWATS, queue: str, units: int, faults: list[str]) -> None:
    """Wait until every fault is logged, every unit counted and nothing is left on the broker."""
    wait_until(lambda: len(_fault_refs(wats)) >= len(faults), 60, what="every fault logged")
    wait_until(lambda: _count(wats) >= units, 60, what="every unit counted")
    wait_until(lambda: asyncio.run(_waiting(queue)) == 0, 60, what="nothing left on the broker")


def _count(wats: FakeWATS) -> int:
    return int(wats.assets[ASSET]["totalCount"])


async def _waiting(queue: str) -> int:
    """Messages ready in the shards and delay queues (the survivors stop gracefully: what they hold
    unacknowledged is finished before they exit)."""
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    total = 0
    async with conn:
        for name in [f"{queue}.shard-{i:03d}" for i in range(SHARDS)] + [
            f"{queue}.retry-1s",
            f"{queue}.retry-2s",
            f"{queue}.writer-asset-usage",
        ]:
            q = await (await conn.channel()).declare_queue(name, passive=True)
            total += int(q.declaration_result.message_count or 0)
    return total


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_3000_units_full_traffic_over_three_listeners_in_order_exactly_once(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    """The issue's traffic for 3,000 units (WorkStarted -> UnitsTested -> WorkCompleted, station faults),
    published by another process, over three listeners: each unit's requests in order, each report once,
    the asset counted once per unit, each fault logged once."""
    units = 3000
    with FakeWATS(token=LISTENER_TOKEN) as wats:
        wats.add_asset(ASSET)
        with _three_listeners(tmp_path, names, wats) as listeners:
            messages, faults = _traffic(units, names[1][-6:])
            _publish_from_another_process(tmp_path, names[0], messages)
            wait_until(lambda: len(wats.reports) >= units, 600, what=f"all {units} reports")
            _settled(wats, names[1], units, faults)
            assert all(p.metric("pywats_messages_received_total") > 0 for p in listeners), "spread over three"
        submissions = [
            r.json.get("id")
            for r in wats.requests
            if r.method == "POST" and r.path == "/api/Report/WSJF" and r.status is not None and r.status < 300
        ]
        assert len(submissions) == len(set(submissions)) == units, "each report exactly once"
        assert _count(wats) == units, "the asset counted once per unit"
        refs = _fault_refs(wats)
        assert set(refs) == set(faults) and all(n == 1 for n in refs.values()), "each fault logged once"
        _unit_requests_in_order(wats, units)


def _publish_from_another_process(tmp_path: Path, exchange: str, messages: list[tuple[str, bytes]]) -> None:
    import subprocess
    import sys

    feed = tmp_path / "traffic.jsonl"
    feed.write_text("".join(json.dumps([key, body.decode()]) + "\n" for key, body in messages))
    script = f"""
import asyncio, json, aio_pika

async def main():
    conn = await aio_pika.connect({RABBITMQ_URL!r})
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange({exchange!r}, aio_pika.ExchangeType.TOPIC, durable=True)
        with open({str(feed)!r}) as lines:
            for line in lines:
                key, body = json.loads(line)
                await ex.publish(aio_pika.Message(body.encode(), delivery_mode=2), key)

asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)


def _unit_requests_in_order(wats: FakeWATS, units: int) -> None:
    """Per unit, what its WorkStarted asked of WATS (unit phase and process) came before its report."""
    started: dict[str, int] = {}
    reported: dict[str, int] = {}
    for i, r in enumerate(wats.requests):
        if r.status is None or r.status >= 300:
            continue
        if r.path == "/api/Production/SetUnitPhase":
            started.setdefault(r.params["serialNumber"], i)
        elif r.method == "POST" and r.path == "/api/Report/WSJF":
            reported.setdefault(str((r.json or {}).get("sn")), i)
    assert len(reported) == units
    late = [sn for sn, at in reported.items() if sn not in started or started[sn] > at]
    assert late == [], f"{len(late)} unit(s) reported before their WorkStarted reached WATS, e.g. {late[:3]}"


def _completed_everywhere(wats: FakeWATS, run: str, units: int) -> None:
    """Every unit went to phase 2 (its WorkStarted, maybe twice after a kill) and then to 16 (its unit-less
    WorkCompleted)."""
    phases: dict[str, list[int]] = {}
    for change in wats.unit_history:
        if "phase" in change:
            phases.setdefault(change["serialNumber"], []).append(change["phase"])
    wrong = {sn: got for i in range(units) if (got := phases.get(sn := f"SN-{run}-{i:04d}", [])) != [2, 16]}
    assert wrong == {}, f"{len(wrong)} unit(s) not started then completed, e.g. {list(wrong.items())[:3]}"


@pytest.mark.timeout(240)
def test_unitless_work_completed_finds_its_units_after_the_intake_listener_was_killed(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    """WorkCompleted naming only its TransactionID, three sharded listeners: the intake remembers each
    transaction's units and routes the WorkCompleted behind its WorkStarted with the units attached, so it
    does not matter which listener handled the WorkStarted. The intake's listener is killed mid-stream;
    the next one reads the transactions from the ledger on the broker."""
    units = 150
    run = names[1][-6:]
    with FakeWATS(token=LISTENER_TOKEN) as wats:
        wats.latency = 0.005
        wats.add_asset(ASSET)
        with _three_listeners(tmp_path, names, wats) as listeners:
            messages, faults = _traffic(units, run, unitless_completed=True)
            # the first half's units are started and tested, then the intake's listener dies; the next
            # intake routes their WorkCompleted messages knowing the units only from the ledger
            half = {f"SN-{run}-{i:04d}".encode() for i in range(units // 2)}
            first = [m for m in messages if any(sn in m[1] for sn in half) and "WorkCompleted" not in m[0]]
            rest = [m for m in messages if m not in first]
            asyncio.run(_publish(names[0], first))
            wait_until(
                lambda: sum(p.metric("pywats_amqp_intake_republished") for p in listeners) >= len(first),
                60,
                what="the first part re-published",
            )
            (intake,) = [p for p in listeners if p.metric("pywats_amqp_intake_republished") > 0]
            intake.kill()
            asyncio.run(_publish(names[0], rest))
            wait_until(lambda: len(wats.reports) >= units, 120, what=f"all {units} reports")
            _settled(wats, names[1], units, faults)
        _completed_everywhere(wats, run, units)
        assert asyncio.run(queue_depth(f"{names[1]}.dead-letter")) == 0


@pytest.mark.timeout(240)
def test_unitless_work_completed_after_a_hot_standby_takeover(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    """Hot standby: the active listener handles WorkStarted messages and is killed; their unit-less
    WorkCompleted messages reach the standby, which knows the units from the ledger on the broker."""
    units = 60
    run = names[1][-6:]
    with FakeWATS(token=LISTENER_TOKEN) as wats:
        wats.add_asset(ASSET)
        env = clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN)
        config = _config(names, wats, shards=0)
        listeners = []
        for n in ("a", "b"):
            (tmp_path / n).mkdir()
            listeners.append(ListenerProcess(tmp_path / n, config, env=env).start())
        try:
            messages, _faults = _traffic(units, run, unitless_completed=True)
            started = [m for m in messages if m[0].endswith("WorkStarted")]
            rest = [m for m in messages if not m[0].endswith("WorkStarted")]
            asyncio.run(_publish(names[0], started))
            wait_until(
                lambda: len({c["serialNumber"] for c in wats.unit_history if c.get("phase") == 2}) == units,
                60,
                what="every WorkStarted handled",
            )
            (active,) = [p for p in listeners if p.metric("pywats_messages_received_total") > 0]
            active.kill()
            asyncio.run(_publish(names[0], rest))
            wait_until(lambda: len(wats.reports) >= units, 120, what=f"all {units} reports")
            wait_until(lambda: asyncio.run(queue_depth(names[1])) == 0, 60, what="the queue drained")
        finally:
            for p in listeners:
                if p.proc is not None and p.proc.poll() is None:
                    p.stop()
        _completed_everywhere(wats, run, units)
        assert asyncio.run(queue_depth(f"{names[1]}.dead-letter")) == 0
