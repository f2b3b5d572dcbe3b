"""`TransactionUnits`: the units a work transaction's WorkStarted named, for a WorkCompleted naming none.

Bounded (the least recently used transaction goes first) and, with a `path`, kept in a small SQLite file so
that a transaction started before a listener restart can still be completed after it. Writes are one short
transaction each (WAL, synchronous NORMAL: a killed process loses nothing committed).
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ._state_db import open_state_db

__all__ = ["StartedUnit", "TransactionUnits"]

#: remembers between two trims of the file down to `max_transactions`
_TRIM_EVERY = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS work_units (
    transaction_id TEXT NOT NULL,
    serial TEXT NOT NULL,
    position INTEGER,
    part_number TEXT,
    seen_order INTEGER NOT NULL,
    touched REAL NOT NULL,
    PRIMARY KEY (transaction_id, serial)
);
CREATE INDEX IF NOT EXISTS work_units_touched ON work_units (touched);
"""


@dataclass
class StartedUnit:
    """A unit a WorkStarted named: enough to apply a unit-less WorkCompleted of its transaction."""

    serial: str
    position: int | None
    part_number: str | None
    order: int  # order seen within the transaction; ties between equal or missing positions


class TransactionUnits:
    """Units per work transaction id. In memory only without `path`; with it, also in that SQLite file."""

    def __init__(self, max_transactions: int, path: Path | None = None) -> None:
        self.max_transactions = max_transactions
        self.path = path
        self._units: OrderedDict[str, dict[str, StartedUnit]] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        self._since_trim = 0
        if path is not None:
            self._db = open_state_db(path, _SCHEMA)

    def __len__(self) -> int:
        return len(self._units)

    def remember(
        self, transaction_id: str, serial: str, position: int | None, pn: str | None, *, persist: bool = True
    ) -> None:
        """Note a unit of a transaction; `persist=False` keeps it in memory only (a caller that records it
        again shortly, with more to say)."""
        units = self._cached(transaction_id) or {}
        self._units[transaction_id] = units
        self._units.move_to_end(transaction_id)
        known = units.get(serial)
        if known is None:
            known = units[serial] = StartedUnit(serial, position, pn, len(units))
        else:  # a redelivery or retry: keep what is known
            known.position = position if position is not None else known.position
            known.part_number = pn or known.part_number
        while len(self._units) > self.max_transactions:
            self._units.popitem(last=False)
        if self._db is not None and persist:
            self._db.execute(
                "INSERT INTO work_units VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (transaction_id, serial) DO UPDATE SET position = excluded.position,"
                " part_number = excluded.part_number, touched = excluded.touched",
                (transaction_id, serial, known.position, known.part_number, known.order, time.time()),
            )
            self._since_trim += 1
            if self._since_trim >= _TRIM_EVERY:
                self._trim()

    def units(self, transaction_id: str) -> list[StartedUnit] | None:
        """The transaction's units in position order (unpositioned last), or None when unknown."""
        units = self._cached(transaction_id)
        if units is None:
            return None
        self._units[transaction_id] = units
        self._units.move_to_end(transaction_id)
        return sorted(units.values(), key=lambda u: (u.position is None, u.position or 0, u.order))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _cached(self, transaction_id: str) -> dict[str, StartedUnit] | None:
        units = self._units.get(transaction_id)
        if units is not None or self._db is None:
            return units
        rows = self._db.execute(
            "SELECT serial, position, part_number, seen_order FROM work_units WHERE transaction_id = ?",
            (transaction_id,),
        ).fetchall()
        return {serial: StartedUnit(serial, pos, pn, order) for serial, pos, pn, order in rows} or None

    def _trim(self) -> None:
        """Keep the `max_transactions` most recently touched transactions in the file."""
        assert self._db is not None
        self._since_trim = 0
        self._db.execute(
            "DELETE FROM work_units WHERE transaction_id NOT IN (SELECT transaction_id FROM work_units"
            " GROUP BY transaction_id ORDER BY MAX(touched) DESC LIMIT ?)",
            (self.max_transactions,),
        )
