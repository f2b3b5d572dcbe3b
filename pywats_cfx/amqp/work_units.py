"""Unit-less WorkCompleted in distributed mode: the units its WorkStarted named travel with it.

CFX lets a WorkCompleted name nothing but its ``TransactionID``; its units are those the transaction's
WorkStarted named. A single listener remembers them (`handlers.transactions`). In distributed mode the
WorkStarted may have been handled by another process, or by one that died since, so the stage that sees
every message in order keeps them instead, and keeps them on the broker:

* **sharded** (``shard_key = "unit"``): the intake re-publisher remembers the units of each WorkStarted's
  transaction, routes a unit-less WorkCompleted by its transaction's first unit (into the shard of that
  unit's WorkStarted, behind it) and adds the units in the header `HEADER_WORK_UNITS`;
* **hot standby**: the active listener remembers them itself.

Either way each transaction's units are also appended to the ledger queue ``Q.work-transactions``
(`pywats_cfx.amqp.ledger`, the newest `LEDGER_LIMIT` transactions) before the WorkStarted is passed on, and
whoever takes the stage over reads that ledger first. The listener that handles the WorkCompleted reads it
as if the sender had named the units (`with_work_units`); the message on the broker stays as sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection

from pywats_events import Event, EventType

from .._wire import DecodeLimits, WireError, unwrap
from .ledger import LEDGER_LIMIT, LedgerAppender, read_ledger

__all__ = ["HEADER_WORK_UNITS", "WorkUnits", "WorkUnitsLedger", "parse_header", "with_work_units"]

#: on a unit-less WorkCompleted: {transaction id: [[unit serial, position or null], ...]} of its WorkStarted
HEADER_WORK_UNITS = "x-pywats-work-units"

Units = list[list[Any]]

log = logging.getLogger("pywats_cfx.amqp")


class WorkUnits:
    """Transaction id → the units its WorkStarted named, bounded (the least recently used go first)."""

    def __init__(self, limit: int = LEDGER_LIMIT) -> None:
        self.limit = limit
        self._units: OrderedDict[str, Units] = OrderedDict()

    def __len__(self) -> int:
        return len(self._units)

    def load(self, records: Sequence[Mapping[str, Any]]) -> None:
        """The ledger's records (``{"t": transaction id, "u": units}``), oldest first."""
        for record in records:
            txn, units = record.get("t"), record.get("u")
            if isinstance(txn, str) and isinstance(units, list):
                self._put(
                    txn, [list(u) for u in units if isinstance(u, list) and u and isinstance(u[0], str)]
                )

    def started(self, events: Sequence[Event]) -> dict[str, Any] | None:
        """Remember the units of WorkStarted `events`; returns the ledger record to append when that added
        something (None: nothing new, e.g. a redelivery)."""
        found: dict[str, Units] = {}
        for event in events:
            if event.event_type != EventType.WORK_STARTED:
                continue
            payload = event.payload
            txn, serial = payload.get("transaction_id"), payload.get("unit_serial")
            if txn and serial:
                found.setdefault(str(txn), []).append([str(serial), payload.get("unit_position")])
        record = None
        for txn, units in found.items():
            known = self._units.get(txn, [])
            merged = known + [u for u in units if u not in known]
            if merged != known:
                self._put(txn, merged)
                record = {"t": txn, "u": merged}
        return record

    def completed(self, events: Sequence[Event]) -> dict[str, Units] | None:
        """For a WorkCompleted naming no unit: its transaction's units (None when it names units, or the
        transaction is unknown)."""
        if not events or any(
            e.event_type != EventType.WORK_COMPLETED or e.payload.get("unit_serial") for e in events
        ):
            return None
        wanted: dict[str, Units] = {}
        for event in events:
            txn = event.payload.get("transaction_id")
            units = self._units.get(str(txn)) if txn else None
            if not units:
                return None
            self._units.move_to_end(str(txn))
            wanted[str(txn)] = units
        return wanted

    def forget(self, txn: str) -> None:
        self._units.pop(txn, None)

    def _put(self, txn: str, units: Units) -> None:
        self._units[txn] = units
        self._units.move_to_end(txn)
        while len(self._units) > self.limit:
            self._units.popitem(last=False)


class WorkUnitsLedger:
    """`WorkUnits` of the stage this listener runs, with their ledger on the broker: read once when the
    stage is taken over (`load`), a record appended for each transaction that gained units."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.units = WorkUnits()
        self._appender: LedgerAppender | None = None
        self._loading: asyncio.Future[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._appender is not None

    async def load(self, connection: AbstractConnection) -> None:
        """Read the ledger, once; callers that come meanwhile wait for the same reading (and resume in the
        order they came, which keeps deliveries in order)."""
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_future()
            try:
                records = await read_ledger(connection, self.queue_name)
            except BaseException as exc:
                self._loading.set_exception(exc)
                self._loading.exception()  # retrieved: the callers see it
                self._loading = None
                raise
            self.units.load([r for r in records if isinstance(r, dict)])
            self._appender = LedgerAppender(self.queue_name, records)
            log.info("work transactions: %d read from %s", len(self.units), self.queue_name)
            self._loading.set_result(None)
            return
        await asyncio.shield(self._loading)

    def reset(self) -> None:
        """The stage was given up (a new connection): read the ledger again before the next message."""
        self._appender = None
        self._loading = None
        self.units = WorkUnits()

    def append_soon(self, channel: AbstractChannel, record: Mapping[str, Any]) -> asyncio.Future[None]:
        """Publish `record` now (confirmed on `channel`); await the result before acknowledging."""
        appender = self._appender
        assert appender is not None, "load() first"

        async def append() -> None:
            try:
                await appender.append(channel, record)
            except BaseException:
                self.units.forget(str(record.get("t")))  # a redelivery of the message appends it again
                raise

        return asyncio.ensure_future(append())


def parse_header(value: Any) -> dict[str, Units] | None:
    """`HEADER_WORK_UNITS` as sent (JSON text), or None if absent or unreadable."""
    if value is None:
        return None
    try:
        parsed = json.loads(value.decode() if isinstance(value, bytes) else str(value))
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {str(t): u for t, u in parsed.items() if isinstance(u, list)}


def with_work_units(body: bytes, headers: Mapping[str, Any], units: Mapping[str, Units]) -> bytes | None:
    """`body` (JSON, possibly compressed) with ``Units`` filled in for each WorkCompleted naming none whose
    transaction `units` knows; None when nothing was filled in."""
    try:
        raw, _notes = unwrap(body, headers, DecodeLimits())
        document = json.loads(raw)
    except (WireError, ValueError):
        return None
    envelopes = document if isinstance(document, list) else [document]
    changed = False
    for envelope in envelopes:
        if not isinstance(envelope, dict):
            continue
        message = _get(envelope, "MessageBody")
        target = message if isinstance(message, dict) else envelope
        txn = _get(target, "TransactionID")
        known = units.get(str(txn)) if txn else None
        present = _get(target, "Units")
        if not known or (isinstance(present, list) and present):
            continue
        key = next((k for k in target if k.lower() == "units"), "Units")
        target[key] = [{"UnitIdentifier": serial, "PositionNumber": pos} for serial, pos, *_ in known]
        changed = True
    return json.dumps(document, separators=(",", ":")).encode() if changed else None


def _get(obj: Mapping[str, Any], name: str) -> Any:
    """A property in any spelling of its case (senders differ: TransactionID, TransactionId, ...)."""
    if name in obj:
        return obj[name]
    lower = name.lower()
    return next((v for k, v in obj.items() if k.lower() == lower), None)
