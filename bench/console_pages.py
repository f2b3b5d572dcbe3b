"""The operator console with a large dead-letter queue: listing and filtering latency, and page weight.

Seeds a data directory with N dead letters (default 100,000, spread over 4 handlers, 6 event types and a
day of failures; seeded with one SQL transaction for speed, in the store's own schema), starts the
console on loopback as `pywats-events console` would, and times real HTTP requests of the dead-letter
API: the newest page, each filter, a deep page, one entry; then the weight of the page and its assets.
The issue's bar: listing and filtering under 300 ms.

    python bench/console_pages.py [--entries 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from pywats_events import Event, EventType
from pywats_events.config import load_settings
from pywats_events.console.security import ConsoleGuard
from pywats_events.console.server import ConsoleServer
from pywats_events.console.source import ConsoleSource
from pywats_events.health import HealthServer
from pywats_events.listener import Listener
from pywats_events.policies import SqliteDeadLetterQueue

HANDLERS = ("ReportHandler", "AssetHandler", "ProductionHandler", "archive")
TYPES = (
    EventType.TEST_RESULT,
    EventType.INSPECTION_RESULT,
    EventType.WORK_STARTED,
    EventType.WORK_COMPLETED,
    EventType.ASSET_FAULT,
    EventType.MATERIAL_INSTALLED,
)
ERRORS = (
    "WatsPermanentError: POST /api/Report/WSJF: WATS answered 400: bad part number",
    "WatsPermanentError: PUT /api/Asset: WATS answered 404: unknown asset",
    "ValueError: no process code for 'XRAY'",
)


def seed(path: Path, n: int) -> None:
    dlq = SqliteDeadLetterQueue(path, max_size=max(n, 1))
    t0 = datetime.now(timezone.utc) - timedelta(days=1)
    rows = []
    for i in range(n):
        etype = TYPES[i % len(TYPES)]
        event = Event(event_type=etype, payload={"unit_id": f"SN-{i:06d}", "i": i}, source="bench")
        when = (t0 + timedelta(seconds=86400 * i / n)).isoformat()
        error = ERRORS[i % len(ERRORS)]
        kind = error.split(":")[0]
        rows.append(
            (uuid.uuid4().hex, event.to_json(), etype.value, HANDLERS[i % 4], error, kind, 3, when, when)
        )
    db = dlq._db
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO dead_letters (id, event_json, event_type, handler, error, error_type, attempts,"
        " first_failure, last_failure) VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.execute("COMMIT")
    dlq.close()


async def measure(data: Path, repeat: int) -> None:
    settings = load_settings(overrides={"listener": {"data_dir": str(data)}, "journal": {"enabled": False}})
    listener = Listener(settings)
    parts = await listener.build(transports=False)
    health = HealthServer(listener.metrics.registry, lambda: (True, {}), host="127.0.0.1", port=0)
    server = ConsoleServer(ConsoleSource(settings, parts), ConsoleGuard(None), health)
    port = await server.start()
    since = quote((datetime.now(timezone.utc) - timedelta(hours=2)).isoformat())
    some_id = parts.dlq.page(limit=1, offset=5000)[1][0].id
    cases = {
        "newest page (50)": "/api/dead-letters",
        "by handler": "/api/dead-letters?handler=AssetHandler",
        "by event type": "/api/dead-letters?event_type=asset.fault",
        "by error text": "/api/dead-letters?q=unknown%20asset",
        "last 2 hours": f"/api/dead-letters?since={since}",
        "handler+type+text": "/api/dead-letters?handler=ReportHandler&event_type=test.result&q=400",
        "deep page (offset 99,900)": "/api/dead-letters?offset=99900",
        "one entry": f"/api/dead-letters/{some_id}",
        "overview": "/api/overview",
    }
    print(f"{len(parts.dlq):,} dead letters; median (max) of {repeat} requests over loopback HTTP")
    for name, path in cases.items():
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            status, body = await asyncio.to_thread(get, port, path)
            times.append((time.perf_counter() - t) * 1000)
            assert status == 200, (path, status)
        total = json.loads(body).get("total", "")
        print(f"  {name:28} {statistics.median(times):7.1f} ms ({max(times):6.1f})  {total}")
    weight = 0
    for asset in ("/", "/static/console.js", "/static/console.css", "/api/meta"):
        size = len((await asyncio.to_thread(get, port, asset))[1])
        weight += size
        print(f"  weight {asset:22} {size / 1024:6.1f} KiB")
    print(f"  page weight (uncompressed, no images or fonts): {weight / 1024:.1f} KiB")
    await server.stop()
    await parts.bus.stop(timeout=5)


def get(port: int, path: str) -> tuple[int, bytes]:
    """One GET on a new connection, as a browser's first request (http.client: one write per request)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t = time.perf_counter()
        seed(data / "dlq.db", args.entries)
        print(f"seeded {args.entries:,} dead letters in {time.perf_counter() - t:.1f} s")
        asyncio.run(measure(data, args.repeat))


if __name__ == "__main__":
    main()
