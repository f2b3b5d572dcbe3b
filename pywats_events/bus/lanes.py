"""Ordering groups and their lanes.

Each *ordering group* of handlers has its own `max_concurrency` lanes and its own in-flight budget. A lane
is a deque plus one worker task that handles its events strictly in order (events are put into the lane
of `hash(ordering_key)`), so events with the same key keep their order and different keys run at once.
An event wanted by several groups goes into one lane of each; one group's full budget (a deferred handler)
never uses up another group's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from .._event import Event

if TYPE_CHECKING:
    from .admission import Ack
    from .subscription import Subscription

__all__ = ["Item", "Lane", "OrderingGroup", "Parts", "Split"]


class Split:
    """An event handed to several groups' lanes without a journal: it finishes when the last is done."""

    __slots__ = ("remaining",)

    def __init__(self, parts: int) -> None:
        self.remaining = parts


# (event, subscriptions of one group still to run, submit-ack or None, journal seq or 0,
#  shared countdown when the event also went to other groups' lanes without a journal, else None)
Item = tuple[Event, tuple["Subscription", ...], "Ack | None", int, "Split | None"]


class Lane:
    __slots__ = ("group", "q", "task", "wakeup")

    def __init__(self, group: OrderingGroup) -> None:
        self.group = group
        self.q: deque[Item] = deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class OrderingGroup:
    """The lanes, in-flight budget and (with a journal) feed cursor of one ordering group."""

    __slots__ = (
        "fed_seq",
        "from_journal",
        "inflight",
        "lanes",
        "limit",
        "low_water",
        "misses",
        "name",
        "seqs",
        "signal",
        "waiting",
    )

    def __init__(self, name: str, nlanes: int, limit: int) -> None:
        self.name = name
        self.lanes = [Lane(self) for _ in range(nlanes)]
        #: events of this group in its lanes, not yet finished here (at most `limit`, plus system events)
        self.inflight = 0
        self.limit = limit
        #: producers waiting for room are let in in batches once `inflight` is down to this
        self.low_water = max(0, limit - max(1, limit // 4))
        #: waiters in the line that want this group (nothing may overtake them into this group)
        self.waiting = 0
        # -- journal feeding: this group reads the journal at its own pace
        #: highest journal seq this group has taken (handed to its lanes or skipped)
        self.fed_seq = 0
        #: the cache may lack entries this group has not taken yet: read them from the journal
        self.from_journal = True
        #: how often a cached entry this group had not taken was evicted (a read raced with it)
        self.misses = 0
        #: journal seqs in this group's lanes (kept only with several groups, to tell when an entry is
        #: complete: every group that wants it took it and none still has it)
        self.seqs: set[int] = set()
        self.signal: asyncio.Event | None = None

    def finished_entry(self, seq: int) -> bool:
        """This group is done with journal entry `seq` (handled it, skipped it, or never wanted it)."""
        return self.fed_seq >= seq and seq not in self.seqs

    def __repr__(self) -> str:
        return f"OrderingGroup({self.name!r}, in_flight={self.inflight}/{self.limit})"


# the subscriptions of one route split by ordering group: ((group, group subscriptions), ...)
Parts = tuple[tuple[OrderingGroup, tuple["Subscription", ...]], ...]
