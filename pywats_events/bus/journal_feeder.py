"""Journal → lanes. With a journal, accepted means appended; each ordering group then reads the entries
back at its own pace (its own cursor and in-flight budget), so a group whose handler is deferred never
holds up another group. An entry is complete when every group that wants it is done with it.

Just-appended events are kept in a bounded cache so they need not be read back; when the cache is full
the oldest entries are evicted and a group that had not taken them reads them from the journal instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._event import Event
from ..journal._protocol import BufferedMarks, Journal
from .lanes import OrderingGroup, Parts

if TYPE_CHECKING:
    from .subscription import Subscription

__all__ = ["JournalFeeder"]

log = logging.getLogger("pywats_events.bus")


class JournalFeeder:
    """Feeds each ordering group from the journal. `parts_of` routes an event (its subscriptions by
    group); `hand` puts journal entry `seq` into a group's lane, for those of the group's subscriptions."""

    def __init__(
        self,
        journal: Journal,
        cache_size: int,
        *,
        parts_of: Callable[[Event], Parts],
        hand: Callable[[OrderingGroup, Event, tuple[Subscription, ...], int], None],
    ) -> None:
        self._parts_of = parts_of
        self._hand = hand
        self.journal = journal
        self._cache_size = cache_size
        self.cache: deque[tuple[int, Event]] = deque()
        self._next_ticket = 0
        self._released_ticket = 0
        self._appended: dict[int, list[tuple[int, Event]]] = {}
        self._groups: list[OrderingGroup] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()

    @property
    def caught_up(self) -> bool:
        """No group has anything left to read: new entries may go straight into the lanes."""
        return not self.cache and not any(g.from_journal for g in self._groups)

    def start(self, groups: list[OrderingGroup]) -> None:
        self._groups = groups
        self.cache.clear()
        self._appended.clear()
        self._next_ticket = self._released_ticket = 0
        for g in groups:
            g.fed_seq = 0
            g.from_journal = True  # resume: read what the journal holds first
            g.misses = 0
            g.seqs.clear()
            g.signal = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._feed(g), name=f"pywats-journal-feeder-{g.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def cancel_side_tasks(self) -> None:
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)

    def wake(self, group: OrderingGroup) -> None:
        """`group` has room again: let its feeder go on if there is something to feed."""
        if group.signal is not None and (
            group.from_journal or (self.cache and self.cache[-1][0] > group.fed_seq)
        ):
            group.signal.set()

    # ------------------------------------------------------------------ appending
    async def append(self, events: Sequence[Event]) -> None:
        """Append `events` (accepted once this returns) and hand them on."""
        # appends may resume out of call order (group commit); the cache must stay in seq order,
        # so results are released to it in the order the calls were made
        ticket = self._next_ticket
        self._next_ticket += 1
        try:
            seqs = await self.journal.append(events)
        except BaseException:
            self._appended[ticket] = []
            self._release()
            raise
        if ticket == self._released_ticket and self._tasks and not self.cache and self._room_for(len(seqs)):
            # every feeder is caught up and there is room: straight into the lanes (same order, no cache).
            # A feeder that was reading the journal while this append waited may have fed these entries
            # already (they are in the journal before `append` returns): those it has, it keeps.
            self._released_ticket += 1
            parts_of, hand = self._parts_of, self._hand
            first_group = self._groups[0]
            for seq, event in zip(seqs, events, strict=True):
                parts = parts_of(event)
                for group, subs in parts:
                    if group.fed_seq < seq:
                        hand(group, event, subs, seq)
                if not parts and first_group.fed_seq < seq:
                    self.complete_later(seq)
            last = seqs[-1]
            for g in self._groups:
                g.fed_seq = max(g.fed_seq, last)
            if self._appended:
                self._release()
                self._wake_all()
        else:
            self._appended[ticket] = list(zip(seqs, events, strict=True))
            self._release()
            self._wake_all()

    def _room_for(self, count: int) -> bool:
        """Every group is caught up (`caught_up`, given an empty cache) and has room for `count` more."""
        for g in self._groups:
            if g.from_journal or g.inflight + count > g.limit:
                return False
        return True

    def _wake_all(self) -> None:
        for g in self._groups:
            if g.signal is not None:
                g.signal.set()

    def _release(self) -> None:
        cache = self.cache
        while self._released_ticket in self._appended:
            for item in self._appended.pop(self._released_ticket):
                if len(cache) >= self._cache_size:
                    seq, _ = cache.popleft()
                    for g in self._groups:
                        if g.fed_seq < seq:
                            g.from_journal = True
                            g.misses += 1
                cache.append(item)
            self._released_ticket += 1

    # ------------------------------------------------------------------ completion
    def complete_later(self, seq: int) -> None:
        """Mark `seq` complete without waiting (an entry no handler wants, or whose handlers are done)."""
        journal = self.journal
        if isinstance(journal, BufferedMarks):
            try:
                journal.mark_complete_nowait(seq)
            except Exception:
                log.exception("journal.mark_complete failed for seq %d", seq)
        else:
            task = asyncio.get_running_loop().create_task(journal.mark_complete(seq))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    def done_elsewhere(self, event: Event, seq: int, group: OrderingGroup) -> bool:
        """Every other group that wants entry `seq` is done with it (so `group` finishing completes it)."""
        for other, _ in self._parts_of(event):
            if other is not group and not other.finished_entry(seq):
                return False
        return True

    # ------------------------------------------------------------------ feeding
    async def _feed(self, g: OrderingGroup) -> None:
        """Journal → this group's lanes, in seq order, never more than its budget has room for."""
        journal = self.journal
        signal = g.signal
        parts_of, hand = self._parts_of, self._hand
        assert signal is not None
        while True:
            signal.clear()
            room = g.limit - g.inflight
            if room <= 0:
                await signal.wait()
                continue
            batch: list[tuple[int, Event, frozenset[str]]] = []
            if g.from_journal:
                misses = g.misses
                try:
                    entries = await journal.read_pending(g.fed_seq, room)
                except Exception:
                    log.exception("journal.read_pending failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                batch = [(e.seq, e.event, e.handled) for e in entries]
                if len(entries) < room and misses == g.misses:
                    g.from_journal = False
            else:
                empty: frozenset[str] = frozenset()
                for seq, event in self.cache:
                    if seq > g.fed_seq:
                        batch.append((seq, event, empty))
                        if len(batch) >= room:
                            break
            if not batch:
                if g.from_journal:
                    continue
                await signal.wait()
                continue
            # no await from here on: `append` may place later entries itself once every feeder caught up
            for seq, event, handled in batch:
                if seq <= g.fed_seq:
                    continue
                g.fed_seq = seq
                parts = parts_of(event)
                if not parts:
                    if g is self._groups[0]:
                        self.complete_later(seq)  # no handler wants it: complete at once
                    continue
                for group, subs in parts:
                    if group is g:
                        if handled:
                            subs = tuple(s for s in subs if s.name not in handled)
                        if subs:
                            hand(g, event, subs, seq)
                        elif self.done_elsewhere(event, seq, g):
                            self.complete_later(seq)  # finished before a restart, mark was lost
                        break
            self._trim()

    def _trim(self) -> None:
        """Drop cached entries every group has taken."""
        cache = self.cache
        if not cache:
            return
        low = min(g.fed_seq for g in self._groups)
        while cache and cache[0][0] <= low:
            cache.popleft()
