"""Webhook ingest: requests/s and latency to 202 for small and 45 KB CFX bodies, against a plain server.

The pipeline is the real one up to the journal: uvicorn + Starlette + `WebhookTransport` (HMAC check, CFX
codec, idempotency store) + `AsyncEventBus` with the SQLite journal (202 = committed) and a no-op handler. The
baseline is a plain Starlette app on the same uvicorn that only reads the body and answers 202. Both are
driven by the same httpx clients in the same event loop (so the client's CPU counts on both sides); the ratio
of the two rates is the figure.

    python bench/webhook_ingest.py [--requests 2000] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pywats_cfx import CFXCodec
from pywats_cfx.samples import load_sample
from pywats_events import AsyncEventBus, Event, EventType
from pywats_events.journal import SqliteJournal
from pywats_events.transports.webhook import Hook, HookAuth, WebhookSettings, WebhookTransport, sign

SECRET = "bench-secret"
DEDUPE = True


def bodies(target_size: int, count: int) -> list[bytes]:
    """`count` UnitsTested envelopes of about `target_size` bytes, each with its own UniqueID."""
    env = json.loads(load_sample("units_tested_fct"))
    unit = env["MessageBody"]["TestedUnits"][0]
    tests = unit["Tests"]
    unit["Tests"] = []
    while len(json.dumps(env)) < target_size:
        unit["Tests"].append(copy.deepcopy(tests[len(unit["Tests"]) % len(tests)]))
    if len(unit["Tests"]) > 1:
        unit["Tests"].pop()  # the last one made it larger than the target
    out = []
    for i in range(count):
        env["UniqueID"] = str(uuid.uuid4())
        unit["UnitIdentifier"] = f"BENCH-{i:06d}"
        out.append(json.dumps(env).encode())
    return out


async def drive(url: str, payloads: list[bytes], clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in payloads:
        queue.put_nowait(body)

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            while not queue.empty():
                body = queue.get_nowait()
                stamp = str(int(time.time()))
                headers = {"X-Pywats-Timestamp": stamp, "X-Pywats-Signature": sign(SECRET, stamp, body)}
                t0 = time.perf_counter()
                answer = await http.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                assert answer.status_code == 202, answer.text

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(payloads) / (time.perf_counter() - started), latencies


async def plain(payloads: list[bytes], clients: int) -> tuple[float, list[float]]:
    async def accept(request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    app = Starlette(routes=[Route("/hooks/{path:path}", accept, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_config=None, access_log=False, lifespan="off"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        return await drive(f"http://127.0.0.1:{port}/hooks/line1", payloads, clients)
    finally:
        server.should_exit = True
        await task


async def pipeline(payloads: list[bytes], clients: int, tmp: Path) -> tuple[float, list[float]]:
    async def noop(event: Event) -> None:
        return None

    hook = Hook("line1", CFXCodec(), HookAuth("hmac", SecretStr(SECRET)), dedupe_events=DEDUPE)
    transport = WebhookTransport(WebhookSettings(port=0), {"line1": hook}, keys_path=tmp / "keys.db")
    bus: Any = AsyncEventBus(journal=SqliteJournal(tmp / "journal.db"))
    bus.subscribe(noop, list(EventType))
    bus.register_transport(transport)
    await bus.start()
    try:
        return await drive(f"{transport.url}/hooks/line1", payloads, clients)
    finally:
        await bus.stop()


def row(name: str, rate: float, latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=100)
    return f"{name:<26} {rate:>9.0f} req/s   p50 {q[49] * 1e3:>7.2f} ms   p99 {q[98] * 1e3:>7.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    # the smallest UnitsTested (one unit, no tests) is about 4 KB: the sample's unit carries its context
    for label, size in (("smallest", 1024), ("45 KB", 45 * 1024)):
        payloads = bodies(size, args.requests)
        base_rate, base_lat = await plain(payloads, args.clients)
        with tempfile.TemporaryDirectory() as tmp:
            rate, lat = await pipeline(payloads, args.clients, Path(tmp))
        print(f"CFX UnitsTested, {label} ({len(payloads[0])} bytes), {args.clients} clients")
        print("  " + row("plain uvicorn (read, 202)", base_rate, base_lat))
        print("  " + row("webhook → journal", rate, lat))
        print(f"  ratio: {rate / base_rate:.2f} of the plain server's rate")


if __name__ == "__main__":
    asyncio.run(main())
