"""Bounded memory during a WATS outage: 100,000 CFX messages accepted by `pywats-events run` while WATS fails.

Starts FakeWATS answering 503, a real listener process on a fresh RabbitMQ queue, measures the listener's idle
RSS, publishes the messages (gzipped UnitsTested, as CFX endpoints send them) and samples RSS until every
message is accepted (journaled and acknowledged). Prints baseline, peak and the difference (target: < 150 MB).

    python bench/memory_outage.py [--messages 100000] [--amqp amqp://guest:guest@127.0.0.1:5672/]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import aio_pika
import psutil

from handlers.wats.fake import FakeWATS
from pywats_cfx.samples import load_sample

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bodies(n: int, run_id: str) -> list[bytes]:
    template = json.loads(load_sample("units_tested_fct"))
    body = template["MessageBody"]
    body["TestedUnits"] = body["TestedUnits"][:1]
    body["TestedUnits"][0]["Tests"] = body["TestedUnits"][0]["Tests"][:2]
    out = []
    for i in range(n):
        env = template  # serialized right away, so one mutable copy is enough
        env["UniqueID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{i}"))
        env["MessageBody"]["TestedUnits"][0]["UnitIdentifier"] = f"MEM-{i % 500:04d}"
        out.append(gzip.compress(json.dumps(env).encode(), 5))
    return out


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.split()[-1])
    return total


async def _publish(url: str, exchange: str, bodies: list[bytes]) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        for i in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    ex.publish(
                        aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        f"line1.{UNITS_TESTED}",
                    )
                    for b in bodies[i : i + 500]
                )
            )


async def _cleanup(url: str, exchange: str, queue: str, dlx: str) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel()
        for q in (queue, f"{queue}.dead-letter"):
            try:
                await ch.queue_delete(q)
            except Exception:
                ch = await conn.channel()
        for ex in (exchange, dlx):
            try:
                await ch.exchange_delete(ex)
            except Exception:
                ch = await conn.channel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    args = ap.parse_args()
    exe = shutil.which("pywats-events") or str(Path(sys.executable).with_name("pywats-events"))
    uid = uuid.uuid4().hex[:8]
    exchange, queue, dlx = f"bench-cfx-{uid}", f"bench-q-{uid}", f"bench-dlx-{uid}"
    token = FakeWATS.make_token("bench", "bench")
    port = _free_port()
    print(f"preparing {args.messages} messages ...", flush=True)
    bodies = _bodies(args.messages, uid)
    with FakeWATS(token=token) as wats, tempfile.TemporaryDirectory() as tmp:
        wats.inject("error", status=503)  # WATS down for the whole run
        cfg = Path(tmp) / "listener.toml"
        cfg.write_text(
            f'[amqp]\nurl = "{args.amqp}"\nexchange = "{exchange}"\nqueue = "{queue}"\n'
            f'[plugins.amqp]\ndead_letter_exchange = "{dlx}"\n'
            f'[wats]\nurl = "{wats.url}"\nrate_limit_per_minute = 600000\ntimeout = 5\n'
            '[listener]\ndrain_timeout = 5\nlog_level = "WARNING"\n'
            '[handlers.wats]\ndefault_part_number = "MB-4471"\ndefault_revision = "C"\n'
            "default_process_code = 10\nlookup_part_number = false\nlookup_processes = false\n"
            "enable_assets = false\nenable_production = false\n"
        )
        env = {"WATS_AUTH_TOKEN": token, "PATH": str(Path(sys.executable).parent)}
        proc = subprocess.Popen(
            [exe, "run", "--config", str(cfg), "--metrics-port", str(port)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "log.txt", "w"),
        )
        try:
            deadline = time.monotonic() + 30
            while _metric(port, "pywats_messages_received_total") < 0:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(
                        "listener did not start:\n" + (Path(tmp) / "log.txt").read_text()[-2000:]
                    )
                time.sleep(0.2)
            ps = psutil.Process(proc.pid)
            time.sleep(3)
            baseline = ps.memory_info().rss
            peak = baseline
            stop = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, ps.memory_info().rss)
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.monotonic()
            asyncio.run(_publish(args.amqp, exchange, bodies))
            t_pub = time.monotonic() - t0
            del bodies
            while _metric(port, "pywats_messages_received_total") < args.messages:
                if proc.poll() is not None:
                    raise SystemExit("listener died:\n" + (Path(tmp) / "log.txt").read_text()[-2000:])
                time.sleep(0.5)
            t_acc = time.monotonic() - t0
            depth = _metric(port, "pywats_journal_unfinished_entries")
            dead = _metric(port, "pywats_dead_letters_total")
            time.sleep(2)
            stop.set()
            sampler.join()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            asyncio.run(_cleanup(args.amqp, exchange, queue, dlx))
    mb = 1024 * 1024
    print(f"published {args.messages} messages in {t_pub:.1f}s; all accepted after {t_acc:.1f}s")
    print(f"journal depth at the end: {depth:.0f}   dead letters: {dead:.0f}")
    print(f"RSS idle baseline : {baseline / mb:8.1f} MB")
    print(f"RSS peak          : {peak / mb:8.1f} MB")
    print(f"peak - baseline   : {(peak - baseline) / mb:8.1f} MB  (target < 150 MB)")


if __name__ == "__main__":
    main()
