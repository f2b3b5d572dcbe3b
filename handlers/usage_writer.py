"""`UsageCountWriter`: asset usage counts in distributed mode, exact across listeners and process deaths.

WATS gives an increment (``PUT /api/Asset/Count``) no identity: its only trace is the asset's
`totalCount`. With several listeners counting units of one station at once, a process that died between
its increment and the broker ack left nothing anyone could check. So in distributed mode the asset
handler does not increment: it submits each unit (key = its report id) to this single writer
(`pywats_events.single_writer`), which one listener at a time serves, and which alone increments.

Per batch and asset the writer reads `totalCount`, appends a record ``{serial, before, n, keys}`` to its
ledger on the broker, sends one increment of ``n`` and counts the keys. Being the only writer, it knows:

* **a copy of a counted unit** (the submitting listener died after submitting, before its ack) is
  recognised by its key among the keys of the ledger's records (the newest `LEDGER_LIMIT`);
* **whether the last increment of an asset happened** when a writer died between its record and its
  confirmation, or the answer was lost: `totalCount` is then ``before + n`` (done) or ``before``
  (not done), since nobody else increments in between; an older record is settled by the next record of
  the same asset, whose ``before`` includes it or not.

Like the single-process verification (`AssetHandler`), an increment of the asset by another WATS client
between the record and the check can make a missing increment look done (one count too few, never two).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pywats_events.single_writer import WorkItem, WriterLedger

from ._exceptions import WatsPermanentError
from .wats import request_builders
from .wats.sender import WatsOutcomeUnknownError
from .wats.sink import WatsRequest, WatsResponse

__all__ = ["WRITER_NAME", "UsageCountWriter"]

log = logging.getLogger("handlers")

#: the single writer's name (its broker queue is ``<queue>.writer-asset-usage``)
WRITER_NAME = "asset-usage"
#: counted keys remembered (beyond the ledger's records, which bound what a new writer knows)
_COUNTED_LIMIT = 100_000


@dataclass
class _Record:
    serial: str
    before: int | None
    n: int
    keys: list[str]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> _Record | None:
        serial, before, n, keys = raw.get("serial"), raw.get("before"), raw.get("n"), raw.get("keys")
        if not isinstance(serial, str) or not isinstance(n, int) or not isinstance(keys, list):
            return None
        return cls(serial, before if isinstance(before, int) else None, n, [str(k) for k in keys])


def total_count(body: Any) -> int | None:
    """`totalCount` of an asset as ``GET /api/Asset/{serial}`` returns it (None if the server gives none)."""
    if isinstance(body, list):
        body = body[0] if body else None
    value = body.get("totalCount", body.get("TotalCount")) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


class UsageCountWriter:
    """`pywats_events.single_writer.Writer` of asset usage counts: items ``{"serial": s, "increment": n}``,
    keyed by the unit's report id."""

    def __init__(self, send: Callable[[WatsRequest], Awaitable[WatsResponse]]) -> None:
        self._send = send
        self._counted: OrderedDict[str, None] = OrderedDict()
        #: per asset: the newest record whose increment is not known to have happened
        self._pending: dict[str, _Record] = {}

    async def take_over(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._counted.clear()
        self._pending.clear()
        last: dict[str, _Record] = {}
        for raw in records:
            record = _Record.parse(raw)
            if record is None:
                continue
            previous = last.get(record.serial)
            if previous is not None and _settled_by(previous, record):
                self._count(previous.keys)
            last[record.serial] = record
        self._pending = last  # each asset's newest: settled against totalCount when it is next touched

    async def serve(self, items: Sequence[WorkItem], ledger: WriterLedger) -> Mapping[str, BaseException]:
        by_asset: dict[str, dict[str, int]] = {}
        failures: dict[str, BaseException] = {}
        for item in items:
            serial, increment = item.data.get("serial"), item.data.get("increment", 1)
            if not isinstance(serial, str) or not serial or not isinstance(increment, int) or increment < 1:
                failures[item.key] = ValueError(f"not a usage count: {dict(item.data)!r}")
                continue
            by_asset.setdefault(serial, {})[item.key] = increment
        for serial, keys in by_asset.items():
            try:
                await self._apply(serial, keys, ledger)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                failures.update(dict.fromkeys(keys, exc))
        return failures

    async def _apply(self, serial: str, keys: dict[str, int], ledger: WriterLedger) -> None:
        total = total_count((await self._send(request_builders.get_asset(serial))).json)  # down: transient
        pending = self._pending.get(serial)
        if pending is not None:
            if pending.before is not None and total is not None:
                if total >= pending.before + pending.n:
                    self._count(pending.keys)
                self._pending.pop(serial)
            elif any(k in keys for k in pending.keys):
                self._pending.pop(serial)
                raise WatsPermanentError(
                    f"asset {serial}: an increment's outcome is unknown and WATS reports no totalCount to"
                    " verify it; check the asset's count"
                )
            else:
                self._pending.pop(serial)
        todo = [k for k in keys if k not in self._counted]
        if not todo:
            return
        n = sum(keys[k] for k in todo)
        record = _Record(serial, total, n, todo)
        await ledger.append({"serial": serial, "before": total, "n": n, "keys": todo})
        self._pending[serial] = record
        try:
            await self._send(request_builders.increment_asset_count(serial, n))
        except WatsOutcomeUnknownError as exc:
            raise exc.as_transient() from exc  # pending stays: the next attempt compares totalCount
        except asyncio.CancelledError:
            raise  # it may have been sent: pending stays
        except BaseException:
            self._pending.pop(serial, None)  # refused: provably not counted
            raise
        self._pending.pop(serial, None)
        self._count(todo)

    def _count(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._counted[key] = None
            self._counted.move_to_end(key)
        while len(self._counted) > _COUNTED_LIMIT:
            self._counted.popitem(last=False)


def _settled_by(previous: _Record, following: _Record) -> bool:
    """Whether `previous`'s increment happened, as the next record of its asset shows."""
    if previous.before is None or following.before is None:
        return True  # no count to tell by: assume done rather than count twice
    return following.before >= previous.before + previous.n
