"""Test helpers: an in-memory `Journal` double, a recording observer and a plugin context.

`MemoryJournal` follows the `Journal` contract (sequence numbers, pending reads, per-handler progress) without
durability, so bus behaviour around journals (resume, skipping finished handlers) can be tested in isolation.
Pass the same instance to a second bus to simulate a restart.

`RecordingObserver.wait_for` lets a test wait for what happens after `publish` returned (a deferred event
delivered once its destination is back, a breaker closing) without sleeping a guessed time.
`plugin_context` builds the `PluginContext` a handler plugin's factory receives from `pywats-events run`.
`BusHarness` runs a bus with handler plugins on a loop thread of its own, so a plain (sync or async) test
publishes, then waits for what happened; `eventually` waits for any condition (a file written, a request
received) instead of sleeping. The pytest plugin (`pywats_events_pytest`) hands them out as fixtures.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._event import Event
from ._observer import BusObserver
from .journal._protocol import JournalEntry

if TYPE_CHECKING:
    from .bus import AsyncEventBus, StopReport
    from .config import Settings
    from .plugins import PluginContext

__all__ = ["BusHarness", "MemoryJournal", "RecordingObserver", "eventually", "plugin_context"]

_T = TypeVar("_T")

#: how long the harness's waits wait by default; generous, since a loaded CI machine is slow
DEFAULT_TIMEOUT = 10.0


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


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def eventually(
    condition: Callable[[], _T | None], *, timeout: float = DEFAULT_TIMEOUT, what: str = "condition"
) -> _T:
    """Polls `condition` until it returns something truthy and returns that; an `AssertionError` naming
    `what` after `timeout` seconds. For destinations outside the bus: ``eventually(path.exists)``."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s (last value: {value!r})")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class BusHarness:
    """An `AsyncEventBus` with handler plugins, as `pywats-events run` builds them, on its own loop thread.

    Add plugins (`plugin`, through their installed entry points) and handlers (`subscribe`), then `publish`:
    the bus starts on the first publish (or `start`). `wait_for` waits for a bus hook (``on_handled``,
    ``on_deferred``, ``on_dead_letter``, ...), `eventually` for anything else. `stop` drains the bus, runs
    every ``on_stop`` and then the plugins' cleanups, as the listener does.

    `settings` are overrides of the listener settings (``{"wats": {"url": ...}}``), the environment is
    ignored and ``listener.data_dir`` is `data_dir`. With `journal` the bus keeps a SQLite journal there,
    so a second harness on the same directory resumes what the first left unfinished.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        settings: Mapping[str, Any] | None = None,
        journal: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = timeout
        self.journal = journal
        self.observer = RecordingObserver()
        self._overrides: dict[str, Any] = {}
        _merge(self._overrides, settings or {})
        self._plugins: list[tuple[str, dict[str, Any], Any]] = []
        self._extra: list[Any] = []
        self._contexts: list[PluginContext] = []
        self._handlers: dict[str, list[Any]] = {}
        self._bus: AsyncEventBus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._settings: Settings | None = None
        self.report: StopReport | None = None

    # -- before the start ----------------------------------------------------------------------------

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Merges listener setting overrides (``{"wats": {"url": ...}}``); only before the start."""
        self._before_start("configure")
        _merge(self._overrides, settings)

    def plugin(self, name: str, options: Mapping[str, Any] | None = None, *, factory: Any = None) -> None:
        """Subscribes the handlers of the installed handler plugin `name`, made with `options` (its
        ``[handlers.<name>]`` table) when the bus starts; `handlers(name)` gives them afterwards.
        `factory` stands in for the entry point (tests run from a plugin's source tree, not installed)."""
        self._before_start("plugin")
        self._plugins.append((name, dict(options or {}), factory))

    def subscribe(self, handler: Any) -> None:
        """Subscribes a handler of the test's own (a recorder of the events a plugin publishes)."""
        self._before_start("subscribe")
        self._extra.append(handler)

    def _before_start(self, what: str) -> None:
        if self._bus is not None:
            raise RuntimeError(f"{what}() after the bus started: call it before the first publish")

    # -- running -------------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The listener settings the plugins get (built at the start)."""
        if self._settings is None:
            from .config import load_settings

            overrides: dict[str, Any] = {}
            _merge(overrides, self._overrides)
            _merge(overrides, {"listener": {"data_dir": str(self.data_dir)}})
            self._settings = load_settings(overrides=overrides, environ={})
        return self._settings

    @property
    def bus(self) -> AsyncEventBus:
        """The running bus (started if it was not)."""
        self.start()
        assert self._bus is not None
        return self._bus

    def handlers(self, name: str) -> list[Any]:
        """The handlers plugin `name` made."""
        self.start()
        return list(self._handlers[name])

    def start(self) -> None:
        """Builds the plugins' handlers and starts the bus; a plugin's `ConfigurationError` is raised here."""
        if self._bus is not None:
            return
        from prometheus_client import CollectorRegistry

        from .bus import AsyncEventBus
        from .plugins import PluginContext, make_handlers

        settings = self.settings
        settings.listener.data_dir.mkdir(parents=True, exist_ok=True)
        registry = CollectorRegistry()
        made: list[Any] = []
        for name, options, factory in self._plugins:
            ctx = PluginContext(name=name, settings=settings, options=options, registry=registry)
            self._contexts.append(ctx)
            handlers = make_handlers(name, ctx, factory)
            self._handlers.setdefault(name, []).extend(handlers)
            made.extend(handlers)
        journal = None
        if self.journal:
            from .journal import SqliteJournal

            journal = SqliteJournal(settings.journal_path)
        bus = AsyncEventBus(journal=journal)
        bus.add_observer(self.observer)
        for h in [*made, *self._extra]:
            bus.subscribe(h)
        for ctx in self._contexts:
            for tell in ctx.on_bus:
                tell(bus)
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop, self._bus = loop, bus
        self._thread = threading.Thread(target=run, name="pywats-bus-harness", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._call(bus.start())
        except BaseException:
            self._close_loop()
            raise

    def _call(self, awaitable: Awaitable[_T], timeout: float | None = None) -> _T:
        assert self._loop is not None

        async def run() -> _T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def call(self, fn: Callable[[], Coroutine[Any, Any, _T]], timeout: float | None = None) -> _T:
        """``await fn()`` on the bus loop (for anything else async the test needs there)."""
        self.start()
        return self._call(fn(), timeout)

    def publish(self, *events: Event) -> None:
        """Publishes `events` in order; returns once each was accepted (with a journal: appended)."""
        bus = self.bus
        for event in events:
            self._call(bus.publish(event), self.timeout)

    def wait_for(
        self, hook: str, count: int = 1, *, handler: str | None = None, timeout: float | None = None
    ) -> list[tuple[Any, ...]]:
        """Waits until bus hook `hook` was called `count` times (for `handler`, if given): e.g.
        ``wait_for("on_handled", 2, handler="CsvArchiveHandler")``. `TimeoutError` lists what was seen."""
        wait = self.observer.wait_for(hook, count, handler=handler, timeout=timeout or self.timeout)
        return self._call(wait)

    def handled(self, handler: str | None = None) -> list[Event]:
        """The events handled so far (by `handler`, if given), in the order they finished."""
        return [a[0] for a in self.observer.named("on_handled") if handler is None or a[1] == handler]

    def dead_letters(self, handler: str | None = None) -> list[tuple[Event, str, BaseException]]:
        """(event, handler, error) of every dead-lettered delivery so far."""
        found = self.observer.named("on_dead_letter")
        return [(a[0], a[1], a[2]) for a in found if handler is None or a[1] == handler]

    def eventually(self, condition: Callable[[], _T | None], *, what: str = "condition") -> _T:
        """`eventually` with this harness's timeout."""
        return eventually(condition, timeout=self.timeout, what=what)

    def stop(self) -> StopReport | None:
        """Drains and stops the bus (every ``on_stop``), then runs the plugins' cleanups; idempotent."""
        bus, self._bus = self._bus, None
        if bus is None or self._loop is None:
            return self.report
        try:
            self.report = self._call(bus.stop(self.timeout))
        finally:
            try:
                for ctx in self._contexts:
                    for cleanup in ctx.cleanups:
                        self._call(cleanup(), self.timeout)
            finally:
                self._close_loop()
        return self.report

    def _close_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(self.timeout)
        loop.close()

    def __enter__(self) -> BusHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
