"""Example pywats-events handler plugin: one CSV line per tested unit.

The entry point (see pyproject.toml) names `create_handlers`, which receives a `PluginContext`
with the listener settings and this plugin's own options (``[handlers.csv_archive]``).
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

from pywats_events import BaseHandler, Event, EventType
from pywats_events.payloads import TestResultEvent

__all__ = ["CsvArchiveHandler", "create_handlers"]

COLUMNS = ["time", "unit", "result", "method", "station", "event_id"]


class CsvArchiveHandler(BaseHandler):
    """Appends one line per test result; creates the file with a header line."""

    event_types = [EventType.TEST_RESULT]

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # the bus runs a sync handler in worker threads, several units at once: one writer at a time,
        # so that only the first line written is the header
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        result = TestResultEvent.model_validate(event.payload)
        row = [
            event.timestamp.isoformat(),
            result.unit_serial,
            str(getattr(result.result, "value", result.result)),
            result.method or "",
            event.source or "",
            event.id,
        ]
        with self._lock:
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(COLUMNS)
                writer.writerow(row)


def create_handlers(ctx: Any) -> list[BaseHandler]:
    """Entry point: `ctx.options` is ``[handlers.csv_archive]``; default file in the listener's data dir."""
    path = ctx.options.get("path") or ctx.settings.listener.data_dir / "test-results.csv"
    return [CsvArchiveHandler(path)]
