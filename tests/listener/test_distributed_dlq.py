"""`pywats-events dlq` in distributed mode: the dead letters are on the broker, and the command works there.

A real listener dead-letters what FakeWATS refuses for good; the command (a real subprocess) lists and
shows them without taking them off the queue, replays one back to the running listener and purges the
rest after asking.
"""

from __future__ import annotations

import asyncio
import json
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
    publish,
    reported_message_ids,
    run_cli,
    units_tested,
    wait_until,
    wats_settings_toml,
)

from handlers.wats.fake import FakeWATS

pytestmark = [pytest.mark.broker]

SHARDS = 2


@pytest.fixture
def names() -> Iterator[tuple[str, str, str]]:
    with distributed_names(SHARDS) as found:
        yield found


async def _depth(name: str) -> int:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        q = await (await conn.channel()).declare_queue(name, passive=True)
        return int(q.declaration_result.message_count or 0)


def _entries(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shards", [0, SHARDS], ids=["standby", "sharded"])
def test_dlq_lists_shows_replays_and_purges_the_brokers_dead_letters(
    tmp_path: Path, names: tuple[str, str, str], shards: int
) -> None:
    exchange, queue, dlx = names
    dead_letter_queue = f"{queue}.dead-letter"
    extra: dict[str, Any] = {"shards": shards, "shard_rebalance_interval": 0.5} if shards else {}
    config = "\n".join(
        [
            amqp_toml(exchange, queue, dlx, retry_delays=[1], queue_type="quorum", **extra),
            "[wats]",
            'url = "{url}"',
            "[listener]",
            "distributed = true",
            "drain_timeout = 10",
            wats_settings_toml(),
        ]
    )
    with FakeWATS(token=LISTENER_TOKEN) as wats:
        config = config.replace("{url}", wats.url)
        cfg = tmp_path / "listener.toml"
        cfg.write_text(config)
        (tmp_path / "listener").mkdir()
        env = clean_env(WATS_AUTH_TOKEN=LISTENER_TOKEN)
        listener = ListenerProcess(tmp_path / "listener", config, env=env).start()
        try:
            wats.inject("error", status=400, count=2)  # refused for good: two dead letters
            sent = dict(units_tested(i, f"UT-dlq-{i}", queue) for i in range(4))
            asyncio.run(publish(exchange, list(sent.values())))
            wait_until(lambda: asyncio.run(_depth(dead_letter_queue)) == 2, 30, what="two dead letters")
            wait_until(lambda: len(reported_message_ids(wats)) == 2, 30, what="the two good reports")
            dead = set(sent) - reported_message_ids(wats)

            def dlq(*args: str, **kw: Any) -> Any:
                return run_cli("dlq", *args, "--config", cfg, cwd=tmp_path, **kw)

            listed = dlq("list", "--json")
            assert listed.returncode == 0, listed.stderr
            entries = _entries(listed.stdout)
            assert {e["id"] for e in entries} == dead
            assert all("400" in e["error"] and e["handlers"] for e in entries)
            assert asyncio.run(_depth(dead_letter_queue)) == 2, "listing takes nothing off the queue"

            first, second = sorted(dead)
            shown = dlq("show", first[:8])
            assert shown.returncode == 0, shown.stderr
            detail = json.loads(shown.stdout)
            assert detail["id"] == first and first in detail["body"]
            origins = (queue, *(f"{queue}.shard-{i:03d}" for i in range(SHARDS)))
            assert detail["headers"]["x-pywats-queue"] in origins
            assert asyncio.run(_depth(dead_letter_queue)) == 2, "showing takes nothing off the queue"

            replayed = dlq("replay", first)
            assert replayed.returncode == 0, replayed.stderr
            assert "replayed 1 " in replayed.stdout
            wait_until(lambda: first in reported_message_ids(wats), 30, what="the replayed report")
            assert asyncio.run(_depth(dead_letter_queue)) == 1

            declined = dlq("purge", input="n\n")
            assert declined.returncode != 0
            assert asyncio.run(_depth(dead_letter_queue)) == 1, "a declined purge deletes nothing"
            purged = dlq("purge", "--yes")
            assert purged.returncode == 0, purged.stderr
            assert "purged 1 " in purged.stdout
            assert asyncio.run(_depth(dead_letter_queue)) == 0
            assert second not in reported_message_ids(wats)
            assert _entries(dlq("list", "--json").stdout) == []
        finally:
            listener.stop()
