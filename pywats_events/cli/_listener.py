"""The listener: settings → codec, handlers, journal, DLQ, bus, transports; run until told to stop; drain.

Transports are started here with a `ListenerContext` wrapping the bus context, so quarantined input lands
in the quarantine store and connection changes feed readiness. Shutdown order: stop intake (transports),
drain the bus within `drain_timeout` (unfinished work stays in the journal), then close sinks and stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import plugins
from .._codec import Codec, DecodeResult
from .._event import Event
from .._exceptions import ConfigurationError
from .._handlers import resolve_event_types
from .._observer import BusObserver
from ..config import Settings
from ..exit_codes import ExitCode
from ..health import HealthServer
from ..journal import SqliteJournal
from ..logging_setup import redact, register_secret
from ..metrics import ListenerStats, MetricsObserver, endpoint_label, status_label
from ..quarantine import SqliteQuarantine
from ..transports import BaseTransport, ConnectionState, QuarantineRecord
from ..transports.replay import ReplayTransport
from .status import unfinished_by_event_type, unfinished_entries

__all__ = [
    "Listener",
    "ReplayResult",
    "RunSummary",
    "Unfinished",
    "check_plugin_tables",
    "replay_dead_letters",
    "run_cleanups",
]

log = logging.getLogger("pywats_events.listener")


class MeteredCodec:
    """Counts inbound messages around any codec (received / decoded); never raises."""

    def __init__(self, inner: Codec, metrics: MetricsObserver) -> None:
        self.inner = inner
        self.metrics = metrics

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        self.metrics.message_received()
        try:
            result = self.inner.decode(body, headers, topic)
        except Exception as exc:
            return DecodeResult(
                [], [QuarantineRecord(body, f"codec raised {exc!r}", dict(headers or {}), None, topic)]
            )
        if result.events:
            self.metrics.message_decoded()
        return result


class MeteredSink:
    """Counts WATS requests by endpoint and status around any RequestSink."""

    def __init__(self, inner: Any, metrics: MetricsObserver) -> None:
        self.inner = inner
        self.metrics = metrics

    async def send(self, request: Any) -> Any:
        endpoint = endpoint_label(request.method, request.path)
        try:
            response = await self.inner.send(request)
        except Exception as exc:
            self.metrics.request_sent(endpoint, status_label(exc))
            raise
        self.metrics.request_sent(endpoint, status_label(response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ListenerContext:
    """The context transports see: submit → bus, quarantine → store, connection changes → readiness."""

    def __init__(self, bus: Any, store: SqliteQuarantine, metrics: MetricsObserver) -> None:
        self.bus = bus
        self.store = store
        self.metrics = metrics
        self.states: dict[str, ConnectionState] = {}

    async def submit(self, events: Sequence[Event]) -> None:
        await self.bus.context.submit(events)

    async def quarantine(self, record: QuarantineRecord) -> None:
        try:
            await self.bus.context.quarantine(record)  # stores it (quarantine_store) and notifies observers
        except Exception:
            log.exception(
                "could not store quarantined message (%d bytes): %s", len(record.raw), record.reason
            )
        log.warning(
            "quarantined message from %s (%d bytes): %s",
            record.topic or record.source or "?",
            len(record.raw),
            redact(record.reason[:300]),
        )

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        self.states[transport.name] = state
        log.debug("transport %s %s %s", transport.name, state.value, redact(detail))
        with contextlib.suppress(Exception):
            self.bus.context.connection_changed(transport, state, detail)


class DeferralWatch(BusObserver):
    """Why handlers have not finished their events: what waits behind an outage or an open circuit breaker
    right now, and each handler's last failure. A run that could not drain tells its user from this."""

    def __init__(self) -> None:
        #: handler name → {event id: the last deferral reason}
        self.waiting: dict[str, dict[str, str]] = {}
        #: handler name → its last failed attempt's error
        self.last_error: dict[str, str] = {}

    def on_retry(
        self, event: Event, handler_name: str, attempt: int, delay: float, error: BaseException
    ) -> None:
        self.last_error[handler_name] = repr(error)

    def on_deferred(self, event: Event, handler_name: str, delay: float, reason: str) -> None:
        self.waiting.setdefault(handler_name, {})[event.id] = reason

    def on_handled(self, event: Event, handler_name: str, seconds: float) -> None:
        waiting = self.waiting.get(handler_name)
        if waiting:
            waiting.pop(event.id, None)

    def on_dead_letter(self, event: Event, handler_name: str, error: BaseException) -> None:
        self.on_handled(event, handler_name, 0.0)

    def reason(self, handler: str) -> str:
        """Why `handler` still has unfinished events when the run ended."""
        reasons = list((self.waiting.get(handler) or {}).values())
        if any(r == "circuit open" for r in reasons):
            return f"deferred behind an open circuit breaker ({len(reasons)} waiting)"
        if reasons:
            return f"deferred by an outage ({len(reasons)} waiting; {redact(reasons[-1])[:200]})"
        if handler in self.last_error:
            return f"retrying after failures (last: {redact(self.last_error[handler])[:200]})"
        return "not finished within listener.drain_timeout (in progress or waiting their turn)"


@dataclass
class Unfinished:
    """Events a run leaves unfinished in the journal: how many, for which handlers, and why."""

    total: int = 0
    #: handler name → unfinished events that handler has not finished yet
    by_handler: dict[str, int] = field(default_factory=dict)
    #: handler name → why (see `DeferralWatch.reason`)
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.total:
            return "no unfinished events"
        parts = [f"{h}: {n} ({self.reasons.get(h, '?')})" for h, n in sorted(self.by_handler.items())]
        return (
            f"{self.total} event(s) unfinished in the journal"
            + (f" — {'; '.join(parts)}" if parts else "")
            + "; the next start resumes them"
        )


@dataclass
class RunSummary:
    stats: dict[str, Any]
    facts: dict[str, str]
    journal_depth: int
    dlq_size: int
    quarantine_size: int
    elapsed: float
    stopped_by: str
    #: nothing accepted is left unfinished (journal empty, nothing in flight)
    drained: bool
    report: Any = None
    unfinished: Unfinished = field(default_factory=Unfinished)
    #: the run stopped on its own because its input ended (not by a signal)
    input_ended: bool = False

    @property
    def exit_code(self) -> ExitCode:
        """`ExitCode` of the run: a signal stop is the service contract (OK); a run whose input ended says
        whether everything was delivered."""
        if not self.input_ended:
            return ExitCode.OK
        if not self.drained:
            return ExitCode.NOT_DRAINED
        if self.stats.get("dead_letters"):
            return ExitCode.DEAD_LETTERS
        return ExitCode.OK


@dataclass
class _Parts:
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


class Listener:
    """One run of `pywats-events run`. `progress(stats)` is called about 4 times a second while running."""

    def __init__(self, settings: Settings, *, progress: Callable[[Listener], None] | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.stats = ListenerStats()
        self.metrics = MetricsObserver(self.stats)
        self.transports: list[BaseTransport] = []
        self.context: ListenerContext | None = None
        self.parts: _Parts | None = None
        self.health: HealthServer | None = None
        self.stop_requested = asyncio.Event()
        #: set by SIGINT/SIGTERM: a finite run stops delivering what its journal still holds
        self.interrupted = asyncio.Event()
        self.stopped_by = ""
        #: the run stops because its input ended: deliver everything before exiting
        self.input_ended = False
        self.deferrals = DeferralWatch()
        self._journal_depth = 0
        self._journal_final = False
        self._dlq_size = 0
        self._last_status = 0.0
        #: cleanups of the plugins built so far, so a failed start-up still closes what they opened
        self._built_cleanups: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        for url in (settings.amqp.url, settings.mqtt.url):
            if url is not None:
                _register_url_password(url.get_secret_value())
        for secret in (settings.mqtt.password, settings.wats.token):
            if secret is not None:
                register_secret(secret.get_secret_value())
        with contextlib.suppress(Exception):
            register_secret(settings.wats.resolved_token())

    # ------------------------------------------------------------------ composition
    def build_parts(self) -> _Parts:
        """Codec, handlers, stores and the bus (not started). Raises ConfigurationError on bad settings."""
        from .. import AsyncEventBus
        from ..policies import SqliteDeadLetterQueue

        s = self.settings
        check_plugin_tables(s)
        s.listener.data_dir.mkdir(parents=True, exist_ok=True)
        name = s.listener.codec
        codec: Codec = MeteredCodec(plugins.make_codec(name, dict(s.plugins.get(name, {}))), self.metrics)
        facts: dict[str, str] = {}
        cleanups = self._built_cleanups = []
        handler_objs: list[Any] = []
        for hname in s.listener.handlers:
            ctx = plugins.PluginContext(
                name=hname,
                settings=s,
                options=dict(s.handlers.get(hname, {})),
                codec=codec,
                meter_sink=lambda sink: MeteredSink(sink, self.metrics),
            )
            try:
                handler_objs.extend(plugins.make_handlers(hname, ctx))
            finally:  # what a failing factory opened before it raised is closed too
                cleanups.extend((hname, c) for c in ctx.cleanups)
            facts.update(ctx.facts)
        journal = None
        if s.journal.enabled:
            journal = SqliteJournal(
                s.journal_path,
                max_entries=s.journal.max_entries,
                max_bytes=s.journal.max_bytes,
                retention=s.journal.retention,
                synchronous=s.journal.synchronous,
            )
            facts["journal"] = str(s.journal_path)
        dlq = SqliteDeadLetterQueue(s.dlq_path)
        quarantine = SqliteQuarantine(s.quarantine_path)
        bus = AsyncEventBus(
            max_in_flight=s.bus.max_in_flight,
            max_concurrency=s.bus.max_concurrency,
            journal=journal,
            dead_letter_queue=dlq,
            quarantine_store=quarantine,
        )
        bus.add_observer(self.metrics)
        bus.add_observer(self.deferrals)
        for h in handler_objs:
            bus.subscribe(h)
        return _Parts(bus, journal, dlq, quarantine, self.metrics, handler_objs, codec, cleanups, facts)

    def build_transports(self, parts: _Parts) -> list[BaseTransport]:
        s = self.settings
        out: list[BaseTransport] = []
        wanted = (
            ("replay", "replay.paths", True),  # also the bundled samples when there is no input
            ("amqp", "amqp.url", s.amqp.url is not None),
            ("mqtt", "mqtt.url", s.mqtt.url is not None),
        )
        for tname, setting, _ in (w for w in wanted if w[2]):
            ctx = plugins.PluginContext(
                name=tname, settings=s, options=dict(s.plugins.get(tname, {})), codec=parts.codec
            )
            made = plugins.make_transports(tname, ctx, setting=setting)
            out.extend(made)
            if made:
                parts.facts.update(ctx.facts)
        for tname in s.listener.transports:
            ctx = plugins.PluginContext(
                name=tname, settings=s, options=dict(s.plugins.get(tname, {})), codec=parts.codec
            )
            out.extend(plugins.make_transports(tname, ctx, setting="listener.transports"))
            parts.facts.update(ctx.facts)
        return out

    async def build(self, *, transports: bool = True) -> _Parts:
        """`build_parts` (and `build_transports`); if either fails, the cleanups of the plugins built
        so far run before the error propagates."""
        try:
            parts = self.build_parts()
            if transports:
                self.transports = self.build_transports(parts)
        except BaseException:
            await run_cleanups(self._built_cleanups)
            raise
        self.parts = parts
        return parts

    # ------------------------------------------------------------------ running
    def request_stop(self, reason: str, *, input_ended: bool = False) -> None:
        if not self.stop_requested.is_set():
            self.stopped_by = reason
            self.input_ended = input_ended
            self.stop_requested.set()

    def _signalled(self, name: str) -> None:
        self.interrupted.set()
        self.request_stop(name)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        states = {k: v.value for k, v in (self.context.states if self.context else {}).items()}
        ok = self.parts is not None and not self.stop_requested.is_set()
        if self.transports:
            ok = ok and any(
                t.state is ConnectionState.CONNECTED or isinstance(t, ReplayTransport)
                for t in self.transports
            )
        return ok, {"transports": states}

    def _refresh_gauges(self) -> None:
        if self.parts is None:
            return
        if self.parts.journal is not None and not self._journal_final:
            self._journal_depth = self.parts.journal.stats.pending
        with contextlib.suppress(Exception):
            self._dlq_size = len(self.parts.dlq)
        self.metrics.journal_depth.set(self._journal_depth)
        self.metrics.dlq_size.set(self._dlq_size)

    @property
    def journal_depth(self) -> int:
        return self._journal_depth

    @property
    def dlq_size(self) -> int:
        return self._dlq_size

    def write_status(self, *, running: bool = True) -> None:
        """A small JSON snapshot for `pywats-events status` (written atomically)."""
        self._refresh_gauges()
        data = {
            "pid": os.getpid(),
            "running": running,
            "updated": time.time(),
            "journal_depth": self._journal_depth,
            "dlq_size": self._dlq_size,
            "transports": {k: v.value for k, v in (self.context.states if self.context else {}).items()},
            "facts": self.parts.facts if self.parts else {},
            **self.stats.snapshot(),
        }
        path = self.settings.status_path
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
            os.replace(tmp, path)

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._signalled, sig.name)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
                pass
        return installed

    async def _watch(self) -> None:
        s = self.settings.listener
        finite = [t for t in self.transports if isinstance(t, ReplayTransport)]
        while not self.stop_requested.is_set():
            try:
                await asyncio.wait_for(self.stop_requested.wait(), 0.25)
                break
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            self._tick(now)
            if s.max_messages and self.stats.received >= s.max_messages:
                self.request_stop(f"max-messages {s.max_messages}", input_ended=True)
            elif s.idle_exit and now - self.stats.last_input >= s.idle_exit:
                self.request_stop(f"idle {s.idle_exit:g}s", input_ended=True)
            elif finite and len(finite) == len(self.transports) and all(t.finished.is_set() for t in finite):
                self.request_stop("input finished", input_ended=True)

    def _tick(self, now: float) -> None:
        """Progress line about 4 times a second, status snapshot every 2 s."""
        if self.progress is not None:
            self._refresh_gauges()
            self.progress(self)
        if now - self._last_status >= 2.0:
            self._last_status = now
            self.write_status()

    async def _deliver_all(self, parts: _Parts, deadline: float) -> bool:
        """After the input ended: keep delivering until the journal holds no unfinished work and nothing is
        in flight, until `deadline` or a signal. True when everything was delivered."""
        journal = parts.journal
        if journal is None:
            return True  # without a journal, stop() drains everything that was accepted
        log.info(
            "input ended: delivering the %d unfinished event(s) before exiting (up to %.0fs)",
            journal.stats.pending,
            max(0.0, deadline - time.monotonic()),
        )
        while journal.stats.pending or parts.bus.in_flight:
            left = deadline - time.monotonic()
            if left <= 0 or self.interrupted.is_set():
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.interrupted.wait(), min(0.1, left))
            self._tick(time.monotonic())
        return True

    async def run(self) -> RunSummary:
        t0 = time.monotonic()
        parts = await self.build()
        self.context = ListenerContext(parts.bus, parts.quarantine, self.metrics)
        installed = self._install_signals()
        report: Any = None
        drained = False
        gc_before: tuple[int, int, int] | None = None
        drain_timeout = self.settings.listener.drain_timeout
        try:
            await parts.bus.start()
            if parts.journal is not None:
                self._journal_depth = parts.journal.stats.pending
            if self.settings.listener.metrics_port:
                self.health = HealthServer(
                    self.metrics.registry,
                    self.ready,
                    host=self.settings.listener.metrics_host,
                    port=self.settings.listener.metrics_port,
                    before_scrape=self._refresh_gauges,
                )
                await self.health.start()
            gc_before = _tune_gc_for_ingest()
            for t in self.transports:
                await t.start(self.context)
            self.stats.last_input = time.monotonic()
            self.write_status()
            await self._watch()
        finally:
            log.info(
                "stopping (%s): intake first, then %s up to %.0fs",
                self.stopped_by or "error",
                "delivering everything taken in" if self.input_ended else "draining what is in flight",
                drain_timeout,
            )
            for t in self.transports:
                try:
                    await asyncio.wait_for(t.stop(), drain_timeout)
                except Exception:
                    log.exception("transport %s did not stop cleanly", t.name)
            deadline = time.monotonic() + drain_timeout
            delivered = True
            if self.input_ended:
                try:
                    delivered = await self._deliver_all(parts, deadline)
                except Exception:
                    delivered = False
                    log.exception("delivering the journal's unfinished work failed")
            wanted = _wanted_by(parts.bus)
            try:
                report = await parts.bus.stop(timeout=max(0.0, deadline - time.monotonic()))
                drained = delivered and not report.timed_out and not report.not_handled
            except Exception:
                log.exception("bus did not stop cleanly")
            await run_cleanups(parts.cleanups)
            if self.health is not None:
                await self.health.stop()
            self._refresh_gauges()
            unfinished = Unfinished()
            if parts.journal is not None:
                with contextlib.suppress(Exception):
                    self._journal_depth = await parts.journal.depth()
                    await parts.journal.close()
                # what the file says, as `status` reports it (the in-memory count can lag behind)
                stored = unfinished_entries(self.settings.journal_path)
                if stored is not None:
                    self._journal_depth = stored
                self._journal_final = True
                unfinished = self._unfinished(wanted)
                drained = drained and unfinished.total == 0
            self.write_status(running=False)
            loop = asyncio.get_running_loop()
            for sig in installed:
                loop.remove_signal_handler(sig)
            if gc_before is not None:
                gc.set_threshold(*gc_before)
                gc.unfreeze()
            if unfinished.total:
                log.warning(
                    "stopped (%s): not drained: %s", self.stopped_by or "error", unfinished.describe()
                )
            else:
                log.info(
                    "stopped (%s): %s",
                    self.stopped_by or "error",
                    "drained: no unfinished events" if drained else "not drained",
                )
        return RunSummary(
            stats=self.stats.snapshot(),
            facts=dict(parts.facts),
            journal_depth=self._journal_depth,
            dlq_size=self._dlq_size,
            quarantine_size=parts.quarantine.count(),
            elapsed=time.monotonic() - t0,
            stopped_by=self.stopped_by,
            drained=drained,
            report=report,
            unfinished=unfinished,
            input_ended=self.input_ended,
        )

    def _unfinished(self, wanted: Callable[[str], set[str]]) -> Unfinished:
        """What the closed journal file still holds, per handler that has not finished it, and why."""
        out = Unfinished(total=self._journal_depth)
        for event_type, done, count in unfinished_by_event_type(self.settings.journal_path):
            for handler in wanted(event_type) - done:
                out.by_handler[handler] = out.by_handler.get(handler, 0) + count
        out.reasons = {h: self.deferrals.reason(h) for h in out.by_handler}
        return out


def _wanted_by(bus: Any) -> Callable[[str], set[str]]:
    """Event type name → names of the bus's handlers that subscribe to it (as the bus routes)."""
    pairs = zip(bus.handler_names, bus.handlers, strict=True)
    subs = [(name, set(resolve_event_types(h))) for name, h in pairs]

    def wanted(type_name: str) -> set[str]:
        system = type_name.startswith("system.")
        return {n for n, types in subs if type_name in types or (not system and "*" in types)}

    return wanted


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
    used.update(n for n, url in (("amqp", settings.amqp.url), ("mqtt", settings.mqtt.url)) if url is not None)
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


#: generation-0 threshold while ingesting: decoded CFX messages allocate thousands of containers each, and
#: the default (700) makes the collector rescan in-flight payloads many times per message (about 25 % of
#: ingest CPU in bench/cfx_ingest.py). The payloads hold no reference cycles, so refcounting frees them.
INGEST_GC_THRESHOLD = 50_000


def _tune_gc_for_ingest() -> tuple[int, int, int]:
    """Move start-up objects out of the collector's view and raise the generation-0 threshold;
    returns the previous thresholds."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(INGEST_GC_THRESHOLD, before[1], before[2])
    return before


@dataclass
class ReplayResult:
    replayed: int
    failed_again: int
    dlq_size: int
    #: selected entries still in the DLQ because the replay stopped early (e.g. a WATS outage)
    not_replayed: int
    stopped_early: bool
    journal: str
    facts: dict[str, str]
    #: selected entries skipped (they stay in the DLQ) because their handler is not configured
    skipped: list[str] = field(default_factory=list)


def replay_journal_settings(settings: Settings) -> Settings:
    """`dlq replay` runs beside a running listener, so it must not share the listener's journal: the
    listener would also run the replayed events, and the replay would run the listener's pending work."""
    journal = settings.journal.model_copy(update={"path": settings.path_for("dlq-replay-journal.db")})
    return settings.model_copy(update={"journal": journal})


async def replay_dead_letters(settings: Settings, ids: list[str]) -> ReplayResult:
    """Re-runs dead letters, each through the handler that failed it, one after the other.

    An entry leaves the DLQ only once its handler finished (if it fails for good it comes back as a new
    entry). Each waits at most ``listener.drain_timeout`` seconds: during a WATS outage the replay stops
    there instead of waiting for ever, and what was not replayed stays in the DLQ."""
    settings = replay_journal_settings(settings)
    listener = Listener(settings)
    parts = await listener.build(transports=False)
    limit = settings.listener.drain_timeout
    try:
        await parts.bus.start()
        outcome = await parts.dlq.areplay(parts.bus, ids, timeout=limit)
    finally:
        report = await parts.bus.stop(timeout=limit)
        await asyncio.sleep(0)  # an entry that finished while the bus drained leaves the DLQ now
        await run_cleanups(parts.cleanups)
        if parts.journal is not None:
            await parts.journal.close()
    done = outcome.replayed
    late = outcome.timed_out is not None and parts.dlq.get(outcome.timed_out) is None
    if late:
        done += 1
    return ReplayResult(
        replayed=done,
        failed_again=listener.stats.dead_letters,
        dlq_size=len(parts.dlq),
        not_replayed=len(ids) - done - len(outcome.skipped),
        stopped_early=(outcome.timed_out is not None and not late) or bool(report.not_handled),
        journal=str(settings.journal_path),
        facts=dict(parts.facts),
        skipped=list(outcome.skipped),
    )


def _register_url_password(url: str) -> None:
    """Redact a URL's password (as written and decoded) but keep the host readable in messages."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password is None:
        if "@" in url:  # unparseable credentials: hide the whole URL rather than guess
            register_secret(url)
        return
    register_secret(password)
    register_secret(unquote(password))
