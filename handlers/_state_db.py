"""The WATS handlers' state file: one small SQLite database beside the listener's journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["open_state_db"]


def open_state_db(path: Path, schema: str) -> sqlite3.Connection:
    """Autocommit connection in WAL mode with synchronous NORMAL (a killed process loses nothing committed;
    only a power cut may lose the last writes), with `schema` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
