"""Keys of requests and events already accepted, so a retry after a lost response duplicates nothing.

A bounded SQLite table in the data dir: rows older than the retention go, and beyond the row limit the
oldest go first. A key is written only after its events were accepted (a crash in between means the retry
is accepted again: a duplicate, never a loss). Keys being processed right now are claimed in memory, so a
retry racing its first attempt waits for that attempt's outcome instead of submitting twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["IdempotencyStore"]

_PRUNE_EVERY = 1000


class IdempotencyStore:
    def __init__(self, path: Path | None, *, max_keys: int, retention: float) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS seen_at ON seen(at)")
        self._db.commit()
        self.max_keys = max_keys
        self.retention = retention
        self._claims: dict[str, asyncio.Event] = {}
        self._writes = 0

    def seen(self, keys: Iterable[str]) -> set[str]:
        """The `keys` accepted before (and not yet forgotten)."""
        wanted = list(keys)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._db.execute(
                f"SELECT key FROM seen WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update(row[0] for row in rows)
        return found

    def remember(self, keys: Iterable[str]) -> None:
        now = time.time()
        rows = [(key, now) for key in keys]
        if not rows:
            return
        self._db.executemany("INSERT OR REPLACE INTO seen(key, at) VALUES (?, ?)", rows)
        self._writes += len(rows)
        if self._writes >= _PRUNE_EVERY:
            self._writes = 0
            self._prune(now)
        self._db.commit()

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM seen WHERE at < ?", (now - self.retention,))
        (count,) = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()
        if count > self.max_keys:
            self._db.execute(
                "DELETE FROM seen WHERE key IN (SELECT key FROM seen ORDER BY at LIMIT ?)",
                (count - self.max_keys,),
            )

    async def claim(self, keys: Iterable[str]) -> list[str]:
        """Claims `keys` for this request, waiting while another request holds one; returns the claimed
        keys that were not accepted before. Release them with `release`."""
        wanted = list(dict.fromkeys(keys))
        while True:
            busy = next((self._claims[k] for k in wanted if k in self._claims), None)
            if busy is None:
                break
            await busy.wait()
        done = self.seen(wanted)
        fresh = [k for k in wanted if k not in done]
        flag = asyncio.Event()
        for key in fresh:
            self._claims[key] = flag
        return fresh

    def release(self, keys: Iterable[str]) -> None:
        flags = {self._claims.pop(key) for key in keys if key in self._claims}
        for flag in flags:
            flag.set()

    def close(self) -> None:
        self._db.close()
