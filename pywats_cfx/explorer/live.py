"""The live explorer: CFX traffic as it passes, read without taking anything from the listener.

AMQP: a server-named, exclusive, auto-deleting queue of its own, bound to the exchange, consumed without
acknowledgements (the broker copies each message to it; the listener's queue is not touched). MQTT: a
clean, non-persistent session. Every message becomes a `LiveMessage` (what arrived, exactly) and a
`LiveLine` (what it is, for the one-line view); `LiveHistory` numbers the messages shown and keeps the
last ones, so their detail can be asked for by number; `Recorder` writes the exact bytes as JSON lines
that ``--file`` and ``pywats-events run --replay`` read back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from ..codec import CFXCodec

__all__ = [
    "DEFAULT_KEEP",
    "LiveHistory",
    "LiveLine",
    "LiveMessage",
    "LiveSourceError",
    "Recorder",
    "amqp_messages",
    "live_line",
    "mqtt_messages",
]

_SERIAL_KEYS = ("unit_serial", "material_serial")

#: how many of the last messages the live view keeps for their detail
DEFAULT_KEEP = 1000


class LiveSourceError(Exception):
    """The broker cannot be reached or the exchange does not exist; the message says which."""


@dataclass(frozen=True)
class LiveMessage:
    """One message as it arrived."""

    body: bytes
    #: AMQP headers (text values) or MQTT has none
    headers: Mapping[str, Any] = field(default_factory=dict)
    #: the routing key (AMQP) or topic (MQTT)
    topic: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class LiveLine:
    """What the one-line view shows of a message."""

    received_at: datetime
    #: the envelope's Source, else the routing key or topic
    source: str
    message_name: str
    #: the unit serials the message names, in order, without repeats
    units: tuple[str, ...]
    result: str | None
    size: int
    #: why the message could not be decoded, else None
    error: str | None = None

    def matches(self, text: str | None) -> bool:
        """The filter: `text` in the message name or the source (any case); everything when None."""
        if not text:
            return True
        needle = text.lower()
        return needle in self.message_name.lower() or needle in self.source.lower()


def live_line(message: LiveMessage, codec: CFXCodec) -> LiveLine:
    """Decode `message` just enough for the one-line view."""
    decoded, quarantined = codec.decode_messages(message.body, message.headers, message.topic)
    topic = message.topic or ""
    if not decoded:
        reason = quarantined[0].reason if quarantined else "no message"
        return LiveLine(message.received_at, topic, "(not decoded)", (), None, len(message.body), reason)
    envelope = decoded[0].envelope
    units: list[str] = []
    result: str | None = None
    for m in decoded:
        for event in m.events:
            payload = event.payload
            for key in _SERIAL_KEYS:
                value = payload.get(key)
                if isinstance(value, str) and value and value not in units:
                    units.append(value)
            if result is None and payload.get("result") not in (None, ""):
                result = str(payload["result"])
    names = sorted({m.envelope.message_name for m in decoded})
    return LiveLine(
        message.received_at,
        envelope.source or topic,
        ", ".join(names),
        tuple(units),
        result,
        len(message.body),
    )


class LiveHistory:
    """The messages shown, numbered from 1; only the last `keep` stay in memory, so a view left
    running for days holds a bounded amount."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self._messages: deque[LiveMessage] = deque(maxlen=keep)
        #: the number of the last message added (0: none yet)
        self.last = 0

    def add(self, message: LiveMessage) -> int:
        """Keep `message` (dropping the oldest beyond `keep`) and return its number."""
        self._messages.append(message)
        self.last += 1
        return self.last

    def get(self, number: int) -> LiveMessage | None:
        """Message `number`, or None when it has not arrived yet or was dropped (see `why_missing`)."""
        first = self.last - len(self._messages) + 1
        if not first <= number <= self.last:
            return None
        return self._messages[number - first]

    def why_missing(self, number: int) -> str:
        """The one-line answer for a number `get` has no message for."""
        first = self.last - len(self._messages) + 1
        if number < 1 or number > self.last:
            shown = f"#1 to #{self.last}" if self.last else "none yet"
            return f"no message #{number}: messages shown so far {shown}"
        return f"message #{number} is no longer kept: only the last {len(self._messages)} are (#{first} on)"


class Recorder:
    """Writes arriving messages as JSON lines ``{"body_b64", "headers", "topic"}``, one flushed line each,
    so a recording stopped at any moment can be replayed up to its last message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.count = 0

    def __enter__(self) -> Recorder:
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, message: LiveMessage) -> None:
        if self._file is None:
            raise RuntimeError("Recorder is not open: use it as a context manager")
        line = {
            "body_b64": base64.b64encode(message.body).decode("ascii"),
            "headers": dict(message.headers),
            "topic": message.topic,
            "received_at": message.received_at.isoformat(),
        }
        self._file.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._file.flush()
        self.count += 1


# ---------------------------------------------------------------- AMQP


async def amqp_messages(
    url: str, *, exchange: str, binding: str, on_ready: Callable[[str], None] | None = None
) -> AsyncGenerator[LiveMessage, None]:
    """Messages published to `exchange` that match `binding`, from a queue of the explorer's own.

    The exchange is looked up, never declared (``passive``): the explorer changes nothing on the broker
    but its own queue, which the broker deletes when the explorer disconnects.
    """
    import aio_pika
    from aio_pika.exceptions import AMQPError

    try:
        connection = await aio_pika.connect(url)
    except (OSError, AMQPError) as exc:
        raise LiveSourceError(f"cannot connect to {_safe(url)}: {exc}") from exc
    async with connection:
        channel = await connection.channel()
        try:
            target = await channel.get_exchange(exchange, ensure=True)
        except AMQPError as exc:
            raise LiveSourceError(f"exchange {exchange!r} not found on {_safe(url)}: {exc}") from exc
        queue = await channel.declare_queue(
            f"pywats-explorer.{uuid.uuid4().hex[:12]}", exclusive=True, auto_delete=True, durable=False
        )
        await queue.bind(target, routing_key=binding)
        if on_ready is not None:
            on_ready(
                f"listening on {_safe(url)} exchange {exchange!r} binding {binding!r} (queue {queue.name})"
            )
        async with queue.iterator(no_ack=True) as messages:
            async for incoming in messages:
                headers = {k: _text(v) for k, v in (incoming.headers or {}).items()}
                yield LiveMessage(incoming.body, headers, incoming.routing_key)


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


# ---------------------------------------------------------------- MQTT


async def mqtt_messages(
    url: str, *, topic: str, on_ready: Callable[[str], None] | None = None
) -> AsyncGenerator[LiveMessage, None]:
    """Messages on `topic` (wildcards allowed) in a clean session that the broker forgets on disconnect."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[LiveMessage] = asyncio.Queue()
    subscribed: asyncio.Future[None] = loop.create_future()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"pywats-explorer-{uuid.uuid4().hex[:12]}",
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    if parts.username:
        client.username_pw_set(parts.username, parts.password)

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        loop.call_soon_threadsafe(_settle, subscribed)

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = LiveMessage(bytes(msg.payload), {}, msg.topic)
        loop.call_soon_threadsafe(queue.put_nowait, item)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    try:
        await loop.run_in_executor(None, lambda: client.connect(host, port))
    except OSError as exc:
        raise LiveSourceError(f"cannot connect to mqtt://{host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        await subscribed
        if on_ready is not None:
            on_ready(f"listening on mqtt://{host}:{port} topic {topic!r} (clean session)")
        while True:
            yield await queue.get()
    finally:
        client.disconnect()
        client.loop_stop()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)
