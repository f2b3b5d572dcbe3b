"""SQLite journal: WAL mode, group commit on a dedicated thread, backpressure at the size limit.

All SQLite work happens on one worker thread that owns the connection, so the event loop never blocks on
disk. The worker takes every queued operation at once and runs them in one transaction: concurrent `append`
callers share one commit (one fsync). Handler progress and completion are queued without waiting and are
written with the next commit. At the size limit `append` waits for room (backpressure) instead of dropping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

from .._event import Event
from ._protocol import JournalEntry

__all__ = ["JournalStats", "SqliteJournal"]

log = logging.getLogger("pywats_events.journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    completed REAL
);
CREATE INDEX IF NOT EXISTS entries_pending ON entries(seq) WHERE completed IS NULL;
CREATE INDEX IF NOT EXISTS entries_completed ON entries(completed) WHERE completed IS NOT NULL;
CREATE TABLE IF NOT EXISTS handled (
    seq INTEGER NOT NULL,
    handler TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
"""

#: warn once the pending part reaches this share of a limit; re-arm below the lower mark
WARN_RATIO = 0.8
_REARM_RATIO = 0.7


@dataclass
class JournalStats:
    """Counters for metrics and `pywats-events status`."""

    pending: int = 0
    pending_bytes: int = 0
    appended: int = 0
    commits: int = 0
    full_waits: int = 0


class _Op(NamedTuple):
    kind: str
    args: Any
    future: asyncio.Future[Any] | None


class SqliteJournal:
    """Durable journal for the bus (implements `pywats_events.journal.Journal`).

    `max_entries` / `max_bytes` bound the *pending* (incomplete) part: at the limit `append` waits until
    handlers complete entries. `retention` is how long completed entries are kept for inspection
    (they are pruned earlier if the file would otherwise exceed the limits). `synchronous="FULL"` fsyncs
    every commit (survives power loss); "NORMAL" survives process crashes only and is faster.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int = 1_000_000,
        max_bytes: int = 1024 * 1024 * 1024,
        retention: float | timedelta = 3600.0,
        synchronous: str = "FULL",
        commit_window: float = 0.0,
    ) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.retention = retention.total_seconds() if isinstance(retention, timedelta) else float(retention)
        self.synchronous = synchronous.upper()
        self.commit_window = commit_window
        self.stats = JournalStats()
        self._queue: queue.SimpleQueue[list[_Op] | None] = queue.SimpleQueue()
        #: ops issued during the current loop iteration; handed to the worker in one piece
        self._outgoing: list[_Op] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Condition | None = None
        self._waiters = 0
        self._warned = False
        self._closed = False
        self._last_prune = 0.0
        self._next_seq = 1
        self._sizes = _SizeBook(1)
        self._wake_task: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Condition()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[tuple[list[tuple[int, int]], int]] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="pywats-journal", daemon=True)
        self._thread.start()
        unfinished, self._next_seq = await ready
        self._sizes = _SizeBook(self._next_seq)
        for seq, size in unfinished:
            self._sizes.add(seq, size)
        pending = len(unfinished)
        self.stats.pending = pending
        self.stats.pending_bytes = sum(size for _, size in unfinished)
        if pending:
            log.info("journal %s: %d unfinished entries to resume", self.path, pending)

    async def close(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._closed = True
        self._flush_outgoing()
        self._queue.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None
        if self._room is not None:
            async with self._room:
                self._room.notify_all()

    async def __aenter__(self) -> SqliteJournal:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ contract
    async def append(self, events: Sequence[Event]) -> list[int]:
        if not events:
            return []
        datas = [e.to_json() for e in events]
        sizes = [len(d) for d in datas]
        await self._reserve(len(datas), sum(sizes))
        # seqs are handed out here, in call order; the worker only writes them
        first = self._next_seq
        self._next_seq += len(datas)
        book = self._sizes
        for i, size in enumerate(sizes):
            book.add(first + i, size)
        await self._submit("append", (first, datas))
        return list(range(first, first + len(datas)))

    async def read_pending(self, after_seq: int, limit: int) -> list[JournalEntry]:
        rows: list[tuple[int, str, frozenset[str]]] = await self._submit("read", (after_seq, limit))
        return [JournalEntry(seq=s, event=Event.from_json(d), handled=h) for s, d, h in rows]

    async def mark_handled(self, seq: int, handler: str, outcome: str) -> None:
        self._post(_Op("handled", (seq, handler, outcome, time.time()), None))

    async def mark_complete(self, seq: int) -> None:
        size = self._sizes.pop(seq)
        if size:  # room is freed at once; the completion itself is committed with the next batch
            self._released(1, size)
        self._post(_Op("complete", (seq, time.time()), None))

    async def depth(self) -> int:
        return self.stats.pending

    # ------------------------------------------------------------------ extras
    async def flush(self) -> None:
        """Waits until every queued mark is committed."""
        await self._submit("noop", None)

    async def prune(self) -> int:
        """Deletes completed entries past retention now; returns how many."""
        return int(await self._submit("prune", None))

    async def counts(self) -> dict[str, int]:
        """Pending and completed-but-retained entries, straight from the file."""
        result: dict[str, int] = await self._submit("counts", None)
        return result

    # ------------------------------------------------------------------ loop side
    def _ensure_open(self) -> asyncio.AbstractEventLoop:
        if self._thread is None or self._loop is None or self._closed:
            raise RuntimeError("journal is not open")
        return self._loop

    def _post(self, op: _Op) -> None:
        """Queues `op`; everything queued in one loop iteration reaches the worker as one batch, so the
        worker wakes once per iteration, not once per call (this is what makes group commit cheap)."""
        loop = self._ensure_open()
        if not self._outgoing:
            loop.call_soon(self._flush_outgoing)
        self._outgoing.append(op)

    def _flush_outgoing(self) -> None:
        if self._outgoing:
            ops, self._outgoing = self._outgoing, []
            self._queue.put(ops)

    async def _submit(self, kind: str, args: Any) -> Any:
        loop = self._ensure_open()
        fut: asyncio.Future[Any] = loop.create_future()
        self._post(_Op(kind, args, fut))
        return await fut

    def _has_room(self, count: int, size: int) -> bool:
        s = self.stats
        if s.pending == 0:
            return True  # one oversized batch must still fit into an empty journal
        return s.pending + count <= self.max_entries and s.pending_bytes + size <= self.max_bytes

    async def _reserve(self, count: int, size: int) -> None:
        """Reserves room; waits in FIFO order while the journal is full. No await after the room check
        and before the caller enqueues the append, so seqs follow call order."""
        assert self._room is not None
        if self._waiters == 0 and self._has_room(count, size):
            self._account(count, size)
            return
        self._waiters += 1
        self.stats.full_waits += 1
        if self._waiters == 1:
            log.warning(
                "journal %s is full (%d entries, %d bytes pending; limits %d / %d): "
                "intake waits until handlers catch up",
                self.path,
                self.stats.pending,
                self.stats.pending_bytes,
                self.max_entries,
                self.max_bytes,
            )
        try:
            async with self._room:
                await self._room.wait_for(lambda: self._closed or self._has_room(count, size))
                self._ensure_open()
                self._account(count, size)
        finally:
            self._waiters -= 1

    def _account(self, count: int, size: int) -> None:
        s = self.stats
        s.pending += count
        s.pending_bytes += size
        s.appended += count
        ratio = max(s.pending / self.max_entries, s.pending_bytes / self.max_bytes)
        if ratio >= WARN_RATIO and not self._warned:
            self._warned = True
            log.warning(
                "journal %s at %.0f%% of its limit (%d entries, %d bytes pending); at 100%% intake will wait",
                self.path,
                ratio * 100,
                s.pending,
                s.pending_bytes,
            )

    def _released(self, count: int, size: int) -> None:
        """Entries completed: room for waiting appends."""
        s = self.stats
        if count or size:
            s.pending = max(0, s.pending - count)
            s.pending_bytes = max(0, s.pending_bytes - size)
            ratio = max(s.pending / self.max_entries, s.pending_bytes / self.max_bytes)
            if self._warned and ratio < _REARM_RATIO:
                self._warned = False
            if self._waiters and self._room is not None:
                self._wake_task = asyncio.ensure_future(self._wake())

    async def _wake(self) -> None:
        assert self._room is not None
        async with self._room:
            self._room.notify_all()

    # ------------------------------------------------------------------ worker thread
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(_SCHEMA)
        return conn

    def _run(self, ready: asyncio.Future[tuple[list[tuple[int, int]], int]]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = self._connect()
            unfinished = conn.execute(
                "SELECT seq, size FROM entries WHERE completed IS NULL ORDER BY seq"
            ).fetchall()
            top = conn.execute(
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM entries), 0),"
                " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0))"
            ).fetchone()[0]
        except BaseException as exc:
            loop.call_soon_threadsafe(_set_exception, ready, exc)
            return
        loop.call_soon_threadsafe(_set_result, ready, (unfinished, int(top) + 1))
        marks = _Marks()
        try:
            stop = False
            while not stop:
                try:
                    first = self._queue.get(timeout=MARK_FLUSH_INTERVAL if marks else None)
                except queue.Empty:
                    marks.flush(conn)
                    continue
                if first is None:
                    break
                if self.commit_window:
                    time.sleep(self.commit_window)
                batch = list(first)
                while True:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.extend(nxt)
                self._process(conn, batch, marks)
            # whatever arrived with the stop sentinel, then every buffered mark
            rest: list[_Op] = []
            while True:
                try:
                    ops = self._queue.get_nowait()
                except queue.Empty:
                    break
                if ops is not None:
                    rest.extend(ops)
            self._process(conn, rest, marks)
            marks.flush(conn, force=True)
        except BaseException:
            log.exception("journal worker failed")
        finally:
            conn.close()

    def _process(self, conn: sqlite3.Connection, batch: list[_Op], marks: _Marks) -> None:
        """Writes a batch with as few statements as possible: each SQLite call hands the GIL to the loop
        and back, and a thread waiting for the GIL waits on the loop. Appends from one batch are one
        INSERT, which in autocommit mode is its own transaction (one commit, one fsync). Marks are
        buffered and written every `MARK_FLUSH_INTERVAL` seconds (best-effort progress), and always
        before anything reads the table."""
        loop = self._loop
        assert loop is not None
        results: list[tuple[asyncio.Future[Any], Any]] = []
        appends: list[tuple[int, list[str]]] = []
        try:
            for op in batch:
                kind = op.kind
                if kind == "handled":
                    marks.handled.append(op.args)
                elif kind == "complete":
                    marks.complete.append(op.args[0])
                elif kind == "append":
                    first, datas = op.args
                    if appends and appends[-1][0] + len(appends[-1][1]) == first:
                        appends[-1][1].extend(datas)  # consecutive seqs: one statement
                    else:
                        appends.append((first, list(datas)))
                    assert op.future is not None
                    results.append((op.future, None))
                else:
                    _insert(conn, appends)
                    appends = []
                    marks.flush(conn, force=True)
                    value: Any = None
                    if kind == "read":
                        value = self._read(conn, *op.args)
                    elif kind == "prune":
                        value = self._prune(conn)
                    elif kind == "counts":
                        pending, done = conn.execute(
                            "SELECT COUNT(*) FILTER (WHERE completed IS NULL),"
                            " COUNT(*) FILTER (WHERE completed IS NOT NULL) FROM entries"
                        ).fetchone()
                        value = {"pending": int(pending), "completed": int(done)}
                    if op.future is not None:
                        results.append((op.future, value))
            commits = _insert(conn, appends)
            marks.flush(conn)
            now = time.monotonic()
            if now - self._last_prune > 1.0:
                self._last_prune = now
                self._prune(conn)
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            log.error("journal write failed: %s", exc)
            failed = [op.future for op in batch if op.future is not None]
            loop.call_soon_threadsafe(_fail_all, failed, exc)
            return
        if results or commits:
            # one wake-up of the loop per commit, not one per waiter
            loop.call_soon_threadsafe(self._delivered, results, commits)

    def _delivered(self, results: list[tuple[asyncio.Future[Any], Any]], commits: int) -> None:
        self.stats.commits += commits
        for fut, value in results:
            if not fut.done():
                fut.set_result(value)

    def _read(
        self, conn: sqlite3.Connection, after_seq: int, limit: int
    ) -> list[tuple[int, str, frozenset[str]]]:
        rows = conn.execute(
            "SELECT seq, data FROM entries WHERE completed IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        if not rows:
            return []
        lo, hi = rows[0][0], rows[-1][0]
        handled: dict[int, set[str]] = {}
        for seq, name in conn.execute("SELECT seq, handler FROM handled WHERE seq BETWEEN ? AND ?", (lo, hi)):
            handled.setdefault(seq, set()).add(name)
        return [(seq, data, frozenset(handled.get(seq, ()))) for seq, data in rows]

    def _prune(self, conn: sqlite3.Connection) -> int:
        """Deletes completed entries past retention, and the oldest completed ones while the file holds
        more than `max_entries`; unfinished entries are never pruned."""
        cutoff = time.time() - self.retention
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN IMMEDIATE")
        deleted = conn.execute(
            "DELETE FROM entries WHERE completed IS NOT NULL AND completed < ?", (cutoff,)
        ).rowcount
        lo, hi = conn.execute("SELECT MIN(seq), MAX(seq) FROM entries").fetchone()
        if lo is not None and hi - lo + 1 > self.max_entries:
            total = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            if total > self.max_entries:
                deleted += conn.execute(
                    "DELETE FROM entries WHERE seq IN (SELECT seq FROM entries WHERE completed IS NOT NULL"
                    " ORDER BY seq LIMIT ?)",
                    (total - self.max_entries,),
                ).rowcount
        if own:
            conn.execute("COMMIT")
        return int(deleted)


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


#: buffered handler progress and completions are written at least this often (seconds)
MARK_FLUSH_INTERVAL = 0.1
_MARK_FLUSH_COUNT = 5000


def _insert(conn: sqlite3.Connection, appends: list[tuple[int, list[str]]]) -> int:
    """Rows travel as one JSON array per statement: SQLite unpacks them in C with the GIL released.
    Returns the number of commits."""
    if not appends:
        return 0
    explicit = len(appends) > 1 and not conn.in_transaction
    if explicit:
        conn.execute("BEGIN IMMEDIATE")
    now = time.time()
    for first, datas in appends:
        conn.execute(
            "INSERT INTO entries(seq, event_id, event_type, data, size, created)"
            " SELECT ? + key, json_extract(value, '$.metadata.event_id'),"
            " json_extract(value, '$.event_type'), value, length(value), ? FROM json_each(?)",
            (first, now, json.dumps(datas)),
        )
    if explicit:
        conn.execute("COMMIT")
    return 1


class _Marks:
    """Handler progress and completions waiting to be written (worker thread only)."""

    def __init__(self) -> None:
        self.handled: list[tuple[int, str, str, float]] = []
        self.complete: list[int] = []
        self._last = time.monotonic()

    def __bool__(self) -> bool:
        return bool(self.handled or self.complete)

    def flush(self, conn: sqlite3.Connection, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self:
            self._last = now
            return
        due = (
            len(self.handled) + len(self.complete) >= _MARK_FLUSH_COUNT
            or now - self._last >= MARK_FLUSH_INTERVAL
        )
        if not (force or due):
            return
        done = set(self.complete)
        progress = [h[:3] for h in self.handled if h[0] not in done]  # progress of a completed entry is moot
        at = time.time()
        conn.execute("BEGIN IMMEDIATE")
        if progress:
            conn.execute(
                "INSERT OR REPLACE INTO handled(seq, handler, outcome, at)"
                " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
                " json_extract(value, '$[2]'), ? FROM json_each(?)",
                (at, json.dumps(progress)),
            )
        if done:
            seqs = json.dumps(sorted(done))
            conn.execute(
                "UPDATE entries SET completed = ?"
                " WHERE completed IS NULL AND seq IN (SELECT value FROM json_each(?))",
                (at, seqs),
            )
            # progress of a finished entry is no longer needed
            conn.execute("DELETE FROM handled WHERE seq IN (SELECT value FROM json_each(?))", (seqs,))
        conn.execute("COMMIT")
        self.handled.clear()
        self.complete.clear()
        self._last = now


class _SizeBook:
    """Sizes of unfinished entries by seq, 4 bytes each (seqs are dense), so completing an entry frees its
    room on the loop at once, without asking the database."""

    def __init__(self, base: int) -> None:
        self._base = base
        self._head = 0
        self._sizes = array("I")

    def add(self, seq: int, size: int) -> None:
        i = seq - self._base
        if i < 0:
            return
        size = max(1, min(size, 0xFFFFFFFF))
        if i >= len(self._sizes):
            self._sizes.extend(array("I", bytes(4 * (i - len(self._sizes)))))
            self._sizes.append(size)
        else:
            self._sizes[i] = size

    def pop(self, seq: int) -> int:
        i = seq - self._base
        sizes = self._sizes
        if i < 0 or i >= len(sizes):
            return 0
        size = sizes[i]
        sizes[i] = 0
        while self._head < len(sizes) and sizes[self._head] == 0:
            self._head += 1
        if self._head > 4096 and self._head * 2 > len(sizes):
            del sizes[: self._head]
            self._base += self._head
            self._head = 0
        return int(size)


def _fail_all(futs: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_exception(exc)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
