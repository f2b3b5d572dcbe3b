"""`MQTTTransport`: messages from an MQTT broker (paho-mqtt 2.x) into the event bus.

paho runs its network loop in its own thread; every callback is handed to the asyncio loop with
`call_soon_threadsafe`, so decoding, `submit` and acknowledging happen on the bus's loop, in arrival order.

Delivery: subscriptions use QoS 1 and paho's `manual_ack`, so a PUBACK is sent only after the bus accepted the
message's events (or the quarantine stored what could not be decoded). PUBACKs go out in arrival order, as
MQTT requires. With `persistent_session=True` (clean_session off, fixed client id) the broker keeps the
subscription and the unacknowledged messages across disconnects and redelivers them; downstream de-duplicates.

Broker sizing: Mosquitto's default `max_queued_messages` (1000) silently drops QoS 1 messages beyond it for a
persistent subscriber that is offline or slow. For bursts (CFX endpoints spool while offline) raise it, e.g.
`max_queued_messages 100000` (and `max_queued_bytes`) in mosquitto.conf.

The topic layout is site-specific: `topics` maps each subscription filter to the CFX message name carried
there (or to None when the envelope's own `MessageName` is enough). The codec receives the name as the
`cfx-message` header and the MQTT topic as `topic`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .._codec import Codec, DecodeResult
from .._exceptions import BusStateError, ConfigurationError
from ._base import BaseTransport, ConnectionState, QuarantineRecord, TransportContext

__all__ = ["MQTTConfig", "MQTTTransport"]

log = logging.getLogger("pywats_events.transports.mqtt")

#: pause between attempts when the bus or the quarantine store refuses a message
_RETRY_BACKOFF = 1.0


class MQTTConfig(BaseModel):
    """Broker address, session and subscriptions. The password is a secret: never in `repr` or logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "localhost"
    port: int = 1883
    #: required for a persistent session; generated otherwise
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: keep subscriptions and unacknowledged messages on the broker while we are away
    persistent_session: bool = False
    #: topic filter → CFX message name on that topic (None: take MessageName from the envelope)
    topics: dict[str, str | None] = Field(default_factory=lambda: dict.fromkeys(["cfx/#"]))
    qos: Literal[1, 2] = 1
    keepalive: int = Field(default=30, ge=5)
    reconnect_min_delay: int = Field(default=1, ge=1)
    reconnect_max_delay: int = Field(default=30, ge=1)
    connect_timeout: float = Field(default=10.0, gt=0)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: seconds `stop()` waits for in-flight messages to be accepted and acknowledged
    drain_timeout: float = Field(default=10.0, ge=0)

    @field_validator("topics")
    @classmethod
    def _some_topic(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        if not value:
            raise ValueError("topics must name at least one subscription filter")
        return value

    def message_name_for(self, topic: str) -> str | None:
        """The configured message name of the first filter that matches `topic`."""
        for pattern, name in self.topics.items():
            if paho.topic_matches_sub(pattern, topic):
                return name
        return None

    def __repr__(self) -> str:
        where = f"mqtt://{self.host}:{self.port}"
        return f"MQTTConfig({where}, client_id={self.client_id!r}, topics={list(self.topics)})"


@dataclass
class _Pending:
    mid: int
    qos: int
    generation: int
    outcome: str | None = None  # "ack" once accepted, "leave" to let the broker redeliver


@dataclass
class MQTTStats:
    received: int = 0
    acked: int = 0
    quarantined: int = 0
    left_unacked: int = 0
    reconnects: int = 0
    pending: collections.deque[_Pending] = field(default_factory=collections.deque, repr=False)


def _load_codec(codec: Codec | str) -> Codec:
    if not isinstance(codec, str):
        return codec
    for ep in entry_points(group="pywats_events.codecs"):
        if ep.name == codec:
            loaded = ep.load()
            # the group's contract: a Codec class or factory, called with no options here
            made: Codec = loaded() if isinstance(loaded, type) or not hasattr(loaded, "decode") else loaded
            return made
    raise ConfigurationError("mqtt.codec", f"no codec named {codec!r} is installed")


class MQTTTransport(BaseTransport):
    """Receives (CFX) messages from MQTT subscriptions and submits their events to the bus.

    Example::

        transport = MQTTTransport(MQTTConfig(host="gateway", topics={"line1/+/cfx": None}), codec=CFXCodec())
    """

    name = "mqtt"

    def __init__(self, config: MQTTConfig, codec: Codec | str) -> None:
        super().__init__()
        if config.persistent_session and not config.client_id:
            raise ConfigurationError("mqtt.client_id", "a persistent session needs a fixed client_id")
        self.config = config
        self.codec = _load_codec(codec)
        self.stats = MQTTStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._first_connect: asyncio.Future[None] | None = None
        self._generation = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    def __repr__(self) -> str:
        return f"<MQTTTransport {self.config.host}:{self.config.port} {self.state.value}>"

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self, context: TransportContext) -> None:
        """Connect and subscribe; returns once connected. Raises `ConnectionError` if the broker cannot be
        reached within `connect_timeout`; later outages are bridged by reconnecting."""
        if self._client is not None:
            raise BusStateError("MQTTTransport already started")
        self._context = context
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._first_connect = self._loop.create_future()
        self._set_state(ConnectionState.CONNECTING)
        client = self._make_client()
        self._client = client
        client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), self.config.connect_timeout)
        except (asyncio.TimeoutError, ConnectionError) as exc:
            await self._shutdown_client()
            self._set_state(ConnectionState.DISCONNECTED, str(exc) or "timeout")
            raise ConnectionError(
                f"cannot connect to mqtt://{self.config.host}:{self.config.port}: {exc or 'timeout'}"
            ) from None

    async def stop(self) -> None:
        """Unsubscribe from nothing, just stop: in-flight messages finish (up to `drain_timeout`) and are
        acknowledged; the rest stay with the broker (persistent session) for redelivery. Idempotent."""
        if self._client is None or self._stopping:
            return
        self._stopping = True
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=self.config.drain_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._shutdown_client()
        self._set_state(ConnectionState.CLOSED)

    def _make_client(self) -> paho.Client:
        cfg = self.config
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"pywats-events-{uuid.uuid4().hex[:12]}",
            clean_session=not cfg.persistent_session,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls:
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            if cfg.cert_file is not None:
                context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
            client.tls_set_context(context)
        client.reconnect_delay_set(cfg.reconnect_min_delay, cfg.reconnect_max_delay)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    async def _shutdown_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.disconnect()
        # loop_stop joins paho's thread: keep that off the event loop.
        await asyncio.to_thread(client.loop_stop)

    # -- paho thread → asyncio ------------------------------------------------------------------------

    def _call(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._call(self._connect_failed, str(reason))
            return
        # Subscribe on every connect: a clean session forgets subscriptions; repeats are harmless.
        subscriptions: list[tuple[str, int]] = [(pattern, self.config.qos) for pattern in self.config.topics]
        client.subscribe(subscriptions)
        self._call(self._connected, bool(getattr(flags, "session_present", False)))

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._call(self._disconnected, str(reason))

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        self._call(self._dispatch, message)

    # -- on the loop ----------------------------------------------------------------------------------

    def _connected(self, session_present: bool) -> None:
        self._generation += 1
        if self._generation > 1:
            self.stats.reconnects += 1
        detail = "session resumed" if session_present else "new session"
        self._set_state(ConnectionState.CONNECTED, detail)
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_result(None)

    def _connect_failed(self, reason: str) -> None:
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_exception(ConnectionError(f"refused: {reason}"))
        else:
            log.warning("mqtt reconnect refused: %s", reason)

    def _disconnected(self, reason: str) -> None:
        if self._stopping:
            return
        log.warning(
            "mqtt connection to %s:%s lost (%s); reconnecting", self.config.host, self.config.port, reason
        )
        self._set_state(ConnectionState.DISCONNECTED, reason)

    def _dispatch(self, message: paho.MQTTMessage) -> None:
        """Runs in arrival order; the task's first await is `submit`, so the bus sees the same order."""
        self.stats.received += 1
        pending = _Pending(mid=message.mid, qos=message.qos, generation=self._generation)
        if message.qos > 0:
            self.stats.pending.append(pending)
        task = asyncio.get_running_loop().create_task(self._handle(message, pending))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, message: paho.MQTTMessage, pending: _Pending) -> None:
        try:
            pending.outcome = await self._accept(message)
        except asyncio.CancelledError:
            pending.outcome = "leave"
            raise
        except Exception:
            log.exception(
                "unexpected error on mqtt message %s on %s; left for redelivery", message.mid, message.topic
            )
            pending.outcome = "leave"
        finally:
            self._flush_acks()

    async def _accept(self, message: paho.MQTTMessage) -> str:
        topic = message.topic
        headers: dict[str, Any] = {
            "mqtt-topic": topic,
            "mqtt-qos": message.qos,
            "mqtt-retain": bool(message.retain),
        }
        name = self.config.message_name_for(topic)
        if name is not None:
            headers["cfx-message"] = name
        body = bytes(message.payload)
        try:
            result = self.codec.decode(body, headers, topic)
        except Exception as exc:  # the contract says never; a bug must still not cost the message
            reason = f"codec raised {type(exc).__name__}: {exc}"
            result = DecodeResult(quarantined=[QuarantineRecord(body, reason, headers, self.name, topic)])
        context = self._context
        assert context is not None
        if result.events:
            while True:
                try:
                    await context.submit(result.events)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self._stopping or isinstance(exc, BusStateError):
                        return "leave"
                    log.warning("bus refused mqtt message on %s (%s); retrying", topic, exc)
                    await asyncio.sleep(_RETRY_BACKOFF)
        for record in result.quarantined:
            self.stats.quarantined += 1
            while True:
                try:
                    await context.quarantine(record)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if self._stopping:
                        return "leave"
                    log.exception("quarantine failed for mqtt message on %s; retrying", topic)
                    await asyncio.sleep(_RETRY_BACKOFF)
        if result.quarantined:
            log.warning(
                "undecodable mqtt message on %s quarantined: %s",
                topic,
                "; ".join(r.reason for r in result.quarantined)[:500],
            )
        return "ack"

    def _flush_acks(self) -> None:
        """PUBACK in arrival order, each only once its message is done; skip acks for an old connection
        (a packet id from a previous clean session could now name a different message)."""
        queue = self.stats.pending
        client = self._client
        while queue and queue[0].outcome is not None:
            item = queue.popleft()
            if item.outcome != "ack":
                self.stats.left_unacked += 1
                continue
            if client is None or item.generation != self._generation or not self.is_connected:
                self.stats.left_unacked += 1
                continue
            client.ack(item.mid, item.qos)
            self.stats.acked += 1

    def pending_acks(self) -> int:
        """Messages received but not yet acknowledged (for health checks and tests)."""
        return len(self.stats.pending)
