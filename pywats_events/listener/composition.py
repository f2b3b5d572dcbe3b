"""Composition: settings → codec, handler plugins, journal, dead-letter queue, quarantine, bus, transports.

Nothing here runs anything: `build_parts` and `build_transports` only construct. A plugin's cleanups are
collected as soon as its factory ran, so a start-up that fails half-way still closes what was opened.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import plugins
from .._codec import Codec
from .._exceptions import ConfigurationError
from .._observer import BusObserver
from ..config import Settings
from ..journal import SqliteJournal
from ..metrics import MetricsObserver
from ..quarantine import SqliteQuarantine
from ..single_writer import SingleWriters
from ..transports import BaseTransport
from .instrumentation import MeteredCodec
from .settlement import Settlements, settling_handlers

__all__ = ["ListenerParts", "build_parts", "build_transports", "check_plugin_tables", "run_cleanups"]

log = logging.getLogger("pywats_events.listener")

Cleanup = tuple[str, Callable[[], Awaitable[None]]]


@dataclass
class ListenerParts:
    """What `build_parts` made, ready to start."""

    bus: Any
    journal: SqliteJournal | None
    dlq: Any
    quarantine: SqliteQuarantine
    metrics: MetricsObserver
    handlers: list[Any]
    codec: Codec
    #: (plugin name, coroutine function) pairs, run after the bus stopped
    cleanups: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    #: the plugins' rows of the run summary (see `PluginContext.summary`)
    summary: list[plugins.SummaryRows] = field(default_factory=list)
    #: where the handler plugins deliver (see `PluginContext.destination`)
    destinations: list[str] = field(default_factory=list)
    #: distributed mode: the handlers' failures per event, for the transport to settle its messages
    settlements: Settlements | None = None
    #: the plugins' pages of the operator console (see `PluginContext.console_panels`)
    console_panels: list[Any] = field(default_factory=list)
    #: distributed mode: the single writers the handlers declared, for a transport to serve
    single_writers: SingleWriters | None = None

    def summary_rows(self) -> list[tuple[str, str]]:
        """The plugins' summary rows now; a plugin whose rows fail is logged and left out."""
        rows: list[tuple[str, str]] = []
        for source in self.summary:
            try:
                rows.extend((str(what), str(value)) for what, value in source())
            except Exception:
                log.exception("summary rows of %r failed", source)
        return rows


def build_parts(
    settings: Settings,
    metrics: MetricsObserver,
    observers: Sequence[BusObserver],
    cleanups: list[Cleanup],
) -> ListenerParts:
    """Codec, handlers, stores and the bus (not started). Raises ConfigurationError on bad settings.

    The cleanups of each handler plugin are appended to `cleanups` as soon as its factory ran."""
    from .. import AsyncEventBus
    from ..policies import SqliteDeadLetterQueue

    s = settings
    check_plugin_tables(s)
    s.listener.data_dir.mkdir(parents=True, exist_ok=True)
    name = s.listener.codec
    codec: Codec = MeteredCodec(plugins.make_codec(name, dict(s.plugins.get(name, {}))), metrics)
    facts: dict[str, str] = {}
    summary: list[plugins.SummaryRows] = []
    destinations: list[str] = []
    handler_objs: list[Any] = []
    on_bus: list[Any] = []
    panels: list[Any] = []
    writers = SingleWriters() if s.listener.distributed else None
    for hname in s.listener.handlers:
        ctx = plugins.PluginContext(
            name=hname,
            settings=s,
            options=dict(s.handlers.get(hname, {})),
            codec=codec,
            registry=metrics.registry,
            single_writers=writers,
        )
        try:
            handler_objs.extend(plugins.make_handlers(hname, ctx))
        finally:  # what a failing factory opened before it raised is closed too
            cleanups.extend((hname, c) for c in ctx.cleanups)
        facts.update(ctx.facts)
        summary.extend(ctx.summary)
        on_bus.extend(ctx.on_bus)
        panels.extend(ctx.console_panels)
        if ctx.destination:
            destinations.append(ctx.destination)
    journal = None
    settlements: Settlements | None = None
    if s.listener.distributed:
        # the broker keeps every unfinished message: no journal, handlers report failures to settle on
        from ..bus.engine import DEFAULT_RETRY_POLICY

        settlements = Settlements()
        handler_objs = list(settling_handlers(handler_objs, settlements, DEFAULT_RETRY_POLICY))
        facts["mode"] = "distributed: acknowledged after the handlers, retries on the broker"
    elif s.journal.enabled:
        journal = SqliteJournal(
            s.journal_path,
            max_entries=s.journal.max_entries,
            max_bytes=s.journal.max_bytes,
            retention=s.journal.retention,
            synchronous=s.journal.synchronous,
        )
        facts["journal"] = str(s.journal_path)
    dlq = SqliteDeadLetterQueue(s.dlq_path)
    quarantine = SqliteQuarantine(
        s.quarantine_path,
        max_entries=s.quarantine.max_entries,
        max_bytes=s.quarantine.max_bytes,
        on_evict=metrics.quarantine_evicted,
    )
    bus = AsyncEventBus(
        max_in_flight=s.bus.max_in_flight,
        max_concurrency=s.bus.max_concurrency,
        journal=journal,
        dead_letter_queue=dlq,
        quarantine_store=quarantine,
    )
    bus.add_observer(metrics)
    for observer in observers:
        bus.add_observer(observer)
    for h in handler_objs:
        bus.subscribe(h)
    for tell in on_bus:
        tell(bus)
    return ListenerParts(
        bus,
        journal,
        dlq,
        quarantine,
        metrics,
        handler_objs,
        codec,
        list(cleanups),
        facts,
        summary,
        destinations,
        settlements,
        panels,
        writers,
    )


def build_transports(settings: Settings, parts: ListenerParts) -> list[BaseTransport]:
    """The transports to start: replay (or the codec's samples), each configured input (`Settings.inputs`:
    a section's input setting is set, e.g. ``amqp.url``, ``mqtt.url``), and ``listener.transports``."""
    s = settings
    out: list[BaseTransport] = []
    # replay also plays the codec's bundled samples when no input is configured
    wanted = [("replay", "replay.paths", False), *((t, setting, False) for t, setting in s.inputs())]
    wanted += [(tname, "listener.transports", True) for tname in s.listener.transports]
    for tname, setting, listed in wanted:
        ctx = plugins.PluginContext(
            name=tname,
            settings=s,
            options=dict(s.plugins.get(tname, {})),
            codec=parts.codec,
            registry=parts.metrics.registry,
        )
        made = plugins.make_transports(tname, ctx, setting=setting)
        out.extend(made)
        if made or listed:
            parts.facts.update(ctx.facts)
        parts.summary.extend(ctx.summary)
    return out


def check_plugin_tables(settings: Settings) -> None:
    """A ``[handlers.<name>]`` / ``[plugins.<name>]`` table that nothing uses is a mistake: an error if no
    such plugin is installed (a typo), else a warning naming it (the plugin is not enabled)."""
    for name in settings.handlers:
        if name in settings.listener.handlers:
            continue
        installed = plugins.available(plugins.HANDLERS)
        if name not in installed:
            raise ConfigurationError(
                f"handlers.{name}",
                f"no such handler plugin (installed: {', '.join(sorted(installed)) or 'none'})",
            )
        log.warning(
            "handlers.%s: options given, but %r is not in listener.handlers, so they are not used",
            name,
            name,
        )
    used = {settings.listener.codec, "replay", *settings.listener.transports}
    used.update(transport for transport, _setting in settings.inputs())
    for name in settings.plugins:
        if name in used:
            continue
        known = {*plugins.available(plugins.CODECS), *plugins.available(plugins.TRANSPORTS)}
        if name not in known:
            raise ConfigurationError(
                f"plugins.{name}",
                f"no such codec or transport plugin (installed: {', '.join(sorted(known)) or 'none'})",
            )
        log.warning(
            "plugins.%s: options given, but %r is neither listener.codec nor a started transport,"
            " so they are not used",
            name,
            name,
        )


async def run_cleanups(cleanups: Sequence[tuple[str, Callable[[], Awaitable[None]]]]) -> None:
    """Run every plugin cleanup; one that fails is logged (naming its plugin) and the rest still run."""
    for plugin, cleanup in cleanups:
        try:
            await cleanup()
        except Exception:
            log.exception(
                "cleanup %s of plugin %r failed", getattr(cleanup, "__qualname__", repr(cleanup)), plugin
            )
