"""A tiny HTTP endpoint for operations: /healthz (process alive), /readyz (inputs connected), /metrics.

Plain asyncio streams instead of a web framework: three fixed GET routes do not justify a dependency.
/metrics answers in the OpenMetrics format when the scraper asks for it (``Accept:
application/openmetrics-text``, as Prometheus does), else in the Prometheus text format.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

__all__ = ["HealthServer"]

log = logging.getLogger("pywats_events.health")

ReadyCheck = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        ready: ReadyCheck,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        before_scrape: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.ready = ready
        self.host = host
        self.port = port
        self.before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            accept = ""
            while (header := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "accept":
                    accept = value.strip()
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            status, ctype, body = self.respond(parts[0] if parts else "", path, accept)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("health endpoint request failed")
        finally:
            writer.close()

    def respond(self, method: str, path: str, accept: str = "") -> tuple[str, str, bytes]:
        """(status line, content type, body) of one request; the operator console serves these paths too."""
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status": "ok"}\n'
        if path == "/readyz":
            ok, detail = self.ready()
            body = json.dumps({"ready": ok, **detail}, default=str).encode() + b"\n"
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        if path == "/metrics":
            if self.before_scrape is not None:
                self.before_scrape()
            if "application/openmetrics-text" in accept:
                return "200 OK", openmetrics.CONTENT_TYPE_LATEST, openmetrics.generate_latest(self.registry)
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return "404 Not Found", "text/plain", b"not found\n"
