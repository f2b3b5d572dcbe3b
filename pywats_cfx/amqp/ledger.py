"""Ledger queues: small JSON records that the one process doing a sequential job leaves on the broker for
whoever takes the job over (the single writers, the intake's work transactions).

A ledger is a quorum queue bounded to its newest records (``x-max-length``, the oldest dropped). It is
read without being consumed: every record is fetched unacknowledged on a channel of its own, which is
then closed, so the broker returns them all. Each record carries ``seq``, its place in the ledger, since
the order in which the broker returns a closed channel's messages is not defined.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

__all__ = ["LEDGER_LIMIT", "LedgerAppender", "ledger_arguments", "read_ledger"]

#: records a ledger queue keeps (the oldest go first)
LEDGER_LIMIT = 10_000


#: every reading returns each record to the queue once, which counts as a delivery: no practical limit (a
#: quorum queue of RabbitMQ 4 would drop a record after 20 readings by default)
_READINGS_LIMIT = 1_000_000


def ledger_arguments() -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-max-length": LEDGER_LIMIT,
        "x-overflow": "drop-head",
        "x-delivery-limit": _READINGS_LIMIT,
    }


async def read_ledger(connection: AbstractConnection, queue_name: str) -> list[dict[str, Any]]:
    """Every record of the ledger, oldest first; the ledger is left as it was."""
    channel = await connection.channel(publisher_confirms=False)
    records: list[dict[str, Any]] = []
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
        while True:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            with contextlib.suppress(ValueError):
                record = json.loads(message.body)
                if isinstance(record, dict):
                    records.append(record)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    records.sort(key=_seq)
    return records


class LedgerAppender:
    """Appends records after those read (`seq` continues from theirs)."""

    def __init__(self, queue_name: str, records: list[dict[str, Any]]) -> None:
        self.queue_name = queue_name
        self.seq = max((_seq(r) for r in records), default=0)

    def message(self, record: Mapping[str, Any]) -> aio_pika.Message:
        """The next record as a message for the ledger queue (publish it with confirms)."""
        self.seq += 1
        body = json.dumps({**record, "seq": self.seq}, separators=(",", ":")).encode()
        return aio_pika.Message(
            body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )

    async def append(self, channel: AbstractChannel, record: Mapping[str, Any]) -> None:
        """Publish the next record on `channel` (a publisher-confirm channel: durable on return)."""
        await channel.default_exchange.publish(self.message(record), routing_key=self.queue_name)


def _seq(record: Mapping[str, Any]) -> int:
    value = record.get("seq")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
