"""What the console shows and does, without HTTP: the stores of a listener (running or stopped), its
live numbers, a one-hour history of the journal, the last warnings, and the effective settings.

Every text that leaves here went through `logging_setup.redact`, settings go through `redacted_settings`:
no response of the console carries a credential."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings, env_overrides
from ..logging_setup import redact
from .panels import ConsolePanel

if TYPE_CHECKING:
    from ..listener.composition import ListenerParts
    from ..listener.runner import Listener

__all__ = ["ConsoleSource", "ErrorLog", "JournalHistory", "redacted_settings"]

log = logging.getLogger("pywats_events.console")

#: bytes of a quarantined message shown (hex and text); the rest is counted, not sent
RAW_SHOWN = 4096
_SECRET_KEY = re.compile(r"token|passw|secret|credential|api_?key|auth", re.IGNORECASE)
_MASK = "***"


class ErrorLog(logging.Handler):
    """The last warnings and errors of the process, redacted, for the overview."""

    def __init__(self, size: int = 50) -> None:
        super().__init__(logging.WARNING)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        self.records.append(
            {
                "at": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": redact(message)[:500],
            }
        )


@dataclass
class JournalSample:
    at: float
    depth: int
    oldest_age: float | None


class JournalHistory:
    """Journal depth and the age of its oldest unfinished entry, one sample every `every` s for an hour."""

    def __init__(self, every: float = 10.0, span: float = 3600.0) -> None:
        self.every = every
        self.samples: collections.deque[JournalSample] = collections.deque(maxlen=int(span / every) + 1)

    def add(self, sample: JournalSample) -> None:
        self.samples.append(sample)


def oldest_unfinished(journal_path: Path) -> tuple[int, float | None] | None:
    """(unfinished entries, creation time of the oldest) read from the journal file, None without one."""
    if not journal_path.exists():
        return None
    uri = f"file:{journal_path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
        try:
            unfinished = "FROM journal AS j WHERE NOT EXISTS (SELECT 1 FROM done AS d WHERE d.seq = j.seq)"
            (count,) = conn.execute(f"SELECT COUNT(*) {unfinished}").fetchone()
            row = conn.execute(f"SELECT j.created {unfinished} ORDER BY j.seq LIMIT 1").fetchone()
        except sqlite3.Error:
            return None
    return int(count), (float(row[0]) if row else None)


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, Mapping):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", False, 0):
        return _MASK
    if isinstance(value, str):
        return redact(value)
    return value


def redacted_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON-able data: secrets (SecretStr, keys that name a credential,
    registered secrets, passwords in URLs) masked."""
    data = settings.model_dump(mode="json")
    return {k: _mask(v) for k, v in data.items()}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _hexdump(raw: bytes) -> str:
    lines = []
    for off in range(0, len(raw), 16):
        chunk = raw[off : off + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {chunk.hex(' '):<47}  {text}")
    return "\n".join(lines)


class ConsoleSource:
    """The console's view of one listener: `parts` are its stores and bus; `listener` is set when the
    console runs inside ``pywats-events run`` (live numbers), None for a stopped listener's data directory."""

    def __init__(
        self,
        settings: Settings,
        parts: ListenerParts,
        *,
        listener: Listener | None = None,
        config_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.parts = parts
        self.listener = listener
        self.config_file = config_file
        self.environ = dict(os.environ if environ is None else environ)
        self.errors = ErrorLog()
        self.history = JournalHistory()
        self.panels: dict[str, ConsolePanel] = {p.name: p for p in parts.console_panels}
        self._rates: dict[str, float] = {"messages": 0.0, "events": 0.0, "handled": 0.0}
        self._last_counts: tuple[float, int, int, int] | None = None

    # ------------------------------------------------------------------ sampling
    def sample_rates(self) -> None:
        """Messages, events and deliveries per second since the previous call."""
        if self.listener is None:
            return
        st = self.listener.stats
        now = (time.monotonic(), st.received, st.accepted, st.handled)
        if self._last_counts is not None:
            dt = now[0] - self._last_counts[0]
            if dt > 0:
                self._rates = {
                    "messages": (now[1] - self._last_counts[1]) / dt,
                    "events": (now[2] - self._last_counts[2]) / dt,
                    "handled": (now[3] - self._last_counts[3]) / dt,
                }
        self._last_counts = now

    async def sample_journal(self) -> None:
        found = await asyncio.to_thread(oldest_unfinished, self.settings.journal_path)
        if found is None:
            return
        depth, oldest = found
        if self.listener is not None and self.parts.journal is not None:
            depth = self.parts.journal.stats.pending
        self.history.add(JournalSample(time.time(), depth, None if oldest is None else time.time() - oldest))

    # ------------------------------------------------------------------ overview
    def overview(self) -> dict[str, Any]:
        listener = self.listener
        transports: dict[str, str] = {}
        stats: dict[str, Any] = {}
        if listener is not None:
            transports = {t.name: t.state.value for t in listener.transports}
            stats = listener.stats.snapshot()
        last = self.history.samples[-1] if self.history.samples else None
        counts: dict[str, int] = {
            "dead letters": len(self.parts.dlq),
            "quarantined": self.parts.quarantine.count(),
        }
        for panel in self.panels.values():
            for label, count in panel.overview:
                try:
                    counts[label] = int(count())
                except Exception:
                    log.exception("console panel %s: overview count %r failed", panel.name, label)
        return {
            "live": listener is not None,
            "now": time.time(),
            "transports": transports,
            "rates": dict(self._rates) if listener is not None else {},
            "totals": {k: v for k, v in stats.items() if isinstance(v, int)},
            "breakers": stats.get("breakers", {}),
            "journal": {
                "enabled": self.parts.journal is not None,
                "depth": last.depth if last else None,
                "oldest_age": last.oldest_age if last else None,
                "history": [[round(s.at, 1), s.depth, s.oldest_age] for s in self.history.samples],
            },
            "counts": counts,
            "errors": list(self.errors.records)[-15:][::-1],
        }

    # ------------------------------------------------------------------ dead letters
    def dead_letters(
        self,
        *,
        handler: str | None = None,
        event_type: str | None = None,
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        total, entries = self.parts.dlq.page(
            handler=handler,
            event_type=event_type,
            text=text,
            since=since,
            until=until,
            offset=offset,
            limit=min(max(limit, 1), 500),
        )
        return {
            "total": total,
            "offset": offset,
            "facets": self.parts.dlq.facets(),
            "entries": [
                {
                    "id": e.id,
                    "handler": e.handler,
                    "event_type": e.event.type_name,
                    "error_type": e.error_type,
                    "error": redact(e.error)[:300],
                    "attempts": e.attempts,
                    "last_failure": e.last_failure.isoformat(timespec="seconds"),
                }
                for e in entries
            ],
        }

    def dead_letter(self, entry_id: str) -> dict[str, Any] | None:
        e = self.parts.dlq.get(entry_id)
        if e is None:
            return None
        return {
            "id": e.id,
            "handler": e.handler,
            "event_type": e.event.type_name,
            "error_type": e.error_type,
            "error": redact(e.error),
            "attempts": e.attempts,
            "first_failure": e.first_failure.isoformat(timespec="seconds"),
            "last_failure": e.last_failure.isoformat(timespec="seconds"),
            "event": redact(e.event.to_json()),
        }

    async def replay(self, ids: list[str]) -> dict[str, Any]:
        """Each entry back through the handler that failed it, on this bus; waits at most
        ``listener.drain_timeout`` per entry (an outage stops the replay, the rest stay)."""
        report = await self.parts.dlq.areplay(
            self.parts.bus, ids, timeout=self.settings.listener.drain_timeout
        )
        return {
            "replayed": report.replayed,
            "skipped": len(report.skipped),
            "not_replayed": report.not_replayed + (1 if report.timed_out else 0),
            "left": len(self.parts.dlq),
        }

    def purge_dead_letters(self, ids: list[str] | None) -> int:
        if ids is None:
            return int(self.parts.dlq.purge())
        return sum(1 for i in ids if self.parts.dlq.remove(i))

    # ------------------------------------------------------------------ quarantine
    def quarantined(self, *, reason: str | None = None, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        total, items = self.parts.quarantine.page(reason=reason, offset=offset, limit=min(max(limit, 1), 500))
        return {
            "total": total,
            "offset": offset,
            "entries": [
                {
                    "id": q.id,
                    "at": _iso(q.at),
                    "reason": redact(q.reason)[:300],
                    "source": redact(q.topic or q.source or ""),
                    "size": q.size,
                }
                for q in items
            ],
        }

    def quarantined_one(self, item_id: int) -> dict[str, Any] | None:
        q = self.parts.quarantine.get(item_id)
        if q is None:
            return None
        raw = (q.raw or b"")[:RAW_SHOWN]
        # a credential inside the message (a URL with a password, a registered token) is masked in both views
        masked = redact(raw.decode("latin-1")).encode("latin-1", errors="replace")
        return {
            "id": q.id,
            "at": _iso(q.at),
            "reason": redact(q.reason),
            "source": redact(q.source or ""),
            "topic": redact(q.topic or ""),
            "headers": _mask(q.headers),
            "size": q.size,
            "shown": len(raw),
            "masked": masked != raw,
            "hex": _hexdump(masked),
            "text": redact(raw.decode("utf-8", errors="replace")),
        }

    async def redecode(self, ids: list[int]) -> dict[str, Any]:
        """Each message through the current codec again: what decodes now goes into the bus (and leaves
        the quarantine); what still fails stays, with today's reason reported."""
        decoded: list[int] = []
        still: list[int] = []
        reasons: dict[str, str] = {}
        for item_id in ids:
            q = self.parts.quarantine.get(item_id)
            if q is None:
                continue
            result = self.parts.codec.decode(q.raw or b"", q.headers, q.topic)
            if not result.events:
                still.append(item_id)
                if result.quarantined:
                    reasons[str(item_id)] = redact(result.quarantined[0].reason)[:300]
                continue
            await self.parts.bus.context.submit(result.events)
            for record in result.quarantined:  # the part of a batch that still fails is kept, as new
                await self.parts.bus.context.quarantine(record)
            self.parts.quarantine.remove(item_id)
            decoded.append(item_id)
        return {"decoded": len(decoded), "still_failing": len(still), "reasons": reasons}

    def purge_quarantine(self, ids: list[int] | None) -> int:
        if ids is None:
            return int(self.parts.quarantine.purge())
        return sum(1 for i in ids if self.parts.quarantine.remove(i))

    # ------------------------------------------------------------------ configuration
    def configuration(self) -> dict[str, Any]:
        """The effective settings, redacted, each with where it came from (when that can be told)."""
        effective = _flatten(redacted_settings(self.settings))
        model = type(self.settings)
        env = _flatten(env_overrides(self.environ, model))
        from_file: dict[str, Any] = {}
        if self.config_file is not None:
            from ..config import tomllib

            with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
                from_file = _flatten(tomllib.loads(self.config_file.read_text(encoding="utf-8")))
        defaults: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            defaults = _flatten(redacted_settings(model()))
        rows = []
        for name, value in effective.items():
            if name in env:
                source = "environment"
            elif name in from_file:
                source = "file"
            elif name in defaults and defaults[name] == value:
                source = "default"
            else:
                source = "file or command line" if self.config_file is None else "command line"
            rows.append({"setting": name, "value": value, "source": source})
        return {"config_file": str(self.config_file) if self.config_file else None, "settings": rows}
