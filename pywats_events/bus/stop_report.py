"""What `stop()` hands back: the bus's state names and the account of events left unfinished."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .._event import Event

__all__ = ["BusState", "StopReport"]


class BusState(str, enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class StopReport:
    """What `stop()` left behind. `not_handled` events were accepted but not finished by every handler;
    with a journal they stay in it (`journal_pending` incomplete entries) and resume on the next start."""

    handled: int = 0
    not_handled: list[Event] = field(default_factory=list)
    timed_out: bool = False
    journal_pending: int | None = None
    #: how many of `not_handled` are journal entries (the rest are not kept anywhere by the bus)
    kept_in_journal: int = 0
    #: how many of `not_handled` were targeted deliveries (`publish(handler=...)`, e.g. dead-letter
    #: replay): never journaled; their `publish` raised, so the caller still has them
    targeted: int = 0
    #: how many of `not_handled` were submitted by a transport without a journal: `submit` raised, so
    #: the transport did not acknowledge them and the broker keeps them
    refused: int = 0

    @property
    def clean(self) -> bool:
        return not self.not_handled and not self.journal_pending

    def left_behind(self, event: Event, *, journaled: bool, targeted: bool, submitted: bool) -> None:
        """Count one unfinished event by what becomes of it."""
        self.not_handled.append(event)
        if journaled:
            self.kept_in_journal += 1
        elif targeted:
            self.targeted += 1
        elif submitted:
            self.refused += 1

    def fates(self) -> str:
        """What becomes of the unfinished events, kind by kind (only the kinds present)."""
        lost = len(self.not_handled) - self.kept_in_journal - self.targeted - self.refused
        parts = []
        if self.kept_in_journal:
            parts.append(f"{self.kept_in_journal} kept in the journal (they resume on the next start)")
        if self.targeted:
            parts.append(
                f"{self.targeted} targeted deliveries (publish(handler=...), e.g. dead-letter replay): not"
                " journaled, their publish() failed (a replayed dead letter stays in the DLQ)"
            )
        if self.refused:
            parts.append(
                f"{self.refused} refused to their transport (not acknowledged: the broker keeps them)"
            )
        if lost:
            parts.append(f"{lost} lost (accepted without a journal, or bus-generated system events)")
        return "; ".join(parts)
