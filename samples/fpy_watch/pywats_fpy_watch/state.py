"""The watch's state in a small SQLite file, so a restart keeps each window, the units already seen at a
station and process (only a unit's first test counts), and which alarms are raised."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["FpyState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS first_pass (
    station TEXT NOT NULL, process TEXT NOT NULL, unit TEXT NOT NULL, passed INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT, UNIQUE (station, process, unit)
);
CREATE TABLE IF NOT EXISTS alarm (
    station TEXT NOT NULL, process TEXT NOT NULL,
    -- 'pending': raised, not yet told; 'sent': told (WATS and the bus)
    state TEXT NOT NULL, fpy REAL NOT NULL, units INTEGER NOT NULL,
    PRIMARY KEY (station, process)
);
"""


class FpyState:
    """Windows of first-pass results per (station, process) and the alarms raised from them."""

    def __init__(self, path: Path, window: int, keep_units: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.window = window
        self.keep_units = keep_units
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(self, station: str, process: str, unit: str, passed: bool) -> bool:
        """Records a unit's first test at (station, process); False for a retest (already recorded)."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO first_pass (station, process, unit, passed) VALUES (?, ?, ?, ?)",
            (station, process, unit, int(passed)),
        )
        if cur.rowcount and cur.lastrowid is not None and cur.lastrowid % 1000 == 0:
            # units older than keep_units are forgotten: the window never reaches them
            self._db.execute(
                "DELETE FROM first_pass WHERE station = ? AND process = ? AND seq <= ("
                " SELECT seq FROM first_pass WHERE station = ? AND process = ?"
                " ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (station, process, station, process, self.keep_units),
            )
        return bool(cur.rowcount)

    def window_yield(self, station: str, process: str) -> tuple[float, int]:
        """(first-pass yield, units) over the last `window` first tests at (station, process)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(passed), 0), COUNT(*) FROM (SELECT passed FROM first_pass"
            " WHERE station = ? AND process = ? ORDER BY seq DESC LIMIT ?)",
            (station, process, self.window),
        ).fetchone()
        passed, units = int(row[0]), int(row[1])
        return (passed / units if units else 1.0), units

    def alarm(self, station: str, process: str) -> str | None:
        row = self._db.execute(
            "SELECT state FROM alarm WHERE station = ? AND process = ?", (station, process)
        ).fetchone()
        return str(row[0]) if row else None

    def raise_alarm(self, station: str, process: str, fpy: float, units: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO alarm VALUES (?, ?, 'pending', ?, ?)", (station, process, fpy, units)
        )

    def pending(self, station: str, process: str) -> tuple[float, int] | None:
        row = self._db.execute(
            "SELECT fpy, units FROM alarm WHERE station = ? AND process = ? AND state = 'pending'",
            (station, process),
        ).fetchone()
        return (float(row[0]), int(row[1])) if row else None

    def mark_sent(self, station: str, process: str) -> None:
        self._db.execute(
            "UPDATE alarm SET state = 'sent' WHERE station = ? AND process = ?", (station, process)
        )

    def clear_alarm(self, station: str, process: str) -> None:
        self._db.execute("DELETE FROM alarm WHERE station = ? AND process = ?", (station, process))
