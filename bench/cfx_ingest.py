"""CFX ingest: raw aio-pika consume+ack vs CFXTransport → codec → mapping → AsyncEventBus → no-op handler.

One run publishes N gzipped envelopes to a fresh topic exchange bound to several queues, so every consumer
gets the very same messages; it then drains queue A with a bare aio-pika consumer that only acks, and queue B
with the full pipeline (ack after the bus accepted, i.e. after the no-op handler ran). Both use the same
prefetch. Prints both rates and the ratio.

Modes: ``ict`` sends the bundled 44 KB ICT UnitsTested (unique serial and UniqueID each); ``mixed`` sends the
line simulator's traffic (`samples/line_simulator.py`: WorkStarted, a small UnitsTested and WorkCompleted
per unit, faults with their state changes), each with its own SDK routing key. ``main`` is the whole main
job on the mixed stream: the journal, and the WATS handlers writing to the local outbox instead of the
no-op handler; its clock stops when every journal entry is complete (each message acked and handled).

    python bench/cfx_ingest.py [--mode ict|mixed|main] [--count 20000] [--prefetch 128] [--profile]
                               [--url amqp://guest:guest@127.0.0.1/]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import gc
import gzip
import io
import json
import pstats
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from pywats_cfx import CFXCodec
from pywats_cfx.amqp import (
    AMQPConfig,
    CFXConfig,
    CFXTransport,
    EndpointConfig,
    build_envelope,
    encode_envelope,
)
from pywats_events import AsyncEventBus, Codec, DecodeResult, Event, EventMetadata, EventType

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"
HANDLE = "Acme.ICT3000.SN42"
#: the share of raw aio-pika each mode should reach
_TARGETS = {"ict": 0.5, "mixed": 0.75, "main": 0.4}


def _sample_envelope() -> dict[str, Any]:
    """The bundled ICT sample when the package ships it, else an SDK-style 2-up ICT panel."""
    try:
        from importlib.resources import files

        text = files("pywats_cfx").joinpath("samples/units_tested_ict.json").read_text("utf-8")
        doc = json.loads(text)
        if "MessageBody" in doc:
            return dict(doc)
        return build_envelope(UNITS_TESTED, doc, HANDLE)
    except (FileNotFoundError, ModuleNotFoundError, OSError, ValueError):
        pass

    def numeric(name: str, value: float, lo: float, hi: float, unit: str) -> dict[str, Any]:
        return {
            "$type": "CFX.Structures.NumericMeasurement, CFX",
            "UniqueIdentifier": str(uuid.uuid4()),
            "MeasurementName": name,
            "TimeRecorded": "2026-11-27T10:15:31.512+01:00",
            "Sequence": 0,
            "Result": "Passed",
            "CRDs": name.split("_")[-1],
            "MeasuredValue": {
                "Value": value,
                "ValueUnits": unit,
                "ExpectedValue": (lo + hi) / 2,
                "ExpectedValueUnits": unit,
                "MinimumAcceptableValue": lo,
                "MaximumAcceptableValue": hi,
            },
        }

    def unit(position: int) -> dict[str, Any]:
        tests = []
        for i, (part, lo, hi, unit_name) in enumerate(
            [
                ("R", 9.5, 10.5, "kOhm"),
                ("C", 90.0, 110.0, "nF"),
                ("D", 0.55, 0.75, "V"),
                ("R", 0.9, 1.1, "kOhm"),
            ]
            * 3
        ):
            ref = f"{part}{i + 1}"
            tests.append(
                {
                    "UniqueIdentifier": str(uuid.uuid4()),
                    "TestName": f"CHECK_{ref}",
                    "TestStartTime": "2026-11-27T10:15:31.1+01:00",
                    "TestEndTime": "2026-11-27T10:15:31.6+01:00",
                    "TestConditions": [],
                    "Result": "Passed",
                    "SymptomsFound": [],
                    "DefectsFound": [],
                    "Measurements": [numeric(f"MEAS_{ref}", (lo + hi) / 2 * 1.01, lo, hi, unit_name)],
                }
            )
        return {
            "UnitIdentifier": "PANEL0001",
            "UnitPositionNumber": position,
            "OverallResult": "Passed",
            "Tests": tests,
        }

    body = {
        "TransactionId": str(uuid.uuid4()),
        "TestMethod": "ICT",
        "Tester": {"OperatorIdentifier": "BADGE489499", "ActorType": "Human", "LastName": "Smith"},
        "RecipeName": "PCB-4711 ICT",
        "RecipeRevision": "C",
        "TestStartTime": "2026-11-27T10:15:30.0+01:00",
        "TestEndTime": "2026-11-27T10:15:42.7+01:00",
        "TestedUnits": [unit(1), unit(2)],
    }
    return build_envelope(UNITS_TESTED, body, HANDLE)


class _EnvelopeOnlyCodec:
    """Diagnostic: one event per message without CFX decoding, to isolate transport + bus cost."""

    def decode(self, body: bytes, headers: Any = None, topic: str | None = None) -> DecodeResult:
        message_id = str((headers or {}).get("message-id"))
        meta = EventMetadata(causation_id=message_id, source_topic=topic, ordering_key=message_id)
        return DecodeResult(events=[Event(event_type=EventType.TEST_RESULT, payload={}, metadata=meta)])


#: (message, routing key) as an SDK endpoint publishes it
Outgoing = tuple[aio_pika.Message, str]


def _message(env: dict[str, Any]) -> Outgoing:
    encoded = encode_envelope(env, compress=True)
    kwargs = encoded.message_kwargs()
    message = aio_pika.Message(**kwargs, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
    return message, encoded.routing_key


def _ict_messages(count: int) -> list[Outgoing]:
    template = _sample_envelope()
    out = []
    for i in range(count):
        env = copy.deepcopy(template)
        env["UniqueID"] = str(uuid.uuid4())
        for u in env["MessageBody"].get("TestedUnits") or []:
            u["UnitIdentifier"] = f"PCB{i:07d}-{u.get('UnitPositionNumber', 1)}"
        out.append(_message(env))
    return out


def _mixed_messages(count: int) -> list[Outgoing]:
    """The line simulator's traffic from three stations, faults more often than its default (0.02)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples"))
    from line_simulator import LineSimulator, Station

    stations = [Station(handle=f"Acme.ICT.SN{1000 + i}") for i in range(3)]
    sim = LineSimulator(stations, fail_rate=0.05, fault_rate=0.05, seed=7)
    out = [_message(env) for env in sim.announcements()]
    while len(out) < count:
        out += [_message(env) for env in sim.unit()]
    return out[:count]


def _message_name(routing_key: str) -> str:
    return routing_key[routing_key.index(".CFX.") + 1 :]


async def _publish(url: str, exchange_name: str, messages: list[Outgoing]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        batch = 500
        for start in range(0, len(messages), batch):
            await asyncio.gather(
                *(exchange.publish(m, routing_key=key) for m, key in messages[start : start + batch])
            )


async def _raw(url: str, queue_name: str, count: int, prefetch: int) -> tuple[float, float]:
    """Returns (messages per second, CPU microseconds of this process per message)."""
    done = asyncio.Event()
    cpu = [0.0]
    seen = 0
    started = 0.0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen, started
        if seen == 0:
            started = time.perf_counter()
            cpu[0] = time.process_time()
        await message.ack()
        seen += 1
        if seen >= count:
            done.set()

    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name, ensure=True)
        await queue.consume(on_message)
        await done.wait()
        elapsed = time.perf_counter() - started
        cpu_us = (time.process_time() - cpu[0]) / count * 1e6
    return count / elapsed, cpu_us


#: WATS handler settings for the line simulator's stations, writing to an outbox (no server to ask)
MAIN_JOB_WATS = {
    "location": "Bench line",
    "default_part_number": "PCBA-100",
    "default_revision": "A",
    "asset_serial_from_handle": True,
    "processes": {"ICT": 30},
    "asset_ids": {f"SN{1000 + i}": f"4f1c2a9e-0000-4000-8000-00000000100{i}" for i in range(3)},
    "default_process_code": 10,
    "offline": True,
}


async def _pipeline(
    url: str,
    exchange: str,
    queue_name: str,
    count: int,
    prefetch: int,
    profile: cProfile.Profile | None,
    codec: Codec | None = None,
    main_job: Path | None = None,
) -> tuple[float, float, CFXTransport]:
    """The pipeline into a no-op handler, or with `main_job` (a directory) the journal and the WATS
    handlers writing to the outbox there."""
    handled = 0

    async def noop(event: Event) -> None:
        nonlocal handled
        handled += 1

    from urllib.parse import urlsplit

    parts = urlsplit(url)
    config = CFXConfig(
        amqp=AMQPConfig(
            url=url,
            exchange=exchange,
            queue=queue_name,
            declare_exchange=False,
            passive_queue=True,
            prefetch_count=prefetch,
        ),
        endpoint=EndpointConfig(cfx_handle=f"//Bench/WATS/{parts.hostname}"),
    )
    transport = CFXTransport(config, codec=codec or CFXCodec())
    journal = None
    if main_job is None:
        bus = AsyncEventBus(max_in_flight=max(prefetch * 4, 1000), max_concurrency=64)
        bus.subscribe(noop, list(EventType))
    else:
        from handlers.factory import create_handlers
        from pywats_events.journal import SqliteJournal

        journal = SqliteJournal(main_job / "journal.db")
        bus = AsyncEventBus(max_in_flight=max(prefetch * 4, 1000), max_concurrency=64, journal=journal)
        for handler in create_handlers({**MAIN_JOB_WATS, "outbox": str(main_job / "outbox.db")}):
            bus.subscribe(handler)
    bus.register_transport(transport)
    await bus.start()
    # Timed from the first delivery, like the raw consumer.
    while transport.stats.received == 0:  # noqa: ASYNC110 - polling keeps the measured path untouched
        await asyncio.sleep(0.0005)
    started = time.perf_counter()
    cpu0 = time.process_time()
    if profile is not None:
        profile.enable()
    while transport.stats.acked < count:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    while journal is not None and await journal.depth():  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu0) / count * 1e6
    if profile is not None:
        profile.disable()
    await bus.stop()
    return count / elapsed, cpu_us, transport


def _codec_only(messages: list[Outgoing]) -> tuple[float, float]:
    codec = CFXCodec()
    headers = {"content-encoding": "gzip"}
    sample = messages[: min(2000, len(messages))]
    started, cpu0 = time.perf_counter(), time.process_time()
    for m, routing_key in sample:
        codec.decode(m.body, headers, routing_key)
    return len(sample) / (time.perf_counter() - started), (time.process_time() - cpu0) / len(sample) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--mode", choices=("ict", "mixed", "main"), default="ict", help="the traffic and handlers (see above)"
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, default=128)
    parser.add_argument("--profile", action="store_true", help="cProfile the pipeline phase")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        help="raise the generation-0 GC threshold (e.g. 50000) to show what collector pauses cost",
    )
    args = parser.parse_args()

    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, 50, 100)
    run = uuid.uuid4().hex[:8]
    exchange_name, raw_q, pipe_q = f"bench.cfx.{run}", f"bench.raw.{run}", f"bench.pipeline.{run}"
    bare_q = f"bench.bare.{run}"
    queues = (raw_q, pipe_q, bare_q)
    print(f"building {args.count} gzipped envelopes ({args.mode}) ...")
    messages = _mixed_messages(args.count) if args.mode != "ict" else _ict_messages(args.count)
    size = sum(len(m.body) for m, _ in messages) / len(messages)
    raw_size = sum(len(gzip.decompress(m.body)) for m, _ in messages) / len(messages)
    print(f"  {size:.0f} bytes gzipped on average ({raw_size:.0f} bytes JSON)")
    names = Counter(_message_name(key).rsplit(".", 1)[-1] for _, key in messages)
    print("  " + ", ".join(f"{n} {name}" for name, n in names.most_common()))

    connection = await aio_pika.connect(args.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, auto_delete=False
        )
        for name in queues:
            queue = await channel.declare_queue(name, durable=True)
            await queue.bind(exchange, routing_key="#")
        try:
            started = time.perf_counter()
            await _publish(args.url, exchange_name, messages)
            print(f"published to {len(queues)} queues in {time.perf_counter() - started:.1f} s")

            raw_rate, raw_cpu = await _raw(args.url, raw_q, args.count, args.prefetch)
            print(
                f"(a) raw aio-pika consume+ack           : {raw_rate:8.0f} msg/s  {raw_cpu:7.0f} us CPU/msg"
            )
            profile = cProfile.Profile() if args.profile else None
            with tempfile.TemporaryDirectory() as work:
                pipe_rate, pipe_cpu, transport = await _pipeline(
                    args.url,
                    exchange_name,
                    pipe_q,
                    args.count,
                    args.prefetch,
                    profile,
                    main_job=Path(work) if args.mode == "main" else None,
                )
            label = "journal + WATS handlers → outbox" if args.mode == "main" else "handler+ack"
            print(f"(b) CFXTransport→codec→bus→{label} : {pipe_rate:8.0f} msg/s  {pipe_cpu:7.0f} us CPU/msg")
            print(
                f"ratio (b)/(a) = {pipe_rate / raw_rate:.2f} by wall clock, "
                f"{raw_cpu / pipe_cpu:.2f} by CPU time"
                f"   (target >= {_TARGETS[args.mode]})"
            )
            bare_rate, bare_cpu, _ = await _pipeline(
                args.url, exchange_name, bare_q, args.count, args.prefetch, None, _EnvelopeOnlyCodec()
            )
            label = "    same pipeline, CFX codec stubbed out"
            print(
                f"{label}: {bare_rate:8.0f} msg/s  {bare_cpu:7.0f} us CPU/msg"
                f" (ratio {bare_rate / raw_rate:.2f} wall, {raw_cpu / bare_cpu:.2f} CPU)"
            )
            codec_rate, codec_cpu = _codec_only(messages)
            print(
                f"    CFX codec alone (decode+map)        : {codec_rate:8.0f} msg/s  "
                f"{codec_cpu:7.0f} us CPU/msg"
            )
            print(f"    transport stats: {transport.stats}")
            if profile is not None:
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue())
        finally:
            # A fresh connection: the setup one may have been closed by the broker during a long run.
            cleanup = await aio_pika.connect(args.url)
            async with cleanup:
                channel = await cleanup.channel()
                for name in queues:
                    await channel.queue_delete(name)
                await channel.exchange_delete(exchange_name)


if __name__ == "__main__":
    asyncio.run(main())
