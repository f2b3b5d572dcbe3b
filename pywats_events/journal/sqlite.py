"""SQLite journal: WAL mode, group commit on a dedicated thread, backpressure at the size limit.

All SQLite work happens on one worker thread that owns the connection (`sqlite_writer.py`), so the event
loop never waits for the disk; this module is the loop's side: room accounting, seqs, serialising and the
hand-over. Everything the loop produces in one iteration (appends, completion and progress marks) is handed
to the worker as one batch: the appends are serialised in one call and written with one INSERT (one commit,
one fsync) that SQLite unpacks from a JSON array in C with the GIL released, so the worker runs as little
Python as possible. Completions go to a small `done` table (cheaper than rewriting each entry's row) and,
like progress marks, are buffered and written every `MARK_FLUSH_INTERVAL` seconds (after a crash they are
re-run: at-least-once). At the size limit `append` waits for room (backpressure) instead of dropping.
The `entries` view keeps the shape older tools and people inspecting the file expect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .._event import Event
from .._event_json import dump_events
from ._protocol import JournalEntry
from .sqlite_writer import MARK_FLUSH_INTERVAL, Batch, Op, Run, SqliteWriter

__all__ = ["JournalStats", "SqliteJournal"]

log = logging.getLogger("pywats_events.journal")

#: appends are handed to the worker at the end of the loop iteration, or at once when this many wait.
#: Handing over earlier does not overlap work: the worker needs the GIL to start, and a busy loop
#: holds it until it goes idle (or for the switch interval), so small hand-overs only add GIL churn.
HANDOVER_AT = 1024

#: how long the loop may block (seconds) for an idle worker to take a hand-over (see `hand_over`);
#: at most once per hand-over, never while the worker is busy (e.g. stuck on a slow disk); 0 disables
PICKUP_WAIT = 0.0005

#: completion and progress marks ride along with the next hand-over of appends or requests; on their own
#: they are handed over after `MARK_FLUSH_INTERVAL` or once this many wait. Waking the worker for marks
#: alone would cost a second hand-over per commit (the worker takes the GIL the loop needs to pick it up)
#: for nothing: the worker writes marks only every `MARK_FLUSH_INTERVAL` anyway.
MARKS_HANDOVER_AT = 4096

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


class SqliteJournal:
    """Durable journal for the bus (implements `pywats_events.journal.Journal`).

    `max_entries` / `max_bytes` bound the *pending* (incomplete) part: at the limit `append` waits until
    handlers complete entries. `retention` is how long completed entries are kept for inspection
    (they are pruned earlier if the file would otherwise exceed the limits). `synchronous="FULL"` fsyncs
    every commit (survives power loss); "NORMAL" survives process crashes only and is faster.
    Byte accounting uses the average entry size of each hand-over, so `max_bytes` is approximate.
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
        self._warn_entries = WARN_RATIO * max_entries
        self._warn_bytes = WARN_RATIO * max_bytes
        self._writer: SqliteWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Condition | None = None
        self._waiters = 0
        self._warned = False
        self._closed = True
        self._next_seq = 1
        self._sizes = _SizeBook(1)
        self._wake_task: asyncio.Future[None] | None = None
        # produced during the current loop iteration, handed to the worker in one piece
        self._scheduled = False
        self._new_events: list[Event] = []
        self._new_first = 0
        self._new_reserved = 0  # bytes reserved by estimate for `_new_events`
        self._new_groups: list[tuple[asyncio.Future[None], int]] = []  # (append future, event count)
        self._new_complete: list[int] = []
        self._new_handled: list[tuple[int, str, str, float]] = []
        self._new_ops: list[Op] = []
        #: hands marks over when no append or request took them along (`MARKS_HANDOVER_AT`)
        self._marks_timer: asyncio.TimerHandle | None = None
        self._avg_size = 512  # estimate for the byte reservation before serialisation

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._writer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Condition()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[tuple[list[tuple[int, int]], int]] = self._loop.create_future()
        self._writer = SqliteWriter(
            self.path,
            synchronous=self.synchronous,
            retention=self.retention,
            max_entries=self.max_entries,
            commit_window=self.commit_window,
            loop=self._loop,
            delivered=self._delivered,
            failed=self._failed,
        )
        self._writer.start(ready)
        try:
            unfinished, self._next_seq = await ready
        except BaseException:
            self._writer = None
            raise
        self._closed = False
        self._sizes = _SizeBook(self._next_seq)
        for seq, size in unfinished:
            self._sizes.add(seq, size)
        pending = len(unfinished)
        self.stats.pending = pending
        self.stats.pending_bytes = sum(size for _, size in unfinished)
        if pending:
            log.info("journal %s: %d unfinished entries to resume", self.path, pending)

    async def close(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self._flush_outgoing()
        if self._marks_timer is not None:
            self._marks_timer.cancel()
            self._marks_timer = None
        self._closed = True
        writer.stop()
        await asyncio.to_thread(writer.join)
        self._writer = None
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
        if self._closed:
            raise RuntimeError("journal is not open")
        count = len(events)
        if not count:
            return []
        estimate = self._avg_size * count
        s = self.stats
        if not self._waiters and (
            s.pending == 0
            or (s.pending + count <= self.max_entries and s.pending_bytes + estimate <= self.max_bytes)
        ):
            self._account(count, estimate)  # the common case of `_reserve`, without a coroutine
        else:
            await self._reserve(count, estimate)
        # seqs are handed out here, in call order, with no await before the events join the hand-over
        first = self._next_seq
        self._next_seq = first + count
        if not self._new_events:
            self._new_first = first
        self._new_events.extend(events)
        self._new_reserved += estimate
        fut: asyncio.Future[None] = self._loop.create_future()  # type: ignore[union-attr]
        self._new_groups.append((fut, count))
        if len(self._new_events) >= HANDOVER_AT:
            self._flush_outgoing()  # bounds the size of one statement
        elif not self._scheduled:
            self._schedule()
        await fut
        return list(range(first, first + count))

    async def read_pending(self, after_seq: int, limit: int) -> list[JournalEntry]:
        rows: list[tuple[int, str, frozenset[str]]] = await self._submit("read", (after_seq, limit))
        return [JournalEntry(seq=s, event=Event.from_json(d), handled=h) for s, d, h in rows]

    async def mark_handled(self, seq: int, handler: str, outcome: str) -> None:
        self.mark_handled_nowait(seq, handler, outcome)

    async def mark_complete(self, seq: int) -> None:
        self.mark_complete_nowait(seq)

    def mark_handled_nowait(self, seq: int, handler: str, outcome: str) -> None:
        """`mark_handled` without a coroutine: it never waits anyway (written with the next batch)."""
        if self._closed:
            raise RuntimeError("journal is not open")
        self._new_handled.append((seq, handler, outcome, time.time()))
        if self._marks_timer is None or len(self._new_handled) >= MARKS_HANDOVER_AT:
            self._schedule_marks()

    def mark_complete_nowait(self, seq: int) -> None:
        """`mark_complete` without a coroutine. Room is freed at once; the completion is committed
        with a later batch (best-effort until then: a crash re-runs the entry, never loses it)."""
        if self._closed:
            raise RuntimeError("journal is not open")
        size = self._sizes.pop(seq)
        if size:
            s = self.stats
            if s.pending > 0 and s.pending_bytes >= size and not (self._warned or self._waiters):
                s.pending -= 1  # the common case of `_released`
                s.pending_bytes -= size
            else:
                self._released(1, size)
        self._new_complete.append(seq)
        if self._marks_timer is None or len(self._new_complete) >= MARKS_HANDOVER_AT:
            self._schedule_marks()

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
        if self._writer is None or self._loop is None or self._closed:
            raise RuntimeError("journal is not open")
        return self._loop

    def _schedule(self) -> None:
        """Everything produced in one loop iteration reaches the worker as one batch, so the worker wakes
        once per iteration, not once per call (this is what makes group commit cheap)."""
        self._ensure_open().call_soon(self._flush_outgoing)
        self._scheduled = True

    def _schedule_marks(self) -> None:
        """Marks go with the next hand-over; without one, after `MARK_FLUSH_INTERVAL` (or now, if many)."""
        if len(self._new_complete) >= MARKS_HANDOVER_AT or len(self._new_handled) >= MARKS_HANDOVER_AT:
            if not self._scheduled:
                self._schedule()
        elif self._marks_timer is None:
            self._marks_timer = self._ensure_open().call_later(MARK_FLUSH_INTERVAL, self._marks_due)

    def _marks_due(self) -> None:
        self._marks_timer = None
        self._flush_outgoing()

    def _flush_outgoing(self) -> None:
        self._scheduled = False
        runs: list[Run] = []
        waiters: list[asyncio.Future[None]] = []
        if self._new_events:
            runs, waiters = self._serialise()
        if not (runs or self._new_complete or self._new_handled or self._new_ops):
            return
        writer = self._writer
        if writer is None:  # a flush scheduled before close(), which handed everything over already
            return
        batch = Batch(runs, waiters, self._new_complete, self._new_handled, self._new_ops)
        self._new_complete, self._new_handled, self._new_ops = [], [], []
        writer.hand_over(batch, PICKUP_WAIT if runs else 0.0)

    def _serialise(self) -> tuple[list[Run], list[asyncio.Future[None]]]:
        """Serialises this iteration's appends in one call; on failure, append by append so that only
        the caller with an unserialisable event gets the error."""
        events, first, groups = self._new_events, self._new_first, self._new_groups
        reserved = self._new_reserved
        self._new_events, self._new_groups, self._new_reserved = [], [], 0
        try:
            runs = [Run(first, len(events), dump_events(events))]
            waiters = [fut for fut, _ in groups]
        except Exception:
            runs, waiters = [], []
            seq = i = 0
            for fut, count in groups:
                part = events[i : i + count]
                seq, i = first + i, i + count
                try:
                    runs.append(Run(seq, count, dump_events(part)))
                    waiters.append(fut)
                except Exception as exc:
                    log.error("cannot serialise event for the journal: %s", exc)
                    self._released(count, self._avg_size * count)
                    reserved -= self._avg_size * count
                    if not fut.done():
                        fut.set_exception(exc)
        actual = 0
        for run in runs:
            size = max(1, (len(run.data) - 1) // run.n - 1)  # minus "[", "]" and commas, roughly
            self._sizes.add_run(run.first, run.n, size)
            actual += size * run.n
            self._avg_size = size
        self.stats.pending_bytes = max(0, self.stats.pending_bytes + actual - reserved)
        return runs, waiters

    async def _submit(self, kind: str, args: Any) -> Any:
        loop = self._ensure_open()
        fut: asyncio.Future[Any] = loop.create_future()
        self._new_ops.append(Op(kind, args, fut))
        if not self._scheduled:
            self._schedule()
        return await fut

    def _has_room(self, count: int, size: int) -> bool:
        s = self.stats
        if s.pending == 0:
            return True  # one oversized batch must still fit into an empty journal
        return s.pending + count <= self.max_entries and s.pending_bytes + size <= self.max_bytes

    async def _reserve(self, count: int, size: int) -> None:
        """Reserves room; waits in FIFO order while the journal is full. No await after the room check
        and before the caller takes its seqs, so seqs follow call order."""
        self._ensure_open()
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
        if self._warned:
            return
        if s.pending >= self._warn_entries or s.pending_bytes >= self._warn_bytes:
            ratio = max(s.pending / self.max_entries, s.pending_bytes / self.max_bytes)
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
        s.pending -= count
        s.pending_bytes -= size
        if s.pending < 0 or s.pending_bytes < 0:
            s.pending, s.pending_bytes = max(0, s.pending), max(0, s.pending_bytes)
        if self._warned:
            ratio = max(s.pending / self.max_entries, s.pending_bytes / self.max_bytes)
            if ratio < _REARM_RATIO:
                self._warned = False
        if self._waiters and self._room is not None:
            self._wake_task = asyncio.ensure_future(self._wake())

    def _append_failed(self, runs: list[Run]) -> None:
        """A write failed: its entries are not pending, so their room is given back."""
        for run in runs:
            size = 0
            for seq in range(run.first, run.first + run.n):
                size += self._sizes.pop(seq)
            self._released(run.n, size)

    async def _wake(self) -> None:
        assert self._room is not None
        async with self._room:
            self._room.notify_all()

    # ------------------------------------------------------------------ worker thread
    def _delivered(
        self,
        waiters: list[asyncio.Future[None]],
        results: list[tuple[asyncio.Future[Any], Any]],
        commits: int,
    ) -> None:
        self.stats.commits += commits
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        for op_fut, value in results:
            if not op_fut.done():
                op_fut.set_result(value)

    def _failed(
        self,
        waiters: list[asyncio.Future[None]],
        others: list[asyncio.Future[Any]],
        lost: list[Run],
        exc: BaseException,
    ) -> None:
        self._append_failed(lost)
        _fail_all([*waiters, *others], exc)


class _SizeBook:
    """Sizes of unfinished entries by seq, 4 bytes each (seqs are dense), so completing an entry frees its
    room on the loop at once, without asking the database. Entries below `base` (resumed at open: few,
    and possibly far apart) are kept in a dict instead, so a stuck old entry cannot stretch the array."""

    def __init__(self, base: int) -> None:
        self._base = base
        self._head = 0
        self._sizes = array("I")
        self._resumed: dict[int, int] = {}

    def add(self, seq: int, size: int) -> None:
        i = seq - self._base
        size = max(1, min(size, 0xFFFFFFFF))
        if i < 0:
            self._resumed[seq] = size
            return
        if i >= len(self._sizes):
            self._sizes.extend(array("I", bytes(4 * (i - len(self._sizes)))))
            self._sizes.append(size)
        else:
            self._sizes[i] = size

    def add_run(self, first: int, count: int, size: int) -> None:
        """`count` consecutive entries of `size` bytes each, starting at `first`."""
        i = first - self._base
        if i < 0:
            return
        size = max(1, min(size, 0xFFFFFFFF))
        sizes = self._sizes
        if i > len(sizes):
            sizes.extend(array("I", bytes(4 * (i - len(sizes)))))
        if i == len(sizes):
            sizes.extend(array("I", [size]) * count)
        else:
            for k in range(count):
                self.add(first + k, size)

    def pop(self, seq: int) -> int:
        i = seq - self._base
        sizes = self._sizes
        if i < 0:
            return self._resumed.pop(seq, 0)
        if i >= len(sizes):
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
