"""CFX line simulator: publishes realistic IPC-CFX traffic to an AMQP exchange (as SDK endpoints would), to
MQTT (as a CFX gateway would) or to a listener's webhook over HTTP (as a line controller that can only call a
URL would).

Each simulated unit goes through a test station: WorkStarted → UnitsTested (tests with numeric measurements
and limits, some failing) → WorkCompleted. Now and then a station faults (FaultOccurred, StationStateChanged
to unscheduled downtime, later FaultCleared and back to productive). Every station announces itself with
EndpointConnected and, optionally, heartbeats. Messages use the SDK subject `<handle>.<MessageName>` as
routing key and are gzipped by default (the SDK default since 2020).

    python samples/line_simulator.py --count 100 --rate 20
    python samples/line_simulator.py --url amqps://user:pw@broker:5671/ --exchange cfx --stations 3 --no-gzip
    python samples/line_simulator.py --mqtt mqtt://127.0.0.1:1883 --topic-prefix cfx/line1 --count 50
    PYWATS_WEBHOOK_SECRET=... python samples/line_simulator.py --webhook http://127.0.0.1:8088/hooks/line1

The broker URL can come from the environment (`CFX_AMQP_URL`), the webhook secret too
(`PYWATS_WEBHOOK_SECRET`); passwords and secrets are never printed. Over HTTP every message is signed
(HMAC-SHA256 with a timestamp, or ``--webhook-auth bearer``), carries its UniqueID as ``Idempotency-Key``, and
is retried until the listener answers 202 (after a 429/503 as its ``Retry-After`` says).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import httpx
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from pywats_cfx.amqp import build_envelope, encode_envelope
from pywats_cfx.amqp.config import redact_url

WORK_STARTED = "CFX.Production.WorkStarted"
WORK_COMPLETED = "CFX.Production.WorkCompleted"
UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"
FAULT_OCCURRED = "CFX.ResourcePerformance.FaultOccurred"
FAULT_CLEARED = "CFX.ResourcePerformance.FaultCleared"
STATE_CHANGED = "CFX.ResourcePerformance.StationStateChanged"
ENDPOINT_CONNECTED = "CFX.EndpointConnected"
HEARTBEAT = "CFX.Heartbeat"

#: (reference designator prefix, nominal, tolerance, unit, test method)
_TESTS = [
    ("R", 10.0, 0.05, "kOhm"),
    ("R", 4.7, 0.05, "kOhm"),
    ("C", 100.0, 0.10, "nF"),
    ("C", 2.2, 0.20, "uF"),
    ("D", 0.65, 0.15, "V"),
    ("L", 22.0, 0.10, "uH"),
]
_FAULTS = [
    ("MechanicalFailure", "E-1043", "Fixture clamp did not close"),
    ("ElectricalFailure", "E-2210", "Bed-of-nails contact resistance too high"),
    ("LoadError", "E-0301", "Board not detected at load position"),
]


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    micro = int((seconds - whole) * 10_000_000)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{micro:07d}"


@dataclass
class Station:
    """One test station on the line: its handle, its open fault, its product."""

    handle: str
    part_number: str = "PCB-4711"
    revision: str = "C"
    state: int = 1000
    state_since: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    fault: dict[str, Any] | None = None


class LineSimulator:
    """Generates the envelopes; publishing is separate so the traffic itself is testable without a broker."""

    def __init__(
        self,
        stations: list[Station],
        *,
        fail_rate: float = 0.05,
        fault_rate: float = 0.02,
        seed: int | None = None,
        panel_size: int = 1,
    ) -> None:
        self.stations = stations
        self.fail_rate = fail_rate
        self.fault_rate = fault_rate
        self.panel_size = panel_size
        self.random = random.Random(seed)
        self.serial = 0

    def announcements(self) -> Iterator[dict[str, Any]]:
        for st in self.stations:
            yield build_envelope(
                ENDPOINT_CONNECTED,
                {"CFXHandle": st.handle, "RequestNetworkUri": None, "RequestTargetAddress": None},
                st.handle,
            )

    def heartbeat(self, station: Station, interval: float) -> dict[str, Any]:
        return build_envelope(
            HEARTBEAT,
            {
                "CFXHandle": station.handle,
                "HeartbeatFrequency": _timespan(interval),
                "ActiveFaults": [station.fault] if station.fault else [],
            },
            station.handle,
        )

    def unit(self) -> Iterator[dict[str, Any]]:
        """Everything one unit (or panel) causes on one station, in the order it happens."""
        rnd = self.random
        station = rnd.choice(self.stations)
        yield from self._maybe_fault(station)
        self.serial += 1
        transaction = str(uuid.uuid4())
        serials = [
            f"{station.part_number}-{self.serial:07d}-{i}"
            if self.panel_size > 1
            else f"{station.part_number}-{self.serial:07d}"
            for i in range(1, self.panel_size + 1)
        ]
        started = datetime.now(timezone.utc)
        units = [{"UnitIdentifier": s, "PositionNumber": i} for i, s in enumerate(serials, 1)]
        yield build_envelope(
            WORK_STARTED,
            {
                "PrimaryIdentifier": serials[0],
                "HermesIdentifier": None,
                "TransactionID": transaction,
                "Lane": 1,
                "UnitCount": len(serials),
                "Units": units,
                "RecipeName": f"{station.part_number}_ICT",
                "Revision": station.revision,
            },
            station.handle,
            timestamp=started,
        )
        tested_units = []
        moment = started
        any_failed = False
        for position, serial in enumerate(serials, 1):
            tests = []
            for index, (prefix, nominal, tol, unit) in enumerate(_TESTS, 1):
                lo, hi = nominal * (1 - tol), nominal * (1 + tol)
                failed = rnd.random() < self.fail_rate / len(_TESTS)
                value = (hi * rnd.uniform(1.02, 1.2)) if failed else rnd.uniform(lo * 1.005, hi * 0.995)
                t0, moment = moment, moment + timedelta(milliseconds=rnd.randint(30, 400))
                result = "Failed" if failed else "Passed"
                any_failed |= failed
                ref = f"{prefix}{index * 10 + position}"
                tests.append(
                    {
                        "UniqueIdentifier": str(uuid.uuid4()),
                        "TestName": f"{ref}_VALUE",
                        "TestStartTime": _stamp(t0),
                        "TestEndTime": _stamp(moment),
                        "TestConditions": [],
                        "TestProcedure": None,
                        "Comments": None,
                        "Result": result,
                        "Error": None,
                        "SymptomsFound": [
                            {
                                "UniqueIdentifier": str(uuid.uuid4()),
                                "SymptomCode": "OUT_OF_TOL",
                                "Description": f"{ref} out of tolerance",
                                "ComponentsOfInterest": [{"ReferenceDesignator": ref}],
                            }
                        ]
                        if failed
                        else [],
                        "DefectsFound": [],
                        "Measurements": [
                            {
                                "$type": "CFX.Structures.NumericMeasurement, CFX",
                                "UniqueIdentifier": str(uuid.uuid4()),
                                "MeasurementName": f"{ref}_MEAS",
                                "TimeRecorded": _stamp(moment),
                                "Sequence": 0,
                                "Result": result,
                                "CRDs": ref,
                                "MeasuredValue": {
                                    "Value": round(value, 4),
                                    "ValueUnits": unit,
                                    "ExpectedValue": nominal,
                                    "ExpectedValueUnits": unit,
                                    "MinimumAcceptableValue": round(lo, 4),
                                    "MaximumAcceptableValue": round(hi, 4),
                                },
                            }
                        ],
                    }
                )
            unit_failed = any(t["Result"] == "Failed" for t in tests)
            tested_units.append(
                {
                    "UnitIdentifier": serial,
                    "UnitPositionNumber": position,
                    "OverallResult": "Failed" if unit_failed else "Passed",
                    "Tests": tests,
                }
            )
        yield build_envelope(
            UNITS_TESTED,
            {
                "TransactionId": transaction,
                "TestMethod": "ICT",
                "Tester": {
                    "OperatorIdentifier": "BADGE-0042",
                    "ActorType": "Human",
                    "LastName": "Smith",
                    "FirstName": "Jo",
                    "LoginName": "jsmith",
                },
                "RecipeName": f"{station.part_number}_ICT",
                "RecipeRevision": station.revision,
                "TestStartTime": _stamp(started),
                "TestEndTime": _stamp(moment),
                "TestedUnits": tested_units,
            },
            station.handle,
            timestamp=moment,
        )
        yield build_envelope(
            WORK_COMPLETED,
            {
                "TransactionID": transaction,
                "Result": "Failed" if any_failed else "Completed",
                "PrimaryIdentifier": serials[0],
                "UnitCount": len(serials),
                "Units": [
                    {**u, "Status": "Fail" if tu["OverallResult"] == "Failed" else "Pass"}
                    for u, tu in zip(units, tested_units, strict=True)
                ],
            },
            station.handle,
            timestamp=moment + timedelta(milliseconds=50),
        )

    def _maybe_fault(self, station: Station) -> Iterator[dict[str, Any]]:
        rnd = self.random
        now = datetime.now(timezone.utc)
        if station.fault is not None:
            # The operator fixed it before the next board.
            occurrence = station.fault["FaultOccurrenceId"]
            yield build_envelope(
                FAULT_CLEARED,
                {
                    "FaultOccurrenceId": occurrence,
                    "Operator": {"OperatorIdentifier": "BADGE-0042", "ActorType": "Human"},
                },
                station.handle,
            )
            yield self._state(station, 1000, None, now)
            station.fault = None
        elif rnd.random() < self.fault_rate:
            cause, code, text = rnd.choice(_FAULTS)
            fault = {
                "$type": "CFX.Structures.Fault, CFX",
                "Cause": cause,
                "Severity": "Error",
                "FaultCode": code,
                "FaultOccurrenceId": str(uuid.uuid4()),
                "Lane": 1,
                "Stage": None,
                "SideLocation": "Unknown",
                "AccessType": "Unknown",
                "Description": text,
                "DescriptionTranslations": {},
                "OccurredAt": _stamp(now),
                "DueDateTime": None,
            }
            station.fault = fault
            yield build_envelope(FAULT_OCCURRED, {"Fault": fault}, station.handle, timestamp=now)
            yield self._state(station, 5000, fault, now)

    @staticmethod
    def _state(station: Station, new: int, fault: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
        body = {
            "OldState": str(station.state),
            "OldStateDuration": _timespan((now - station.state_since).total_seconds()),
            "NewState": str(new),
            "RelatedFault": fault,
        }
        station.state, station.state_since = new, now
        return build_envelope(STATE_CHANGED, body, station.handle, timestamp=now)


class AmqpSink:
    """Publishes to a topic exchange with the SDK subject as routing key (persistent messages)."""

    def __init__(self, url: str, exchange: str, declare: bool) -> None:
        self.url, self.exchange_name, self.declare = url, exchange, declare

    async def __aenter__(self) -> AmqpSink:
        self.connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": "cfx-line-simulator"}
        )
        channel = await self.connection.channel()
        if self.declare:
            self.exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        else:
            self.exchange = await channel.get_exchange(self.exchange_name, ensure=True)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.connection.close()

    def describe(self) -> str:
        return f"{redact_url(self.url)} exchange {self.exchange_name!r}"

    async def send(self, body: bytes, routing_key: str, kwargs: dict[str, Any]) -> str:
        message = aio_pika.Message(**kwargs, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self.exchange.publish(message, routing_key=routing_key)
        return routing_key


class MqttSink:
    """Publishes QoS 1 to ``<prefix>/<handle>/<MessageName>``, as a CFX-to-MQTT gateway would; waits for the
    broker's acknowledgement of every message before it reports them sent."""

    def __init__(self, url: str, prefix: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("--mqtt expects mqtt://[user:password@]host[:port] or mqtts://...")
        self.url, self.parts, self.prefix = url, parts, prefix.strip("/")
        self.pending: list[paho.MQTTMessageInfo] = []

    async def __aenter__(self) -> MqttSink:
        parts = self.parts
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"cfx-line-simulator-{uuid.uuid4().hex[:8]}"
        )
        if parts.username:
            self.client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self.client.tls_set()
        self.client.max_inflight_messages_set(100)
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        await asyncio.to_thread(self.client.connect, parts.hostname or "", port)
        self.client.loop_start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for info in self.pending:
            await asyncio.to_thread(info.wait_for_publish, 30)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    def describe(self) -> str:
        return f"{redact_url(self.url)} topics {self.prefix}/<handle>/<MessageName>"

    async def send(self, body: bytes, routing_key: str, kwargs: dict[str, Any]) -> str:
        handle, _, name = routing_key.partition(".CFX.")
        topic = (
            f"{self.prefix}/{handle.replace('/', '_')}/CFX.{name}" if name else f"{self.prefix}/{routing_key}"
        )
        info = self.client.publish(topic, body, qos=1)
        self.pending.append(info)
        if len(self.pending) >= 1000:
            await asyncio.to_thread(self.pending[0].wait_for_publish, 30)
            self.pending = [i for i in self.pending if not i.is_published()]
        return topic


class WebhookSink:
    """POSTs every message to a webhook URL, signed, and retries it until it is answered 202."""

    def __init__(self, url: str, secret: str | None, auth: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("--webhook expects http[s]://host:port/hooks/<name>")
        self.url, self.secret, self.auth = url, secret, auth

    async def __aenter__(self) -> WebhookSink:
        self.client = httpx.AsyncClient(timeout=60)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.aclose()

    def describe(self) -> str:
        return f"webhook {self.url} ({self.auth if self.secret else 'unsigned'})"

    def _headers(self, body: bytes, kwargs: dict[str, Any]) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(kwargs.get("message_id"))}
        if kwargs.get("content_encoding") == "gzip":
            headers["Content-Encoding"] = "gzip"
        if self.secret and self.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.secret}"
        elif self.secret:
            stamp = str(int(time.time()))
            digest = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers["X-Pywats-Timestamp"] = stamp
            headers["X-Pywats-Signature"] = f"sha256={digest}"
        return headers

    async def send(self, body: bytes, routing_key: str, kwargs: dict[str, Any]) -> str:
        while True:
            try:
                answer = await self.client.post(self.url, content=body, headers=self._headers(body, kwargs))
            except httpx.TransportError:
                await asyncio.sleep(1.0)
                continue
            if answer.status_code == 202:
                return routing_key
            if answer.status_code not in (429, 503):
                raise ValueError(f"webhook refused {routing_key}: {answer.status_code} {answer.text[:200]}")
            await asyncio.sleep(min(float(answer.headers.get("Retry-After") or 1), 30.0))


async def publish(args: argparse.Namespace) -> int:
    stations = [Station(handle=f"{args.vendor}.ICT.SN{1000 + i}") for i in range(args.stations)]
    sim = LineSimulator(
        stations,
        fail_rate=args.fail_rate,
        fault_rate=args.fault_rate,
        seed=args.seed,
        panel_size=args.panel_size,
    )
    sink: AmqpSink | MqttSink | WebhookSink
    if args.webhook:
        secret = args.webhook_secret or os.environ.get("PYWATS_WEBHOOK_SECRET")
        sink = WebhookSink(args.webhook, secret, args.webhook_auth)
    elif args.mqtt:
        sink = MqttSink(args.mqtt, args.topic_prefix)
    else:
        url = args.url or os.environ.get("CFX_AMQP_URL") or "amqp://guest:guest@localhost:5672/"
        sink = AmqpSink(url, args.exchange, args.declare_exchange)
    sent = 0
    async with sink:

        async def send(envelope: dict[str, Any]) -> None:
            nonlocal sent
            out = encode_envelope(envelope, compress=not args.no_gzip)
            where = await sink.send(out.body, out.routing_key, out.message_kwargs())
            sent += 1
            if args.verbose:
                print(f"  {where}  {envelope['UniqueID']}")

        print(
            f"publishing to {sink.describe()}: {args.count} units, "
            f"{args.stations} station(s), {'plain' if args.no_gzip else 'gzip'}"
        )
        for envelope in sim.announcements():
            await send(envelope)
        interval = 1.0 / args.rate if args.rate > 0 else 0.0
        next_at = time.monotonic()
        last_beat = time.monotonic()
        for _ in range(args.count):
            for envelope in sim.unit():
                await send(envelope)
            if args.heartbeat and time.monotonic() - last_beat >= args.heartbeat:
                for st in stations:
                    await send(sim.heartbeat(st, args.heartbeat))
                last_beat = time.monotonic()
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
    print(f"sent {sent} messages for {args.count} units")
    return sent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url", help="amqp[s]://user:password@host:port/vhost (default: $CFX_AMQP_URL or localhost)"
    )
    parser.add_argument(
        "--mqtt", help="publish to MQTT instead: mqtt[s]://user:password@host:port (QoS 1, as a CFX gateway)"
    )
    parser.add_argument(
        "--webhook", help="POST to a listener's webhook instead: http[s]://host:port/hooks/<name>"
    )
    parser.add_argument(
        "--webhook-secret", help="the hook's secret (default: $PYWATS_WEBHOOK_SECRET; none: unsigned)"
    )
    parser.add_argument("--webhook-auth", choices=("hmac", "bearer"), default="hmac")
    parser.add_argument("--topic-prefix", default="cfx", help="MQTT topic prefix (default: cfx)")
    parser.add_argument("--exchange", default="cfx", help="topic exchange (default: cfx)")
    parser.add_argument("--declare-exchange", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--count", type=int, default=10, help="units to produce (default: 10)")
    parser.add_argument("--rate", type=float, default=5.0, help="units per second; 0 = as fast as possible")
    parser.add_argument("--stations", type=int, default=2)
    parser.add_argument("--panel-size", type=int, default=1, help="units per panel (default: 1)")
    parser.add_argument("--vendor", default="Acme")
    parser.add_argument("--fail-rate", type=float, default=0.05, help="share of failing units")
    parser.add_argument("--fault-rate", type=float, default=0.02, help="chance of a station fault per unit")
    parser.add_argument(
        "--heartbeat", type=float, default=0.0, help="heartbeat interval in seconds (0 = off)"
    )
    parser.add_argument("--no-gzip", action="store_true", help="send plain JSON")
    parser.add_argument("--seed", type=int)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every routing key")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(publish(args))
    except (OSError, ValueError, aio_pika.exceptions.AMQPError) as exc:
        text = f"{type(exc).__name__}: {exc}"
        password = urlsplit(args.mqtt or args.url or os.environ.get("CFX_AMQP_URL") or "").password
        if password:
            text = text.replace(password, "******")
        print(f"error: {text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
