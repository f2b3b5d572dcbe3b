"""`pywats-events console --data-dir DIR`: the console over a stopped listener's stores.

The handlers are built as `run` would build them (so a replay delivers where `run` delivers, and plugin
panels such as the outbox appear), but no transport starts and the bus has a journal of its own, as for
`dlq replay`: the listener's unfinished work stays where it is for the listener's next start."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..health import HealthServer
from ..listener import Listener
from ..listener.composition import run_cleanups
from ..listener.dead_letters import replay_journal_settings
from .security import ConsoleGuard
from .server import ConsoleServer
from .source import ConsoleSource

__all__ = ["serve_data_dir"]


async def serve_data_dir(
    settings: Settings,
    *,
    host: str,
    port: int,
    config_file: Path | None = None,
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve the console until SIGINT or SIGTERM; `started(port)` is told where it listens."""
    listener = Listener(replay_journal_settings(settings))
    parts = await listener.build(transports=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server: ConsoleServer | None = None
    try:
        await parts.bus.start()
        health = HealthServer(
            listener.metrics.registry, lambda: (True, {"mode": "console"}), host=host, port=port
        )
        source = ConsoleSource(settings, parts, config_file=config_file)
        server = ConsoleServer(source, ConsoleGuard.from_settings(settings), health)
        bound = await server.start()
        if started is not None:
            started(bound)
        await stop.wait()
    finally:
        if server is not None:
            await server.stop()
        await parts.bus.stop(timeout=settings.listener.drain_timeout)
        await run_cleanups(parts.cleanups)
        if parts.journal is not None:
            await parts.journal.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
