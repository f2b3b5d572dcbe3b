"""ReplayTransport: feeds captured messages (files, directories, JSON lines) through a codec into the bus.

Used for the no-argument demo run, for re-processing captures and in tests. Each message goes through the
same codec → submit/quarantine path a broker transport uses, so a replay exercises the real pipeline.

JSON-lines files (``.jsonl``/``.ndjson``) hold one message per line: either a JSON envelope as it came off the
wire, or ``{"body_b64": "...", "headers": {...}, "topic": "..."}`` for exact bytes (gzip, binary, framing).
Any other file is one message (its bytes as is). Directories are read recursively in name order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._codec import Codec
from ._base import BaseTransport, ConnectionState, QuarantineRecord, TransportContext

__all__ = ["ReplayMessage", "ReplayTransport", "iter_messages"]

log = logging.getLogger("pywats_events.transports.replay")

_LINE_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class ReplayMessage:
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    topic: str | None = None
    origin: str = ""


def _line_message(line: bytes, origin: str) -> ReplayMessage:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return ReplayMessage(line, {}, None, origin)  # the codec quarantines it with the exact bytes
    if isinstance(obj, dict) and "body_b64" in obj:
        try:
            body = base64.b64decode(obj["body_b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return ReplayMessage(line, {}, None, origin)
        headers = obj.get("headers") or {}
        topic = obj.get("topic") or obj.get("routing_key")
        return ReplayMessage(body, headers if isinstance(headers, dict) else {}, topic, origin)
    return ReplayMessage(line, {}, None, origin)


def _iter_file(path: Path) -> Iterator[ReplayMessage]:
    if path.suffix.lower() in _LINE_SUFFIXES:
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                line = raw.rstrip(b"\r\n")
                if line.strip():
                    yield _line_message(line, f"{path}:{n}")
    else:
        # the file name is the topic: captures named after the message (``CFX.Heartbeat.json``) decode
        # even when they hold a bare MessageBody
        yield ReplayMessage(path.read_bytes(), {}, path.stem, str(path))


def iter_messages(paths: Iterable[str | Path]) -> Iterator[ReplayMessage]:
    """Messages from files, directories (recursive, sorted) and JSON-lines captures, lazily."""
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith(".")):
                yield from _iter_file(f)
        elif p.is_file():
            yield from _iter_file(p)
        else:
            raise FileNotFoundError(f"replay source not found: {p}")


class ReplayTransport(BaseTransport):
    """Replays `messages` (or the files in `paths`) once, then reports `finished`.

    `rate` limits messages per second (0 = as fast as the bus accepts). `window` messages may be in flight
    at once; submits are issued in replay order, so per-unit order is kept.
    """

    name = "replay"

    def __init__(
        self,
        codec: Codec,
        *,
        paths: Iterable[str | Path] = (),
        messages: Iterable[ReplayMessage] = (),
        rate: float = 0.0,
        window: int = 64,
        name: str = "replay",
    ) -> None:
        super().__init__()
        self.codec = codec
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.exists():
                raise FileNotFoundError(f"replay source not found: {p}")
        self._messages = list(messages)
        self.rate = rate
        self.window = max(1, window)
        self.name = name
        self.sent = 0
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _all(self) -> Iterator[ReplayMessage]:
        yield from self._messages
        yield from iter_messages(self.paths)

    async def start(self, context: TransportContext) -> None:
        self._context = context
        self._set_state(ConnectionState.CONNECTED)
        self._task = asyncio.create_task(self._run(context), name=f"{self.name}-replay")

    async def stop(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._set_state(ConnectionState.CLOSED)
        self.finished.set()

    async def _one(self, context: TransportContext, msg: ReplayMessage, sem: asyncio.Semaphore) -> None:
        try:
            result = self.codec.decode(msg.body, msg.headers, msg.topic)
            if result.events:  # submit first: it is what must keep replay order
                await context.submit(result.events)
            for rec in result.quarantined:
                await context.quarantine(rec)
            self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("replay of %s failed", msg.origin)
            await context.quarantine(
                QuarantineRecord(msg.body, f"replay failed: {exc!r}", dict(msg.headers), self.name, msg.topic)
            )
        finally:
            sem.release()

    async def _run(self, context: TransportContext) -> None:
        sem = asyncio.Semaphore(self.window)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            for msg in self._all():
                await sem.acquire()
                if interval:
                    delay = next_at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at = max(next_at, loop.time() - interval) + interval
                t = asyncio.create_task(self._one(context, msg, sem))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                await asyncio.sleep(0)  # let the task issue its submit before the next one (order)
            if tasks:
                await asyncio.gather(*tasks)
        except FileNotFoundError as exc:
            log.error("%s", exc)
        finally:
            for t in tasks:
                t.cancel()
            self._set_state(ConnectionState.DISCONNECTED)
            self.finished.set()
