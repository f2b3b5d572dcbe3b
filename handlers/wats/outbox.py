"""`Outbox`: a durable local store of WATS requests, for store-and-forward (a station without WATS access).

As a `RequestSink`, `send` stores the request (durably: SQLite WAL, synchronous=FULL) and answers a
synthetic 202. Later `push(sink)` forwards the stored requests, oldest first, to a real sender.

Push rules (each stored request is carried out once):

* success                → the row is marked ``sent`` durably before the next one is sent;
* `WatsTransientError`   → push stops; the row and everything after it stay ``pending`` in order;
* `WatsTransientError`   includes a refused token (401/403): nothing after it could succeed either;
* `WatsPermanentError`   → the row is marked ``failed`` with the server's reason and push continues
  (one refused request must not block the rest; `list(state="failed")` shows what needs attention,
  `retry_failed()` queues them again once the cause is fixed);
* 409 to a ``create_unit`` → the unit already exists (e.g. a report created it): counted as ``sent``,
  as the production handler does online;
* any other exception    → treated like a transient failure (stop, keep everything).

A row is marked ``sending`` while its request is in flight. If the process dies then, reopening the
outbox puts an idempotent request back to ``pending`` (sending it again is harmless) and marks a
non-idempotent one ``failed`` with "outcome unknown" rather than risk carrying it out twice.

Redelivery: a request that names a report id (an idempotent request whose JSON body has an ``id``,
i.e. a WSJF submission) is stored once per (method, path, id). Storing it again while it is still
pending replaces the body in place, keeping its position; once sent, an identical copy is ignored and a
changed one is queued as a new row (the server overwrites by id).

GET requests cannot be answered from a store: they go to `reads` if given, else raise
`WatsTransientError` so the bus keeps the event waiting until a live server is configured.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._exceptions import WatsPermanentError, WatsTransientError
from .sink import RequestSink, WatsRequest, WatsResponse

__all__ = ["Outbox", "OutboxEntry", "OutboxState", "PushResult"]

OutboxState = Literal["pending", "sending", "sent", "failed"]
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     REAL    NOT NULL,
    method      TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    params      TEXT    NOT NULL,
    body        TEXT,
    idempotent  INTEGER NOT NULL,
    operation   TEXT    NOT NULL,
    dedup_key   TEXT,
    state       TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    status      INTEGER,
    updated     REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, id);
CREATE INDEX IF NOT EXISTS requests_dedup ON requests (dedup_key, id);
"""

_COLUMNS = "id, created, method, path, params, body, idempotent, operation, state, attempts, error, status"


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    created: float  # unix time
    method: str
    path: str
    params: dict[str, Any]
    json: Any
    idempotent: bool
    operation: str
    state: OutboxState
    attempts: int
    error: str | None
    status: int | None

    def to_request(self) -> WatsRequest:
        return WatsRequest(
            method=self.method,
            path=self.path,
            params=dict(self.params),
            json=self.json,
            idempotent=self.idempotent,
            operation=self.operation,
        )


@dataclass(frozen=True)
class PushResult:
    sent: int
    failed: int
    pending: int
    #: why push stopped early (a transient failure), or None if it ran out of work or hit `limit`
    stopped: str | None = None


def _dedup_key(request: WatsRequest) -> str | None:
    body = request.json
    if request.idempotent and isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return f"{request.method.upper()} {request.path} {body['id']}"
    return None


#: operations whose 409 (Conflict) answer means "already there": the request's goal is reached
_DONE_ON_CONFLICT = frozenset({"create_unit"})


def _already_done(entry: OutboxEntry, exc: WatsPermanentError) -> bool:
    return exc.status == 409 and entry.operation in _DONE_ON_CONFLICT


class Outbox:
    """Durable, ordered store of WATS requests (one SQLite file)."""

    def __init__(self, path: str | Path, *, reads: RequestSink | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.reads = reads
        self._lock = threading.Lock()
        self._push_lock: asyncio.Lock | None = None
        #: requests `send` queued for the next group commit, and the task that writes them
        self._queued: list[tuple[WatsRequest, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._recover()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"

    # -- storage helpers ---------------------------------------------------------------------------

    def _tx(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _recover(self) -> None:
        """Rows left ``sending`` by a crash: idempotent ones go back to pending, others fail."""

        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute(
                "UPDATE requests SET state='pending', updated=? WHERE state='sending' AND idempotent=1",
                (now,),
            )
            db.execute(
                "UPDATE requests SET state='failed', updated=?, error=?"
                " WHERE state='sending' AND idempotent=0",
                (now, "interrupted while sending; outcome unknown and the request is not idempotent"),
            )

        self._tx(work)

    def _store_many(self, requests: list[WatsRequest], prepared: list[_Prepared]) -> list[int | Exception]:
        """Store `requests` in order in one transaction (one commit, one fsync); each gets its row id, or
        the error that kept only it out (a body that could not be serialised, see `_prepare`)."""

        def work(db: sqlite3.Connection) -> list[int | Exception]:
            now = time.time()
            return [
                item if isinstance(item, Exception) else _store_row(db, request, *item, now)
                for request, item in zip(requests, prepared, strict=True)
            ]

        if all(isinstance(item, Exception) for item in prepared):
            return [item for item in prepared if isinstance(item, Exception)]
        return self._tx(work)

    def _set_state(
        self, row_id: int, state: OutboxState, *, error: str | None = None, status: int | None = None
    ) -> None:
        def work(db: sqlite3.Connection) -> None:
            attempts = 1 if state == "sending" else 0
            db.execute(
                "UPDATE requests SET state=?, error=?, status=COALESCE(?, status), attempts=attempts+?,"
                " updated=? WHERE id=?",
                (state, error, status, attempts, time.time(), row_id),
            )

        self._tx(work)

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> OutboxEntry:
        row_id, created, method, path, params, body, idempotent, operation, state, attempts, error, status = (
            row
        )
        return OutboxEntry(
            id=int(row_id),
            created=float(created),
            method=method,
            path=path,
            params=json.loads(params),
            json=None if body is None else json.loads(body),
            idempotent=bool(idempotent),
            operation=operation,
            state=state,
            attempts=int(attempts),
            error=error,
            status=status,
        )

    def _select(self, sql: str, args: tuple[Any, ...]) -> list[OutboxEntry]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._entry(r) for r in rows]

    # -- RequestSink -------------------------------------------------------------------------------

    async def send(self, request: WatsRequest) -> WatsResponse:
        if request.method.upper() == "GET":
            if self.reads is not None:
                return await self.reads.send(request)
            raise WatsTransientError(
                f"GET {request.path}: the outbox stores writes only and no live WATS server is configured"
            )
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queued.append((request, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="pywats-outbox-writer")
        row_id = await fut
        return WatsResponse(status=202, json={"outboxId": row_id, "queued": True}, text="")

    async def _write_queued(self) -> None:
        """Group commit: everything queued while the previous commit ran is stored in the next one, so
        concurrent handlers share an fsync instead of queueing for one each."""
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                requests = [request for request, _ in batch]
                # serialised here, not in the thread: a thread running Python takes the GIL from the
                # loop for up to a switch interval whenever the loop makes a system call
                prepared = _prepare(requests)
                results = await asyncio.to_thread(self._store_many, requests, prepared)
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def aclose(self) -> None:
        if self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- inspection --------------------------------------------------------------------------------

    def list(
        self, limit: int = 100, offset: int = 0, *, state: OutboxState | None = None
    ) -> list[OutboxEntry]:
        """Stored requests, oldest first (optionally only those in `state`)."""
        if state is None:
            return self._select(
                f"SELECT {_COLUMNS} FROM requests ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
            )
        return self._select(
            f"SELECT {_COLUMNS} FROM requests WHERE state=? ORDER BY id LIMIT ? OFFSET ?",
            (state, limit, offset),
        )

    def count(self, state: OutboxState | None = None) -> int:
        """Number of stored requests (all, or those in `state`)."""
        with self._lock:
            if state is None:
                row = self._db.execute("SELECT COUNT(*) FROM requests").fetchone()
            else:
                row = self._db.execute("SELECT COUNT(*) FROM requests WHERE state=?", (state,)).fetchone()
        return int(row[0])

    def purge_sent(self) -> int:
        """Delete the rows already delivered; returns how many."""
        return self._tx(lambda db: db.execute("DELETE FROM requests WHERE state='sent'").rowcount)

    def retry_failed(self, *, include_unknown: bool = False) -> int:
        """Put failed rows back to pending (after the cause was fixed), keeping their place in the order;
        returns how many. A non-idempotent row whose outcome is unknown may already have been carried
        out, so it stays failed unless `include_unknown` (check WATS first)."""
        sql = "UPDATE requests SET state='pending', error=NULL, updated=? WHERE state='failed'"
        if not include_unknown:
            sql += " AND NOT (idempotent=0 AND COALESCE(error, '') LIKE '%outcome unknown%')"
        return self._tx(
            lambda db: (
                db.execute(
                    sql,
                    (time.time(),),
                ).rowcount
            )
        )

    # -- forwarding --------------------------------------------------------------------------------

    async def push(
        self, sink: RequestSink, *, limit: int | None = None, progress: Callable[[], None] | None = None
    ) -> PushResult:
        """Send pending requests in order to `sink`; see the module docstring for the rules. `progress`
        is called after each request that was sent or refused."""
        if self._push_lock is None:
            self._push_lock = asyncio.Lock()
        async with self._push_lock:
            sent = failed = 0
            stopped: str | None = None
            while limit is None or sent + failed < limit:
                if progress is not None and sent + failed:
                    progress()
                batch = await asyncio.to_thread(
                    self._select,
                    f"SELECT {_COLUMNS} FROM requests WHERE state='pending' ORDER BY id LIMIT 1",
                    (),
                )
                if not batch:
                    break
                entry = batch[0]
                await asyncio.to_thread(self._set_state, entry.id, "sending")
                try:
                    response = await sink.send(entry.to_request())
                except WatsPermanentError as exc:
                    if _already_done(entry, exc):
                        await asyncio.to_thread(self._set_state, entry.id, "sent", status=exc.status)
                        sent += 1
                        continue
                    await asyncio.to_thread(
                        self._set_state, entry.id, "failed", error=str(exc), status=exc.status
                    )
                    failed += 1
                    continue
                except BaseException as exc:
                    reason = str(exc) or type(exc).__name__
                    if not isinstance(exc, Exception):
                        # cancelled mid-flight: same rule as a crash while sending
                        if entry.idempotent:
                            self._set_state(entry.id, "pending", error=reason)
                        else:
                            self._set_state(
                                entry.id, "failed", error=f"interrupted; outcome unknown ({reason})"
                            )
                        raise
                    status = exc.status if isinstance(exc, WatsTransientError) else None
                    await asyncio.to_thread(self._set_state, entry.id, "pending", error=reason, status=status)
                    stopped = reason
                    break
                await asyncio.to_thread(self._set_state, entry.id, "sent", status=response.status)
                sent += 1
            pending = await asyncio.to_thread(self.count, "pending")
            return PushResult(sent=sent, failed=failed, pending=pending, stopped=stopped)


#: a request's params and body as stored, and its redelivery key; or why it cannot be stored
_Prepared = tuple[str, str | None, str | None] | Exception


def _prepare(requests: list[WatsRequest]) -> list[_Prepared]:
    prepared: list[_Prepared] = []
    for request in requests:
        try:
            params = json.dumps(request.params, sort_keys=True, default=str)
            body = None if request.json is None else json.dumps(request.json, default=str)
            prepared.append((params, body, _dedup_key(request)))
        except Exception as exc:
            prepared.append(exc)
    return prepared


def _store_row(
    db: sqlite3.Connection,
    request: WatsRequest,
    params: str,
    body: str | None,
    key: str | None,
    now: float,
) -> int:
    """One request into the open transaction (see the module notes on redelivery); returns its row id."""
    if key is not None:
        row = db.execute(
            "SELECT id, state, params, body FROM requests WHERE dedup_key=? ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is not None:
            row_id, state, old_params, old_body = row
            if state == "pending":
                db.execute(
                    "UPDATE requests SET params=?, body=?, operation=?, updated=? WHERE id=?",
                    (params, body, request.operation, now, row_id),
                )
                return int(row_id)
            if (old_params, old_body) == (params, body) and state in ("sent", "sending"):
                return int(row_id)
    cur = db.execute(
        "INSERT INTO requests (created, method, path, params, body, idempotent, operation, dedup_key,"
        " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            request.method.upper(),
            request.path,
            params,
            body,
            int(request.idempotent),
            request.operation,
            key,
            now,
        ),
    )
    return int(cur.lastrowid or 0)
