"""`CFXTransport`: CFX messages from RabbitMQ (AMQP 0-9-1 via aio-pika) into the event bus.

Delivery guarantees, in the order a message meets them:

* The queue is durable and consumption is prefetch-bounded; aio-pika starts one task per delivery in
  delivery order, and each task calls `context.submit` before its first suspension, so the bus sees
  messages in broker order (per-unit ordering is kept).
* A message is acknowledged only after `submit` returned, i.e. the bus accepted its events. A crash or
  a lost connection before that leaves it unacked: the broker redelivers it and downstream de-duplicates
  by the CFX UniqueID.
* Undecodable input is quarantined (raw bytes + reason) and then rejected to the dead-letter exchange, so a
  poison message never blocks the queue and is never silently dropped.
* The connection is robust: after a broker restart or a cut connection aio-pika re-declares the topology and
  re-attaches the consumer; the transport reports DISCONNECTED / CONNECTED to the bus meanwhile.
* Credentials are never logged: only the redacted broker URL appears in logs, errors and `repr`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from pywats_events import BusStateError, Codec, ConfigurationError, DecodeResult, Event, tracing
from pywats_events.transports import BaseTransport, ConnectionState, QuarantineRecord, TransportContext

from .config import CFXConfig, ConnectionParameters
from .outbound import build_envelope, encode_envelope
from .settlement import BrokerSettlement
from .shards import Route, ShardRunner
from .topology import (
    HEADER_ATTEMPT,
    HEADER_FOLLOW,
    HEADER_REDELIVERED,
    HEADER_ROUTING_KEY,
    DistributedTopology,
    declare_distributed,
)
from .work_units import HEADER_WORK_UNITS, WorkUnitsLedger, parse_header, with_work_units
from .writers import WriterService

__all__ = ["CFXTransport", "TransportStats"]

log = logging.getLogger("pywats_cfx.amqp")

#: pause before handing a message back after the bus refused it for a reason other than stopping
_REQUEUE_BACKOFF = 1.0


@dataclass
class TransportStats:
    """Counters for monitoring and tests (monotonic since start)."""

    received: int = 0
    acked: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    quarantined: int = 0
    ack_failures: int = 0


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _timespan(seconds: float) -> str:
    """.NET TimeSpan text for HeartbeatFrequency (`00:01:00`)."""
    delta = timedelta(seconds=seconds)
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def delivery_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The AMQP properties and application headers the codec may use, under their AMQP names."""
    headers: dict[str, Any] = {str(key): _text(value) for key, value in (message.headers or {}).items()}
    properties = {
        "content-encoding": message.content_encoding,
        "content-type": message.content_type,
        "type": message.type,
        "message-id": message.message_id,
        "correlation-id": message.correlation_id,
        "reply-to": message.reply_to,
        "app-id": message.app_id,
        "exchange": message.exchange,
        "routing-key": message.routing_key,
    }
    headers.update({key: value for key, value in properties.items() if value is not None})
    headers["redelivered"] = bool(message.redelivered)
    return headers


class CFXTransport(BaseTransport):
    """Consumes CFX traffic from a RabbitMQ topic exchange; see the module docstring for guarantees.

    Example::

        transport = CFXTransport(CFXConfig(amqp=AMQPConfig(host="cfx-broker.factory.local"),
                                           endpoint=EndpointConfig(cfx_handle="//Company/WATS/Station1")))
        bus.register_transport(transport)
    """

    name = "cfx-amqp"

    def __init__(
        self,
        config: CFXConfig,
        codec: Codec | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._codec = codec
        self._environ = environ
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._publish_exchange: AbstractExchange | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        #: distributed mode: settles messages after the handlers; the shard runner when sharded
        self._settlement: BrokerSettlement | None = None
        self.shards: ShardRunner | None = None
        #: distributed mode: the single writers the handlers declared, served on a connection of their own
        self.writers: WriterService | None = None
        #: distributed mode: the units of work transactions (intake or hot standby; see `work_units`)
        self._work: WorkUnitsLedger | None = None
        self._stopping = False
        self._started = False
        self.stats = TransportStats()

    def __repr__(self) -> str:
        url = self.config.amqp.redacted_url(self._environ)
        return f"<CFXTransport {url} queue={self.config.amqp.queue!r} {self.state.value}>"

    @property
    def codec(self) -> Codec:
        if self._codec is None:
            # Imported late: the codec pulls in models and mapping, which a transport-only user may not need.
            from pywats_cfx.codec import CFXCodec

            self._codec = CFXCodec()
        return self._codec

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self, context: TransportContext) -> None:
        """Connect, declare the topology and start consuming. Raises `ConnectionError` (redacted) if the
        broker cannot be reached at all; later outages are bridged by reconnecting."""
        if self._started:
            raise BusStateError("CFXTransport already started")
        _ = self.codec  # fail early on a missing codec, not on the first message
        self._context = context
        self._stopping = False
        self._set_state(ConnectionState.CONNECTING)
        amqp = self.config.amqp
        try:
            params = amqp.connection_parameters(self._environ)
        except ConfigurationError:
            self._set_state(ConnectionState.DISCONNECTED, "configuration error")
            raise
        try:
            connection = await self._connect(params)
        except ConfigurationError:
            self._set_state(ConnectionState.DISCONNECTED, "configuration error")
            raise
        except Exception as exc:
            detail = _scrub(f"{type(exc).__name__}: {exc}", params.password)
            self._set_state(ConnectionState.DISCONNECTED, detail)
            raise ConnectionError(f"cannot connect to {params.display_url}: {detail}") from None
        self._connection = connection
        try:
            await self._declare_and_consume(connection)
            if self.config.endpoint.announce or self.config.endpoint.heartbeat_interval:
                await self._open_publisher(connection)
        except ConfigurationError as exc:
            with contextlib.suppress(Exception):
                await connection.close()
            self._connection = None
            self._set_state(ConnectionState.DISCONNECTED, f"configuration error: {exc.setting}")
            raise
        except Exception as exc:
            detail = _scrub(f"{type(exc).__name__}: {exc}", params.password)
            with contextlib.suppress(Exception):
                await connection.close()
            self._connection = None
            self._set_state(ConnectionState.DISCONNECTED, detail)
            raise ConnectionError(
                f"cannot set up queue {amqp.queue!r} on {params.display_url}: {detail}"
            ) from None
        connection.close_callbacks.add(self._on_connection_lost)
        connection.reconnect_callbacks.add(self._on_reconnected)
        self._started = True
        self._set_state(ConnectionState.CONNECTED, params.display_url)
        log.info("consuming %s from %s (bindings %s)", amqp.queue, params.display_url, amqp.bindings())
        if self.config.endpoint.announce:
            await self._publish_cfx("CFX.EndpointConnected", self._endpoint_connected_body())
        if self.config.endpoint.heartbeat_interval:
            self._heartbeat_task = asyncio.create_task(
                self._heartbeat_loop(self.config.endpoint.heartbeat_interval), name="cfx-heartbeat"
            )

    async def stop(self) -> None:
        """Stop consuming, let in-flight deliveries finish (up to `drain_timeout`), close. Anything not
        acknowledged by then stays with the broker and is redelivered. Idempotent."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
            self._heartbeat_task = None
        if self.shards is not None:
            await self.shards.stop()
            self.shards = None
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._consumer_tag), timeout=5)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=self.config.drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "%d deliveries still in flight at stop; the broker will redeliver them", len(pending)
                )
                await asyncio.gather(*pending, return_exceptions=True)
        if self.writers is not None:  # after the deliveries: their handlers may still submit work
            await self.writers.stop()
            self.writers = None
        if self.config.endpoint.announce and self._connection is not None and not self._connection.is_closed:
            await self._publish_cfx(
                "CFX.EndpointShuttingDown", {"CFXHandle": self.config.endpoint.cfx_handle}
            )
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = self._channel = self._queue = None
        self._publish_exchange = None
        self._consumer_tag = None
        self._started = False
        self._set_state(ConnectionState.CLOSED)

    # -- connection -----------------------------------------------------------------------------------

    async def _connect(self, params: ConnectionParameters) -> AbstractRobustConnection:
        amqp = self.config.amqp
        return await aio_pika.connect_robust(
            **amqp.connect_options(self._connection_name, self._environ, params),
            reconnect_interval=amqp.reconnect_interval,
        )

    async def _plain_connection(self, purpose: str = "shards") -> aio_pika.abc.AbstractConnection:
        """A connection that is not re-established behind our back: shard ownership and a single writer's
        turn must end with it."""
        options = self.config.amqp.connect_options(f"{self._connection_name} ({purpose})", self._environ)
        return await aio_pika.connect(**options)

    @property
    def _connection_name(self) -> str:
        amqp = self.config.amqp
        return amqp.connection_name or f"pywats-events {amqp.queue}"

    async def _start_distributed(self, connection: AbstractRobustConnection) -> None:
        """Declare (or check) the distributed topology, then consume: one queue (hot standby) or the
        shards this listener owns."""
        amqp = self.config.amqp
        if not callable(getattr(self._context, "submit_settled", None)):
            raise ConfigurationError(
                "listener.distributed", "this listener context cannot settle after the handlers"
            )
        names = DistributedTopology(amqp)
        channel = await connection.channel(publisher_confirms=False)
        self._channel = channel
        await self._exchange(
            connection,
            channel,
            amqp.exchange,
            declare=amqp.declare_exchange,
            kind=amqp.exchange_type,
            durable=amqp.durable,
        )
        writers = getattr(self._context, "single_writers", None)
        declared = list(writers.writers) if writers is not None else []
        await declare_distributed(connection, names, declared)
        if writers is not None and declared:
            self.writers = WriterService(names, writers, lambda: self._plain_connection("writers"))
            await self.writers.start()
        settlement = self._settlement = BrokerSettlement(names)
        self._work = WorkUnitsLedger(names.work_ledger) if names.keeps_work_units else None
        if names.sharded:
            self.shards = ShardRunner(
                names,
                self._plain_connection,
                self._on_distributed,
                self._route,
                drain_timeout=self.config.drain_timeout,
                on_claim=settlement.claimed,
                work=self._work,
            )
            await self.shards.start()
            return
        publisher = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=amqp.prefetch_count)
        queue = await channel.declare_queue(amqp.queue, passive=True)
        self._queue = queue
        settlement.claimed(amqp.queue)  # looked at when the first message arrives (a standby: on takeover)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._on_distributed(message, amqp.queue, publisher)

        self._consumer_tag = await queue.consume(on_message)

    def _route(self, message: AbstractIncomingMessage) -> Route:
        """Where the intake puts a message: its unit (ordering key), else its routing key; a WorkCompleted
        naming no unit goes with its transaction's first unit and carries the units (`work_units`)."""
        try:
            result = self.codec.decode(message.body, delivery_headers(message), message.routing_key)
        except Exception:
            return message.routing_key or "", {}, None
        if not result.events:
            return message.routing_key or "", {}, None
        work = self._work
        if work is not None:
            completed = work.units.completed(result.events)
            if completed:
                first = next(iter(completed.values()))[0][0]
                return str(first), {HEADER_WORK_UNITS: json.dumps(completed)}, None
            return result.events[0].ordering_key(), {}, work.units.started(result.events)
        return result.events[0].ordering_key(), {}, None

    async def _declare_and_consume(self, connection: AbstractRobustConnection) -> None:
        """Declared on a robust channel, so aio-pika replays all of it after a reconnect."""
        amqp = self.config.amqp
        if self.config.distributed:
            await self._start_distributed(connection)
            return
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=amqp.prefetch_count)
        self._channel = channel
        if amqp.passive_queue:
            queue = await channel.declare_queue(amqp.queue, passive=True)
        else:
            arguments: dict[str, Any] = {"x-queue-type": amqp.queue_type}
            if amqp.single_active_consumer:
                arguments["x-single-active-consumer"] = True
            dlq_name = amqp.dead_letter_queue_name()
            if amqp.dead_letter_exchange is not None and dlq_name is not None:
                dlx = await channel.declare_exchange(
                    amqp.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
                )
                dlq = await channel.declare_queue(
                    dlq_name, durable=True, arguments={"x-queue-type": amqp.queue_type}
                )
                await dlq.bind(dlx, routing_key=amqp.queue)
                arguments["x-dead-letter-exchange"] = amqp.dead_letter_exchange
                arguments["x-dead-letter-routing-key"] = amqp.queue
            exchange = await self._exchange(
                connection,
                channel,
                amqp.exchange,
                declare=amqp.declare_exchange,
                kind=amqp.exchange_type,
                durable=amqp.durable,
            )
            queue = await channel.declare_queue(amqp.queue, durable=True, arguments=arguments)
            for pattern in amqp.bindings():
                await queue.bind(exchange, routing_key=pattern)
        self._queue = queue
        self._consumer_tag = await queue.consume(self._on_message)

    @staticmethod
    async def _exchange(
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        name: str,
        *,
        declare: bool,
        kind: str = "topic",
        durable: bool = True,
    ) -> AbstractExchange:
        """The exchange `name`, declared with type `kind` and `durable` (or, with `declare` off, found as
        it is). An existing exchange of another type or durability is a `ConfigurationError` naming the
        setting and both values; the broker would otherwise route (or keep) messages unlike configured."""
        if name.startswith("amq."):  # the broker's own (amq.topic: RabbitMQ's MQTT plugin): used as it is
            return await _builtin_exchange(channel, name, kind)
        if declare:
            try:
                return await channel.declare_exchange(name, kind, durable=durable)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise _inequivalent_exchange(name, kind, durable, exc) from None
        exchange = await channel.get_exchange(name, ensure=True)
        # a passive declare checks only that the exchange exists: re-declaring it as configured on a
        # channel of its own changes nothing when it matches, and fails naming what differs when not
        probe = await connection.channel(publisher_confirms=False)
        try:
            await probe.declare_exchange(name, kind, durable=durable)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise _inequivalent_exchange(name, kind, durable, exc) from None
        except aiormq.exceptions.ChannelAccessRefused:
            log.info("exchange %r: not allowed to check its type (no configure permission)", name)
        finally:
            with contextlib.suppress(Exception):
                await probe.close()
        return exchange

    def _on_connection_lost(self, _sender: Any, exc: BaseException | None = None) -> None:
        if self._stopping:
            return
        detail = "connection lost" if exc is None else f"connection lost: {type(exc).__name__}"
        log.warning(
            "%s: %s; reconnecting every %.1f s",
            self.config.amqp.redacted_url(self._environ),
            detail,
            self.config.amqp.reconnect_interval,
        )
        self._set_state(ConnectionState.DISCONNECTED, detail)

    def _on_reconnected(self, _sender: Any) -> None:
        if self._stopping:
            return
        log.info("%s: reconnected, consumer re-attached", self.config.amqp.redacted_url(self._environ))
        if self._work is not None and self.shards is None:
            self._work.reset()  # another standby may have been active meanwhile: read the ledger again
        self._set_state(ConnectionState.CONNECTED, "reconnected")

    # -- consuming ------------------------------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """One delivery. Never raises: every outcome ends in ack, reject (to the DLX) or requeue."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._process(message)
        except asyncio.CancelledError:
            raise  # stop() gave up waiting: left unacked, the broker redelivers
        except Exception:
            log.exception("unexpected error handling delivery %s; requeued", message.message_id)
            await self._settle(message, "requeue")
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _on_distributed(
        self, message: AbstractIncomingMessage, queue: str, channel: AbstractChannel
    ) -> None:
        """One delivery in distributed mode: settled only after the handlers finished (see
        `settlement`). Never raises."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            self.stats.received += 1
            headers = delivery_headers(message)
            topic = message.routing_key
            original = headers.get(HEADER_ROUTING_KEY)
            if original:  # re-published by unit: the codec sees the CFX routing key it was sent with
                topic = str(original)
                headers["routing-key"] = topic
            if self._is_own_announcement(headers):
                await self._settle(message, "ack")
                return
            assert self._settlement is not None
            if headers.get(HEADER_FOLLOW):  # a follow-mode marker, no CFX message
                await self._settlement.marker(message, queue)
                return
            work = self._work if self.shards is None else None  # hot standby: this listener keeps them
            if work is not None and not work.loaded:
                assert self._connection is not None
                await work.load(self._connection)  # deliveries arriving meanwhile wait, in order
            result = self._decode(message.body, headers, topic)
            if not result.events:
                await self._quarantine_and_reject(message, result, topic)
                return
            recorded: asyncio.Future[None] | None = None
            if work is not None:
                record = work.units.started(result.events)
                if record is not None:
                    recorded = work.append_soon(channel, record)
                units = work.units.completed(result.events)
            else:
                units = parse_header(headers.get(HEADER_WORK_UNITS))
            if units:  # a WorkCompleted naming no unit: read as if it named its WorkStarted's units
                result = self._with_work_units(message.body, headers, topic, units) or result
            context: Any = self._context
            events = _marked_repeats(result.events, message)
            outcome = await self._settlement.handle(context, message, events, queue, channel, recorded)
            if outcome == "requeue":
                await asyncio.sleep(_REQUEUE_BACKOFF)
                await self._settle(message, "requeue")
            elif outcome == "dead-letter":
                self.stats.dead_lettered += 1
            else:
                self.stats.acked += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error handling delivery %s; requeued", message.message_id)
            await self._settle(message, "requeue")
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _with_work_units(
        self, body: bytes, headers: dict[str, Any], topic: str | None, units: dict[str, Any]
    ) -> DecodeResult | None:
        filled = with_work_units(body, headers, units)
        if filled is None:
            return None
        plain = {k: v for k, v in headers.items() if k != "content-encoding"}
        result = self._decode(filled, plain, topic)
        return result if result.events else None

    def _decode(self, body: bytes, headers: dict[str, Any], topic: str | None) -> DecodeResult:
        try:
            return tracing.decode(self.codec, body, headers, topic, transport=self.name)
        except Exception as exc:  # the contract says never, but a bug must not cost the message
            return DecodeResult(
                quarantined=[
                    QuarantineRecord(
                        raw=body,
                        reason=f"codec raised {type(exc).__name__}: {exc}",
                        headers=headers,
                        source=self.name,
                        topic=topic,
                    )
                ]
            )

    async def _process(self, message: AbstractIncomingMessage) -> None:
        self.stats.received += 1
        headers = delivery_headers(message)
        topic = message.routing_key
        if self._is_own_announcement(headers):
            await self._settle(message, "ack")
            return
        result = self._decode(message.body, headers, topic)
        context = self._context
        assert context is not None
        if result.events:
            # First await of this task: keeps submit order == delivery order.
            try:
                await context.submit(result.events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not accepted: hand it back. While we stop, at once (the next consumer gets it);
                # otherwise after a pause, so a bus that keeps refusing does not cause a redelivery storm.
                if not self._stopping:
                    log.warning(
                        "bus refused delivery %s (%s: %s); requeued after %.1f s",
                        message.message_id,
                        type(exc).__name__,
                        exc,
                        _REQUEUE_BACKOFF,
                    )
                    await asyncio.sleep(_REQUEUE_BACKOFF)
                await self._settle(message, "requeue")
                return
        if not result.quarantined:
            await self._settle(message, "ack")
            return
        await self._quarantine_and_reject(message, result, topic)

    async def _quarantine_and_reject(
        self, message: AbstractIncomingMessage, result: DecodeResult, topic: str | None
    ) -> None:
        """Undecodable input: stored in the quarantine, then rejected to the dead-letter exchange."""
        context = self._context
        assert context is not None
        if not result.quarantined:
            await self._settle(message, "ack")
            return
        stored = True
        for record in result.quarantined:
            self.stats.quarantined += 1
            try:
                await context.quarantine(record)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("quarantine failed for delivery %s", message.message_id)
                stored = False
        if stored or self.config.amqp.dead_letter_exchange is not None:
            log.warning(
                "undecodable delivery %s on %r dead-lettered: %s",
                message.message_id,
                topic,
                "; ".join(r.reason for r in result.quarantined)[:500],
            )
            await self._settle(message, "dead-letter")
        else:
            # Neither quarantine nor a DLX could keep it: hand it back rather than lose it.
            await asyncio.sleep(_REQUEUE_BACKOFF)
            await self._settle(message, "requeue")

    async def _settle(self, message: AbstractIncomingMessage, outcome: str) -> None:
        """ack / reject to DLX / requeue; a dead channel means the broker will redeliver anyway."""
        try:
            if outcome == "ack":
                await message.ack()
                self.stats.acked += 1
            elif outcome == "dead-letter":
                await message.reject(requeue=False)
                self.stats.dead_lettered += 1
            else:
                await message.nack(requeue=True)
                self.stats.requeued += 1
        except Exception as exc:
            self.stats.ack_failures += 1
            log.info(
                "could not %s delivery %s (%s); the broker will redeliver it",
                outcome,
                message.message_id,
                type(exc).__name__,
            )

    def _is_own_announcement(self, headers: Mapping[str, Any]) -> bool:
        """Our own EndpointConnected / Heartbeat coming back through a `#` binding is not traffic."""
        if not (self.config.endpoint.announce or self.config.endpoint.heartbeat_interval):
            return False
        return headers.get("cfx-handle") == self.config.endpoint.cfx_handle and headers.get(
            "cfx-message"
        ) in ("CFX.EndpointConnected", "CFX.Heartbeat", "CFX.EndpointShuttingDown")

    # -- publishing as an endpoint --------------------------------------------------------------------

    async def _open_publisher(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel()
        name = self.config.endpoint.publish_exchange or self.config.amqp.exchange
        amqp = self.config.amqp
        if name == amqp.exchange:  # the consuming exchange, declared (and checked) already
            self._publish_exchange = await channel.get_exchange(name, ensure=True)
        else:
            self._publish_exchange = await self._exchange(
                connection, channel, name, declare=amqp.declare_exchange
            )

    def _endpoint_connected_body(self) -> dict[str, Any]:
        endpoint = self.config.endpoint
        return {
            "CFXHandle": endpoint.cfx_handle,
            "RequestNetworkUri": endpoint.request_uri,
            "RequestTargetAddress": endpoint.request_target_address,
        }

    async def _publish_cfx(self, message_name: str, body: Mapping[str, Any]) -> bool:
        """Best effort: an announcement that cannot be sent is logged, never fatal."""
        if self._publish_exchange is None:
            return False
        envelope = build_envelope(message_name, body, self.config.endpoint.cfx_handle)
        outgoing = encode_envelope(envelope, compress=self.config.endpoint.compress)
        try:
            await self._publish_exchange.publish(
                aio_pika.Message(**outgoing.message_kwargs()), routing_key=outgoing.routing_key, timeout=10
            )
        except Exception as exc:
            log.warning("could not publish %s: %s", message_name, type(exc).__name__)
            return False
        return True

    async def _heartbeat_loop(self, interval: float) -> None:
        body = {"CFXHandle": self.config.endpoint.cfx_handle, "HeartbeatFrequency": _timespan(interval)}
        while True:
            if self.is_connected:
                await self._publish_cfx("CFX.Heartbeat", body)
            await asyncio.sleep(interval)

    async def publish_envelope(self, message_name: str, body: Mapping[str, Any]) -> bool:
        """Publish one CFX message as this endpoint (needs `announce` or `heartbeat_interval` configured)."""
        return await self._publish_cfx(message_name, body)


_INEQUIVALENT = re.compile(r"inequivalent arg '(\w+)'.*received '?([^' ]+)'? but current is '?([^' ]+)'?")


#: the exchanges RabbitMQ makes in every virtual host, and their types; a name beginning with "amq." is
#: reserved to the broker, so these are never declared, only checked
_BUILTIN_EXCHANGES = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.headers": "headers",
    "amq.match": "headers",
    "amq.topic": "topic",
    "amq.rabbitmq.trace": "topic",
}


async def _builtin_exchange(channel: AbstractChannel, name: str, kind: str) -> AbstractExchange:
    """The broker's own exchange `name`, after checking that it exists and is of type `kind`."""
    builtin = _BUILTIN_EXCHANGES.get(name)
    if builtin is not None and builtin != kind:
        raise ConfigurationError(
            "amqp.exchange_type",
            f"exchange {name!r} is the broker's own {builtin!r} exchange, but amqp.exchange_type is {kind!r}",
        )
    try:
        return await channel.get_exchange(name, ensure=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise ConfigurationError(
            "amqp.exchange",
            f"exchange {name!r} does not exist, and names beginning with 'amq.' are the broker's own: it"
            " cannot be declared (choose another name; RabbitMQ's MQTT plugin publishes to 'amq.topic')",
        ) from None


def _inequivalent_exchange(name: str, kind: str, durable: bool, exc: Exception) -> ConfigurationError:
    """The broker's PRECONDITION_FAILED about an existing exchange, as the setting that differs."""
    found = _INEQUIVALENT.search(str(exc))
    arg, _received, current = found.groups() if found else ("type", kind, "?")
    if arg == "durable":
        return ConfigurationError(
            "amqp.durable",
            f"exchange {name!r} exists on the broker with durable={current}, but amqp.durable is {durable}"
            " (change the setting, or delete the exchange so it is declared anew)",
        )
    return ConfigurationError(
        "amqp.exchange_type",
        f"exchange {name!r} exists on the broker as type {current!r}, but amqp.exchange_type is {kind!r}"
        " (change the setting, or delete the exchange so it is declared anew)",
    )


def _scrub(text: str, secret: str) -> str:
    """Remove a secret from library error text before it reaches a log or an exception."""
    if secret and len(secret) >= 3:
        text = text.replace(secret, "******")
    return text


def _marked_repeats(events: Sequence[Event], message: AbstractIncomingMessage) -> list[Event]:
    """Distributed mode: events of a delivery that may have reached the handlers before get
    ``metadata.attempt`` >= 1, so a handler whose WATS call is not idempotent checks WATS first.

    Such a delivery came back from a delay queue (`HEADER_ATTEMPT`), or the broker redelivered it (the
    process that had it died or dropped its connection, possibly after its WATS calls and before its
    ack), or the intake re-published a redelivered message (`HEADER_REDELIVERED`)."""
    headers = message.headers or {}
    try:
        attempt = int(str(headers.get(HEADER_ATTEMPT) or 0))
    except ValueError:
        attempt = 0
    if message.redelivered or headers.get(HEADER_REDELIVERED):
        attempt += 1
    if attempt <= 0:
        return list(events)
    return [
        e.model_copy(update={"metadata": e.metadata.model_copy(update={"attempt": attempt})})
        if e.metadata.attempt < attempt
        else e
        for e in events
    ]
