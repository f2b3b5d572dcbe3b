"""``[amqp] exchange_type`` and ``durable`` against a real RabbitMQ: the exchange is declared as configured,
and an existing exchange that differs stops the start-up naming the setting and both values."""

from __future__ import annotations

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import ValidationError
from transport_doubles import RecordingContext

from pywats_cfx.amqp import AMQPConfig, CFXTransport
from pywats_cfx.amqp.outbound import build_envelope, encode_envelope
from pywats_events import ConfigurationError
from pywats_events.config import load_settings
from pywats_events.transports import ConnectionState

from ._support import JsonEnvelopeCodec
from .test_amqp_transport import UNITS_TESTED, make_config, publish

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]


async def _declared_as(admin: AbstractRobustConnection, name: str, kind: str, *, durable: bool) -> bool:
    """True when exchange `name` exists with `kind` and `durable` (an equivalent declare is a no-op)."""
    channel = await admin.channel()
    try:
        await channel.declare_exchange(name, kind, durable=durable)
    except aiormq.exceptions.ChannelPreconditionFailed:
        return False
    await channel.close()
    return True


async def _existing(admin: AbstractRobustConnection, name: str, kind: str, *, durable: bool = True) -> None:
    channel = await admin.channel()
    await channel.declare_exchange(name, kind, durable=durable)
    await channel.close()


async def test_the_exchange_is_declared_with_the_configured_type_and_durability(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    config = make_config(names, exchange_type="fanout", durable=False, routing_keys=["only.this"])
    context = RecordingContext()
    transport = CFXTransport(config, codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        assert await _declared_as(admin, names["exchange"], "fanout", durable=False)
        assert not await _declared_as(admin, names["exchange"], "topic", durable=False)
        assert not await _declared_as(admin, names["exchange"], "fanout", durable=True)
        # a fanout exchange ignores the binding pattern: a message under any routing key arrives
        await publish(admin, names["exchange"], UNITS_TESTED)
        await context.wait_for(lambda: len(context.events) == 1)
    finally:
        await transport.stop()


@pytest.mark.parametrize("declare", [True, False], ids=["declared", "passive"])
async def test_an_existing_exchange_of_another_type_stops_the_start_up(
    admin: AbstractRobustConnection, names: dict[str, str], declare: bool
) -> None:
    await _existing(admin, names["exchange"], "fanout")
    transport = CFXTransport(make_config(names, declare_exchange=declare), codec=JsonEnvelopeCodec())
    with pytest.raises(ConfigurationError) as err:
        await transport.start(RecordingContext())
    assert err.value.setting == "amqp.exchange_type"
    assert "'fanout'" in str(err.value) and "'topic'" in str(err.value)
    assert transport.state is ConnectionState.DISCONNECTED
    assert await _declared_as(admin, names["exchange"], "fanout", durable=True)  # left as it was


async def test_an_existing_exchange_of_another_durability_stops_the_start_up(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    await _existing(admin, names["exchange"], "topic", durable=True)
    transport = CFXTransport(make_config(names, durable=False), codec=JsonEnvelopeCodec())
    with pytest.raises(ConfigurationError) as err:
        await transport.start(RecordingContext())
    assert err.value.setting == "amqp.durable"
    assert "durable=true" in str(err.value).lower() and "amqp.durable is False" in str(err.value)


async def test_a_passive_exchange_that_matches_is_used_as_it_is(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    await _existing(admin, names["exchange"], "topic")
    context = RecordingContext()
    transport = CFXTransport(make_config(names, declare_exchange=False), codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        await publish(admin, names["exchange"], UNITS_TESTED)
        await context.wait_for(lambda: len(context.events) == 1)
    finally:
        await transport.stop()


async def test_the_brokers_own_topic_exchange_is_used_as_it_is(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    """amq.topic (where RabbitMQ's MQTT plugin publishes) cannot be declared: it is checked and bound to."""
    routing_key = f"{names['queue']}.{UNITS_TESTED}"
    config = make_config(names, exchange="amq.topic", routing_keys=[f"{names['queue']}.#"])
    context = RecordingContext()
    transport = CFXTransport(config, codec=JsonEnvelopeCodec())
    await transport.start(context)
    try:
        envelope = build_envelope(UNITS_TESTED, {"TransactionId": "t-1"}, "h")
        outgoing = encode_envelope(envelope, compress=False)
        channel = await admin.channel()
        target = await channel.get_exchange("amq.topic", ensure=False)
        await target.publish(aio_pika.Message(**outgoing.message_kwargs()), routing_key=routing_key)
        await channel.close()
        await context.wait_for(lambda: len(context.events) == 1)
    finally:
        await transport.stop()


async def test_a_builtin_exchange_of_another_type_or_a_missing_one_stops_the_start_up(
    names: dict[str, str],
) -> None:
    wrong_type = CFXTransport(make_config(names, exchange="amq.direct"), codec=JsonEnvelopeCodec())
    with pytest.raises(ConfigurationError) as err:
        await wrong_type.start(RecordingContext())
    assert err.value.setting == "amqp.exchange_type"
    assert "'direct'" in str(err.value) and "'topic'" in str(err.value)
    missing = CFXTransport(make_config(names, exchange="amq.not-there"), codec=JsonEnvelopeCodec())
    with pytest.raises(ConfigurationError) as err:
        await missing.start(RecordingContext())
    assert err.value.setting == "amqp.exchange" and "cannot be declared" in str(err.value)


def test_consistent_hash_as_plant_exchange_points_to_the_shards_setting() -> None:
    with pytest.raises(ValidationError, match="set 'shards'"):
        AMQPConfig(exchange_type="x-consistent-hash")
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={"PYWATS_EVENTS_AMQP_EXCHANGE_TYPE": "x-consistent-hash"})
    assert err.value.setting == "amqp.exchange_type" and "shards = 8" in str(err.value)


def test_exchange_type_and_durable_reach_the_transport_from_the_settings() -> None:
    from pywats_cfx.plugin import amqp_transport
    from pywats_events.plugins import PluginContext

    settings = load_settings(
        environ={
            "PYWATS_EVENTS_AMQP_URL": "amqp://guest:guest@127.0.0.1/",
            "PYWATS_EVENTS_AMQP_EXCHANGE_TYPE": "direct",
            "PYWATS_EVENTS_AMQP_DURABLE": "false",
        }
    )
    transport = amqp_transport(PluginContext("amqp", settings, {}, codec=JsonEnvelopeCodec()))
    assert isinstance(transport, CFXTransport)
    assert (transport.config.amqp.exchange_type, transport.config.amqp.durable) == ("direct", False)
