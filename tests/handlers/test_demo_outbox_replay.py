"""The no-argument demo end to end: bundled samples in the line's order, offline into the outbox, then pushed
to a WATS server that knows the line; every request lands (a create_unit answered 409 counts as sent)."""

from __future__ import annotations

from pathlib import Path

from handlers import create_handlers
from handlers.plugin import DEMO_WATS_SETTINGS
from handlers.wats.fake import FakeWATS
from handlers.wats.outbox import Outbox
from handlers.wats.sender import HttpSender
from pywats_cfx.codec import CFXCodec
from pywats_cfx.plugin import bundled_samples
from pywats_cfx.samples import load_sample_dict
from pywats_events import AsyncEventBus
from pywats_events.policies import DeadLetterQueue

TOKEN = FakeWATS.make_token("demo", "line")
UNIT = "MB-4471-000145"


def test_bundled_samples_come_in_the_order_the_line_sent_them() -> None:
    names = [name for name, _ in bundled_samples()]
    stamps = [load_sample_dict(name)["TimeStamp"] for name in names]
    assert len(names) == 15
    # same offset throughout, so the ISO strings compare like the times they name
    assert stamps == sorted(stamps)
    # the unit's story: tested at ICT, a sub-assembly installed, started and failed at FCT, scrapped
    story = ("units_tested_ict", "materials_th", "work_started", "units_disqualified")
    order = [names.index(n) for n in story]
    assert order == sorted(order)


def _line_wats(wats: FakeWATS) -> None:
    """A WATS server set up like the demo settings describe the line."""
    wats.set_processes(
        [
            {"code": 10, "name": "Assembly", "isWipOperation": True},
            {"code": 15, "name": "SPI", "isTestOperation": True},
            {"code": 20, "name": "AOI", "isTestOperation": True},
            {"code": 30, "name": "ICT", "isTestOperation": True},
            {"code": 40, "name": "FCT", "isTestOperation": True},
        ]
    )
    for serial, asset_id in DEMO_WATS_SETTINGS["asset_ids"].items():
        wats.add_asset(serial, asset_id=asset_id)
    wats.add_unit("PSU-220-00987", "PSU-220-REV-B", "B", phase=16)


async def test_demo_outbox_pushes_without_a_single_failure(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    dlq = DeadLetterQueue(100)
    bus = AsyncEventBus(dead_letter_queue=dlq)
    for h in create_handlers({**DEMO_WATS_SETTINGS, "offline": True}, box):
        bus.subscribe(h)
    codec = CFXCodec()
    async with bus:
        for _, body in bundled_samples():
            for event in codec.decode(body).events:
                await bus.publish(event)
    assert len(dlq) == 0, [e.error for e in dlq.get_entries()]
    operations = [e.operation for e in box.list(1000)]
    assert "create_unit" in operations and "add_child_unit" in operations

    try:
        with FakeWATS(token=TOKEN) as wats:
            _line_wats(wats)
            async with HttpSender(wats.url, TOKEN, rate_limit_per_minute=60_000) as sender:
                result = await box.push(sender)
            failed = [(e.operation, e.error) for e in box.list(1000, state="failed")]
            assert (result.failed, result.pending, result.stopped) == (0, 0, None), failed
            assert result.sent == len(operations)
            # the ICT report created the unit, so the WorkStarted's create_unit was answered 409
            assert [r.status for r in wats.requests if r.path == "/api/Production/Unit"] == [409]
            assert wats.units[("PSU-220-00987", "PSU-220-REV-B")]["parentSerialNumber"] == UNIT
    finally:
        box.close()
