"""Ingest rate with the durable journal on vs off, in one run.

Many concurrent producers feed `bus.context.submit([event])` (what a transport does per broker
message) into an `AsyncEventBus` with a no-op handler. With the journal, *accepted* means *committed*;
group commit lets concurrent submits share one fsync, so the rate should stay within 2x of the
journal-less bus. Off and on run alternately for `--rounds` rounds (a shared machine is noisy);
each round is printed and the verdict uses the median ratio.

    python bench/journal.py [--events 20000] [--producers 64] [--rounds 3] [--synchronous FULL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pywats_events import Event, EventType
from pywats_events.journal import SqliteJournal

_commits = 0


async def _run_bus(events: int, producers: int, journal: SqliteJournal | None) -> float:
    from pywats_events import AsyncEventBus

    handled = 0

    async def noop(event: Event) -> None:
        nonlocal handled
        handled += 1

    bus: Any = AsyncEventBus(journal=journal)
    bus.subscribe(noop, [EventType.TEST_RESULT])
    await bus.start()
    per_producer = events // producers

    async def producer(p: int) -> None:
        for i in range(per_producer):
            ev = Event(
                event_type=EventType.TEST_RESULT, payload={"unit_serial": f"U{p}", "i": i}, source="bench"
            )
            await bus.context.submit([ev])

    t0 = time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(producers)))
    elapsed = time.perf_counter() - t0
    await bus.stop()
    if journal is not None:
        global _commits
        _commits = journal.stats.commits
    return per_producer * producers / elapsed


async def _run_journal_only(events: int, producers: int, journal: SqliteJournal) -> float:
    """Raw journal append rate (no bus), for context."""
    await journal.open()
    per_producer = events // producers

    async def producer(p: int) -> None:
        for i in range(per_producer):
            ev = Event(
                event_type=EventType.TEST_RESULT, payload={"unit_serial": f"U{p}", "i": i}, source="bench"
            )
            seq = await journal.append([ev])
            await journal.mark_complete(seq[0])

    t0 = time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(producers)))
    elapsed = time.perf_counter() - t0
    await journal.close()
    return per_producer * producers / elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--producers", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    args = ap.parse_args()
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = await _run_journal_only(
            args.events, args.producers, SqliteJournal(Path(tmp) / "journal.db", synchronous=args.synchronous)
        )
        print(f"journal append alone : {raw:10.0f} events/s")
        for r in range(1, args.rounds + 1):
            off = await _run_bus(args.events, args.producers, None)
            journal = SqliteJournal(Path(tmp) / f"bus{r}.db", synchronous=args.synchronous)
            on = await _run_bus(args.events, args.producers, journal)
            ratios.append(on / off)
            print(
                f"round {r}: journal off {off:8.0f} events/s, journal on {on:8.0f} events/s "
                f"(synchronous={args.synchronous}, {_commits} commits), ratio {on / off:.2f}"
            )
    print(f"ratio on/off (median) : {statistics.median(ratios):9.2f}  (target >= 0.50)")


if __name__ == "__main__":
    asyncio.run(main())
