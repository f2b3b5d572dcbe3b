"""Dead-letter replay: each entry back through the handler that failed it, beside a running listener."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Settings
from .composition import run_cleanups
from .runner import Listener

__all__ = ["ReplayResult", "replay_dead_letters", "replay_journal_settings"]


@dataclass
class ReplayResult:
    replayed: int
    failed_again: int
    dlq_size: int
    #: selected entries still in the DLQ because the replay stopped early (e.g. a WATS outage)
    not_replayed: int
    stopped_early: bool
    journal: str
    facts: dict[str, str]
    #: where the handler plugins delivered (``PluginContext.destination``)
    destinations: list[str] = field(default_factory=list)
    #: selected entries skipped (they stay in the DLQ) because their handler is not configured
    skipped: list[str] = field(default_factory=list)


def replay_journal_settings(settings: Settings) -> Settings:
    """`dlq replay` runs beside a running listener, so it must not share the listener's journal: the
    listener would also run the replayed events, and the replay would run the listener's pending work."""
    journal = settings.journal.model_copy(update={"path": settings.path_for("dlq-replay-journal.db")})
    return settings.model_copy(update={"journal": journal})


async def replay_dead_letters(
    settings: Settings, ids: list[str], *, progress: Callable[[], None] | None = None
) -> ReplayResult:
    """Re-runs dead letters, each through the handler that failed it, one after the other.

    An entry leaves the DLQ only once its handler finished (if it fails for good it comes back as a new
    entry). Each waits at most ``listener.drain_timeout`` seconds: during a WATS outage the replay stops
    there instead of waiting for ever, and what was not replayed stays in the DLQ. `progress` is called
    after each entry."""
    settings = replay_journal_settings(settings)
    listener = Listener(settings)
    parts = await listener.build(transports=False)
    limit = settings.listener.drain_timeout
    try:
        await parts.bus.start()
        outcome = await parts.dlq.areplay(parts.bus, ids, timeout=limit, progress=progress)
    finally:
        report = await parts.bus.stop(timeout=limit)
        await asyncio.sleep(0)  # an entry that finished while the bus drained leaves the DLQ now
        await run_cleanups(parts.cleanups)
        if parts.journal is not None:
            await parts.journal.close()
    done = outcome.replayed
    late = outcome.timed_out is not None and parts.dlq.get(outcome.timed_out) is None
    if late:
        done += 1
    return ReplayResult(
        replayed=done,
        failed_again=listener.stats.dead_letters,
        dlq_size=len(parts.dlq),
        not_replayed=len(ids) - done - len(outcome.skipped),
        stopped_early=(outcome.timed_out is not None and not late) or bool(report.not_handled),
        journal=str(settings.journal_path),
        facts=dict(parts.facts),
        destinations=list(parts.destinations),
        skipped=list(outcome.skipped),
    )
