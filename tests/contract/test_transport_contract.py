"""The transport contract, run against every transport: mock, replay, webhook (a real HTTP server and client),
AMQP (RabbitMQ) and MQTT (Mosquitto).

What the bus relies on from any transport (see `pywats_events.transports.BaseTransport`):

* `start` connects and reports CONNECTED; `stop` reports DISCONNECTED or CLOSED, may be called again, and a
  stopped transport delivers nothing more;
* every message's events reach `context.submit`, in order; a broker message is acknowledged only after
  `submit` returned, so a message whose submit never returned is redelivered to the next consumer;
* undecodable input goes to `context.quarantine` with its raw bytes and a reason, and the next message
  still arrives;
* a lost connection is reported (DISCONNECTED, then CONNECTED again) and delivery resumes.

A case that cannot apply to a transport skips with the rig's reason (e.g. a replay has no broker ack).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from brokers import require_mosquitto, require_rabbitmq
from transport_doubles import RecordingContext

from pywats_events import EventType
from pywats_events.transports import ConnectionState

from .rigs import (
    BAD_BODY,
    WAIT,
    AmqpRig,
    MockRig,
    MqttRig,
    ReplayRig,
    TransportRig,
    WebhookRig,
    good_body,
)

pytestmark = pytest.mark.timeout(90)

STOPPED = (ConnectionState.DISCONNECTED, ConnectionState.CLOSED)


@pytest.fixture(
    params=[
        "mock",
        "replay",
        "webhook",
        pytest.param("amqp", marks=pytest.mark.broker),
        pytest.param("mqtt", marks=pytest.mark.broker),
    ]
)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[TransportRig]:
    """A rig for one transport; the broker rigs need the real broker (skip, or fail under CI=true)."""
    kind: str = request.param
    made: TransportRig
    if kind == "mock":
        made = MockRig()
    elif kind == "replay":
        made = ReplayRig()
    elif kind == "webhook":
        made = WebhookRig()
    elif kind == "amqp":
        made = await AmqpRig.open(require_rabbitmq())
    else:
        require_mosquitto()
        made = await MqttRig.open()
    try:
        yield made
    finally:
        await made.close()


async def test_start_connects_and_stop_is_idempotent(rig: TransportRig) -> None:
    context = RecordingContext()
    transport = await rig.start(context)
    assert transport.state is ConnectionState.CONNECTED
    await transport.stop()
    assert transport.state is ConnectionState.CLOSED
    reported = list(context.states)
    await transport.stop()
    assert transport.state is ConnectionState.CLOSED
    assert context.states == reported  # the second stop changes and reports nothing


async def test_connection_changes_are_reported_to_the_context(rig: TransportRig) -> None:
    context = RecordingContext()
    transport = await rig.start(context)
    assert context.states[-1] is ConnectionState.CONNECTED
    await transport.stop()
    assert context.states[-1] in STOPPED


async def test_events_reach_submit_in_order(rig: TransportRig) -> None:
    context = RecordingContext()
    sent = [f"m{n}" for n in range(5)]
    await rig.start(context, [good_body(message_id) for message_id in sent])
    await context.wait_for(lambda: len(context.events) >= len(sent), timeout=WAIT)
    assert context.ids() == sent
    assert {event.event_type for event in context.events} == {EventType.PASSTHROUGH}
    assert context.quarantined == []


async def test_a_stopped_transport_delivers_nothing_more(rig: TransportRig) -> None:
    if rig.no_input_after_stop:
        pytest.skip(rig.no_input_after_stop)
    context = RecordingContext()
    transport = await rig.start(context, [good_body("before-stop")])
    await context.wait_for(lambda: context.ids() == ["before-stop"], timeout=WAIT)
    await transport.stop()
    await rig.send(good_body("after-stop"))
    await rig.held_at_source(1)  # the source still has it: no stopped transport took it
    assert context.ids() == ["before-stop"]


async def test_a_message_is_acknowledged_only_after_submit_returned(rig: TransportRig) -> None:
    if rig.no_redelivery:
        pytest.skip(rig.no_redelivery)
    blocked = RecordingContext()
    transport = await rig.start(blocked)
    blocked.gate = asyncio.Event()  # from now on submit blocks until released: it never is
    await rig.send(good_body("held"))
    await asyncio.wait_for(blocked.submitting.wait(), WAIT)
    await transport.stop()  # gives up on the blocked submit after its drain timeout
    assert blocked.events == []
    await rig.held_at_source(1)  # not acknowledged: the broker still holds it

    again = RecordingContext()
    transport = await rig.start(again)  # the next consumer on the same queue / session
    await again.wait_for(lambda: again.ids() == ["held"], timeout=WAIT)
    await transport.stop()

    last = RecordingContext()
    await rig.start(last)
    await rig.send(good_body("next"))
    await last.wait_for(lambda: "next" in last.ids(), timeout=WAIT)
    assert last.ids() == ["next"]  # accepted by `again`, hence acknowledged: not delivered a third time


async def test_undecodable_input_is_quarantined_and_the_next_message_arrives(rig: TransportRig) -> None:
    context = RecordingContext()
    await rig.start(context, [BAD_BODY, good_body("after-bad")])
    await context.wait_for(lambda: len(context.quarantined) == 1 and len(context.events) == 1, timeout=WAIT)
    record = context.quarantined[0]
    assert record.raw == BAD_BODY
    assert "not a contract message" in record.reason
    assert context.ids() == ["after-bad"]


async def test_a_lost_connection_is_reported_and_delivery_resumes(rig: TransportRig) -> None:
    if rig.no_connection_cut:
        pytest.skip(rig.no_connection_cut)
    context = RecordingContext()
    await rig.start(context)
    await rig.cut_connection()
    await context.wait_for(lambda: ConnectionState.DISCONNECTED in context.states, timeout=WAIT)
    lost = context.states.index(ConnectionState.DISCONNECTED)
    await context.wait_for(lambda: ConnectionState.CONNECTED in context.states[lost:], timeout=WAIT)
    await rig.send(good_body("after-reconnect"))
    await context.wait_for(lambda: "after-reconnect" in context.ids(), timeout=WAIT)
