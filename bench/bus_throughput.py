"""Throughput and dispatch latency of the core bus.

200,000 pre-built events go through one no-op async handler: once plain, once with a retry policy and a
circuit breaker attached. Prints events/s (publish of the first event → last one handled), p50/p99 latency
from `publish` to the handler being called, and peak RSS.

    python bench/bus_throughput.py [--events 200000] [--units 1000] [--sync]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from pywats_events import AsyncEventBus, BusObserver, Event, EventBus, EventType
from pywats_events.policies import CircuitBreaker, ErrorPolicy, RetryPolicy


def build_events(n: int, units: int) -> list[Event]:
    return [
        Event(
            event_type=EventType.TEST_RESULT, payload={"unit_id": f"SN-{i % units}", "i": i}, source="bench"
        )
        for i in range(n)
    ]


def policies() -> dict[str, Any]:
    return {
        "retry_policy": RetryPolicy(max_retries=3, initial_delay=0.1),
        "error_policy": ErrorPolicy(circuit_breaker=CircuitBreaker(failure_threshold=5, reset_timeout=30)),
    }


class _Timing(BusObserver):
    """An observer that times every handler call (as a metrics exporter does): forces the policy path."""

    def __init__(self) -> None:
        self.total = 0.0

    def on_handled(self, event: Event, handler_name: str, seconds: float) -> None:
        self.total += seconds


async def run_async(
    events: list[Event],
    with_policies: bool,
    measure_latency: bool,
    paced: bool = False,
    observed: bool = False,
) -> dict[str, float]:
    n = len(events)
    sent = [0.0] * n
    got = [0.0] * n
    pc = time.perf_counter

    if measure_latency:

        async def handle(event: Event) -> None:
            got[event.payload["i"]] = pc()

    else:

        async def handle(event: Event) -> None:
            return None

    bus = AsyncEventBus(max_in_flight=10_000, max_concurrency=64)
    bus.subscribe(handle, [EventType.TEST_RESULT], name="noop", **(policies() if with_policies else {}))
    if observed:
        bus.add_observer(_Timing())
    await bus.start()
    publish = bus.publish
    gc.disable()
    c0 = time.process_time()
    t0 = pc()
    if paced:  # bursts of 64, then let the bus catch up: dispatch latency without a standing queue
        for i, event in enumerate(events):
            sent[i] = pc()
            await publish(event)
            if i % 64 == 63:
                await asyncio.sleep(0)
    elif measure_latency:
        for i, event in enumerate(events):
            sent[i] = pc()
            await publish(event)
    else:
        for event in events:
            await publish(event)
    report = await bus.stop(timeout=60)
    elapsed = pc() - t0
    cpu = time.process_time() - c0
    gc.enable()
    assert report.clean and report.handled == n, report
    out = {"events_per_s": n / elapsed, "seconds": elapsed, "events_per_cpu_s": n / cpu}
    if measure_latency:
        lat = sorted(g - s for g, s in zip(got, sent, strict=True))
        out["p50_us"] = lat[n // 2] * 1e6
        out["p99_us"] = lat[int(n * 0.99)] * 1e6
        out["mean_us"] = statistics.fmean(lat) * 1e6
    return out


def run_sync(events: list[Event]) -> dict[str, float]:
    """The sync facade from one plain thread (each publish is a portal round trip)."""

    async def handle(event: Event) -> None:
        return None

    bus = EventBus(max_in_flight=10_000, max_concurrency=64)
    bus.subscribe(handle, [EventType.TEST_RESULT], name="noop")
    bus.start()
    t0 = time.perf_counter()
    for event in events:
        bus.publish(event)
    report = bus.stop(timeout=60)
    elapsed = time.perf_counter() - t0
    assert report.clean
    return {"events_per_s": len(events) / elapsed, "seconds": elapsed}


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--units", type=int, default=1000, help="distinct ordering keys")
    ap.add_argument("--sync", action="store_true", help="also measure the sync EventBus facade (20k events)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration; the best is shown")
    args = ap.parse_args(argv)

    events = build_events(args.events, args.units)
    print(f"{args.events:,} events, {args.units} ordering keys, one no-op async handler")
    print(f"peak RSS after building events: {peak_rss_mb():.0f} MB")
    print(
        "(wall-clock rate; in brackets the rate per CPU-second of this process, which a busy box skews less)"
    )
    line: Callable[[str, dict[str, float]], None] = lambda name, r: print(  # noqa: E731
        f"{name:<44} {r['events_per_s']:>10,.0f} events/s"
        + (f"  ({r['events_per_cpu_s']:>9,.0f}/cpu-s)" if "events_per_cpu_s" in r else "")
        + (f"   p50 {r['p50_us']:>8,.0f} µs   p99 {r['p99_us']:>8,.0f} µs" if "p50_us" in r else "")
    )

    def best(
        with_policies: bool, latency: bool, paced: bool = False, observed: bool = False
    ) -> dict[str, float]:
        runs = [
            asyncio.run(run_async(events, with_policies, latency or paced, paced, observed))
            for _ in range(max(1, args.repeat))
        ]
        return max(runs, key=lambda r: r["events_per_s"])

    for with_policies in (False, True):
        label = "retry + breaker" if with_policies else "plain"
        line(f"async, {label}", best(with_policies, False))
        line(f"async, {label}, latency probe", best(with_policies, True))
        line(f"async, {label}, paced (bursts of 64)", best(with_policies, True, paced=True))
    line("async, retry + breaker + timing observer", best(True, False, observed=True))
    if args.sync:
        line("sync EventBus facade (20k)", run_sync(events[:20_000]))
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
