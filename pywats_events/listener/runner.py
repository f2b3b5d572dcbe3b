"""The run loop: start the bus and transports, run until told to stop or the input ended, then drain.

Transports are started with a `ListenerContext` wrapping the bus context, so quarantined input lands in the
quarantine store and connection changes feed readiness. Shutdown order: stop intake (transports), deliver
what the journal holds when the input ended, drain the bus within `drain_timeout` (unfinished work stays in
the journal), then close sinks and stores.
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
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

from .._event import Event
from .._exceptions import ConfigurationError
from .._handlers import resolve_event_types
from ..config import Settings
from ..health import HealthServer
from ..logging_setup import redact, register_secret
from ..metrics import ListenerStats, MetricsObserver
from ..quarantine import SqliteQuarantine
from ..single_writer import SingleWriters
from ..systemd import SystemdNotifier
from ..tracing import enabled as tracing_enabled
from ..transports import BaseTransport, ConnectionState, QuarantineRecord
from ..transports.replay import ReplayTransport
from .composition import Cleanup, ListenerParts, build_parts, build_transports, run_cleanups
from .instrumentation import ListenerCollector
from .outcome import DeferralWatch, RunSummary, Unfinished
from .settlement import HandlerFailure, Settlements
from .status import unfinished_by_event_type, unfinished_entries

if TYPE_CHECKING:
    from ..console.server import ConsoleServer

__all__ = ["INGEST_GC_THRESHOLD", "Listener", "ListenerContext"]

log = logging.getLogger("pywats_events.listener")


class ListenerContext:
    """The context transports see: submit → bus, quarantine → store, connection changes → readiness."""

    def __init__(
        self,
        bus: Any,
        store: SqliteQuarantine,
        metrics: MetricsObserver,
        settlements: Settlements | None = None,
        single_writers: SingleWriters | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.metrics = metrics
        self.states: dict[str, ConnectionState] = {}
        #: set in distributed mode: transports that can settle after the handlers use `submit_settled`
        self.settlements = settlements
        #: set in distributed mode: the single writers the handlers declared, for a transport to serve
        self.single_writers = single_writers

    async def submit(self, events: Sequence[Event]) -> None:
        await self.bus.context.submit(events)

    async def submit_settled(
        self, events: Sequence[Event], only: Collection[str] | None = None
    ) -> list[HandlerFailure]:
        """Distributed mode: returns once every handler finished `events` (those in `only`, when given),
        with the failures the transport must settle (empty: acknowledge)."""
        settlements = self.settlements
        if settlements is None:
            raise RuntimeError("submit_settled needs [listener] distributed = true")
        settlements.expect(events, only)
        try:
            await self.bus.context.submit(events)
        except BaseException:
            settlements.forget(events)
            raise
        return settlements.collect(events)

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


class Listener:
    """One run of `pywats-events run`. `progress(stats)` is called about 4 times a second while running."""

    def __init__(self, settings: Settings, *, progress: Callable[[Listener], None] | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.stats = ListenerStats()
        self.metrics = MetricsObserver(self.stats)
        self.metrics.registry.register(ListenerCollector(self))
        #: readiness and watchdog for a ``Type=notify`` systemd service (a no-op elsewhere)
        self.systemd = SystemdNotifier()
        self.transports: list[BaseTransport] = []
        self.context: ListenerContext | None = None
        self.parts: ListenerParts | None = None
        self.health: HealthServer | None = None
        #: the operator console, serving /healthz /readyz /metrics beside its pages (``[console]``)
        self.console: ConsoleServer | None = None
        #: the configuration file the settings were read from, if any (shown by the console)
        self.config_file: Path | None = None
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
        self._built_cleanups: list[Cleanup] = []
        _register_secrets(settings)

    # ------------------------------------------------------------------ composition
    def build_parts(self) -> ListenerParts:
        """Codec, handlers, stores and the bus (not started); see `composition.build_parts`."""
        self._built_cleanups = []
        return build_parts(self.settings, self.metrics, [self.deferrals], self._built_cleanups)

    def build_transports(self, parts: ListenerParts) -> list[BaseTransport]:
        return build_transports(self.settings, parts)

    async def build(self, *, transports: bool = True) -> ListenerParts:
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
        with contextlib.suppress(Exception):
            self.metrics.quarantine_entries.set(self.parts.quarantine.count())
            self.metrics.quarantine_bytes.set(self.parts.quarantine.size_bytes())
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
            "summary_rows": self.parts.summary_rows() if self.parts else [],
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
        """Progress line about 4 times a second, status snapshot every 2 s, systemd readiness once the
        transports are connected and watchdog keep-alives."""
        if self.systemd.enabled:
            if not self.stop_requested.is_set() and self.ready()[0]:
                self.systemd.ready(f"running: {len(self.transports)} transport(s) connected")
            self.systemd.keep_alive(now)
        if self.progress is not None:
            self._refresh_gauges()
            self.progress(self)
        if now - self._last_status >= 2.0:
            self._last_status = now
            self.write_status()

    async def _deliver_all(self, parts: ListenerParts, deadline: float) -> bool:
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
        self.context = ListenerContext(
            parts.bus, parts.quarantine, self.metrics, parts.settlements, parts.single_writers
        )
        installed = self._install_signals()
        report: Any = None
        drained = False
        gc_before: tuple[int, int, int] | None = None
        drain_timeout = self.settings.listener.drain_timeout
        try:
            if tracing_enabled():
                log.info("tracing: spans go to the configured OpenTelemetry tracer provider")
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
                from ..console.server import console_for

                self.console = console_for(
                    self, self.settings, parts, self.health, config_file=self.config_file
                )
                await (self.console or self.health).start()
            gc_before = _tune_gc_for_ingest()
            for t in self.transports:
                await t.start(self.context)
            _check_writers_served(parts.single_writers)
            self.stats.last_input = time.monotonic()
            self.write_status()
            await self._watch()
        finally:
            self.systemd.stopping(f"stopping ({self.stopped_by or 'error'})")
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
            if self.console is not None:
                await self.console.stop()
            elif self.health is not None:
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
            rows=parts.summary_rows(),
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


def _register_secrets(settings: Settings) -> None:
    """Every secret setting of every section, kept out of log lines: a URL's password (its host stays
    readable), any other `SecretStr` whole."""
    for name in type(settings).model_fields:
        section = getattr(settings, name)
        if not isinstance(section, BaseModel):
            continue
        for value in dict(section).values():
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                if "://" in secret:
                    _register_url_password(secret)
                elif secret:
                    register_secret(secret)


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


def _check_writers_served(writers: SingleWriters | None) -> None:
    """Handlers that declared single-writer work need a transport that keeps it on a broker."""
    if writers is not None and writers.writers and not writers.bound:
        raise ConfigurationError(
            "listener.distributed",
            f"the handlers declared single-writer work ({', '.join(sorted(writers.writers))}) and no"
            " transport keeps it on a broker: distributed mode needs the amqp input",
        )
