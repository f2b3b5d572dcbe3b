"""`WebhookTransport`: an HTTP server (uvicorn) whose hooks feed the bus; the app is `WebhookApp`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator, Mapping
from pathlib import Path

import uvicorn

from .._base import BaseTransport, ConnectionState, TransportContext
from ._app import Hook, WebhookApp
from ._config import WebhookSettings
from ._idempotency import IdempotencyStore

__all__ = ["WebhookTransport"]

log = logging.getLogger("pywats_events.transports.webhook")


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: SIGINT/SIGTERM belong to the listener, which stops us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebhookTransport(BaseTransport):
    """Serves ``POST /hooks/<name>`` on ``settings.host:port`` (port 0 picks a free one, see `port`)."""

    name = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        hooks: Mapping[str, Hook],
        *,
        keys_path: Path | None = None,
        drain_timeout: float = 5.0,
        on_request: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.hooks = dict(hooks)
        self.keys_path = keys_path
        self.drain_timeout = drain_timeout
        self._on_request = on_request
        self._app: WebhookApp | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._store: IdempotencyStore | None = None
        self.port: int = settings.port

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.ssl_certfile else "http"
        host = self.settings.host
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self, context: TransportContext) -> None:
        self._context = context
        self._set_state(ConnectionState.CONNECTING)
        s = self.settings
        sock = _bind(s.host, s.port)
        self.port = int(sock.getsockname()[1])
        self._store = IdempotencyStore(
            self.keys_path, max_keys=s.idempotency_max_keys, retention=s.idempotency_retention
        )
        self._app = WebhookApp(s, self.hooks, self._store, on_request=self._on_request)
        self._app.context = context
        config = uvicorn.Config(
            self._app.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=max(1, int(self.drain_timeout)),
            ssl_certfile=str(s.ssl_certfile) if s.ssl_certfile else None,
            ssl_keyfile=str(s.ssl_keyfile) if s.ssl_keyfile else None,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="webhook-server")
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._set_state(ConnectionState.DISCONNECTED, "the server did not start")
                exc = self._task.exception()
                raise RuntimeError(f"webhook server did not start: {exc!r}")
            await asyncio.sleep(0.01)
        log.info("webhook: listening on %s/hooks/{%s}", self.url, ",".join(sorted(self.hooks)))
        self._set_state(ConnectionState.CONNECTED, self.url)

    async def stop(self) -> None:
        """Refuses new requests (503), answers those waiting on the bus 503, then closes the server."""
        if self._state is ConnectionState.CLOSED or self._task is None:
            self._set_state(ConnectionState.CLOSED)
            return
        assert self._app is not None and self._server is not None
        self._app.stopping.set()
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.drain_timeout + 5)
        except asyncio.TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        except BaseException as exc:  # SystemExit from uvicorn, or a crash of the server
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("webhook server ended with %r", exc)
        if self._store is not None:
            self._store.close()
        self._set_state(ConnectionState.CLOSED)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket: binding here (not in uvicorn) makes a busy port an `OSError` at start-up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
