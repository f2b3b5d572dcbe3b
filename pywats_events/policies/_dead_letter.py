"""Dead-letter queues: where events go that a handler can never process.

`DeadLetterQueue` keeps entries in memory (bounded); `SqliteDeadLetterQueue` keeps them in a SQLite file so
they survive restarts. Both share the same API: `add`, `get_entries(...)`, `get(id)`, `remove(id)`, `purge()`,
and `replay(bus, ids=None, timeout=None)` / `await areplay(...)`, which hand each entry back to the one
handler that failed it (other handlers never see the event twice) and return a `ReplayReport`. A full
queue evicts its oldest entry with a warning.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._event import Event

if TYPE_CHECKING:
    from ..bus import AsyncEventBus, EventBus

__all__ = [
    "DeadLetterEntry",
    "DeadLetterQueue",
    "DeadLetterStore",
    "ReplayReport",
    "SqliteDeadLetterQueue",
]

log = logging.getLogger("pywats_events.dlq")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class DeadLetterEntry:
    """One event a handler gave up on, with why and how often it was tried."""

    event: Event
    handler: str
    error: str
    error_type: str
    attempts: int = 1
    first_failure: datetime = field(default_factory=_utcnow)
    last_failure: datetime = field(default_factory=_utcnow)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class ReplayReport:
    """What a replay did with the selected entries. Every entry not `replayed` is still in the queue."""

    #: entries whose handler finished with them (removed from the queue; a handler that failed them
    #: again for good made a new entry)
    replayed: int = 0
    #: ids of entries skipped because their handler is not subscribed to the bus
    skipped: list[str] = field(default_factory=list)
    #: entries not tried because the replay stopped at a timeout
    not_replayed: int = 0
    #: id of the entry whose handler did not finish within `timeout` (the replay stopped there); it
    #: still runs and leaves the queue if it finishes later
    timed_out: str | None = None

    @property
    def complete(self) -> bool:
        """Every selected entry was replayed."""
        return not self.skipped and not self.not_replayed and self.timed_out is None


class DeadLetterStore(Protocol):
    """What the bus needs from a dead-letter queue (implement it to plug in your own store)."""

    #: True if `add` does blocking I/O (the bus then calls it in a worker thread)
    blocking: bool

    def add(self, entry: DeadLetterEntry) -> None: ...


class _DeadLetterBase:
    blocking = False
    #: entries dropped (oldest first) because the queue was full, since this object was made
    evicted = 0

    def add(self, entry: DeadLetterEntry) -> None:
        raise NotImplementedError

    def get_entries(
        self,
        *,
        handler: str | None = None,
        event_type: str | None = None,
        error_type: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[DeadLetterEntry]:
        """Entries oldest first, narrowed by every filter given, at most `limit` of them."""
        found = self._candidates(handler, event_type, error_type)
        out = [e for e in found if _matches(e, handler, event_type, error_type, since)]
        return out[:limit] if limit is not None else out

    def _candidates(
        self, handler: str | None, event_type: str | None, error_type: str | None
    ) -> list[DeadLetterEntry]:
        """Entries oldest first; a store may pre-filter on the given fields (the caller checks again)."""
        raise NotImplementedError

    def get(self, entry_id: str) -> DeadLetterEntry | None:
        raise NotImplementedError

    def remove(self, entry_id: str) -> bool:
        raise NotImplementedError

    def purge(self) -> int:
        """Delete every entry; returns how many were deleted."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def _selected(self, ids: Iterable[str] | None) -> list[DeadLetterEntry]:
        if ids is None:
            return self.get_entries()
        found = [self.get(i) for i in ids]
        return [e for e in found if e is not None]

    async def areplay(
        self,
        bus: AsyncEventBus,
        ids: Iterable[str] | None = None,
        *,
        timeout: float | None = None,
        progress: Callable[[], None] | None = None,
    ) -> ReplayReport:
        """Re-publish entries (all, or `ids`) one after the other, each to the handler that failed it;
        an entry leaves the queue once its handler finished with it (if it fails again for good it
        comes back as a new entry).

        An entry whose handler is not subscribed to `bus` is skipped with a warning naming the handler
        and stays in the queue; the others are still replayed. `timeout` bounds the wait for each entry
        (None: no bound): a handler that does not finish in time (an outage: the event is deferred)
        stops the replay, and the rest stay in the queue. `progress` is called after each entry."""
        return await self._replay_entries(bus, self._selected(ids), timeout, progress)

    def replay(
        self, bus: EventBus | AsyncEventBus, ids: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> ReplayReport:
        """Blocking twin of `areplay` for the synchronous `EventBus`."""
        from ..bus import EventBus

        if not isinstance(bus, EventBus):
            raise TypeError("replay() needs an EventBus; with AsyncEventBus use `await dlq.areplay(bus)`")
        entries = self._selected(ids)
        return bus.call(functools.partial(self._replay_entries, bus.engine, entries, timeout))

    async def _replay_entries(
        self,
        bus: AsyncEventBus,
        entries: list[DeadLetterEntry],
        timeout: float | None,
        progress: Callable[[], None] | None = None,
    ) -> ReplayReport:
        report = ReplayReport()
        for n, entry in enumerate(entries):
            if n and progress is not None:
                progress()
            subscribed = bus.handler_names
            if entry.handler not in subscribed:
                log.warning(
                    "dead letter %s (event %s) skipped: its handler %r is not subscribed (subscribed: %s);"
                    " it stays in the dead-letter queue",
                    entry.id,
                    entry.event.id,
                    entry.handler,
                    ", ".join(subscribed) or "none",
                )
                report.skipped.append(entry.id)
                continue
            task = asyncio.ensure_future(bus.publish(_fresh_attempt(entry.event), handler=entry.handler))
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
                # the delivery goes on: the entry leaves the queue if its handler still finishes it
                task.add_done_callback(functools.partial(self._remove_if_done, entry_id=entry.id))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                report.timed_out = entry.id
                report.not_replayed = len(entries) - n - 1
                log.warning(
                    "dead letter %s: handler %r did not finish within %gs (outage?); replay stopped,"
                    " %d entr%s not tried",
                    entry.id,
                    entry.handler,
                    timeout,
                    report.not_replayed,
                    "y" if report.not_replayed == 1 else "ies",
                )
                break
            await self._aremove(entry.id)
            report.replayed += 1
        if entries and progress is not None and report.timed_out is None:
            progress()
        if report.skipped:
            log.warning(
                "dead-letter replay skipped %d entr%s whose handler is not subscribed",
                len(report.skipped),
                "y" if len(report.skipped) == 1 else "ies",
            )
        return report

    async def _aremove(self, entry_id: str) -> None:
        if self.blocking:
            await asyncio.to_thread(self.remove, entry_id)
        else:
            self.remove(entry_id)

    def _remove_if_done(self, task: asyncio.Future[None], *, entry_id: str) -> None:
        if not task.cancelled() and task.exception() is None:
            try:
                self.remove(entry_id)
            except Exception:
                log.exception("could not remove replayed dead letter %s", entry_id)


def _fresh_attempt(event: Event) -> Event:
    return event.model_copy(update={"metadata": event.metadata.model_copy(update={"attempt": 0})})


def _matches(
    e: DeadLetterEntry,
    handler: str | None,
    event_type: str | None,
    error_type: str | None,
    since: datetime | None,
) -> bool:
    return (
        (handler is None or e.handler == handler)
        and (event_type is None or e.event.type_name == str(event_type))
        and (error_type is None or e.error_type == error_type)
        and (since is None or e.last_failure >= since)
    )


class DeadLetterQueue(_DeadLetterBase):
    """In-memory dead-letter queue holding at most `max_size` entries (oldest evicted first).

    >>> dlq = DeadLetterQueue(max_size=1000)
    >>> for entry in dlq.get_entries():
    ...     print(entry.event.id, entry.error)
    """

    def __init__(self, max_size: int = 1000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self._entries: OrderedDict[str, DeadLetterEntry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entry: DeadLetterEntry) -> None:
        with self._lock:
            self._entries[entry.id] = entry
            while len(self._entries) > self.max_size:
                _, old = self._entries.popitem(last=False)
                self.evicted += 1
                log.warning(
                    "dead-letter queue full (%d): evicted entry %s (event %s, handler %s)",
                    self.max_size,
                    old.id,
                    old.event.id,
                    old.handler,
                )

    def _candidates(
        self, handler: str | None, event_type: str | None, error_type: str | None
    ) -> list[DeadLetterEntry]:
        with self._lock:
            return list(self._entries.values())

    def get(self, entry_id: str) -> DeadLetterEntry | None:
        with self._lock:
            return self._entries.get(entry_id)

    def remove(self, entry_id: str) -> bool:
        with self._lock:
            return self._entries.pop(entry_id, None) is not None

    def purge(self) -> int:
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            return n

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DeadLetterQueue(max_size={self.max_size}, entries={len(self._entries)})"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_json TEXT NOT NULL,
    event_type TEXT NOT NULL,
    handler TEXT NOT NULL,
    error TEXT NOT NULL,
    error_type TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failure TEXT NOT NULL,
    last_failure TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_handler ON dead_letters(handler);
CREATE INDEX IF NOT EXISTS dead_letters_event_type ON dead_letters(event_type);
CREATE INDEX IF NOT EXISTS dead_letters_last_failure ON dead_letters(last_failure);
"""

_COLUMNS = "id, event_json, handler, error, error_type, attempts, first_failure, last_failure"


class SqliteDeadLetterQueue(_DeadLetterBase):
    """Dead-letter queue in a SQLite file: entries survive restarts and can be replayed later.

    >>> dlq = SqliteDeadLetterQueue("dead_letters.db", max_size=100_000)
    """

    blocking = True

    def __init__(self, path: str | Path, max_size: int = 100_000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.path = Path(path)
        self.max_size = max_size
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def add(self, entry: DeadLetterEntry) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO dead_letters (id, event_json, event_type, handler, error, "
                    "error_type, attempts, first_failure, last_failure) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        entry.id,
                        entry.event.to_json(),
                        entry.event.type_name,
                        entry.handler,
                        entry.error,
                        entry.error_type,
                        entry.attempts,
                        entry.first_failure.isoformat(),
                        entry.last_failure.isoformat(),
                    ),
                )
                (count,) = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
                excess = count - self.max_size
                if excess > 0:
                    self.evicted += excess
                    log.warning(
                        "dead-letter queue %s full (%d): evicting %d oldest", self.path, self.max_size, excess
                    )
                    db.execute(
                        "DELETE FROM dead_letters WHERE pos IN "
                        "(SELECT pos FROM dead_letters ORDER BY pos LIMIT ?)",
                        (excess,),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @staticmethod
    def _row(row: tuple[Any, ...]) -> DeadLetterEntry:
        return DeadLetterEntry(
            id=row[0],
            event=Event.from_json(row[1]),
            handler=row[2],
            error=row[3],
            error_type=row[4],
            attempts=row[5],
            first_failure=datetime.fromisoformat(row[6]),
            last_failure=datetime.fromisoformat(row[7]),
        )

    def _candidates(
        self, handler: str | None, event_type: str | None, error_type: str | None
    ) -> list[DeadLetterEntry]:
        where, args = [], []
        for col, val in (("handler", handler), ("event_type", event_type), ("error_type", error_type)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(str(val))
        sql = f"SELECT {_COLUMNS} FROM dead_letters"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY pos"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def page(
        self,
        *,
        handler: str | None = None,
        event_type: str | None = None,
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[DeadLetterEntry]]:
        """(how many match, one page of them newest first): the console's paged listing.

        Handler and event type use their indexes; `text` matches the error text or type (a scan, bounded by
        `max_size`); `since`/`until` bound the last failure (ISO times in UTC compare as text)."""
        where, args = [], []
        for col, val in (("handler", handler), ("event_type", event_type)):
            if val:
                where.append(f"{col} = ?")
                args.append(str(val))
        if text:
            where.append("(error LIKE ? ESCAPE '\\' OR error_type LIKE ? ESCAPE '\\')")
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pattern, pattern]
        if since is not None:
            where.append("last_failure >= ?")
            args.append(since.astimezone(timezone.utc).isoformat())
        if until is not None:
            where.append("last_failure <= ?")
            args.append(until.astimezone(timezone.utc).isoformat())
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            (total,) = self._db.execute(f"SELECT COUNT(*) FROM dead_letters{cond}", args).fetchone()
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM dead_letters{cond} ORDER BY pos DESC LIMIT ? OFFSET ?",
                [*args, max(0, limit), max(0, offset)],
            ).fetchall()
        return int(total), [self._row(r) for r in rows]

    def facets(self) -> dict[str, list[str]]:
        """The handlers and event types present (for the console's filter choices; both indexed)."""
        with self._lock:
            handlers = [r[0] for r in self._db.execute("SELECT DISTINCT handler FROM dead_letters")]
            types = [r[0] for r in self._db.execute("SELECT DISTINCT event_type FROM dead_letters")]
        return {"handler": sorted(handlers), "event_type": sorted(types)}

    def get(self, entry_id: str) -> DeadLetterEntry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ?", (entry_id,)
            ).fetchone()
        return self._row(row) if row else None

    def remove(self, entry_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM dead_letters WHERE id = ?", (entry_id,)).rowcount > 0

    def purge(self) -> int:
        with self._lock:
            return int(self._db.execute("DELETE FROM dead_letters").rowcount)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SqliteDeadLetterQueue({str(self.path)!r}, max_size={self.max_size})"
