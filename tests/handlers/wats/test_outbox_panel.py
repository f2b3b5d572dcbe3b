"""The outbox's page of the operator console, over a real outbox file: counts, rows, retry-failed."""

from __future__ import annotations

from pathlib import Path

from handlers import WatsPermanentError
from handlers.wats.outbox import Outbox
from handlers.wats.outbox_panel import outbox_panel
from handlers.wats.sink import WatsRequest, WatsResponse


class Refusing:
    """A WATS that refuses the first request it is sent and accepts the rest."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, request: WatsRequest) -> WatsResponse:
        self.calls += 1
        if self.calls == 1:
            raise WatsPermanentError("WATS answered 400: bad part number", status=400)
        return WatsResponse(status=200, json={}, text="")

    async def aclose(self) -> None:
        pass


async def test_outbox_panel_counts_lists_and_retries_failed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    for i in range(3):
        await box.send(
            WatsRequest("POST", "/api/Report/WSJF", json={"id": f"r{i}"}, operation="submit_report")
        )
    panel = outbox_panel(box)
    assert panel.view().counts["pending"] == 3 and panel.view().counts["pushed"] == "0/3 (0%)"

    await box.push(Refusing())
    view = panel.view()
    assert {k: view.counts[k] for k in ("pending", "failed", "sent")} == {
        "pending": 0,
        "failed": 1,
        "sent": 2,
    }
    assert view.counts["pushed"] == "2/3 (67%)"
    assert [r["state"] for r in view.rows] == ["failed"]
    assert "bad part number" in str(view.rows[0]["error"])
    assert dict(panel.overview)["outbox failed"]() == 1

    told = await panel.actions["retry-failed"].run()
    assert told.startswith("1 failed request(s) back to pending")
    assert panel.view().counts["pending"] == 1 and panel.view().counts["failed"] == 0
    assert panel.actions["purge-sent"].confirm  # the page asks first
    assert (await panel.actions["purge-sent"].run()) == "deleted 2 delivered request(s)"
    box.close()
