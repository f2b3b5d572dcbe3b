"""Publishing from 8 threads at once through the sync facade: nothing lost, no concurrent handling per key."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from _bus_helpers import make_event

from pywats_events import Event, EventBus, EventType

THREADS = 8
PER_THREAD = 500


def test_publish_from_8_threads():
    lock = threading.Lock()
    seen: dict[str, list[int]] = defaultdict(list)
    active: dict[str, int] = defaultdict(int)
    overlaps = 0

    def handle(event: Event) -> None:  # sync: runs in the handler thread pool, really concurrent
        nonlocal overlaps
        unit = event.payload["unit_id"]
        with lock:
            active[unit] += 1
            if active[unit] > 1:
                overlaps += 1
        time.sleep(0.0001)
        with lock:
            seen[unit].append(event.payload["i"])
            active[unit] -= 1

    bus = EventBus(max_in_flight=64, max_concurrency=8)
    bus.subscribe(handle, [EventType.TEST_RESULT])
    bus.start()
    barrier = threading.Barrier(THREADS)

    def producer(t: int) -> None:
        barrier.wait()
        for i in range(PER_THREAD):
            # each thread owns two units, and all threads also share one hot unit
            unit = f"T{t}-{i % 2}" if i % 5 else "HOT"
            bus.publish(make_event(unit, t * PER_THREAD + i))

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    report = bus.stop()
    assert report.clean
    total = sum(len(v) for v in seen.values())
    assert total == THREADS * PER_THREAD and overlaps == 0
    for unit, values in seen.items():
        if unit != "HOT":  # one producer per unit: its publish order is the handling order
            assert values == sorted(values), unit
    hot_by_thread: dict[int, list[int]] = defaultdict(list)
    for v in seen["HOT"]:
        hot_by_thread[v // PER_THREAD].append(v)
    assert all(vals == sorted(vals) for vals in hot_by_thread.values())
