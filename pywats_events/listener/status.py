"""`pywats-events status`: what the stores say, plus the snapshot the running listener writes every 2 s."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from typing import Any

from ..config import Settings

__all__ = ["collect_status", "oldest_unfinished_created", "unfinished_by_event_type", "unfinished_entries"]

_UNFINISHED = "SELECT COUNT(*) FROM entries WHERE completed IS NULL"


def _count(path: Any, sql: str) -> int | None:
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.Error:
            return None


def unfinished_entries(journal_path: Any) -> int | None:
    """Journal entries not yet completed, read from the file (None when there is no journal)."""
    try:
        return _count(journal_path, _UNFINISHED)
    except sqlite3.Error:
        return None


#: creation time of the oldest entry not yet finished (entries are journalled in `seq` order)
_OLDEST_UNFINISHED = """
SELECT j.created FROM journal AS j
WHERE NOT EXISTS (SELECT 1 FROM done AS d WHERE d.seq = j.seq) ORDER BY j.seq LIMIT 1
"""


def oldest_unfinished_created(journal_path: Any) -> float | None:
    """When the oldest unfinished journal entry was written (epoch seconds), read from the file; None when
    every entry is finished or there is no journal."""
    if not journal_path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute(_OLDEST_UNFINISHED).fetchone()
    except sqlite3.Error:
        return None
    return float(row[0]) if row else None


#: per unfinished entry: its event type and the handlers that already finished it (unit-separated)
_UNFINISHED_BY_TYPE = """
SELECT event_type, done, COUNT(*) FROM (
    SELECT e.event_type AS event_type,
           (SELECT group_concat(h.handler, char(31)) FROM handled AS h WHERE h.seq = e.seq) AS done
    FROM entries AS e WHERE e.completed IS NULL
) GROUP BY event_type, done
"""


def unfinished_by_event_type(journal_path: Any) -> list[tuple[str, frozenset[str], int]]:
    """Unfinished journal entries as (event type, handlers already done with them, count), read from the
    file; empty when there is no journal."""
    if not journal_path.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True, timeout=5)) as conn:
            rows = conn.execute(_UNFINISHED_BY_TYPE).fetchall()
    except sqlite3.Error:
        return []
    return [(str(t), frozenset(d.split("\x1f")) if d else frozenset(), int(n)) for t, d, n in rows]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect_status(settings: Settings) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        snap = json.loads(settings.status_path.read_text(encoding="utf-8"))
    running = bool(snap.get("running")) and _alive(int(snap.get("pid", 0)))
    return {
        "listener": "running" if running else "stopped",
        "pid": snap.get("pid") if running else None,
        "snapshot_age_s": round(time.time() - snap["updated"], 1) if "updated" in snap else None,
        "journal_depth": unfinished_entries(settings.journal_path),
        "dlq_size": _count(settings.dlq_path, "SELECT COUNT(*) FROM dead_letters"),
        "quarantine_size": _count(settings.quarantine_path, "SELECT COUNT(*) FROM quarantine"),
        "breakers": snap.get("breakers", {}),
        "transports": snap.get("transports", {}),
        "received": snap.get("received"),
        "handled": snap.get("handled"),
        "dead_letters_this_run": snap.get("dead_letters"),
    }
