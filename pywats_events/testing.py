"""Test helpers: an in-memory `Journal` double and a recording observer.

`MemoryJournal` follows the `Journal` contract (sequence numbers, pending reads, per-handler progress) without
durability, so bus behaviour around journals (resume, skipping finished handlers) can be tested in isolation.
Pass the same instance to a second bus to simulate a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ._event import Event
from ._observer import BusObserver
from .journal._protocol import JournalEntry

__all__ = ["MemoryJournal", "RecordingObserver"]


class MemoryJournal:
    """A `Journal` kept in a dict. `append_delay` simulates the cost of a group commit."""

    def __init__(self, append_delay: float = 0.0) -> None:
        self.append_delay = append_delay
        self.entries: dict[int, Event] = {}
        self.handled: dict[int, dict[str, str]] = {}
        self.completed: set[int] = set()
        self.reads = 0
        self.opened = 0
        self._next = 1

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        return None

    async def append(self, events: Sequence[Event]) -> list[int]:
        if self.append_delay:
            await asyncio.sleep(self.append_delay)
        seqs = []
        for event in events:
            seq = self._next
            self._next += 1
            self.entries[seq] = event
            seqs.append(seq)
        return seqs

    async def read_pending(self, after_seq: int, limit: int) -> list[JournalEntry]:
        self.reads += 1
        out = []
        for seq in sorted(s for s in self.entries if s > after_seq and s not in self.completed):
            out.append(JournalEntry(seq, self.entries[seq], frozenset(self.handled.get(seq, {}))))
            if len(out) >= limit:
                break
        return out

    async def mark_handled(self, seq: int, handler: str, outcome: str) -> None:
        self.handled.setdefault(seq, {})[handler] = outcome

    async def mark_complete(self, seq: int) -> None:
        self.completed.add(seq)

    async def depth(self) -> int:
        return len(self.entries) - len(self.completed)


class RecordingObserver(BusObserver):
    """Records every hook call as `(hook_name, args)` in `calls` (unbounded: tests only)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def named(self, hook: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == hook]

    def on_accepted(self, event: Event) -> None:
        self.calls.append(("on_accepted", (event,)))

    def on_handled(self, event: Event, handler_name: str, seconds: float) -> None:
        self.calls.append(("on_handled", (event, handler_name, seconds)))

    def on_retry(
        self, event: Event, handler_name: str, attempt: int, delay: float, error: BaseException
    ) -> None:
        self.calls.append(("on_retry", (event, handler_name, attempt, delay, error)))

    def on_deferred(self, event: Event, handler_name: str, delay: float, reason: str) -> None:
        self.calls.append(("on_deferred", (event, handler_name, delay, reason)))

    def on_dead_letter(self, event: Event, handler_name: str, error: BaseException) -> None:
        self.calls.append(("on_dead_letter", (event, handler_name, error)))

    def on_breaker_change(self, key: str, state: Any) -> None:
        self.calls.append(("on_breaker_change", (key, state)))

    def on_quarantine(self, record: Any) -> None:
        self.calls.append(("on_quarantine", (record,)))
