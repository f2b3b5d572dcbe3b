"""Benchmark: test-result events → ReportHandler → HttpSender → FakeWATS over loopback HTTP (keep-alive).

Two figures:
  1. throughput: reports/s with `--concurrency` events in flight, as fast as possible;
  2. latency at a paced `--rate` events/s: p50/p99 from the moment an event is due to the moment its
     WSJF request reaches the server (the server's arrival time, read back from its request log; both
     processes use this machine's wall clock), and to the moment the sender has the answer.

FakeWATS runs in its own process (``python -m handlers.wats.fake``), as a real server would; in one
process its threads and the event loop would fight over the GIL and the figures would measure that.
The client-side rate limit (default 500/min in production) is raised here, otherwise it would be the
only thing measured.

    python bench/wats_sink.py [--events 2000] [--concurrency 32] [--rate 200] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from handlers.wats.fake import FakeWATS
from handlers.wats.sender import HttpSender
from handlers.wats.sink import WatsRequest
from pywats_events import Event, EventMetadata, EventType

STATION = "//Acme/Line3/ICT-01"
TOKEN = FakeWATS.make_token("bench", "bench")


def make_event(n: int) -> Event:
    from pywats_events.payloads import Measurement, Operator, StepResult, TestResultEvent, TestStep

    t0 = datetime.now(timezone.utc)
    result = TestResultEvent(
        unit_serial=f"BENCH{n:07d}",
        station=STATION,
        message_id=str(uuid.uuid4()),
        timestamp=t0,
        result=StepResult.PASSED,
        method="ICT",
        recipe="PCBA-100-ICT",
        start=t0 - timedelta(seconds=12),
        end=t0,
        operator=Operator(login_name="bench"),
        tests=[
            TestStep(
                name=f"Rail {i}",
                result=StepResult.PASSED,
                measurements=[
                    Measurement(
                        name=f"V{i}",
                        value=3.3,
                        units="V",
                        low_limit=3.2,
                        high_limit=3.4,
                        result=StepResult.PASSED,
                    )
                ],
            )
            for i in range(10)
        ],
    )
    return Event(
        event_type=EventType.TEST_RESULT,
        payload=result.model_dump(mode="json"),
        metadata=EventMetadata(source=STATION),
    )


def fallback_report(event: Event) -> dict[str, Any]:
    """A WSJF document built here, for trees without `handlers.report` yet."""
    p = event.payload
    return {
        "type": "T",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{p['message_id']}/{p['unit_serial']}")),
        "pn": "PCBA-100",
        "sn": p["unit_serial"],
        "rev": "A",
        "processCode": 10,
        "result": "P",
        "machineName": "ICT-01",
        "location": "Line 3",
        "purpose": "Production",
        "start": p["start"],
        "uut": {"user": "bench", "execTime": 12.0},
        "root": {
            "stepType": "SequenceCall",
            "name": "MainSequence Callback",
            "status": "P",
            "seqCall": {"path": "C:/SequenceCall.seq", "name": "TestSequence.seq", "version": "1.0.0"},
            "steps": [
                {
                    "stepType": "ET_NLT",
                    "name": t["name"],
                    "status": "P",
                    "numericMeas": [
                        {
                            "status": "P",
                            "value": 3.3,
                            "unit": "V",
                            "compOp": "GELE",
                            "lowLimit": 3.2,
                            "highLimit": 3.4,
                        }
                    ],
                }
                for t in p["tests"]
            ],
        },
    }


async def make_pipeline(sender: HttpSender) -> tuple[str, Callable[[Event], Awaitable[None]]]:
    try:
        from handlers.config import WatsHandlersConfig
        from handlers.report import ReportHandler
    except ImportError:

        async def send(event: Event) -> None:
            await sender.send(WatsRequest("POST", "/api/Report/WSJF", json=fallback_report(event)))

        return "fallback WSJF builder", send
    config = WatsHandlersConfig(
        lookup_part_number=False, default_part_number="PCBA-100", default_revision="A", location="Line 3"
    )
    handler = ReportHandler(sender, config)
    await handler.on_start()  # loads GET /api/App/Processes once
    return "ReportHandler", handler.handle


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def requests_seen(url: str) -> list[dict[str, Any]]:
    """The server's request log (without bodies)."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{url}/_fake/requests")
    response.raise_for_status()
    log: list[dict[str, Any]] = response.json()
    return log


async def throughput(url: str, args: argparse.Namespace) -> None:
    async with HttpSender(
        url, TOKEN, rate_limit_per_minute=10**9, max_connections=args.connections
    ) as sender:
        name, handle = await make_pipeline(sender)
        events = [make_event(n) for n in range(args.events)]
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for event in events:
            queue.put_nowait(event)

        async def worker() -> None:
            while not queue.empty():
                await handle(queue.get_nowait())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    seen = [r for r in await requests_seen(url) if r["path"] == "/api/Report/WSJF" and r["status"] == 200]
    stored = len({r["id"] for r in seen})
    peers = len({r["peer"] for r in seen})
    print(f"pipeline: events -> {name} -> HttpSender -> FakeWATS (HTTP/1.1 keep-alive, loopback)")
    print(
        f"throughput: {args.events} reports in {elapsed:.2f} s = {args.events / elapsed:.0f} reports/s "
        f"(concurrency {args.concurrency}, {peers} TCP connections, {stored} reports stored)"
    )


async def latency(url: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        (await client.post(f"{url}/_fake/reset")).raise_for_status()
    async with HttpSender(
        url, TOKEN, rate_limit_per_minute=10**9, max_connections=args.connections
    ) as sender:
        _, handle = await make_pipeline(sender)
        count = int(args.rate * args.duration)
        events = [make_event(n) for n in range(count)]
        due: dict[str, float] = {}
        answered: dict[str, float] = {}
        tasks = []

        async def one(event: Event, at: float) -> None:
            await handle(event)
            answered[event.payload["unit_serial"]] = time.time() - at

        start = time.time() + 0.1
        for n, event in enumerate(events):
            at = start + n / args.rate
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due[event.payload["unit_serial"]] = at
            tasks.append(asyncio.create_task(one(event, at)))
        await asyncio.gather(*tasks)
    arrived = {
        r["sn"]: r["time"] - due[r["sn"]]
        for r in await requests_seen(url)
        if r["path"] == "/api/Report/WSJF" and r.get("sn") in due
    }
    to_request = [v * 1000 for v in arrived.values()]
    to_answer = [v * 1000 for v in answered.values()]
    print(
        f"latency at {args.rate:g} events/s for {args.duration:g} s ({count} events, {len(arrived)} arrived):"
    )
    print(
        f"  event -> request at WATS: p50 {statistics.median(to_request):.2f} ms, "
        f"p99 {pct(to_request, 99):.2f} ms, max {max(to_request):.2f} ms"
    )
    print(
        f"  event -> answer received: p50 {statistics.median(to_answer):.2f} ms, "
        f"p99 {pct(to_answer, 99):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000, help="events for the throughput run")
    parser.add_argument("--concurrency", type=int, default=32, help="events in flight for the throughput run")
    parser.add_argument("--connections", type=int, default=20, help="HTTP connection pool size")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s for the latency run")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of the latency run")
    args = parser.parse_args()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "handlers.wats.fake", "--port", str(port), "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "FakeWATS listening on ..."
        url = f"http://127.0.0.1:{port}"

        async def run() -> None:
            await throughput(url, args)
            await latency(url, args)

        asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
