"""`MQTTTransport`: messages from an MQTT broker (paho-mqtt 2.x, MQTT 3.1.1 or 5) into the event bus.

paho runs its network loop in its own thread. Its message callback only appends to a queue and, when the
queue was empty, wakes the asyncio loop once; the loop drains the queue in batches, decodes each message with
its subscription's codec, submits the batch's events together and then acknowledges the batch, PUBACKs in
arrival order (as MQTT requires) and only after the bus accepted the events or the quarantine stored what
could not be decoded. Messages not yet accepted when the connection drops are not acknowledged: the broker
redelivers them on the resumed session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..._codec import Codec, DecodeResult
from ..._event import Event
from ..._exceptions import BusStateError, ConfigurationError
from ...tracing import decode as traced_decode
from .._base import BaseTransport, ConnectionState, QuarantineRecord, TransportContext
from ._client import BufferedClient
from ._config import MQTTConfig, Subscription
from ._topic_template import TopicTemplateCodec

__all__ = ["MQTTStats", "MQTTTransport"]

log = logging.getLogger("pywats_events.transports.mqtt")

#: pause between attempts when the bus or the quarantine store refuses a message
_RETRY_BACKOFF = 1.0
#: MQTT 5 reason code of a disconnect because another client connected with our client id
_SESSION_TAKEN_OVER = 142
#: batches waiting for the bus before the transport stops taking more off its queue
_MAX_BATCHES_IN_FLIGHT = 16
#: seconds between two warnings about dropped QoS 0 messages
_DROP_WARNING_INTERVAL = 60.0


@dataclass
class _Pending:
    """One received QoS 1/2 message waiting for its PUBACK."""

    mid: int
    qos: int
    connection: int
    outcome: str | None = None  # "ack" once accepted, "leave" to let the broker redeliver


@dataclass
class MQTTStats:
    received: int = 0
    acked: int = 0
    quarantined: int = 0
    left_unacked: int = 0
    reconnects: int = 0
    #: QoS 0 messages dropped because `qos0_backlog` was full (QoS 0 has no flow control)
    dropped_qos0: int = 0
    pending: collections.deque[_Pending] = field(default_factory=collections.deque, repr=False)


class MQTTTransport(BaseTransport):
    """Receives messages from MQTT subscriptions and submits their events to the bus.

    `codec` reads subscriptions that name no codec of their own (the listener passes the CFX codec); it may
    be a codec object or the name of an installed codec. Example::

        config = MQTTConfig(host="gateway", client_id="line1-listener", topics={"line1/+/cfx": None})
        transport = MQTTTransport(config, codec=CFXCodec())
    """

    name = "mqtt"

    def __init__(self, config: MQTTConfig, codec: Codec | str | None = None) -> None:
        super().__init__()
        self.config = config
        self._default_codec = _load_codec(codec, "mqtt.codec") if codec is not None else None
        self._codecs = {id(sub): self._codec_for(sub) for sub in config.all_subscriptions}
        #: topic → (subscription, its codec); a line publishes on a small, fixed set of topics
        self._routes: dict[str, tuple[Subscription, Codec] | None] = {}
        self.stats = MQTTStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: BufferedClient | None = None
        self._first_connect: asyncio.Future[None] | None = None
        #: counts connections; written by paho's thread, read on the loop to skip acks for an old connection
        self._connection = 0
        self._arrivals: collections.deque[tuple[int, paho.MQTTMessage]] = collections.deque()
        self._wake_pending = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._dropped_warned_at: float | None = None

    def __repr__(self) -> str:
        return f"<MQTTTransport {self.config.url} {self.state.value}>"

    @property
    def codec(self) -> Codec | None:
        """The codec for subscriptions that name none."""
        return self._default_codec

    def _codec_for(self, sub: Subscription) -> Codec:
        setting = f"mqtt.subscriptions[{sub.topic}]"
        if sub.codec == "template":
            assert sub.template is not None  # the model checked the template and the event type's fields
            return TopicTemplateCodec(sub.template, sub.event_type, sub.fields)
        if sub.codec is not None:
            return _load_codec(sub.codec, f"{setting}.codec")
        if self._default_codec is None:
            raise ConfigurationError(
                f"{setting}.codec", "no codec named, and the transport has no default codec"
            )
        return self._default_codec

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self, context: TransportContext) -> None:
        """Connect and subscribe; returns once connected. Raises `ConnectionError` if the broker cannot be
        reached or refuses us within `connect_timeout`; later outages are bridged by reconnecting."""
        if self._client is not None:
            raise BusStateError("MQTTTransport already started")
        self._context = context
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._first_connect = self._loop.create_future()
        self._set_state(ConnectionState.CONNECTING)
        client = self._make_client()
        self._client = client
        cfg = self.config
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cfg.session_expiry if cfg.persistent_session else 0
            props.ReceiveMaximum = cfg.receive_maximum
            client.connect_async(
                cfg.host, cfg.port, cfg.keepalive, clean_start=not cfg.persistent_session, properties=props
            )
        else:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), cfg.connect_timeout)
        except (asyncio.TimeoutError, ConnectionError) as exc:
            await self._shutdown_client()
            self._set_state(ConnectionState.DISCONNECTED, str(exc) or "timeout")
            reason = str(exc) or f"no answer within {cfg.connect_timeout:g} s"
            raise ConnectionError(f"cannot connect to {cfg.url}: {reason}") from None

    async def stop(self) -> None:
        """Stop: in-flight messages finish (up to `drain_timeout`) and are acknowledged; messages not yet
        handed to the bus stay with the broker (persistent session) for redelivery. Idempotent."""
        if self._client is None or self._stopping:
            return
        self._stopping = True
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=self.config.drain_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._shutdown_client()
        self._arrivals.clear()
        self._set_state(ConnectionState.CLOSED)

    def _make_client(self) -> BufferedClient:
        cfg = self.config
        if cfg.protocol == "5":
            client = BufferedClient(
                CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=paho.MQTTv5, manual_ack=True
            )
        else:
            client = BufferedClient(
                CallbackAPIVersion.VERSION2,
                client_id=cfg.client_id,
                clean_session=not cfg.persistent_session,
                protocol=paho.MQTTv311,
                manual_ack=True,
            )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls:
            client.tls_set_context(_tls_context(cfg))
            if cfg.tls_insecure:
                client.tls_insecure_set(True)
        client.reconnect_delay_set(cfg.reconnect_min_delay, cfg.reconnect_max_delay)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
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

    # -- paho's thread ---------------------------------------------------------------------------------

    def _call(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._call(self._connect_failed, str(reason))
            return
        self._connection += 1
        if isinstance(client, BufferedClient):
            client.last_error = ""
        # Subscribe on every connect: a clean session forgets subscriptions; repeats are harmless. MQTT 5 asks
        # for retained messages only with a new subscription, so a reconnect does not replay them.
        subscriptions: list[tuple[str, Any]] = [
            (sub.topic, _qos(sub, self.config)) for sub in self.config.all_subscriptions
        ]
        if self.config.protocol == "5":
            subscriptions = [
                (topic, SubscribeOptions(qos=qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB))
                for topic, qos in subscriptions
            ]
        client.subscribe(subscriptions)
        self._call(self._connected, bool(getattr(flags, "session_present", False)))

    def _on_connect_fail(self, client: Any, _userdata: Any) -> None:
        # paho retries on its own; the first connect's failure makes start() fail at once, with the reason
        self._call(self._connect_failed, getattr(client, "last_error", "") or "connection failed")

    def _on_disconnect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._call(self._disconnected, reason, getattr(client, "last_error", ""))

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
        refused = [
            sub.topic
            for sub, code in zip(self.config.all_subscriptions, reasons, strict=False)
            if code.is_failure
        ]
        if refused:
            self._call(self._subscription_refused, refused)

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        if message.qos == 0 and len(self._arrivals) >= self.config.qos0_backlog:
            # QoS 1/2 are bounded by the broker's in-flight window; QoS 0 only by us
            self.stats.dropped_qos0 += 1
            self._call(self._warn_dropped)
            return
        self._arrivals.append((self._connection, message))
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._drain)

    # -- on the loop ----------------------------------------------------------------------------------

    def _connected(self, session_present: bool) -> None:
        if self._connection > 1:
            self.stats.reconnects += 1
        detail = "session resumed" if session_present else "new session"
        if self.config.persistent_session and not session_present:
            log.info(
                "mqtt broker %s holds no session for client id %r: starting a new one",
                self.config.url,
                self.config.client_id,
            )
        self._set_state(ConnectionState.CONNECTED, detail)
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_result(None)

    def _connect_failed(self, reason: str) -> None:
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_exception(ConnectionError(f"refused: {reason}"))
        else:
            log.warning("mqtt reconnect to %s failed: %s", self.config.url, reason)

    def _disconnected(self, reason: Any, last_error: str = "") -> None:
        if self._stopping:
            return
        if self._first_connect is not None and not self._first_connect.done():
            # closed before CONNACK: e.g. a TLS client certificate the broker refused after the handshake
            self._connect_failed(
                f"the broker closed the connection before accepting it: {last_error or reason}"
            )
            return
        if isinstance(reason, ReasonCode) and reason.value == _SESSION_TAKEN_OVER:
            log.error(
                "mqtt broker %s handed our session to another client with client id %r: give each listener "
                "its own mqtt.client_id",
                self.config.url,
                self.config.client_id,
            )
        else:
            log.warning("mqtt connection to %s lost (%s); reconnecting", self.config.url, reason)
        self._set_state(ConnectionState.DISCONNECTED, str(reason))

    def _subscription_refused(self, topics: list[str]) -> None:
        log.error(
            "mqtt broker %s refused the subscription to %s (check the broker's ACL)",
            self.config.url,
            ", ".join(topics),
        )

    def _warn_dropped(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._dropped_warned_at is None or now - self._dropped_warned_at >= _DROP_WARNING_INTERVAL:
            self._dropped_warned_at = now
            log.warning(
                "mqtt: %d QoS 0 message(s) dropped so far: the bus is not keeping up and mqtt.qos0_backlog "
                "(%d) is full; subscribe with QoS 1 to have the broker hold them instead",
                self.stats.dropped_qos0,
                self.config.qos0_backlog,
            )

    def _drain(self) -> None:
        """Takes up to `batch_size` arrivals, decodes them in arrival order and hands them to one task whose
        first await is `submit`, so the bus sees arrival order. While the bus holds `_MAX_BATCHES_IN_FLIGHT`
        batches it takes nothing more (a finished batch starts the next drain)."""
        self._wake_pending = False
        if self._stopping or len(self._inflight) >= _MAX_BATCHES_IN_FLIGHT:
            return
        arrivals = self._arrivals
        batch: list[_Pending] = []
        events: list[Event] = []
        quarantined: list[QuarantineRecord] = []
        resumable = self.config.persistent_session
        for _ in range(min(len(arrivals), self.config.batch_size)):
            connection, message = arrivals.popleft()
            self.stats.received += 1
            if message.qos > 0:
                if resumable and connection != self._connection:
                    # from a connection that is gone: the session redelivers it, handle it then (once)
                    self.stats.left_unacked += 1
                    continue
                pending = _Pending(mid=message.mid, qos=message.qos, connection=connection)
                self.stats.pending.append(pending)
                batch.append(pending)
            result = self._decode(message)
            events.extend(result.events)
            quarantined.extend(result.quarantined)
        if arrivals and not self._wake_pending:
            self._wake_pending = True
            asyncio.get_running_loop().call_soon(self._drain)
        task = asyncio.get_running_loop().create_task(self._accept(batch, events, quarantined))
        self._inflight.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._arrivals and not self._wake_pending and not self._stopping:
            self._wake_pending = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _decode(self, message: paho.MQTTMessage) -> DecodeResult:
        topic = message.topic
        body = bytes(message.payload)
        headers: dict[str, Any] = {
            "mqtt-topic": topic,
            "mqtt-qos": message.qos,
            "mqtt-retain": message.retain,
        }
        try:
            route = self._routes[topic]
        except KeyError:
            route = self._route(topic)
        if route is None:  # a filter the session kept from an earlier configuration
            reason = "no configured subscription matches this topic (left over in the persistent session?)"
            return DecodeResult(quarantined=[QuarantineRecord(body, reason, headers, self.name, topic)])
        sub, codec = route
        if sub.message_name is not None:
            headers["cfx-message"] = sub.message_name
        properties = getattr(message, "properties", None)
        user_properties = getattr(properties, "UserProperty", None) if properties is not None else None
        if user_properties:
            headers.update((str(k), v) for k, v in user_properties if k not in headers)
        try:
            return traced_decode(codec, body, headers, topic, transport=self.name)
        except Exception as exc:  # the contract says never; a bug must still not cost the message
            reason = f"codec raised {type(exc).__name__}: {exc}"
            return DecodeResult(quarantined=[QuarantineRecord(body, reason, headers, self.name, topic)])

    def _route(self, topic: str) -> tuple[Subscription, Codec] | None:
        sub = self.config.subscription_for(topic)
        route = None if sub is None else (sub, self._codecs[id(sub)])
        if len(self._routes) >= 10_000:
            self._routes.clear()
        self._routes[topic] = route
        return route

    async def _accept(
        self, batch: list[_Pending], events: list[Event], quarantined: list[QuarantineRecord]
    ) -> None:
        outcome = "leave"
        try:
            if await self._submit(events) and await self._store(quarantined):
                outcome = "ack"
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error on %d mqtt message(s); left for redelivery", len(batch))
        finally:
            for pending in batch:
                pending.outcome = outcome
            self._flush_acks()

    async def _submit(self, events: list[Event]) -> bool:
        context = self._context
        assert context is not None
        while events:
            try:
                await context.submit(events)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping or isinstance(exc, BusStateError):
                    return False
                log.warning("bus refused %d event(s) from mqtt (%s); retrying", len(events), exc)
                await asyncio.sleep(_RETRY_BACKOFF)
        return True

    async def _store(self, quarantined: list[QuarantineRecord]) -> bool:
        context = self._context
        assert context is not None
        for record in quarantined:
            while True:
                try:
                    await context.quarantine(record)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if self._stopping:
                        return False
                    log.exception("quarantine failed for mqtt message on %s; retrying", record.topic)
                    await asyncio.sleep(_RETRY_BACKOFF)
            self.stats.quarantined += 1
            log.warning("undecodable mqtt message on %s quarantined: %s", record.topic, record.reason[:500])
        return True

    def _flush_acks(self) -> None:
        """PUBACK in arrival order, each only once its message is done; skip acks for an earlier connection
        (its packet ids may now name other messages; the broker redelivers those messages anyway)."""
        queue = self.stats.pending
        client = self._client
        acks: list[tuple[int, int]] = []
        while queue and queue[0].outcome is not None:
            item = queue.popleft()
            if item.outcome != "ack" or client is None or item.connection != self._connection:
                self.stats.left_unacked += 1
                continue
            acks.append((item.mid, item.qos))
        if acks and client is not None:
            client.ack_batch(acks)
            self.stats.acked += len(acks)

    def pending_acks(self) -> int:
        """Messages received but not yet acknowledged (for health checks and tests)."""
        return len(self.stats.pending) + len(self._arrivals)


def _qos(sub: Subscription, config: MQTTConfig) -> int:
    return sub.qos if sub.qos is not None else config.qos


def _tls_context(cfg: MQTTConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        if cfg.cert_file is not None:
            context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            "mqtt.ca_file" if cfg.cert_file is None else "mqtt.cert_file", str(exc)
        ) from None
    if cfg.tls_insecure:
        context.check_hostname = False
    return context


def _load_codec(codec: Codec | str, setting: str) -> Codec:
    """A codec object as given, or the installed codec of that name (``event`` is built in)."""
    if not isinstance(codec, str):
        return codec
    from ...plugins import make_codec

    return make_codec(codec, {}, setting=setting)
