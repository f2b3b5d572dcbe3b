"""Test helpers: an in-memory `Journal` double, a recording observer and a plugin context.

`MemoryJournal` follows the `Journal` contract (sequence numbers, pending reads, per-handler progress) without
durability, so bus behaviour around journals (resume, skipping finished handlers) can be tested in isolation.
Pass the same instance to a second bus to simulate a restart.

`RecordingObserver.wait_for` lets a test wait for what happens after `publish` returned (a deferred event
delivered once its destination is back, a breaker closing) without sleeping a guessed time.
`plugin_context` builds the `PluginContext` a handler plugin's factory receives from `pywats-events run`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._event import Event
from ._observer import BusObserver
from .journal._protocol import JournalEntry

if TYPE_CHECKING:
    from .config import Settings
    from .plugins import PluginContext

__all__ = ["MemoryJournal", "RecordingObserver", "plugin_context"]


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

    async def wait_for(
        self, hook: str, count: int = 1, *, handler: str | None = None, timeout: float = 5.0
    ) -> list[tuple[Any, ...]]:
        """Waits until `hook` was called `count` times (for `handler` only, if given: the hooks whose
        second argument is a handler name); returns those calls. `TimeoutError` lists what was seen."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                args for args in self.named(hook) if handler is None or (len(args) > 1 and args[1] == handler)
            ]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                seen = sorted({name for name, _ in self.calls})
                raise TimeoutError(
                    f"{hook} seen {len(found)} of {count} time(s) within {timeout:g}s; hooks seen: {seen}"
                )
            await asyncio.sleep(0.005)

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


def plugin_context(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    data_dir: str | Path | None = None,
    settings: Settings | None = None,
) -> PluginContext:
    """The `PluginContext` `pywats-events run` hands a handler plugin's factory: default settings (with
    `data_dir` as ``listener.data_dir`` if given, the environment ignored) and `options` as the plugin's
    ``[handlers.<name>]`` table. Run ``await cleanup()`` for each of ``ctx.cleanups`` when done."""
    from .config import load_settings
    from .plugins import PluginContext

    if settings is None:
        overrides = {"listener": {"data_dir": str(data_dir)}} if data_dir is not None else None
        settings = load_settings(overrides=overrides, environ={})
    return PluginContext(name=name, settings=settings, options=dict(options or {}))
