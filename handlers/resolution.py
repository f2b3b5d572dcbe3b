"""Resolution: the WATS values CFX does not carry (part number, revision, process code, asset).

Order for a unit's part number/revision: the event itself, (1) configured product rules (recipe/station
pattern) and the station's own product, (2) the unit as WATS production knows it, (3) the configured
default. Process codes: override table (station, then method), the station's process, override by recipe,
then the method's name (and aliases) looked up in `GET /api/App/Processes`, then the default. Anything
still unknown raises `ResolutionError`: the event is dead-lettered with the reason, nothing is invented.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pywats_events import TransientError

from ._exceptions import ResolutionError, WatsPermanentError
from .config import StationConfig, WatsHandlersConfig
from .wats import request_builders
from .wats.sink import RequestSink

__all__ = ["Process", "Resolver", "handle_tail"]

log = logging.getLogger(__name__)

_CACHE_SIZE = 10_000


def handle_tail(handle: str | None) -> str | None:
    """Last segment of a CFX handle: ``Acme.FCT5000.FCT-L1-02`` → ``FCT-L1-02`` (also for ``/`` paths)."""
    if not handle:
        return None
    tail = re.split(r"[/.]", handle.strip().rstrip("/."))[-1].strip()
    return tail or None


@dataclass(frozen=True)
class Process:
    code: int
    name: str
    is_test: bool = True
    is_repair: bool = False
    is_wip: bool = False


class _Lru(OrderedDict[str, Any]):
    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _CACHE_SIZE:
            self.popitem(last=False)


class Resolver:
    """Resolves WATS identities for events; caches lookups (units, assets) for the life of the process."""

    def __init__(self, config: WatsHandlersConfig, sink: RequestSink | None = None) -> None:
        self.config = config
        self._sink = sink
        self._processes: dict[str, Process] | None = None
        self._process_lock = asyncio.Lock()
        #: the start-up read was already tried (every handler sharing this resolver asks for it)
        self._startup_load_tried = False
        self._units = _Lru()
        self._asset_ids = _Lru()

    @property
    def can_read(self) -> bool:
        """WATS can be asked (a live server behind the sink)."""
        return self._sink is not None and not self.config.offline

    # -- stations ----------------------------------------------------------------------------------

    def station(self, handle: str | None) -> StationConfig:
        return self.config.station(handle)

    def machine_name(self, handle: str | None) -> str:
        name = self.station(handle).machine_name or handle_tail(handle)
        if not name:
            raise ResolutionError("the event names no station, so the report has no machineName")
        return name[:100]

    def location(self, handle: str | None) -> str:
        return (self.station(handle).location or self.config.location)[:100]

    # -- part number / revision --------------------------------------------------------------------

    def remember_unit(self, serial: str, part_number: str, revision: str) -> None:
        self._units.put(serial, (part_number, revision))

    async def part(
        self,
        serial: str,
        *,
        station: str | None = None,
        recipe: str | None = None,
        part_number: str | None = None,
        revision: str | None = None,
    ) -> tuple[str, str]:
        """(pn, rev) of a unit; raises `ResolutionError` when neither configuration nor WATS knows it."""
        cfg = self.config
        st = self.station(station)
        pn, rev = part_number, revision
        if not pn:
            rule = self._match_rule(station, recipe)
            if rule is not None:
                pn, rev = rule.part_number, rev or rule.revision
            elif st.part_number:
                pn, rev = st.part_number, rev or st.revision
        if not pn and serial in self._units:
            pn, rev = self._units[serial]
        if not pn and cfg.lookup_part_number and self.can_read:
            found = await self._lookup_unit(serial)
            if found is not None:
                pn, rev = found[0], rev or found[1]
        if not pn:
            pn = cfg.default_part_number
        if not pn:
            raise ResolutionError(
                f"no part number for unit {serial!r} (station {station!r}, recipe {recipe!r}): "
                "no product rule matches, WATS production does not know the unit and no default_part_number"
            )
        rev = rev or st.revision or cfg.default_revision
        if not rev:
            raise ResolutionError(
                f"no revision for part number {pn!r} of unit {serial!r}: set default_revision"
            )
        self.remember_unit(serial, pn, rev)
        return pn, rev

    def _match_rule(self, station: str | None, recipe: str | None) -> Any:
        for rule in self.config.products:
            if rule.recipe is not None and (recipe is None or not fnmatchcase(recipe, rule.recipe)):
                continue
            if rule.station is not None and (station is None or not fnmatchcase(station, rule.station)):
                continue
            return rule
        return None

    async def _lookup_unit(self, serial: str) -> tuple[str, str | None] | None:
        assert self._sink is not None
        try:
            response = await self._sink.send(request_builders.query_units_by_serial(serial))
        except WatsPermanentError as exc:
            # 404 = unknown unit; other 4xx (e.g. Production not enabled) also mean "WATS cannot tell"
            log.debug("unit lookup for %s refused (%s); falling back to the default", serial, exc)
            return None
        rows = response.json
        if isinstance(rows, dict):
            rows = rows.get("value") or rows.get("Value") or []
        if not isinstance(rows, list):
            return None
        parts = {(r.get("partNumber"), r.get("revision")) for r in rows if isinstance(r, dict)}
        parts = {p for p in parts if p[0]}
        if len(parts) != 1:
            if len(parts) > 1:
                log.warning("serial %s exists under several part numbers in WATS; not guessing", serial)
            return None
        pn, rev = parts.pop()
        return str(pn), (str(rev) if rev else None)

    # -- processes ---------------------------------------------------------------------------------

    async def load_processes(self) -> None:
        """Read the process list from WATS once for all handlers sharing this resolver; a failure is
        logged once and the read is retried on first need."""
        if not self.config.lookup_processes or not self.can_read or self._processes is not None:
            return
        if self._startup_load_tried:
            return
        self._startup_load_tried = True
        try:
            await self._fetch_processes()
        except (TransientError, WatsPermanentError) as exc:
            log.warning("could not read WATS processes at start-up (%s); will retry on first use", exc)

    def set_processes(self, rows: list[dict[str, Any]]) -> None:
        """Install a process list (the body of `GET /api/App/Processes`)."""
        table: dict[str, Process] = {}
        for row in rows:
            if not isinstance(row, dict):
                continue
            code, name = row.get("code", row.get("Code")), row.get("name", row.get("Name"))
            if code is None or not name:
                continue
            table[str(name).strip().lower()] = Process(
                code=int(code),
                name=str(name),
                is_test=bool(row.get("isTestOperation", row.get("IsTestOperation", False))),
                is_repair=bool(row.get("isRepairOperation", row.get("IsRepairOperation", False))),
                is_wip=bool(row.get("isWipOperation", row.get("IsWIPOperation", False))),
            )
        self._processes = table

    async def _fetch_processes(self) -> None:
        assert self._sink is not None
        async with self._process_lock:
            if self._processes is not None:
                return
            await self._fetch_processes_now()

    async def _fetch_processes_now(self) -> None:
        assert self._sink is not None
        response = await self._sink.send(request_builders.get_processes())
        rows = response.json if isinstance(response.json, list) else []
        self.set_processes(rows)
        log.info("read %d WATS processes", len(rows))

    async def process_code(
        self,
        *,
        station: str | None,
        method: str | None = None,
        recipe: str | None = None,
        test_operation: bool = True,
    ) -> int:
        """The WATS process code for an operation; `test_operation` requires a code usable in a UUT report."""
        cfg = self.config
        overrides = {k.lower(): v for k, v in cfg.processes.items()}
        candidates: list[int | str | None] = [
            cfg.processes.get(station) if station else None,
            overrides.get(method.lower()) if method else None,
            self.station(station).process,
            cfg.processes.get(recipe) if recipe else None,
        ]
        for value in candidates:
            if value is not None:
                return await self._code_of(value, test_operation)
        if method:
            names = [method, *cfg.process_aliases.get(method.upper(), [])]
            process = await self._find_process(names, required=False)
            if process is not None:
                return self._check_kind(process, test_operation)
        if cfg.default_process_code is not None:
            return cfg.default_process_code
        raise ResolutionError(
            f"no WATS process for station {station!r} / method {method!r}: "
            "configure `processes`, the station's `process` or `default_process_code`"
        )

    async def _code_of(self, value: int | str, test_operation: bool) -> int:
        if isinstance(value, int) or str(value).strip().isdigit():
            code = int(value)
            if self._processes:
                known = next((p for p in self._processes.values() if p.code == code), None)
                if known is not None:
                    return self._check_kind(known, test_operation)
            return code
        process = await self._find_process([str(value)], required=True)
        assert process is not None
        return self._check_kind(process, test_operation)

    async def _find_process(self, names: list[str], *, required: bool) -> Process | None:
        if self._processes is None and self.config.lookup_processes and self.can_read:
            await self._fetch_processes()
        if self._processes is None:
            if required:
                raise ResolutionError(
                    f"process name {names[0]!r} cannot be resolved: the WATS process lookup is off; "
                    "configure the numeric code instead"
                )
            return None
        for name in names:
            process = self._processes.get(name.strip().lower())
            if process is not None:
                return process
        if required:
            raise ResolutionError(f"WATS has no process named {names[0]!r}")
        return None

    @staticmethod
    def _check_kind(process: Process, test_operation: bool) -> int:
        if test_operation and not process.is_test:
            raise ResolutionError(
                f"WATS process {process.name!r} ({process.code}) is not a test operation; "
                "a UUT report needs one"
            )
        return process.code

    # -- assets ------------------------------------------------------------------------------------

    def asset_serial(self, handle: str | None) -> str:
        """WATS asset serial number of a CFX endpoint handle."""
        serial = self.station(handle).asset_serial or (self.config.assets.get(handle) if handle else None)
        if not serial and self.config.asset_serial_from_handle:
            serial = handle_tail(handle)
        if not serial:
            raise ResolutionError(
                f"no WATS asset for CFX handle {handle!r}: configure `assets` or the station's `asset_serial`"
            )
        return request_builders.check_identifier(serial, "asset serial number")

    def has_asset(self, handle: str | None) -> bool:
        try:
            self.asset_serial(handle)
        except ResolutionError:
            return False
        return True

    async def asset_id(self, serial: str) -> str:
        """The WATS `assetId` (GUID) of an asset serial number, read once and cached."""
        if serial in self.config.asset_ids:
            return self.config.asset_ids[serial]
        if serial in self._asset_ids:
            return str(self._asset_ids[serial])
        if not self.can_read:
            raise ResolutionError(
                f"cannot look up the id of asset {serial!r} without a WATS server: configure `asset_ids`"
            )
        assert self._sink is not None
        try:
            response = await self._sink.send(request_builders.get_asset(serial))
        except WatsPermanentError as exc:
            if exc.status == 404:
                raise ResolutionError(f"asset {serial!r} is not registered in WATS") from exc
            raise
        body = response.json
        if isinstance(body, list):
            body = body[0] if body else None
        asset_id = body.get("assetId") or body.get("AssetId") if isinstance(body, dict) else None
        if not asset_id:
            raise ResolutionError(f"WATS returned no assetId for asset {serial!r}")
        self._asset_ids.put(serial, str(asset_id))
        return str(asset_id)
