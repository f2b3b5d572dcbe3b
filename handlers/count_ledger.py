"""`CountLedger`: what the asset handler knows about its usage-count increments, optionally on disk.

An increment is recorded as *pending* (asset, `totalCount` before, increment) before it is sent and as
*counted* once WATS confirmed it. A pending entry found later (a lost answer, or a process killed between
sending and recording) is settled by reading `totalCount` instead of sending blindly, so neither a lost
answer nor a `kill -9` turns into a double count. With a `path` the ledger lives in that SQLite file (WAL,
synchronous NORMAL: a killed process loses nothing committed); without one, in memory.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ._state_db import open_state_db

__all__ = ["CountLedger", "PendingCount"]

#: counted keys remembered (a redelivered message older than this many counts would be counted again)
COUNTED_LIMIT = 50_000
#: pending increments remembered
PENDING_LIMIT = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS count_pending (
    unit_key TEXT NOT NULL,
    serial TEXT NOT NULL,
    before_total INTEGER,
    increment INTEGER NOT NULL,
    PRIMARY KEY (unit_key, serial)
);
CREATE TABLE IF NOT EXISTS count_done (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_key TEXT NOT NULL UNIQUE
);
"""


@dataclass
class PendingCount:
    """An increment whose outcome is not known: `before` + `increment` is the total that proves it."""

    serial: str
    before: int | None  # None: WATS did not report a totalCount, so there is nothing to compare
    increment: int


class CountLedger:
    """Counted unit keys and pending increments, in memory and (with `path`) in SQLite."""

    def __init__(self, path: Path | None = None) -> None:
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._pending: OrderedDict[tuple[str, str], PendingCount] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = open_state_db(path, _SCHEMA)
            for (key,) in self._db.execute(
                "SELECT unit_key FROM count_done ORDER BY seq DESC LIMIT ?", (COUNTED_LIMIT,)
            ).fetchall()[::-1]:
                self._counted[key] = None
            for key, serial, before, increment in self._db.execute(
                "SELECT unit_key, serial, before_total, increment FROM count_pending"
            ):
                self._pending[(key, serial)] = PendingCount(serial, before, increment)

    def is_counted(self, unit_key: str) -> bool:
        return unit_key in self._counted

    def pending(self, unit_key: str, serial: str) -> PendingCount | None:
        return self._pending.get((unit_key, serial))

    def begin(self, unit_key: str, serial: str, before: int | None, increment: int) -> None:
        """Record the increment as pending, before it is sent."""
        self._pending[(unit_key, serial)] = PendingCount(serial, before, increment)
        self._pending.move_to_end((unit_key, serial))
        while len(self._pending) > PENDING_LIMIT:
            (old_key, old_serial), _ = self._pending.popitem(last=False)
            self._execute(
                "DELETE FROM count_pending WHERE unit_key = ? AND serial = ?", (old_key, old_serial)
            )
        self._execute(
            "INSERT OR REPLACE INTO count_pending VALUES (?, ?, ?, ?)", (unit_key, serial, before, increment)
        )

    def forget(self, unit_key: str, serial: str) -> None:
        """The increment provably did not happen (refused, or never sent)."""
        self._pending.pop((unit_key, serial), None)
        self._execute("DELETE FROM count_pending WHERE unit_key = ? AND serial = ?", (unit_key, serial))

    def done(self, unit_key: str, serial: str, increment: int) -> None:
        """WATS holds the increment: the unit is counted, and other pending increments of the asset see a
        baseline moved by it (ours is not proof of theirs)."""
        self._pending.pop((unit_key, serial), None)
        self._counted[unit_key] = None
        self._counted.move_to_end(unit_key)
        while len(self._counted) > COUNTED_LIMIT:
            self._counted.popitem(last=False)
        for other in self._pending.values():
            if other.serial == serial and other.before is not None:
                other.before += increment
        if self._db is not None:
            with self._db:  # one transaction: counted and the baselines move together
                self._db.execute("BEGIN")
                self._db.execute(
                    "DELETE FROM count_pending WHERE unit_key = ? AND serial = ?", (unit_key, serial)
                )
                self._db.execute("INSERT OR IGNORE INTO count_done (unit_key) VALUES (?)", (unit_key,))
                self._db.execute(
                    "UPDATE count_pending SET before_total = before_total + ?"
                    " WHERE serial = ? AND before_total IS NOT NULL",
                    (increment, serial),
                )
                self._db.execute(
                    "DELETE FROM count_done WHERE seq <= (SELECT MAX(seq) FROM count_done) - ?",
                    (COUNTED_LIMIT,),
                )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        if self._db is not None:
            self._db.execute(sql, params)
