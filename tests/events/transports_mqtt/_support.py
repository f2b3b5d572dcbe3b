"""Doubles for the MQTT transport tests: a recording bus context, a tiny JSON codec, a cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pywats_events import DecodeResult, Event, EventMetadata, EventType
from pywats_events.transports import BaseTransport, ConnectionState, QuarantineRecord

MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883


def require_mosquitto() -> None:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=1.0):
            return
    except OSError as exc:
        message = f"Mosquitto not reachable at {MQTT_HOST}:{MQTT_PORT} ({exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


class EnvelopeCodec:
    """gzip-or-plain JSON; an envelope or a bare body whose name comes from the `cfx-message` header."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Any], str | None]] = []

    def decode(
        self, body: bytes, headers: Mapping[str, Any] | None = None, topic: str | None = None
    ) -> DecodeResult:
        headers = dict(headers or {})
        self.seen.append((headers, topic))
        try:
            doc = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
            if "MessageName" in doc:
                name, unique_id = doc["MessageName"], doc["UniqueID"]
            else:
                name, unique_id = headers["cfx-message"], doc["Id"]
        except Exception as exc:
            return DecodeResult(
                quarantined=[QuarantineRecord(body, f"undecodable: {exc}", headers, None, topic)]
            )
        meta = EventMetadata(causation_id=unique_id, source_topic=topic)
        event = Event(
            event_type=EventType.PASSTHROUGH, payload={"name": name, "id": unique_id}, metadata=meta
        )
        return DecodeResult(events=[event])


@dataclass
class RecordingContext:
    gate: asyncio.Event | None = None
    events: list[Event] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    states: list[ConnectionState] = field(default_factory=list)
    submitting: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, events: Sequence[Event]) -> None:
        self.submitting.set()
        if self.gate is not None:
            await self.gate.wait()
        self.events.extend(events)
        self.changed.set()

    async def quarantine(self, record: QuarantineRecord) -> None:
        self.quarantined.append(record)
        self.changed.set()

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        self.states.append(state)
        self.changed.set()

    def ids(self) -> list[str]:
        return [e.payload["id"] for e in self.events]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async def _loop() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.1)

        await asyncio.wait_for(_loop(), timeout)


class TcpProxy:
    """A relay in front of the broker whose live connections a test can cut."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.accepting = True
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

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
