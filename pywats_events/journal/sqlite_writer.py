"""The SQLite side of `SqliteJournal`: one worker thread that owns the connection and does all the SQL.

The loop hands the worker `Batch`es (appends already serialised as JSON arrays, completion and progress
marks, reads and other requests); the worker writes each hand-over with as few statements as it can and
reports back to the loop once per commit through the callbacks it was given. Marks are buffered and
written every `MARK_FLUSH_INTERVAL` seconds, and always before anything reads the tables.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["MARK_FLUSH_INTERVAL", "Batch", "Op", "Run", "SqliteWriter"]

log = logging.getLogger("pywats_events.journal")

#: buffered handler progress and completions are written at least this often (seconds)
MARK_FLUSH_INTERVAL = 0.1
_MARK_FLUSH_COUNT = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    data TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS done (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS done_at ON done(at);
CREATE TABLE IF NOT EXISTS handled (
    seq INTEGER NOT NULL,
    handler TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS entries AS
    SELECT j.seq AS seq, json_extract(j.data, '$.metadata.event_id') AS event_id,
           json_extract(j.data, '$.event_type') AS event_type, j.data AS data, j.size AS size,
           j.created AS created, d.at AS completed
    FROM journal AS j LEFT JOIN done AS d ON d.seq = j.seq;
"""

#: files from before completions had their own table: one `entries` table with a `completed` column
_MIGRATE_V1 = """
BEGIN IMMEDIATE;
ALTER TABLE entries RENAME TO entries_v1;
DROP INDEX IF EXISTS entries_pending;
DROP INDEX IF EXISTS entries_completed;
{schema}
INSERT INTO journal(seq, data, size, created) SELECT seq, data, size, created FROM entries_v1;
INSERT INTO done(seq, at) SELECT seq, completed FROM entries_v1 WHERE completed IS NOT NULL;
DELETE FROM sqlite_sequence WHERE name = 'journal';
INSERT INTO sqlite_sequence(name, seq)
    SELECT 'journal', MAX(COALESCE((SELECT MAX(seq) FROM entries_v1), 0),
                          COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'entries_v1'), 0));
DROP TABLE entries_v1;
COMMIT;
"""


class Op(NamedTuple):
    """A request for the worker (`kind`: "read", "prune", "counts", "noop"), answered through `future`."""

    kind: str
    args: Any
    future: asyncio.Future[Any] | None


class Run(NamedTuple):
    """`n` consecutive entries serialised as one JSON array text, starting at seq `first`."""

    first: int
    n: int
    data: str


@dataclass
class Batch:
    """Everything the loop produced since the last hand-over; the worker gets it in one queue item."""

    runs: list[Run]
    #: futures of the appends in `runs`, resolved once they are committed
    waiters: list[asyncio.Future[None]]
    complete: list[int]
    handled: list[tuple[int, str, str, float]]
    ops: list[Op]


#: the loop-side callback for a commit: append futures, (request future, answer) pairs, commits
Delivered = Callable[[list[asyncio.Future[None]], list[tuple[asyncio.Future[Any], Any]], int], None]
#: the loop-side callback for a failed write: append futures, request futures, runs not written, error
Failed = Callable[[list[asyncio.Future[None]], list[asyncio.Future[Any]], list[Run], BaseException], None]


class SqliteWriter:
    """The worker thread of one open journal file. `start` opens (or migrates) the file and reports the
    unfinished entries; `hand_over` queues a batch; `stop` then `join` end the thread once everything
    queued (and every buffered mark) is written."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        retention: float,
        max_entries: int,
        commit_window: float,
        loop: asyncio.AbstractEventLoop,
        delivered: Delivered,
        failed: Failed,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.retention = retention
        self.max_entries = max_entries
        self.commit_window = commit_window
        self._loop = loop
        self._delivered = delivered
        self._failed = failed
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: the worker waits for the next hand-over (it needs the GIL to pick one up)
        self._idle = False
        self._picked = threading.Event()
        self._last_prune = 0.0
        self._floor = 1  # lowest seq that may be unfinished
        self._has_progress = False  # the handled table may hold rows

    def start(self, ready: asyncio.Future[tuple[list[tuple[int, int]], int]]) -> None:
        """Start the thread; `ready` gets the unfinished entries `(seq, size)` and the next seq."""
        self._thread = threading.Thread(target=self._run, args=(ready,), name="pywats-journal", daemon=True)
        self._thread.start()

    def hand_over(self, batch: Batch, pickup_wait: float = 0.0) -> None:
        """Queue `batch`. With `pickup_wait`, an idle worker gets up to that many seconds (the loop
        blocks) to pick it up: a busy loop would otherwise hold the GIL the worker needs until it goes
        idle itself, so letting go for a moment overlaps the commit with the loop's next work."""
        if pickup_wait and self._idle:
            self._picked.clear()
            self._queue.put(batch)
            self._picked.wait(pickup_wait)
        else:
            self._queue.put(batch)

    def stop(self) -> None:
        """No more hand-overs: the worker writes what is queued and ends."""
        self._queue.put(None)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    # ------------------------------------------------------------------ worker thread
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'entries'").fetchone()
        if kind is not None and kind[0] == "table":
            log.info("journal %s: moving to the current file layout", self.path)
            conn.executescript(_MIGRATE_V1.format(schema=_SCHEMA))
        else:
            conn.executescript(_SCHEMA)
        return conn

    def _run(self, ready: asyncio.Future[tuple[list[tuple[int, int]], int]]) -> None:
        loop = self._loop
        try:
            conn = self._connect()
            unfinished = conn.execute(
                "SELECT seq, size FROM journal AS j"
                " WHERE NOT EXISTS (SELECT 1 FROM done AS d WHERE d.seq = j.seq) ORDER BY seq"
            ).fetchall()
            top = conn.execute(
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM journal), 0),"
                " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'journal'), 0))"
            ).fetchone()[0]
            # everything below the first unfinished entry is complete: reads start there
            self._floor = unfinished[0][0] if unfinished else int(top) + 1
            self._has_progress = conn.execute("SELECT 1 FROM handled LIMIT 1").fetchone() is not None
        except BaseException as exc:
            loop.call_soon_threadsafe(_set_exception, ready, exc)
            return
        loop.call_soon_threadsafe(_set_result, ready, (unfinished, int(top) + 1))
        marks = _Marks(self._has_progress)
        try:
            stop = False
            while not stop:
                self._idle = True
                try:
                    first = self._queue.get(timeout=MARK_FLUSH_INTERVAL if marks else None)
                except queue.Empty:
                    marks.flush(conn)
                    continue
                finally:
                    self._idle = False
                self._picked.set()
                if first is None:
                    break
                if self.commit_window:
                    time.sleep(self.commit_window)
                batches = [first]
                while True:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batches.append(nxt)
                self._process(conn, batches, marks)
            # whatever arrived with the stop sentinel, then every buffered mark
            rest: list[Batch] = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    rest.append(item)
            if rest:
                self._process(conn, rest, marks)
            marks.flush(conn, force=True)
        except BaseException:
            log.exception("journal worker failed")
        finally:
            conn.close()

    def _process(self, conn: sqlite3.Connection, batches: list[Batch], marks: _Marks) -> None:
        """Writes batches with as few statements (and as little Python) as possible: while this thread
        runs Python it holds the GIL the event loop needs. Appends are one INSERT, which in autocommit
        mode is its own transaction (one commit, one fsync). Marks are buffered and written every
        `MARK_FLUSH_INTERVAL` seconds (best-effort progress), and always before anything reads the table.
        Nothing is resolved before everything in the batches is written."""
        loop = self._loop
        if len(batches) == 1:
            b = batches[0]
            runs, waiters, ops = b.runs, b.waiters, b.ops
            marks.complete.extend(b.complete)
            marks.handled.extend(b.handled)
        else:
            runs, waiters, ops = [], [], []
            for b in batches:
                runs.extend(b.runs)
                waiters.extend(b.waiters)
                ops.extend(b.ops)
                marks.complete.extend(b.complete)
                marks.handled.extend(b.handled)
        results: list[tuple[asyncio.Future[Any], Any]] = []
        commits = 0
        try:
            commits = _insert(conn, runs)
            marks.flush(conn, force=bool(ops))
            for op in ops:
                kind = op.kind
                value: Any = None
                if kind == "read":
                    value = self._read(conn, *op.args)
                elif kind == "prune":
                    value = self._prune(conn)
                elif kind == "counts":
                    total, done = conn.execute(
                        "SELECT (SELECT COUNT(*) FROM journal), (SELECT COUNT(*) FROM done)"
                    ).fetchone()
                    value = {"pending": int(total) - int(done), "completed": int(done)}
                if op.future is not None:
                    results.append((op.future, value))
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
            failed: list[asyncio.Future[Any]] = [op.future for op in ops if op.future is not None]
            lost = [] if commits else runs  # appends committed before the failure stand
            loop.call_soon_threadsafe(self._failed, [] if commits else waiters, failed, lost, exc)
            if commits:
                loop.call_soon_threadsafe(self._delivered, waiters, [], commits)
            return
        if waiters or results:
            # one wake-up of the loop per commit, not one per waiter
            loop.call_soon_threadsafe(self._delivered, waiters, results, commits)

    def _read(
        self, conn: sqlite3.Connection, after_seq: int, limit: int
    ) -> list[tuple[int, str, frozenset[str]]]:
        rows = conn.execute(
            "SELECT seq, data FROM journal AS j WHERE seq > ?"
            " AND NOT EXISTS (SELECT 1 FROM done AS d WHERE d.seq = j.seq) ORDER BY seq LIMIT ?",
            (max(after_seq, self._floor - 1), limit),
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
            "DELETE FROM journal WHERE seq IN (SELECT seq FROM done WHERE at < ?)", (cutoff,)
        ).rowcount
        if deleted:
            conn.execute("DELETE FROM done WHERE at < ?", (cutoff,))
        lo, hi = conn.execute("SELECT MIN(seq), MAX(seq) FROM journal").fetchone()
        if lo is not None and hi - lo + 1 > self.max_entries:
            total = conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
            if total > self.max_entries:
                old = "SELECT seq FROM done ORDER BY seq LIMIT ?"
                excess = (total - self.max_entries,)
                deleted += conn.execute(f"DELETE FROM journal WHERE seq IN ({old})", excess).rowcount
                conn.execute(f"DELETE FROM done WHERE seq IN ({old})", excess)
        if own:
            conn.execute("COMMIT")
        return int(deleted)


_INSERT = (
    "INSERT INTO journal(seq, data, size, created) SELECT ? + key, value, length(value), ? FROM json_each(?)"
)


def _insert(conn: sqlite3.Connection, runs: list[Run]) -> int:
    """Each run is one JSON array that SQLite unpacks in C with the GIL released; consecutive runs are
    joined into one statement. Returns the number of commits."""
    if not runs:
        return 0
    joined: list[tuple[int, list[str]]] = []
    end = -1  # seq after the last joined run
    for run in runs:
        if run.first == end:
            joined[-1][1].append(run.data)
        else:
            joined.append((run.first, [run.data]))
        end = run.first + run.n
    explicit = len(joined) > 1 and not conn.in_transaction
    if explicit:
        conn.execute("BEGIN IMMEDIATE")
    now = time.time()
    for first, parts in joined:
        data = parts[0] if len(parts) == 1 else "[" + ",".join(p[1:-1] for p in parts) + "]"
        conn.execute(_INSERT, (first, now, data))
    if explicit:
        conn.execute("COMMIT")
    return 1


class _Marks:
    """Handler progress and completions waiting to be written (worker thread only)."""

    def __init__(self, progress_rows: bool) -> None:
        self.handled: list[tuple[int, str, str, float]] = []
        self.complete: list[int] = []
        #: the handled table may hold rows (else completing needs no clean-up there)
        self.progress_rows = progress_rows
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
            self.progress_rows = True
        if done:
            # a small row per completion: far cheaper than rewriting each entry's row
            seqs = json.dumps(sorted(done))
            conn.execute(
                "INSERT OR IGNORE INTO done(seq, at) SELECT value, ? FROM json_each(?)"
                " WHERE EXISTS (SELECT 1 FROM journal WHERE journal.seq = value)",
                (at, seqs),
            )
            if self.progress_rows:  # progress of a finished entry is no longer needed
                conn.execute("DELETE FROM handled WHERE seq IN (SELECT value FROM json_each(?))", (seqs,))
                self.progress_rows = conn.execute("SELECT 1 FROM handled LIMIT 1").fetchone() is not None
        conn.execute("COMMIT")
        self.handled.clear()
        self.complete.clear()
        self._last = now


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
