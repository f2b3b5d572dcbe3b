"""The outbox as a page of the operator console (`pywats_events.console`): what waits for WATS, what WATS
refused, how far `outbox push` got, and a button that puts the failed requests back in line."""

from __future__ import annotations

import asyncio
import time

from pywats_events.console import ConsolePanel, PanelAction, PanelView

from .outbox import Outbox, OutboxEntry

__all__ = ["outbox_panel"]

#: rows of each kind the page lists (the counts are exact)
SHOWN = 50


def _row(entry: OutboxEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "queued": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created)),
        "state": entry.state,
        "request": f"{entry.method} {entry.path}",
        "operation": entry.operation,
        "attempts": entry.attempts,
        "error": (entry.error or "")[:300],
    }


def outbox_panel(outbox: Outbox) -> ConsolePanel:
    """A console panel over `outbox` (the one the WATS handlers of this run write to)."""

    def view() -> PanelView:
        counts = {state: outbox.count(state) for state in ("pending", "sending", "failed", "sent")}
        total = sum(counts.values())
        done = counts["sent"]
        rows = [*outbox.list(SHOWN, state="failed"), *outbox.list(SHOWN, state="pending")]
        pushed = f"{done}/{total}" + (f" ({100 * done / total:.0f}%)" if total else "")
        return PanelView(
            counts={**counts, "pushed": pushed},
            columns=("id", "queued", "state", "request", "operation", "attempts", "error"),
            rows=[_row(e) for e in rows],
            note=f"{outbox.path}: requests wait here until `pywats-events outbox push` sends them to WATS",
        )

    async def retry_failed() -> str:
        moved = await asyncio.to_thread(outbox.retry_failed)
        return f"{moved} failed request(s) back to pending; the next push sends them in their original order"

    async def purge_sent() -> str:
        return f"deleted {await asyncio.to_thread(outbox.purge_sent)} delivered request(s)"

    return ConsolePanel(
        name="outbox",
        title="Outbox",
        view=view,
        actions={
            "retry-failed": PanelAction("Retry failed", retry_failed),
            "purge-sent": PanelAction(
                "Purge delivered", purge_sent, confirm="Delete the requests already delivered to WATS?"
            ),
        },
        overview=(
            ("outbox pending", lambda: outbox.count("pending")),
            ("outbox failed", lambda: outbox.count("failed")),
        ),
    )
