"""SqliteJournal: the durable store behind "accepted"."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywats_events import Event, EventType, _event_json
from pywats_events._event import EventMetadata
from pywats_events._event_json import dump_events
from pywats_events.journal import Journal, SqliteJournal


def _ev(i: int, unit: str = "U1") -> Event:
    return Event(event_type=EventType.TEST_RESULT, payload={"unit_serial": unit, "i": i}, source="st")


async def test_implements_protocol_and_appends_in_order(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db") as j:
        assert isinstance(j, Journal)
        seqs = await j.append([_ev(0), _ev(1)])
        more = await j.append([_ev(2)])
        assert seqs[0] < seqs[1] < more[0]
        pending = await j.read_pending(0, 10)
        assert [e.event.payload["i"] for e in pending] == [0, 1, 2]
        assert pending[0].event.event_type is EventType.TEST_RESULT
        assert await j.depth() == 3


async def test_progress_and_completion_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteJournal(path) as j:
        s = await j.append([_ev(i) for i in range(3)])
        await j.mark_handled(s[0], "a", "done")
        await j.mark_handled(s[0], "b", "dead_lettered")
        await j.mark_complete(s[0])
        await j.mark_handled(s[1], "a", "done")
    async with SqliteJournal(path) as j:
        assert await j.depth() == 2
        pending = await j.read_pending(0, 10)
        assert [p.seq for p in pending] == s[1:]
        assert pending[0].handled == frozenset({"a"})
        assert pending[1].handled == frozenset()
        assert [p.seq for p in await j.read_pending(s[1], 10)] == [s[2]]


async def test_concurrent_appends_share_commits(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db") as j:
        results = await asyncio.gather(*(j.append([_ev(i)]) for i in range(200)))
        seqs = [r[0] for r in results]
        assert seqs == sorted(seqs), "seqs follow call order"
        assert j.stats.commits < 100, f"{j.stats.commits} commits for 200 concurrent appends"


async def test_full_journal_applies_backpressure_not_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "pywats_events.journal")
    async with SqliteJournal(tmp_path / "j.db", max_entries=10) as j:
        seqs = [(await j.append([_ev(i)]))[0] for i in range(10)]
        assert any("of its limit" in r.message for r in caplog.records), "warns as the limit nears"
        blocked = asyncio.ensure_future(j.append([_ev(99)]))
        await asyncio.sleep(0.2)
        assert not blocked.done(), "append waits while the journal is full"
        assert any("is full" in r.message for r in caplog.records)
        await j.mark_complete(seqs[0])
        new = await asyncio.wait_for(blocked, 5)
        assert new[0] > seqs[-1]
        assert await j.depth() == 10


async def test_retention_prunes_completed_only(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db", retention=0) as j:
        s = await j.append([_ev(i) for i in range(4)])
        for seq in s[:3]:
            await j.mark_complete(seq)
        await j.flush()
        await asyncio.sleep(0.01)
        assert await j.prune() == 3
        assert await j.counts() == {"pending": 1, "completed": 0}


async def test_completed_entries_are_kept_within_retention(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db", retention=3600) as j:
        s = await j.append([_ev(1)])
        await j.mark_complete(s[0])
        await j.flush()
        assert await j.prune() == 0
        assert await j.counts() == {"pending": 0, "completed": 1}


async def test_unserialisable_event_fails_only_its_own_append(tmp_path: Path) -> None:
    bad = Event(event_type=EventType.TEST_RESULT, payload={"unit_serial": "U1", "x": object()})
    async with SqliteJournal(tmp_path / "j.db") as j:
        results = await asyncio.gather(
            j.append([_ev(0)]), j.append([bad]), j.append([_ev(1), _ev(2)]), return_exceptions=True
        )
        assert isinstance(results[1], Exception)
        assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
        pending = await j.read_pending(0, 10)
        assert [e.event.payload["i"] for e in pending] == [0, 1, 2]
        assert await j.depth() == 3


async def test_completion_marks_are_batched_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteJournal(path) as j:
        seqs = [s for r in await asyncio.gather(*(j.append([_ev(i)]) for i in range(300))) for s in r]
        for seq in seqs[:250]:
            await j.mark_complete(seq)
        assert await j.depth() == 50  # room is freed at once, before the marks are written
    async with SqliteJournal(path) as j:
        assert await j.depth() == 50
        assert [p.seq for p in await j.read_pending(0, 1000)] == seqs[250:]
        assert await j.counts() == {"pending": 50, "completed": 250}
    with sqlite3.connect(path) as conn:  # what `pywats-events status` and people inspecting the file see
        assert conn.execute("SELECT COUNT(*) FROM entries WHERE completed IS NULL").fetchone()[0] == 50
        assert conn.execute("SELECT DISTINCT event_type FROM entries").fetchall() == [("test.result",)]


_V1_SCHEMA = """
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
    data TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL, completed REAL
);
CREATE INDEX entries_pending ON entries(seq) WHERE completed IS NULL;
CREATE INDEX entries_completed ON entries(completed) WHERE completed IS NOT NULL;
CREATE TABLE handled (
    seq INTEGER NOT NULL, handler TEXT NOT NULL, outcome TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
"""


async def test_journal_file_from_the_previous_layout_keeps_its_work(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    now = time.time()
    with sqlite3.connect(path) as conn:
        conn.executescript(_V1_SCHEMA)
        for i in range(1, 6):
            ev = _ev(i)
            data = ev.to_json()
            done = now if i <= 2 else None
            conn.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (i, ev.id, ev.type_name, data, len(data), now, done),
            )
        conn.execute("INSERT INTO handled VALUES (3, 'a', 'done', ?)", (now,))
        conn.execute("DELETE FROM entries WHERE seq = 5")  # seqs are never reused, even after deletion
    async with SqliteJournal(path) as j:
        assert await j.depth() == 2
        pending = await j.read_pending(0, 10)
        assert [(p.seq, p.event.payload["i"], p.handled) for p in pending] == [
            (3, 3, frozenset({"a"})),
            (4, 4, frozenset()),
        ]
        assert await j.append([_ev(9)]) == [6]
        assert await j.counts() == {"pending": 3, "completed": 2}


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pywats_events import Event
    from pywats_events.journal import SqliteJournal

    async def main():
        j = SqliteJournal(sys.argv[1])
        await j.open()
        n = 0
        while True:
            await asyncio.gather(*(j.append([Event(event_type="test.result", payload={"i": n + k})])
                                   for k in range(10)))
            n += 10
            print(n, flush=True)

    asyncio.run(main())
    """
)


def test_appended_entries_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert proc.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 15
    while acknowledged < 500 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert acknowledged >= 500

    async def check() -> set[int]:
        async with SqliteJournal(path) as j:
            return {e.event.payload["i"] for e in await j.read_pending(0, 1_000_000)}

    seen = asyncio.run(check())
    assert set(range(acknowledged)) <= seen


async def _leave_unfinished(path: Path, count: int) -> list[int]:
    """A run that stops with `count` entries appended and none complete (what a restart resumes)."""
    async with SqliteJournal(path) as j:
        return await j.append([_ev(i) for i in range(count)])


async def _done_rows(path: Path, want: int) -> int:
    """Completions in the file as another reader sees them, polled until `want` are there (about 5 s)."""

    def count() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM done").fetchone()[0])

    found = 0
    for _ in range(250):
        found = await asyncio.to_thread(count)
        if found >= want:
            break
        await asyncio.sleep(0.02)
    return found


async def test_completing_resumed_entries_frees_their_room(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    seqs = await _leave_unfinished(path, 30)
    async with SqliteJournal(path) as j:
        assert j.stats.pending == 30 and j.stats.pending_bytes > 0
        pending = await j.read_pending(0, 100)
        assert [p.seq for p in pending] == seqs
        await j.mark_complete(pending[0].seq)
        await j.mark_complete(pending[0].seq)  # a repeated completion frees nothing twice
        assert j.stats.pending == 29
        for entry in pending[1:]:
            await j.mark_complete(entry.seq)
        assert j.stats.pending == 0, "the depth gauge comes back down for resumed entries"
        assert j.stats.pending_bytes == 0
        assert await j.depth() == 0
        assert await _done_rows(path, 30) == 30, "buffered marks are written without a flush"
        assert j.stats.pending == 0 and j.stats.pending_bytes == 0
    async with SqliteJournal(path) as j:
        assert await j.depth() == 0 and j.stats.pending_bytes == 0


async def test_resumed_full_journal_takes_appends_again_once_caught_up(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await _leave_unfinished(path, 30)
    async with SqliteJournal(path, max_entries=30) as j:
        assert j.stats.pending == 30
        blocked = asyncio.ensure_future(j.append([_ev(100)]))
        await asyncio.sleep(0.1)
        assert not blocked.done(), "a journal resumed full still applies backpressure"
        pending = await j.read_pending(0, 100)
        await j.mark_complete(pending[0].seq)
        new = await asyncio.wait_for(blocked, 5)
        assert new[0] > pending[-1].seq
        for entry in pending[1:]:
            await j.mark_complete(entry.seq)
        assert j.stats.pending == 1
        more = await asyncio.wait_for(j.append([_ev(200 + i) for i in range(29)]), 5)
        assert len(more) == 29 and await j.depth() == 30


async def test_resumed_entries_count_their_bytes_until_complete(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await _leave_unfinished(path, 30)
    with sqlite3.connect(path) as conn:
        total = conn.execute("SELECT SUM(size) FROM journal").fetchone()[0]
    async with SqliteJournal(path, max_bytes=total + 10) as j:
        assert j.stats.pending_bytes == total
        blocked = asyncio.ensure_future(j.append([_ev(i) for i in range(10)]))
        await asyncio.sleep(0.1)
        assert not blocked.done(), "the byte limit holds for resumed entries"
        for entry in await j.read_pending(0, 100):
            await j.mark_complete(entry.seq)
        await asyncio.wait_for(blocked, 5)
        assert j.stats.pending == 10 and 0 < j.stats.pending_bytes < total


# ---------------------------------------------------------------- what is written, and how it reads back
def _varied_events() -> list[Event]:
    utc = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    return [
        _ev(0),
        Event(event_type="plugin.custom_type", payload={"ok": True}, source="plug"),
        Event(
            event_type=EventType.ASSET_FAULT,
            payload={
                "text": 'Ærø \u2013 测试 😀 "quoted" \\ \n\t\x00',
                "nested": {"a": [1, 2.5, -0.0, None, {"b": [True, False, []]}], "empty": {}},
                "u64": 2**64 - 1,
                "i64": -(2**63),
                "float": 1e16,
            },
            metadata=EventMetadata(
                timestamp=utc,
                correlation_id="corr-1",
                causation_id="cause-1",
                source="st",
                source_topic="cfx/line1",
                ordering_key="U9",
                attempt=3,
                trace_context={"traceparent": "00-abc-def-01", "tracestate": "x=y"},
                extras={"headers": {"k": ["v", 1]}, "ünï": "çødé"},
            ),
        ),
        Event(event_type=EventType.TEST_RESULT, metadata=EventMetadata(timestamp=utc.replace(microsecond=0))),
        Event(event_type=EventType.TEST_RESULT, metadata=EventMetadata(timestamp=datetime(2026, 1, 1, 12))),
        Event(
            event_type=EventType.TEST_RESULT,
            metadata=EventMetadata(
                timestamp=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
            ),
        ),
        Event(
            event_type="x",
            metadata=EventMetadata(timestamp=datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Oslo"))),
        ),
    ]


#: payload values the fast writer does not take: they must be written exactly as pydantic writes them
_FALLBACK_VALUES: list[Any] = [
    2**64,
    -(2**63) - 1,
    {1: "int key"},
    b"bytes",
    {3},
    Decimal("1.5"),
    timedelta(1),
]


def test_fast_serialisation_is_active() -> None:
    assert _event_json._FAST, "orjson no longer writes what pydantic writes for Event: fix dump_events"


def test_written_json_is_what_pydantic_writes() -> None:
    events = [*_varied_events(), *(Event(event_type="t", payload={"v": v}) for v in _FALLBACK_VALUES)]
    for ev in events:
        assert dump_events([ev]) == f"[{ev.model_dump_json()}]"
    assert dump_events(events) == "[" + ",".join(ev.model_dump_json() for ev in events) + "]"


@settings(max_examples=150, deadline=None)
@given(
    payload=st.dictionaries(
        st.text(max_size=5),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    ),
    event_type=st.sampled_from([*EventType, "plugin.type"]) | st.text(min_size=1, max_size=6),
)
def test_any_payload_is_written_as_pydantic_writes_it_or_rejected_alike(
    payload: dict[str, Any], event_type: str
) -> None:
    ev = Event(event_type=event_type, payload=payload)
    try:
        expected = f"[{ev.model_dump_json()}]"
    except Exception as exc:  # e.g. lone surrogates
        with pytest.raises(type(exc)):
            dump_events([ev])
        return
    assert dump_events([ev]) == expected


async def test_varied_events_read_back_equal(tmp_path: Path) -> None:
    events = [*_varied_events(), Event(event_type="t", payload={"big": 2**70})]
    async with SqliteJournal(tmp_path / "j.db") as j:
        # one batch with only fast-path events, one that needs the fallback for one of its events
        await asyncio.gather(*(j.append([ev]) for ev in events[:-1]))
        await asyncio.gather(j.append([events[0]]), j.append([events[-1]]))
        back = [entry.event for entry in await j.read_pending(0, 100)]
    assert back == [*events[:-1], events[0], events[-1]]
    assert back[1].event_type == "plugin.custom_type"
    assert all(e.timestamp.tzinfo is not None for e in back)  # a naive time is read as UTC when built


async def test_fallback_batch_still_fails_only_the_unserialisable_append(tmp_path: Path) -> None:
    bad = Event(event_type=EventType.TEST_RESULT, payload={"x": "\ud800"})  # lone surrogate: no JSON for it
    big = Event(event_type=EventType.TEST_RESULT, payload={"i": 3, "big": 2**80})
    async with SqliteJournal(tmp_path / "j.db") as j:
        results = await asyncio.gather(
            j.append([_ev(0)]),
            j.append([bad]),
            j.append([_ev(1), _ev(2)]),
            j.append([big]),
            return_exceptions=True,
        )
        assert isinstance(results[1], Exception)
        assert [isinstance(r, Exception) for r in results] == [False, True, False, False]
        pending = await j.read_pending(0, 10)
        assert [e.event.payload["i"] for e in pending] == [0, 1, 2, 3]
        assert pending[-1].event == big


async def test_completions_alone_reach_the_file(tmp_path: Path) -> None:
    """Marks ride along with the next append; without one they still get written (best-effort, soon)."""
    async with SqliteJournal(tmp_path / "j.db") as j:
        seqs = await j.append([_ev(i) for i in range(3)])
        for seq in seqs[:2]:
            await j.mark_complete(seq)

        def done_rows() -> int:
            with sqlite3.connect(tmp_path / "j.db") as reader:
                return int(reader.execute("SELECT COUNT(*) FROM done").fetchone()[0])

        deadline = time.monotonic() + 30
        while done_rows() < 2:
            assert time.monotonic() < deadline, "completions never written"
            await asyncio.sleep(0.02)
        assert await j.depth() == 1
