"""Publishing through our bus against the upstream pyWATS `AsyncEventBus` (PyPI `pywats-api`).

Both sides run the loop their docs show: build an `Event(event_type=..., payload={...})` and
``await bus.publish(event)`` it, 100,000 times, into one no-op async handler; the clock stops when the bus
has handled the last one (``await bus.stop()``). Upstream's wheel ships packages named like ours
(`pywats_events`, `pywats_cfx`), so it is installed into a virtual environment of its own (created on the
first run, kept in a cache directory) and each side runs in a fresh subprocess, alternating, several rounds.
Prints events/s of each, the ratio, and how much of each run was the garbage collector (`--gc-off` shows
the figures without it; `--profile` adds a cProfile of one run of each side).

    python bench/bus_vs_upstream.py [--events 100000] [--rounds 3] [--gc-off] [--profile] [--venv DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

UPSTREAM = "pywats-api==0.6.0rc1"

UNITS = 1000


async def measure(bus: Any, event_cls: Any, event_types: Any, n: int) -> tuple[float, float]:
    """The measured loop, the same for both sides: wall and CPU seconds from the first publish until the
    bus has handled every event."""
    pc = time.perf_counter
    await bus.start()
    c0, t0 = time.process_time(), pc()
    for i in range(n):
        event = event_cls(event_type=event_types.TEST_RESULT, payload={"unit_id": f"SN-{i % UNITS}", "i": i})
        await bus.publish(event)
    await bus.stop()
    return pc() - t0, time.process_time() - c0


def _gc_clock() -> list[float]:
    """Seconds spent in garbage collection from now on (index 0), updated by a gc callback."""
    spent = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            spent[1] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - spent[1]

    gc.callbacks.append(on_gc)
    return spent


def _worker(side: str, n: int, profile: bool, gc_off: bool) -> None:
    """Runs in a fresh process: one measured run of `side`, its figures as one JSON line on stdout."""
    handled = [0]
    if gc_off:
        gc.disable()

    if side == "ours":
        from pywats_events import AsyncEventBus, Event, EventType

        def make_bus() -> Any:
            async def noop(event: Event) -> None:
                handled[0] += 1

            bus = AsyncEventBus()
            bus.subscribe(noop, [EventType.TEST_RESULT], name="noop")
            return bus

    else:  # upstream, in its own venv: handlers are BaseHandler subclasses registered on the bus
        from pywats_events import AsyncEventBus, BaseHandler, Event, EventType

        class Noop(BaseHandler):  # type: ignore[misc]
            @property
            def event_types(self) -> list[Any]:
                return [EventType.TEST_RESULT]

            async def handle(self, event: Any) -> None:
                handled[0] += 1

        def make_bus() -> Any:
            bus = AsyncEventBus()
            bus.register_handler(Noop())
            return bus

    gc_spent = _gc_clock()

    async def run() -> tuple[float, float]:
        result: tuple[float, float] = await measure(make_bus(), Event, EventType, n)
        return result

    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        wall, cpu = profiler.runcall(asyncio.run, run())
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    else:
        wall, cpu = asyncio.run(run())
    if handled[0] != n:
        raise SystemExit(f"{side}: handled {handled[0]} of {n} events")
    print(json.dumps({"events_per_s": n / wall, "events_per_cpu_s": n / cpu, "gc_share": gc_spent[0] / wall}))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "pywats-events-bench"


def _venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def upstream_python(env: Path) -> Path:
    """The interpreter of a venv with upstream installed; creates it the first time."""
    python = _venv_python(env)
    ready = env / f"{UPSTREAM}.installed"
    if not ready.exists():
        print(f"creating {env} with {UPSTREAM} (once)...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
        subprocess.run([str(python), "-m", "pip", "install", "-q", UPSTREAM], check=True)
        ready.touch()
    return python


def run_side(
    python: Path, side: str, n: int, profile: bool = False, gc_off: bool = False
) -> dict[str, float]:
    # -I: neither the working directory nor PYTHONPATH may put our packages in front of upstream's
    isolated = ["-I"] if side == "upstream" else []
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [str(python), *isolated, str(Path(__file__).resolve()), "--worker", side, "--events", str(n)]
            + (["--profile"] if profile else [])
            + (["--gc-off"] if gc_off else []),
            cwd=cwd,
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise SystemExit(f"{side} run failed:\n{done.stderr}")
    if profile:
        print(f"--- cProfile of {side} (by own time) ---\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--profile", action="store_true", help="finally, one profiled run of each side")
    ap.add_argument("--gc-off", action="store_true", help="run both sides with the garbage collector off")
    ap.add_argument("--venv", type=Path, help=f"venv for {UPSTREAM} (default: in the user cache dir)")
    ap.add_argument("--worker", choices=["ours", "upstream"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.events, args.profile, args.gc_off)
        return

    upstream = upstream_python(args.venv or _cache_dir() / "pywats-api-0.6.0rc1")
    ours = Path(sys.executable)
    gc_note = ", garbage collector off" if args.gc_off else ""
    print(f"{args.events:,} events, Event built in the publish loop, one no-op async handler{gc_note}")
    rows: list[tuple[float, float]] = []
    cpu_rows: list[tuple[float, float]] = []
    for r in range(1, args.rounds + 1):
        a = run_side(ours, "ours", args.events, gc_off=args.gc_off)
        b = run_side(upstream, "upstream", args.events, gc_off=args.gc_off)
        rows.append((a["events_per_s"], b["events_per_s"]))
        cpu_rows.append((a["events_per_cpu_s"], b["events_per_cpu_s"]))
        print(
            f"round {r}: ours {a['events_per_s']:>9,.0f} ev/s ({a['events_per_cpu_s']:>9,.0f}/cpu-s, "
            f"gc {a['gc_share']:.0%})   upstream {b['events_per_s']:>8,.0f} ev/s "
            f"({b['events_per_cpu_s']:>8,.0f}/cpu-s, gc {b['gc_share']:.0%})   "
            f"ratio {a['events_per_s'] / b['events_per_s']:.1f}x"
        )
    print(
        f"median: ours {statistics.median(a for a, _ in rows):,.0f} ev/s, "
        f"upstream {statistics.median(b for _, b in rows):,.0f} ev/s, "
        f"ratio {statistics.median(a / b for a, b in rows):.1f}x "
        f"(per CPU-second, which a busy box skews less: {statistics.median(a / b for a, b in cpu_rows):.1f}x)"
    )
    if args.profile:
        run_side(ours, "ours", args.events, profile=True, gc_off=args.gc_off)
        run_side(upstream, "upstream", args.events, profile=True, gc_off=args.gc_off)


if __name__ == "__main__":
    main()
