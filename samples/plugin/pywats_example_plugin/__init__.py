"""Example pywats-events handler plugin: one CSV line per tested unit.

The entry point (see pyproject.toml) names `create_handlers`, which receives a `PluginContext`
with the listener settings and this plugin's own options (``[handlers.csv_archive]``), validated here
by a pydantic model so that a wrong option stops the start-up with a message naming it.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pywats_events import BaseHandler, Event, EventType
from pywats_events.payloads import TestResultEvent
from pywats_events.plugins import PluginContext

__all__ = ["CsvArchiveHandler", "CsvArchiveOptions", "create_handlers"]

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


class CsvArchiveOptions(BaseModel):
    """``[handlers.csv_archive]``; an unknown option is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")

    #: the CSV file; default ``test-results.csv`` in the listener's data directory
    path: Path | None = None


def create_handlers(ctx: PluginContext) -> list[BaseHandler]:
    """Entry point: ``[handlers.csv_archive]`` options; default file in the listener's data dir."""
    options = ctx.parse_options(CsvArchiveOptions)
    return [CsvArchiveHandler(options.path or ctx.settings.listener.data_dir / "test-results.csv")]
