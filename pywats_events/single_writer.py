"""Single-writer work: work that one process at a time must do, across all listeners of a deployment.

Most WATS calls can be repeated safely or checked before they are repeated, so in distributed mode any
listener may handle any message. A few cannot: WATS gives an asset usage increment no identity, and
several listeners counting units of one station at once cannot tell their increments apart. A handler
hands such work to a *single writer* instead: `SingleWriters.declare` returns a `Submit` function that
puts a `WorkItem` in a queue on the broker (durably, before it returns), and the transport runs the
`Writer` on exactly one listener at a time. The writer keeps a ledger on the broker too
(`WriterLedger`), so the listener that takes over when the writer's machine is gone knows what its
predecessor did, including the item it was doing when it died.

The core defines the contract only; a transport that keeps work on a broker (the CFX AMQP transport)
binds it. A listener whose handlers declared a writer and whose transports bound none does not start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._exceptions import TransientError

__all__ = ["SingleWriters", "Submit", "WorkItem", "Writer", "WriterLedger"]


@dataclass(frozen=True)
class WorkItem:
    """One piece of single-writer work. Copies with one `key` are the same work: a writer does it once."""

    key: str
    #: JSON-serialisable
    data: Mapping[str, Any] = field(default_factory=dict)
    #: a copy may have been submitted before (the submitting message was redelivered)
    possible_repeat: bool = False


class WriterLedger(Protocol):
    """Records a writer keeps off this machine, read back by whoever writes next."""

    async def append(self, record: Mapping[str, Any]) -> None:
        """Keep `record` (JSON-serialisable); durable when this returns."""
        ...


class Writer(Protocol):
    """Does the work of one single-writer queue, on one listener at a time."""

    async def take_over(self, records: Sequence[Mapping[str, Any]]) -> None:
        """This listener became the writer: `records` are the ledger so far (oldest first, bounded)."""
        ...

    async def serve(self, items: Sequence[WorkItem], ledger: WriterLedger) -> Mapping[str, BaseException]:
        """Do `items`; return the failures by item key. A `TransientError` sends its item back to the
        broker to be tried again later; any other exception dead-letters it with the reason."""
        ...


Submit = Callable[[WorkItem], Awaitable[None]]
#: what a transport binds: (writer name, item) → the item is on the broker
Backend = Callable[[str, WorkItem], Awaitable[None]]


class SingleWriters:
    """The writers a listener's handlers declared, for a transport to serve and to submit to."""

    def __init__(self) -> None:
        self._writers: dict[str, Writer] = {}
        self._backend: Backend | None = None

    def declare(self, name: str, writer: Writer) -> Submit:
        """Register `writer` under `name` (a queue name part: letters, digits, ``-``) and return the function
        that submits work to it."""
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"writer name {name!r}: use letters, digits and '-'")
        if name in self._writers:
            raise ValueError(f"writer {name!r} is declared twice")
        self._writers[name] = writer

        async def submit(item: WorkItem) -> None:
            if self._backend is None:
                raise TransientError(f"no transport serves the single writer {name!r} yet")
            await self._backend(name, item)

        return submit

    @property
    def writers(self) -> Mapping[str, Writer]:
        return dict(self._writers)

    def bind(self, backend: Backend) -> None:
        """A transport serves the writers and takes their submissions."""
        self._backend = backend

    def unbind(self) -> None:
        self._backend = None

    @property
    def bound(self) -> bool:
        return self._backend is not None
