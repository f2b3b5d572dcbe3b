"""Run FakeWATS from the command line: ``python -m handlers.wats.fake --port 8080 [--token T]``.

Control it while it runs through ``/_fake/...``, e.g.
``curl -X POST localhost:8080/_fake/faults -d '{"kind": "error", "duration": 30}'``,
``curl -X DELETE localhost:8080/_fake/faults``, ``curl localhost:8080/_fake/state``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

from .server import FakeWATS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.wats.fake", description="A fake WATS server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", help="require 'Authorization: Basic <token>'")
    parser.add_argument(
        "--processes", type=Path, help="JSON file with the process list (GET /api/App/Processes)"
    )
    parser.add_argument(
        "--relaxed-assembly", action="store_true", help="allow attaching non-Finalized children"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )
    processes = json.loads(args.processes.read_text()) if args.processes else None
    wats = FakeWATS(
        args.host,
        args.port,
        token=args.token,
        processes=processes,
        strict_assembly=not args.relaxed_assembly,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with wats:
        print(f"FakeWATS listening on {wats.url} (Ctrl+C to stop)", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
