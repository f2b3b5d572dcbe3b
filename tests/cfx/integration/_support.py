"""Test doubles and helpers shared by the CFX transport integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pywats_events import DecodeResult, Event, EventMetadata, EventType
from pywats_events.transports import BaseTransport, ConnectionState, QuarantineRecord

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672
BROKER_URL = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}/"


def require_port(host: str, port: int, what: str) -> None:
    """Skip when the broker is not there — except in CI, where a missing broker is a failure."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{what} not reachable at {host}:{port} ({exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def unique(prefix: str) -> str:
    return f"test.{prefix}.{uuid.uuid4().hex[:10]}"


class JsonEnvelopeCodec:
    """A deliberately small codec: gunzip by header or magic, one JSON envelope → one passthrough event."""

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        headers = dict(headers or {})
        try:
            raw = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            envelope = json.loads(raw)
            unique_id = envelope["UniqueID"]
            name = envelope["MessageName"]
        except Exception as exc:
            record = QuarantineRecord(
                raw=body, reason=f"not a CFX envelope: {exc}", headers=headers, topic=topic
            )
            return DecodeResult(quarantined=[record])
        meta = EventMetadata(causation_id=unique_id, source=envelope.get("Source"), source_topic=topic)
        payload = {"message_name": name, "unique_id": unique_id, "body": envelope.get("MessageBody")}
        return DecodeResult(events=[Event(event_type=EventType.PASSTHROUGH, payload=payload, metadata=meta)])


@dataclass
class RecordingContext:
    """TransportContext double: records what the transport hands over; `gate` lets a test hold `submit`."""

    gate: asyncio.Event | None = None
    submit_delay: float = 0.0
    events: list[Event] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    states: list[ConnectionState] = field(default_factory=list)
    submitting: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, events: Sequence[Event]) -> None:
        self.submitting.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.submit_delay:
            await asyncio.sleep(self.submit_delay)
        self.events.extend(events)
        self.changed.set()

    async def quarantine(self, record: QuarantineRecord) -> None:
        self.quarantined.append(record)
        self.changed.set()

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        self.states.append(state)
        self.changed.set()

    def unique_ids(self) -> list[str]:
        return [e.payload["unique_id"] for e in self.events]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async def _loop() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)

        await asyncio.wait_for(_loop(), timeout)


class TcpProxy:
    """A cuttable TCP relay in front of the broker, to kill a live connection without touching the broker."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.transport.abort()

    def cut(self) -> None:
        """Abort every live connection (like a broker crash or a pulled cable); keep listening."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
