"""Helpers for the listener tests: the real `pywats-events` console script, RabbitMQ, CFX traffic."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brokers import RABBITMQ_URL, require_rabbitmq

from handlers.wats.fake import FakeWATS


def cli_path() -> str:
    exe = Path(sys.executable).with_name("pywats-events")
    if exe.exists():
        return str(exe)
    found = shutil.which("pywats-events")
    if found is None:
        pytest.fail("the pywats-events console script is not installed (pip install -e .)")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWATS_EVENTS_", "WATS_", "CFX_AMQP"))}
    env.update(extra)
    return env


def run_cli(
    *args: str | Path, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_path(), *map(str, args)],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


class Cli:
    """Runs the console script; `env` extras are added to a clean environment."""

    def __call__(
        self, *args: str | Path, cwd: Path, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=cwd, timeout=timeout, env=clean_env(**env))

    path = staticmethod(cli_path)
    env = staticmethod(clean_env)


# ------------------------------------------------------------------ acceptance helpers

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"
#: the WATS token the listener tests give their listeners and the `wats` fixture's FakeWATS
LISTENER_TOKEN = FakeWATS.make_token("listener", "s3cret-pw")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_TEMPLATE: dict[str, Any] | None = None


def units_tested(seq: int, unit: str, run_id: str) -> tuple[str, bytes]:
    """A small valid UnitsTested envelope for `unit`; returns (message UniqueID, body)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from pywats_cfx.samples import load_sample

        _TEMPLATE = json.loads(load_sample("units_tested_fct"))
        body = _TEMPLATE["MessageBody"]
        body["TestedUnits"] = body["TestedUnits"][:1]
        body["TestedUnits"][0]["Tests"] = body["TestedUnits"][0]["Tests"][:2]
    env = copy.deepcopy(_TEMPLATE)
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{seq}"))
    env["UniqueID"] = uid
    env["MessageBody"]["TransactionId"] = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{run_id}/{seq}"))
    env["MessageBody"]["TestedUnits"][0]["UnitIdentifier"] = unit
    return uid, json.dumps(env).encode()


async def publish(exchange: str, bodies: list[bytes], routing_key: str = f"line1.{UNITS_TESTED}") -> None:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        for i in range(0, len(bodies), 200):
            await asyncio.gather(
                *(
                    ex.publish(
                        aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key
                    )
                    for b in bodies[i : i + 200]
                )
            )


async def delete_topology(exchange: str | None, queue: str, dlx: str, *, shards: int | None = None) -> None:
    """Delete what a listener declared for `queue` (`exchange` None: the broker's own, e.g. amq.topic,
    stays). With `shards` (distributed mode), also its presence queue, shard queues, delay queues and
    their exchanges. Each name on a channel of its own: a failed delete closes the channel."""
    import aio_pika

    queues = [queue, f"{queue}.dead-letter"]
    exchanges = [name for name in (exchange, dlx) if name]
    if shards is not None:
        queues += [f"{queue}.listeners"]
        queues += [f"{queue}.shard-{i:03d}" for i in range(shards)]
        queues += [f"{queue}.retry-{d}s" for d in ("1", "2", "5", "30", "120")]
        queues += [f"{queue}.writer-asset-usage", f"{queue}.writer-asset-usage.ledger"]
        queues += [f"{queue}.work-transactions"]
        exchanges += [f"{queue}.shards", f"{queue}.retry-return"]
    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        for name in queues:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.queue_delete(name)
        for name in exchanges:
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.exchange_delete(name)


@contextlib.contextmanager
def distributed_names(shards: int) -> Iterator[tuple[str, str, str]]:
    """(exchange, queue, dead-letter exchange) of this test's own, and everything a distributed listener
    declares for them deleted afterwards."""
    require_rabbitmq()
    uid = uuid.uuid4().hex[:10]
    found = (f"test-cfx-{uid}", f"test-q-{uid}", f"test-dlx-{uid}")
    try:
        yield found
    finally:
        asyncio.run(delete_topology(*found, shards=shards))


def wats_toml(url: str, **listener: Any) -> str:
    """The `[wats]` table for a FakeWATS at `url` (its rate limit out of the way) and the `[listener]` table:
    a 15 s drain unless `listener` says otherwise, and the other keys of `listener`."""
    keys = {"drain_timeout": 15, **listener}
    return "\n".join(
        [
            "[wats]",
            f'url = "{url}"',
            "rate_limit_per_minute = 600000",
            "timeout = 5",
            "[listener]",
            *(f"{k} = {json.dumps(v)}" for k, v in keys.items()),
        ]
    )


def wats_settings_toml() -> str:
    return (
        "[handlers.wats]\n"
        'location = "Test line"\n'
        'default_part_number = "MB-4471"\n'
        'default_revision = "C"\n'
        "default_process_code = 10\n"
        "lookup_part_number = false\n"
        "lookup_processes = false\n"
        "enable_assets = false\n"
        "enable_production = false\n"
    )


class ListenerProcess:
    """`pywats-events run` as a subprocess, with its own data dir, config and metrics port."""

    def __init__(self, tmp: Path, config: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.cfg = tmp / "listener.toml"
        self.cfg.write_text(config)
        self.args = ["run", "--config", str(self.cfg), "--metrics-port", str(self.port), *args]
        self.env = env or clean_env()
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp / "listener.log"

    def start(self, ready_timeout: float = 30) -> ListenerProcess:
        fh = self.log.open("a")
        self.proc = subprocess.Popen(
            [cli_path(), *self.args],
            cwd=self.tmp,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"listener exited early ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
                )
            if self.http("/readyz")[0] == 200:
                return self
            time.sleep(0.2)
        pytest.fail(f"listener not ready in {ready_timeout}s:\n{self.log.read_text()[-3000:]}")

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        _, text = self.http("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"listener did not stop within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def wait_until(predicate: Any, timeout: float, interval: float = 0.5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def amqp_toml(exchange: str, queue: str, dlx: str, **extra: Any) -> str:
    lines = [
        "[amqp]",
        f'url = "{RABBITMQ_URL}"',
        f'exchange = "{exchange}"',
        f'queue = "{queue}"',
        "[plugins.amqp]",
        f'dead_letter_exchange = "{dlx}"',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def report_message_id(report: dict[str, Any]) -> str | None:
    """The CFX UniqueID a WSJF report was made from (its "Message id" misc info)."""
    for info in report.get("miscInfos") or []:
        if info.get("description") == "Message id":
            return str(info.get("text"))
    return None


def reported_message_ids(wats: Any) -> set[str]:
    """CFX UniqueIDs of the messages behind the reports a FakeWATS holds."""
    return {mid for r in wats.reports.values() if (mid := report_message_id(r))}


def unit_messages(n: int, units: int, run_id: str) -> tuple[list[bytes], dict[str, tuple[str, int]]]:
    """`n` UnitsTested bodies over `units` units, round robin; and message id -> (unit, sequence number)."""
    bodies, index = [], {}
    for i in range(n):
        unit = f"UT-{run_id}-{i % units:03d}"
        uid, body = units_tested(i, unit, run_id)
        bodies.append(body)
        index[uid] = (unit, i)
    return bodies, index


def order_kept(wats: Any, index: dict[str, tuple[str, int]]) -> None:
    """Per unit, the first accepted submission of each report arrives in message order."""
    seen: set[str] = set()
    last: dict[str, int] = defaultdict(lambda: -1)
    for rec in wats.requests:
        if rec.method != "POST" or rec.path != "/api/Report/WSJF" or rec.status is None or rec.status >= 300:
            continue
        mid = report_message_id(rec.json or {})
        if mid is None or mid in seen or mid not in index:
            continue
        seen.add(mid)
        unit, seq = index[mid]
        assert seq > last[unit], f"unit {unit}: message {seq} reached WATS after {last[unit]}"
        last[unit] = seq


async def queue_depth(name: str) -> int:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(name, passive=True)
        return int(q.declaration_result.message_count or 0)


def stop_all(listeners: list[ListenerProcess]) -> None:
    for listener in listeners:
        if listener.proc is not None and listener.proc.poll() is None:
            listener.stop()
