"""Distributed mode: several real `pywats-events run` processes on the real RabbitMQ, FakeWATS over HTTP.

Hot standby (one quorum queue, single-active-consumer) and sharding (consistent-hash exchange into shard
queues the listeners share). Every test owns its names (uuid) and deletes what it declared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brokers import RABBITMQ_URL
from listener_support import (
    LISTENER_TOKEN,
    UNITS_TESTED,
    ListenerProcess,
    amqp_toml,
    clean_env,
    distributed_names,
    order_kept,
    publish,
    queue_depth,
    report_message_id,
    reported_message_ids,
    stop_all,
    unit_messages,
    units_tested,
    wait_until,
    wats_settings_toml,
    wats_toml,
)

from handlers.wats.fake import FakeWATS

pytestmark = [pytest.mark.broker]

SHARDS = 6


@pytest.fixture
def names() -> Iterator[tuple[str, str, str]]:
    with distributed_names(SHARDS) as found:
        yield found


def _config(names: tuple[str, str, str], wats: FakeWATS, **amqp: Any) -> str:
    exchange, queue, dlx = names
    return "\n".join(
        [
            amqp_toml(exchange, queue, dlx, retry_delays=[1, 2], **amqp),
            wats_toml(wats.url, distributed=True),
            wats_settings_toml(),
        ]
    )


def _standby(names: tuple[str, str, str], wats: FakeWATS) -> str:
    return _config(names, wats, queue_type="quorum", single_active_consumer=True)


def _sharded(names: tuple[str, str, str], wats: FakeWATS) -> str:
    return _config(names, wats, shards=SHARDS, shard_rebalance_interval=0.5)


def _start(tmp: Path, name: str, config: str) -> ListenerProcess:
    directory = tmp / name
    directory.mkdir()
    return ListenerProcess(directory, config, env=clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN)).start()


def _accepted_submissions(wats: FakeWATS) -> list[str]:
    return [
        mid
        for rec in wats.requests
        if rec.method == "POST" and rec.path == "/api/Report/WSJF" and rec.status is not None
        if rec.status < 300 and (mid := report_message_id(rec.json or {}))
    ]


async def _owners(queue: str) -> set[int]:
    """The shards some listener owns now: their `.owner` queue is exclusive to another connection."""
    import aio_pika
    import aiormq.exceptions

    conn = await aio_pika.connect(RABBITMQ_URL)
    owned: set[int] = set()
    async with conn:
        for i in range(SHARDS):
            ch = await conn.channel()
            try:
                await ch.declare_queue(f"{queue}.shard-{i:03d}.owner", passive=True)
            except aiormq.exceptions.ChannelLockedResource:
                owned.add(i)
                continue
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue
            with contextlib.suppress(Exception):
                await ch.close()
    return owned


@pytest.mark.timeout(150)
def test_hot_standby_takes_over_after_kill_9_and_loses_nothing(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS
) -> None:
    wats.latency = 0.005  # so the kill lands mid-stream
    first = _start(tmp_path, "a", _standby(names, wats))
    second = _start(tmp_path, "b", _standby(names, wats))
    listeners = [first, second]
    try:
        bodies, index = unit_messages(600, 30, "standby")
        asyncio.run(publish(names[0], bodies))
        wait_until(lambda: len(reported_message_ids(wats)) >= 100, 60, interval=0.1, what="first reports")
        active = max(listeners, key=lambda p: p.metric("pywats_messages_received_total"))
        standby = second if active is first else first
        assert standby.metric("pywats_messages_received_total") == 0, "only one listener consumes"
        active.kill()
        killed_at = time.monotonic()
        before = len(reported_message_ids(wats))
        assert before < 600, "the kill must land mid-stream"
        wait_until(
            lambda: len(reported_message_ids(wats)) > before, 10, interval=0.1, what="the standby delivers"
        )
        assert time.monotonic() - killed_at < 10
        wait_until(lambda: len(reported_message_ids(wats)) >= 600, 60, what="all 600 reports")
    finally:
        stop_all(listeners)
    assert reported_message_ids(wats) == set(index)
    order_kept(wats, index)
    # a report may be submitted twice only when the kill fell between its WATS call and the ack
    submissions = _accepted_submissions(wats)
    assert len(submissions) - len(set(submissions)) <= 200  # at most the killed listener's prefetch
    assert len(wats.reports) == 600


@pytest.mark.timeout(170)
def test_three_sharded_listeners_keep_unit_order_and_survive_a_kill_9(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS
) -> None:
    """Default run: 1,200 messages over 120 units (the issue's 3,000 units: the slow variant below)."""
    _sharded_run(tmp_path, names, wats, messages=1200, units=120)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_three_sharded_listeners_3000_units(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS
) -> None:
    _sharded_run(tmp_path, names, wats, messages=9000, units=3000)


def _sharded_run(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS, *, messages: int, units: int
) -> None:
    wats.latency = 0.005
    queue = names[1]
    listeners = [_start(tmp_path, n, _sharded(names, wats)) for n in ("a", "b", "c")]
    try:
        # every listener takes its share: 6 shards over 3 listeners, all owned
        wait_until(lambda: asyncio.run(_owners(queue)) == set(range(SHARDS)), 20, what="all shards owned")
        wait_until(
            lambda: all(p.metric("pywats_amqp_shards_owned") == SHARDS // 3 for p in listeners),
            20,
            what="two shards per listener",
        )
        bodies, index = unit_messages(messages, units, "shards")
        asyncio.run(publish(names[0], bodies))
        wait_until(
            lambda: len(reported_message_ids(wats)) >= messages // 5, 90, interval=0.1, what="first reports"
        )
        victim = listeners[0]
        victim.kill()
        killed_at = time.monotonic()
        assert len(reported_message_ids(wats)) < messages, "the kill must land mid-stream"
        wait_until(
            lambda: sum(p.metric("pywats_amqp_shards_owned") for p in listeners[1:]) == SHARDS,
            10,
            interval=0.2,
            what="the killed listener's shards moved to the survivors",
        )
        assert time.monotonic() - killed_at < 10
        wait_until(lambda: len(reported_message_ids(wats)) >= messages, 120, what=f"all {messages} reports")
        survivors = listeners[1:]
        assert all(p.metric("pywats_messages_received_total") > 0 for p in survivors)
    finally:
        stop_all(listeners)
    assert reported_message_ids(wats) == set(index)
    order_kept(wats, index)
    assert len(wats.reports) == messages
    assert asyncio.run(queue_depth(f"{queue}.dead-letter")) == 0


@pytest.mark.timeout(120)
def test_takeover_puts_parked_copies_before_later_messages_of_their_units(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS
) -> None:
    """The previous owner parked message 0 of 40 units in a delay queue and died holding their messages
    1 and 2.

    The broker hands the 80 back at the head of the queue, while the copies of the 0s came back to its
    tail: the next owner must still submit 0, 1, 2 for every unit (all of it fits its prefetch, so the
    follow-mode marker behind them arrives while most are still waiting for their turn)."""
    exchange, queue, _dlx = names
    first = _start(tmp_path, "a", _standby(names, wats))  # declares the topology
    first.stop()
    made = {
        (u, i): units_tested(u * 3 + i, f"UT-takeover-{u:02d}", "takeover")
        for u in range(40)
        for i in range(3)
    }
    held = [made[u, i][1] for i in (1, 2) for u in range(40)]
    asyncio.run(_leave_a_dead_owners_queue(exchange, queue, held, [made[u, 0][1] for u in range(40)]))
    second = _start(tmp_path, "b", _standby(names, wats))
    try:
        wait_until(lambda: len(reported_message_ids(wats)) >= 120, 60, what="the 120 reports")
    finally:
        second.stop()
    order = {uid: key for key, (uid, _body) in made.items()}
    seen: dict[int, list[int]] = defaultdict(list)
    for uid in _accepted_submissions(wats):
        unit, i = order[uid]
        if i not in seen[unit]:
            seen[unit].append(i)
    assert {u: seen[u] for u in range(40) if seen[u] != [0, 1, 2]} == {}


async def _leave_a_dead_owners_queue(
    exchange: str, queue: str, held: list[bytes], parked: list[bytes]
) -> None:
    """`held` delivered to a consumer that goes away without settling them (so they come back first,
    redelivered), then copies of `parked` back from a delay queue, as a previous owner left them."""
    import aio_pika

    from pywats_cfx.amqp.topology import (
        HEADER_ATTEMPT,
        HEADER_DELAYED,
        HEADER_PARK,
        HEADER_QUEUE,
        HEADER_RETURN,
        HEADER_ROUTING_KEY,
        HEADER_SEQ,
    )

    await publish(exchange, held)
    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        holder = await conn.channel()
        q = await holder.declare_queue(queue, passive=True)
        taken: asyncio.Queue[Any] = asyncio.Queue()
        await q.consume(taken.put)  # never settled
        for _ in held:
            await asyncio.wait_for(taken.get(), 10)
        await holder.close()  # the owner dies: they go back to the head of the queue
        ch = await conn.channel(publisher_confirms=True)
        first_parked = time.time_ns() - 10_000_000_000
        for n, body in enumerate(parked):
            headers: dict[str, Any] = {
                HEADER_ATTEMPT: 1,
                HEADER_DELAYED: True,
                HEADER_PARK: uuid.uuid4().hex,
                HEADER_SEQ: first_parked + n,
                HEADER_QUEUE: queue,
                HEADER_RETURN: queue,
                HEADER_ROUTING_KEY: f"line1.{UNITS_TESTED}",
            }
            message = aio_pika.Message(body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await ch.default_exchange.publish(message, routing_key=queue)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wats_down_60s_work_waits_on_the_broker_not_in_a_process(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS
) -> None:
    queue = names[1]
    wats.add_asset("FX-OUT")
    counting = _sharded(names, wats).replace("enable_assets = false", "enable_assets = true") + "\n".join(
        [
            "[handlers.wats.asset]",
            "count_usage = true",
            "[handlers.wats.assets]",
            f'"{_station()}" = "FX-OUT"',
        ]
    )
    listeners = [_start(tmp_path, n, counting) for n in ("a", "b", "c")]
    try:
        wait_until(lambda: asyncio.run(_owners(queue)) == set(range(SHARDS)), 20, what="all shards owned")
        bodies, index = unit_messages(900, 90, "outage")
        asyncio.run(publish(names[0], bodies[:100]))
        wait_until(lambda: len(reported_message_ids(wats)) >= 100, 30, what="traffic before the outage")
        wats.inject("error", status=503, duration=60)
        asyncio.run(publish(names[0], bodies[100:]))
        # no listener holds a message for longer than the retry delay: the work waits on the broker
        wait_until(
            lambda: sum(p.metric("pywats_amqp_retried_messages") for p in listeners) >= 800,
            40,
            what="every message handed to a delay queue",
        )
        listeners[0].kill()  # its share is delivered by the others after the outage
        wait_until(lambda: len(reported_message_ids(wats)) >= 900, 150, what="all reports after recovery")
        wait_until(lambda: wats.assets["FX-OUT"]["totalCount"] >= 900, 60, what="every unit counted")
    finally:
        stop_all(listeners)
    assert reported_message_ids(wats) == set(index)
    order_kept(wats, index)
    assert asyncio.run(queue_depth(f"{queue}.dead-letter")) == 0
    assert wats.assets["FX-OUT"]["totalCount"] == 900  # usage counts too: waited on the broker, none twice


def _station() -> str:
    from pywats_cfx.samples import load_sample

    return str(json.loads(load_sample("units_tested_fct"))["Source"])


def test_permanent_failure_is_dead_lettered_on_the_broker_with_the_reason(
    tmp_path: Path, names: tuple[str, str, str], wats: FakeWATS
) -> None:
    listener = _start(tmp_path, "a", _standby(names, wats))
    try:
        wats.inject("error", status=400, count=1)
        bodies, _index = unit_messages(3, 3, "permanent")
        asyncio.run(publish(names[0], bodies))
        wait_until(lambda: len(reported_message_ids(wats)) >= 2, 30, what="the two good reports")
        wait_until(
            lambda: asyncio.run(queue_depth(f"{names[1]}.dead-letter")) == 1, 30, what="one dead letter"
        )
    finally:
        listener.stop()
    entry = asyncio.run(_first_dead_letter(f"{names[1]}.dead-letter"))
    assert entry["x-pywats-handlers"] and "400" in entry["x-pywats-reason"]
    assert entry["x-pywats-queue"] == names[1]


async def _first_dead_letter(name: str) -> dict[str, Any]:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(name, passive=True)
        message = await q.get(no_ack=False)
        assert message is not None
        headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (message.headers or {}).items()}
        await message.nack(requeue=True)
        return json.loads(json.dumps(headers, default=str))
