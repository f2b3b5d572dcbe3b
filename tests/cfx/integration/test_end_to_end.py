"""RabbitMQ → CFXTransport → CFXCodec → mapping → AsyncEventBus → handler, with the real parts."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from brokers import RABBITMQ_HOST, RABBITMQ_PORT, TcpProxy

from pywats_cfx import CFXCodec
from pywats_cfx.amqp import (
    AMQPConfig,
    CFXConfig,
    CFXTransport,
    EndpointConfig,
    build_envelope,
    encode_envelope,
)
from pywats_events import AsyncEventBus, Event, EventType
from pywats_events.payloads import TestResultEvent

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]

UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"
HANDLE = "Acme.ICT3000.SN42"

BODY: dict[str, Any] = {
    "TransactionId": "c16bb3f4-8088-4697-b789-80faec48ac5a",
    "TestMethod": "ICT",
    "Tester": {
        "OperatorIdentifier": "BADGE489499",
        "ActorType": "Human",
        "LastName": "Smith",
        "FirstName": "Jo",
    },
    "TestedUnits": [
        {
            "UnitIdentifier": "SERIAL-0001",
            "UnitPositionNumber": 1,
            "OverallResult": "Passed",
            "Tests": [
                {
                    "UniqueIdentifier": "01aed4e8-fd87-46a4-a62e-57b51f2ee20f",
                    "TestName": "RESISTANCE_CHECK_R21",
                    "Result": "Passed",
                    "Measurements": [
                        {
                            "$type": "CFX.Structures.NumericMeasurement, CFX",
                            "MeasuredValue": {
                                "Value": 28.3,
                                "ValueUnits": "kOhm",
                                "ExpectedValue": 28.2,
                                "MinimumAcceptableValue": 28.0,
                                "MaximumAcceptableValue": 28.4,
                            },
                            "MeasurementName": "R21",
                            "Result": "Passed",
                        }
                    ],
                }
            ],
        }
    ],
}


def envelope_for(serial: str) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body["TestedUnits"][0]["UnitIdentifier"] = serial
    return build_envelope(UNITS_TESTED, body, HANDLE)


async def publish_all(
    admin: AbstractRobustConnection, exchange: str, envelopes: list[dict[str, Any]]
) -> None:
    channel = await admin.channel()
    target = await channel.get_exchange(exchange, ensure=False)
    for env in envelopes:
        out = encode_envelope(env, compress=True)
        await target.publish(aio_pika.Message(**out.message_kwargs()), routing_key=out.routing_key)
    await channel.close()


def config_for(names: dict[str, str], port: int = RABBITMQ_PORT) -> CFXConfig:
    return CFXConfig(
        amqp=AMQPConfig(
            host=RABBITMQ_HOST,
            port=port,
            exchange=names["exchange"],
            queue=names["queue"],
            dead_letter_exchange=names["dlx"],
            message_types=[UNITS_TESTED],
            reconnect_interval=0.2,
            prefetch_count=32,
        ),
        endpoint=EndpointConfig(cfx_handle="//Test/WATS/Station1"),
    )


async def test_units_tested_reaches_a_handler_as_a_test_result(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    received: list[Event] = []
    bus = AsyncEventBus(max_concurrency=8)
    bus.subscribe(received.append, [EventType.TEST_RESULT])
    bus.register_transport(CFXTransport(config_for(names), codec=CFXCodec()))
    await bus.start()
    try:
        envelopes = [envelope_for("SERIAL-0001"), envelope_for("SERIAL-0002")]
        await publish_all(admin, names["exchange"], envelopes)
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await bus.stop()
    assert [e.payload["unit_serial"] for e in received] == ["SERIAL-0001", "SERIAL-0002"]
    result = TestResultEvent.model_validate(received[0].payload)
    assert result.unit_serial == "SERIAL-0001"
    assert received[0].metadata.causation_id == envelopes[0]["UniqueID"]
    assert received[0].metadata.source == HANDLE


async def test_transport_events_and_no_loss_across_a_cut_with_the_real_bus(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    proxy = TcpProxy(RABBITMQ_HOST, RABBITMQ_PORT)
    await proxy.start()
    serials: list[str] = []
    system: list[Event] = []

    async def slow_handler(event: Event) -> None:
        await asyncio.sleep(0.005)
        serials.append(event.payload["unit_serial"])

    bus = AsyncEventBus(max_concurrency=2)
    bus.subscribe(slow_handler, [EventType.TEST_RESULT])
    bus.subscribe(system.append, [EventType.TRANSPORT_CONNECTED, EventType.TRANSPORT_DISCONNECTED])
    bus.register_transport(CFXTransport(config_for(names, port=proxy.port), codec=CFXCodec()))
    await bus.start()
    expected = [f"SN-{i:04d}" for i in range(200)]
    try:
        await publish_all(admin, names["exchange"], [envelope_for(s) for s in expected])
        for _ in range(200):
            if len(serials) >= 50:
                break
            await asyncio.sleep(0.02)
        proxy.cut()
        handled_at_cut = len(serials)
        for _ in range(500):
            if set(serials) >= set(expected):
                break
            await asyncio.sleep(0.02)
    finally:
        await bus.stop()
        await proxy.close()
    assert handled_at_cut < len(expected)  # the cut really happened mid-stream
    assert set(serials) == set(expected)
    kinds = [e.event_type for e in system]
    assert EventType.TRANSPORT_DISCONNECTED in kinds
    assert EventType.TRANSPORT_CONNECTED in kinds[kinds.index(EventType.TRANSPORT_DISCONNECTED) :]


async def test_a_blocked_handler_keeps_the_message_unacked(
    admin: AbstractRobustConnection, names: dict[str, str]
) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def blocking(event: Event) -> None:
        entered.set()
        await release.wait()

    transport = CFXTransport(config_for(names), codec=CFXCodec())
    bus = AsyncEventBus(max_concurrency=4)
    bus.subscribe(blocking, [EventType.TEST_RESULT])
    bus.register_transport(transport)
    await bus.start()
    try:
        await publish_all(admin, names["exchange"], [envelope_for("SERIAL-0009")])
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.sleep(0.2)
        assert transport.stats.received == 1 and transport.stats.acked == 0
        release.set()
        for _ in range(100):
            if transport.stats.acked == 1:
                break
            await asyncio.sleep(0.02)
        assert transport.stats.acked == 1
    finally:
        release.set()
        await bus.stop()
