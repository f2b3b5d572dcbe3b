"""The journal contract between the bus and a durable store.

With a journal, *accepted* means *appended*: `append` returns once the events are durable (group commit:
concurrent appends share one transaction and one fsync). The bus then reads events back in sequence order
(`read_pending`), records handler progress (`mark_handled`) and completion (`mark_complete`). After a crash,
`read_pending(after_seq=0, ...)` yields every event not yet complete, with the handlers already done, so work
resumes without re-running finished handlers (at-least-once for a handler that was mid-call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .._event import Event

__all__ = ["BufferedMarks", "Journal", "JournalEntry"]


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    event: Event
    #: handler names that already finished with this event (done or dead-lettered)
    handled: frozenset[str] = field(default_factory=frozenset)


@runtime_checkable
class Journal(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: Sequence[Event]) -> list[int]:
        """Durably store events; returns their sequence numbers (strictly increasing in call order)."""
        ...

    async def read_pending(self, after_seq: int, limit: int) -> list[JournalEntry]:
        """Incomplete entries with seq > after_seq, in seq order, at most `limit`."""
        ...

    async def mark_handled(self, seq: int, handler: str, outcome: str) -> None:
        """`outcome` is "done" or "dead_lettered". May be buffered; durability of progress is best-effort."""
        ...

    async def mark_complete(self, seq: int) -> None:
        """Every subscribed handler finished with this entry; it may be pruned by retention."""
        ...

    async def depth(self) -> int:
        """Number of incomplete entries."""
        ...


@runtime_checkable
class BufferedMarks(Protocol):
    """Optional extra of a `Journal` whose marks never wait (they are buffered and written with a later
    commit): the bus then records progress without a coroutine per mark. Same meaning as the async
    methods; may raise `RuntimeError` when the journal is closed."""

    def mark_handled_nowait(self, seq: int, handler: str, outcome: str) -> None: ...

    def mark_complete_nowait(self, seq: int) -> None: ...
