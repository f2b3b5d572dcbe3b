"""Quarantine replay: quarantined input decoded again with the current codec and configuration.

After a codec fix or a configuration change (a new subscription, a mapping), what decodes now goes into the
bus like fresh input: through a journal, to every subscribed handler. The replay builds the listener
without transports, beside a running listener, with a journal of its own (as `replay_dead_letters` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Settings
from .composition import run_cleanups
from .runner import Listener

__all__ = ["QuarantineReplayResult", "replay_quarantine", "replay_quarantine_settings"]


@dataclass
class QuarantineReplayResult:
    #: entries tried
    selected: int
    #: entries that decoded now (they left the quarantine)
    decoded: int
    #: entries that still do not decode (they stay, with their original reason)
    still_undecodable: int
    #: events the decoded entries gave
    events: int
    dead_letters: int
    #: every event was finished by its handlers before the replay ended
    drained: bool
    destinations: list[str] = field(default_factory=list)


def replay_quarantine_settings(settings: Settings) -> Settings:
    """A journal apart from the running listener's (which would otherwise also run the replayed events)."""
    journal = settings.journal.model_copy(update={"path": settings.path_for("quarantine-replay-journal.db")})
    return settings.model_copy(update={"journal": journal})


async def replay_quarantine(
    settings: Settings, ids: list[int], *, progress: Callable[[], None] | None = None
) -> QuarantineReplayResult:
    """Decodes each entry of `ids` again; an entry that yields events leaves the quarantine once its events
    are in the journal (a part that still fails is quarantined anew, with today's reason). Then delivers,
    for up to ``listener.drain_timeout`` seconds; what is not delivered by then stays in the replay's
    journal and is resumed by the next replay. `progress` is called after each entry."""
    settings = replay_quarantine_settings(settings)
    listener = Listener(settings)
    parts = await listener.build(transports=False)
    store = parts.quarantine
    decoded = undecodable = events = 0
    drained = False
    try:
        await parts.bus.start()
        for item_id in ids:
            item = store.get(item_id)
            if item is None:  # purged meanwhile
                if progress is not None:
                    progress()
                continue
            result = parts.codec.decode(item.raw or b"", item.headers, item.topic)
            if result.events:
                await parts.bus.context.submit(result.events)
                for record in result.quarantined:
                    await parts.bus.context.quarantine(record)
                store.remove(item_id)
                decoded += 1
                events += len(result.events)
            else:
                undecodable += 1
            if progress is not None:
                progress()
        drained = await _deliver(listener, settings.listener.drain_timeout)
    finally:
        report = await parts.bus.stop(timeout=settings.listener.drain_timeout)
        await run_cleanups(parts.cleanups)
        if parts.journal is not None:
            with contextlib.suppress(Exception):
                drained = drained and await parts.journal.depth() == 0
            await parts.journal.close()
    return QuarantineReplayResult(
        selected=len(ids),
        decoded=decoded,
        still_undecodable=undecodable,
        events=events,
        dead_letters=listener.stats.dead_letters,
        drained=drained and not report.timed_out and not report.not_handled,
        destinations=list(parts.destinations),
    )


async def _deliver(listener: Listener, timeout: float) -> bool:
    """Waits until the journal holds no unfinished entry and nothing is in flight, up to `timeout`."""
    parts = listener.parts
    assert parts is not None
    deadline = time.monotonic() + timeout
    while (parts.journal is not None and parts.journal.stats.pending) or parts.bus.in_flight:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
