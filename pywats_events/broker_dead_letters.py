"""Dead letters kept on a message broker (distributed mode), for `pywats-events dlq`.

In distributed mode a permanent failure is not stored in the local SQLite dead-letter queue: the transport
puts the message on its broker's dead-letter queue, so no process's disk holds it. The core does not know
which broker that is; a transport plugin says so through the entry-point group
``pywats_events.broker_dead_letters``: ``factory(settings: Settings) -> BrokerDeadLetters | None`` (None
when the configuration does not use that broker). `dlq list|show|replay|purge` then work on that queue.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._exceptions import ConfigurationError
from .config import Settings

__all__ = ["GROUP", "BrokerDeadLetter", "BrokerDeadLetters", "broker_dead_letters"]

log = logging.getLogger("pywats_events")

#: entry-point group of the plugins that know where their broker keeps dead letters
GROUP = "pywats_events.broker_dead_letters"


@dataclass(frozen=True)
class BrokerDeadLetter:
    """One message on a broker's dead-letter queue, read without taking it off the queue."""

    #: what `dlq show` / `dlq replay` / `dlq purge` take: the message's own id (for CFX its UniqueID)
    id: str
    #: the handlers that gave up on it (comma-separated; empty: rejected before any handler ran)
    handlers: str
    reason: str
    error_type: str
    attempts: int
    #: ISO time of the failure as the broker copy says it (empty when unknown)
    failed_at: str
    #: the queue it came from; a replay puts it back there
    queue: str
    #: the message's routing key on the plant's exchange (names the endpoint and the message type)
    routing_key: str
    body: bytes = b""
    headers: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self, *, full: bool) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "handlers": self.handlers,
            "routing_key": self.routing_key,
            "error_type": self.error_type,
            "error": self.reason,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "queue": self.queue,
        }
        if full:
            d["headers"] = {k: _plain(v) for k, v in self.headers.items()}
            try:
                d["body"] = self.body.decode()
            except UnicodeDecodeError:
                d["body_hex"] = self.body.hex()
        return d


class BrokerDeadLetters(Protocol):
    """A broker's dead-letter queue. Every method is bounded by what the queue held when it was called."""

    #: where the dead letters are, for messages (e.g. ``queue 'cfx.q.dead-letter'``)
    where: str

    async def browse(self) -> list[BrokerDeadLetter]:
        """Every dead letter, oldest first; they all stay on the queue."""
        ...

    async def replay(self, ids: Collection[str]) -> int:
        """Put the dead letters `ids` back on the queue they came from, retry count reset; each leaves the
        dead-letter queue only once the broker confirmed its copy. Returns how many were replayed."""
        ...

    async def purge(self, ids: Collection[str]) -> int:
        """Delete the dead letters `ids`; returns how many were deleted."""
        ...


def broker_dead_letters(settings: Settings) -> BrokerDeadLetters | None:
    """The broker dead-letter queue of this configuration: the first plugin that claims it, or None."""
    from .plugins import _entry_points

    for name, ep in sorted(_entry_points(GROUP).items()):
        try:
            found: BrokerDeadLetters | None = ep.load()(settings)
        except ConfigurationError:
            raise
        except Exception as exc:
            log.warning("broker dead-letter plugin %r (%s) failed: %s", name, ep.value, exc)
            continue
        if found is not None:
            return found
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
