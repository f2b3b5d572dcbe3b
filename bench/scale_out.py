"""Benchmark: end-to-end throughput of the sharded distributed mode with 1, 2 and 3 listener processes,
and the failover time after a kill -9.

Each round declares its own names on the RabbitMQ at ``CFX_AMQP_URL`` (default amqp://guest:guest@
127.0.0.1/), starts N `pywats-events run` processes with ``shards = 6`` against a FakeWATS over HTTP,
publishes `--messages` UnitsTested messages over `--units` units and times first publish → last report.
The failover round kills one of 3 listeners mid-stream and times kill → its shards owned by the others.
The usage-count round runs 3 listeners with `asset.count_usage` on (every unit counted by the single
writer, `handlers/usage_writer.py`) and times first publish → last report and → the asset's count complete.
On a 2-core machine the listeners, the broker and FakeWATS share the cores: the figure shows the
overhead of the extra hops more than a speed-up. Needs rabbitmq_consistent_hash_exchange.

    python bench/scale_out.py [--messages 3000] [--units 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from handlers.wats.fake import FakeWATS

URL = os.environ.get("CFX_AMQP_URL", "amqp://guest:guest@127.0.0.1/")
SHARDS = 6
TOKEN = FakeWATS.make_token("bench", "bench-pw")


def _body(seq: int, unit: str, run: str) -> bytes:
    from pywats_cfx.samples import load_sample

    env = json.loads(load_sample("units_tested_fct"))
    env["UniqueID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{seq}"))
    body = env["MessageBody"]
    body["TransactionId"] = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{run}/{seq}"))
    body["TestedUnits"] = body["TestedUnits"][:1]
    body["TestedUnits"][0]["UnitIdentifier"] = unit
    return json.dumps(env).encode()


async def _publish(exchange: str, bodies: list[bytes]) -> None:
    import aio_pika

    conn = await aio_pika.connect(URL)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        for i in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    ex.publish(
                        aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "bench.UT"
                    )
                    for b in bodies[i : i + 500]
                )
            )


async def _delete(exchange: str, queue: str) -> None:
    import aio_pika

    conn = await aio_pika.connect(URL)
    async with conn:
        names = [queue, f"{queue}.dead-letter", f"{queue}.listeners", f"{queue}.retry-5s"]
        names += [f"{queue}.retry-{d}s" for d in (30, 120)]
        names += [f"{queue}.shard-{i:03d}" for i in range(SHARDS)]
        names += [
            f"{queue}.work-transactions",
            f"{queue}.writer-asset-usage",
            f"{queue}.writer-asset-usage.ledger",
        ]
        for name in names:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.queue_delete(name)
        for name in (exchange, f"{exchange}.dlx", f"{queue}.shards", f"{queue}.retry-return"):
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.exchange_delete(name)


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


ASSET = "BENCH-FX"


def _station() -> str:
    from pywats_cfx.samples import load_sample

    return str(json.loads(load_sample("units_tested_fct"))["Source"])


def _start(
    tmp: Path, name: str, exchange: str, queue: str, wats: FakeWATS, port: int, *, count: bool = False
) -> subprocess.Popen[Any]:
    d = tmp / name
    d.mkdir()
    cfg = d / "listener.toml"
    cfg.write_text(
        "\n".join(
            [
                "[amqp]",
                f'url = "{URL}"',
                f'exchange = "{exchange}"',
                f'queue = "{queue}"',
                f"shards = {SHARDS}",
                "shard_rebalance_interval = 0.5",
                "[plugins.amqp]",
                f'dead_letter_exchange = "{exchange}.dlx"',
                "[wats]",
                f'url = "{wats.url}"',
                "rate_limit_per_minute = 6000000",
                "[listener]",
                "distributed = true",
                "progress = false",
                "[handlers.wats]",
                'location = "Bench line"',
                'default_part_number = "MB-4471"',
                'default_revision = "C"',
                "default_process_code = 10",
                "lookup_part_number = false",
                "lookup_processes = false",
                f"enable_assets = {'true' if count else 'false'}",
                "enable_production = false",
                *(
                    [
                        "[handlers.wats.asset]",
                        "count_usage = true",
                        "[handlers.wats.assets]",
                        f'"{_station()}" = "{ASSET}"',
                    ]
                    if count
                    else []
                ),
            ]
        )
    )
    exe = Path(sys.executable).with_name("pywats-events")
    cmd = [str(exe) if exe.exists() else shutil.which("pywats-events") or "pywats-events"]
    env = {**os.environ, "WATS_AUTH_TOKEN": TOKEN}
    log = (d / "listener.log").open("w")
    args = ["run", "--config", str(cfg), "--data-dir", str(d), "--metrics-port", str(port)]
    return subprocess.Popen([*cmd, *args], cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _round(
    listeners: int, messages: int, units: int, *, kill: bool = False, count: bool = False
) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    exchange, queue = f"bench-cfx-{run}", f"bench-q-{run}"
    ports = [18600 + i + (hash(run) % 200) * 4 for i in range(listeners)]
    procs: list[subprocess.Popen[Any]] = []
    with FakeWATS(token=TOKEN) as wats, tempfile.TemporaryDirectory() as tmp:
        try:
            wats.add_asset(ASSET)
            procs = [
                _start(Path(tmp), f"l{i}", exchange, queue, wats, ports[i], count=count)
                for i in range(listeners)
            ]
            owned = lambda ps=ports: sum(_metric(p, "pywats_amqp_shards_owned") for p in ps)  # noqa: E731
            if not _wait(lambda: owned() == SHARDS, 60):
                raise SystemExit("listeners did not take the shards; see their logs")
            bodies = [_body(i, f"U-{run}-{i % units:04d}", run) for i in range(messages)]
            t0 = time.monotonic()
            asyncio.run(_publish(exchange, bodies))
            out: dict[str, float] = {}
            if kill:
                _wait(lambda: len(wats.reports) >= messages // 3, 120)
                procs[0].send_signal(signal.SIGKILL)
                t_kill = time.monotonic()
                _wait(lambda: owned(ports[1:]) == SHARDS, 60)
                out["failover_s"] = time.monotonic() - t_kill
            if not _wait(lambda: len(wats.reports) >= messages, 600):
                raise SystemExit(
                    f"only {len(wats.reports)} of {messages} reports arrived; see the listener logs"
                )
            out["seconds"] = time.monotonic() - t0
            out["reports_per_s"] = len(wats.reports) / out["seconds"]
            if count:
                if not _wait(lambda: wats.assets[ASSET]["totalCount"] >= messages, 300):
                    raise SystemExit(f"the asset was counted {wats.assets[ASSET]['totalCount']} times")
                out["counted_s"] = time.monotonic() - t0
                out["count"] = wats.assets[ASSET]["totalCount"]
            return out
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(30)
            asyncio.run(_delete(exchange, queue))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--units", type=int, default=300)
    args = ap.parse_args()
    print(
        f"{args.messages} UnitsTested messages over {args.units} units, {SHARDS} shards, FakeWATS over HTTP"
    )
    base = 0.0
    for n in (1, 2, 3):
        r = _round(n, args.messages, args.units)
        base = r["reports_per_s"]
        print(f"  {n} listener(s): {r['reports_per_s']:8.0f} reports/s end to end ({r['seconds']:.1f} s)")
    r = _round(3, args.messages, args.units, count=True)
    ratio = r["reports_per_s"] / base
    print(
        f"  3 listeners, usage counts on: {r['reports_per_s']:8.0f} reports/s ({ratio:.2f}x of counts off);"
        f" asset counted {r['count']:.0f} times, complete after {r['counted_s']:.1f} s"
    )
    r = _round(3, args.messages, args.units, kill=True)
    took = r["failover_s"]
    print(f"  failover: kill -9 of 1 of 3 listeners -> its shards owned by the others in {took:.1f} s")


if __name__ == "__main__":
    main()
