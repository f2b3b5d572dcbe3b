"""Quarantine store: undecodable input kept with its raw bytes and the reason, for later inspection.

Writes are rare (bad input only) and small, so they run in a worker thread with one short transaction each.
The store is bounded (`max_entries`, `max_bytes`): past a limit the oldest entries are dropped, logged and
reported to `on_evict`, so a flood of bad input cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .transports._base import QuarantineRecord

__all__ = ["QuarantinedMessage", "SqliteQuarantine"]

log = logging.getLogger("pywats_events.quarantine")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    reason TEXT NOT NULL,
    source TEXT,
    topic TEXT,
    headers TEXT NOT NULL,
    size INTEGER NOT NULL,
    raw BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class QuarantinedMessage:
    id: int
    at: float
    reason: str
    source: str | None
    topic: str | None
    headers: dict[str, Any]
    size: int
    raw: bytes | None = None


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class SqliteQuarantine:
    """`add` from async code (the transport context); `list`/`get`/`count` are plain calls for the CLI."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: called with the number of entries dropped to stay within the limits
        self.on_evict = on_evict
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            yield conn
            conn.commit()
        finally:
            conn.close()

    def add_sync(self, record: QuarantineRecord) -> int:
        headers = json.dumps(_json_safe(dict(record.headers or {})))
        with self._lock, self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO quarantine(at, reason, source, topic, headers, size, raw)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    time.time(),
                    record.reason,
                    record.source,
                    record.topic,
                    headers,
                    len(record.raw),
                    record.raw,
                ),
            )
            item_id = int(cur.lastrowid or 0)
            evicted = self._evict(conn)
        if evicted:
            log.warning(
                "quarantine full (quarantine.max_entries = %s, quarantine.max_bytes = %s): dropped the %d"
                " oldest entr%s; look at `pywats-events quarantine list`, then replay or purge",
                self.max_entries,
                self.max_bytes,
                evicted,
                "y" if evicted == 1 else "ies",
            )
            if self.on_evict is not None:
                self.on_evict(evicted)
        return item_id

    def _evict(self, conn: sqlite3.Connection) -> int:
        """Drops the oldest entries until both limits hold (the newest entry always stays)."""
        if self.max_entries is None and self.max_bytes is None:
            return 0
        count, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine").fetchone()
        doomed: list[int] = []
        for item_id, size in conn.execute("SELECT id, size FROM quarantine ORDER BY id"):
            too_many = self.max_entries is not None and count > self.max_entries
            too_big = self.max_bytes is not None and total > self.max_bytes
            if count <= 1 or not (too_many or too_big):
                break
            doomed.append(item_id)
            count -= 1
            total -= size
        conn.executemany("DELETE FROM quarantine WHERE id = ?", [(i,) for i in doomed])
        evicted = len(doomed)
        return evicted

    async def add(self, record: QuarantineRecord) -> int:
        return await asyncio.to_thread(self.add_sync, record)

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    def size_bytes(self) -> int:
        """Raw bytes held (the sum of the entries' sizes)."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM quarantine").fetchone()[0])

    def ids(self, *, reason: str | None = None) -> list[int]:
        """Ids of all entries (oldest first), or of those whose reason contains `reason`."""
        sql, args = "SELECT id FROM quarantine", tuple[str, ...]()
        if reason:
            sql, args = sql + " WHERE reason LIKE ?", (f"%{reason}%",)
        with self._connect() as conn:
            return [int(r[0]) for r in conn.execute(sql + " ORDER BY id", args).fetchall()]

    def remove(self, item_id: int) -> bool:
        """Delete one message (it was re-decoded, or the operator dropped it)."""
        with self._lock, self._connect() as conn:
            return conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,)).rowcount > 0

    def list(
        self, *, limit: int = 100, since: float | None = None, reason: str | None = None
    ) -> list[QuarantinedMessage]:
        sql = "SELECT id, at, reason, source, topic, headers, size FROM quarantine WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if reason:
            sql += " AND reason LIKE ?"
            args.append(f"%{reason}%")
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [QuarantinedMessage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def get(self, item_id: int) -> QuarantinedMessage | None:
        with self._connect() as conn:
            r = conn.execute(
                "SELECT id, at, reason, source, topic, headers, size, raw FROM quarantine WHERE id = ?",
                (item_id,),
            ).fetchone()
        if r is None:
            return None
        return QuarantinedMessage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], bytes(r[7]))

    def page(
        self, *, reason: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[int, builtins.list[QuarantinedMessage]]:
        """(how many match, one page newest first) for the console; `reason` is a substring."""
        cond, args = "", []
        if reason:
            cond = " WHERE reason LIKE ?"
            args.append(f"%{reason}%")
        with self._connect() as conn:
            (total,) = conn.execute(f"SELECT COUNT(*) FROM quarantine{cond}", args).fetchone()
            rows = conn.execute(
                "SELECT id, at, reason, source, topic, headers, size FROM quarantine"
                f"{cond} ORDER BY id DESC LIMIT ? OFFSET ?",
                [*args, max(0, limit), max(0, offset)],
            ).fetchall()
        return int(total), [
            QuarantinedMessage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows
        ]

    def purge(self) -> int:
        with self._lock, self._connect() as conn:
            return int(conn.execute("DELETE FROM quarantine").rowcount)
