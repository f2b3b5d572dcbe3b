"""Admission: the in-flight budgets and the waiting line.

An event is admitted when every ordering group that wants it has room in its budget (`max_in_flight`
each) and nobody waits in line for any of those groups; otherwise its producer waits in one FIFO line.
When a group's events finish, waiters are let in in batches (below its low-water mark); a waiter whose
groups are still full holds back only later waiters that want one of those groups, so one group's full
budget never stalls the admission of events it does not want.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .._event import Event
from .lanes import Parts

__all__ = ["Ack", "Line", "Waiter", "admits"]


class Ack:
    """Counts down the events of one `submit` call (or one targeted `publish`: `targeted`); the future
    resolves when all are finished."""

    __slots__ = ("future", "remaining", "targeted")

    def __init__(self, future: asyncio.Future[None], targeted: bool = False) -> None:
        self.future = future
        self.remaining = 0
        self.targeted = targeted

    def done_one(self) -> None:
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Waiter:
    __slots__ = ("ack", "cancelled", "event", "future", "parts")

    def __init__(
        self, event: Event, parts: Parts, ack: Ack | None, future: asyncio.Future[None] | None
    ) -> None:
        self.event = event
        self.parts = parts
        self.ack = ack
        self.future = future
        self.cancelled = False


def admits(parts: Parts) -> bool:
    """The admission test: room in every group of `parts` and nobody waiting for any of them."""
    for group, _ in parts:
        if group.inflight >= group.limit or group.waiting:
            return False
    return True


class Line:
    """The producers waiting for room, first come first served per ordering group."""

    def __init__(self, admit: Callable[[Waiter], None]) -> None:
        #: puts a waiter's event into its lanes (takes the budget)
        self._admit = admit
        self.waiters: deque[Waiter] = deque()

    def __bool__(self) -> bool:
        return bool(self.waiters)

    def __len__(self) -> int:
        return len(self.waiters)

    def join(self, waiter: Waiter) -> None:
        self.waiters.append(waiter)
        for group, _ in waiter.parts:
            group.waiting += 1

    def refill(self) -> None:
        """Let in every waiter whose groups have room, in line order per group: the line is rebuilt, so
        each group's `waiting` counts only the kept waiters ahead of the one being tested."""
        waiters, self.waiters = self.waiters, deque()
        for w in waiters:
            for group, _ in w.parts:
                group.waiting = 0
        for w in waiters:
            if w.cancelled:
                continue
            if admits(w.parts):
                self._admit(w)
                if w.future is not None and not w.future.done():
                    w.future.set_result(None)
            else:
                self.join(w)

    def withdraw(self, which: Callable[[Waiter], bool]) -> None:
        """Take waiters out of the line (their producer gave up) and let the ones behind them move up."""
        for w in self.waiters:
            if not w.cancelled and which(w):
                w.cancelled = True
                for group, _ in w.parts:
                    group.waiting -= 1
        self.waiters = deque(w for w in self.waiters if not w.cancelled)
        if self.waiters:
            self.refill()

    def clear(self) -> list[Waiter]:
        """Empty the line (bus stopped); returns the waiters that were still waiting."""
        left = [w for w in self.waiters if not w.cancelled]
        for w in left:
            for group, _ in w.parts:
                group.waiting -= 1
        self.waiters.clear()
        return left
