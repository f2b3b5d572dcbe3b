"""Serving the console with uvicorn inside the listener's event loop, in place of the bare health server.

uvicorn is told not to touch signals or logging: the listener owns both (SIGTERM drains the bus)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from ..config import Settings
from ..health import HealthServer
from .app import console_app
from .security import ConsoleGuard, check_bind
from .source import ConsoleSource

if TYPE_CHECKING:
    from ..listener.composition import ListenerParts
    from ..listener.runner import Listener

__all__ = ["ConsoleServer", "console_for"]

log = logging.getLogger("pywats_events.console")


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone and says when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn before 0.29
        return None


class ConsoleServer:
    """The console and /healthz /readyz /metrics on one port; `start` returns the port it listens on."""

    def __init__(self, source: ConsoleSource, guard: ConsoleGuard, health: HealthServer) -> None:
        check_bind(health.host, guard.token)
        self.source = source
        self.guard = guard
        self.health = health
        self.host = health.host
        self.port = health.port
        self._server: _QuietServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> int:
        app = console_app(self.source, self.guard, self.health)
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        # the socket is bound here, so a taken port is an OSError of ours, not uvicorn's exit
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = self.health.port = sock.getsockname()[1]
        self._server = server = _QuietServer(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="console-server")
        waiting = asyncio.ensure_future(server.listening.wait())
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if serving.done() or not server.started:
            server.should_exit = True
            sock.close()
            cause = serving.exception() if serving.done() else None
            raise OSError(f"the console could not start on {self.host}:{self.port}") from cause
        self._tasks = [serving, asyncio.create_task(self._sample(), name="console-sampler")]
        logging.getLogger().addHandler(self.source.errors)
        mode = "actions need the token" if self.guard.writable else "read-only (no token)"
        log.info(
            "console on http://%s:%d/ (%s); /healthz /readyz /metrics beside it", self.host, self.port, mode
        )
        return self.port

    async def _sample(self) -> None:
        """Rates every 2 s, the journal every `history.every` s (the first at once)."""
        tick = 0
        every = max(1, round(self.source.history.every / 2))
        while True:
            self.source.sample_rates()
            if tick % every == 0:
                try:
                    await self.source.sample_journal()
                except Exception:
                    log.exception("console: sampling the journal failed")
            tick += 1
            await asyncio.sleep(2)

    async def stop(self) -> None:
        logging.getLogger().removeHandler(self.source.errors)
        server = self._server
        if server is None:
            return
        self._server = None
        server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            await self._tasks[0]


def console_for(
    listener: Listener | None,
    settings: Settings,
    parts: ListenerParts,
    health: HealthServer,
    *,
    config_file: Path | None = None,
) -> ConsoleServer | None:
    """The console of a listener (running: `listener`; stopped: None), or None when it is off.

    Raises `ConfigurationError` when it would listen beyond loopback without a token."""
    if not settings.console.enabled:
        return None
    guard = ConsoleGuard.from_settings(settings)
    source = ConsoleSource(settings, parts, listener=listener, config_file=config_file)
    return ConsoleServer(source, guard, health)
