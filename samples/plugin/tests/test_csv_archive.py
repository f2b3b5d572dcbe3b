"""The example plugin: as a handler on a real bus, and through the listener's plugin contract."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pywats_example_plugin import CsvArchiveHandler, create_handlers

from pywats_events import AsyncEventBus, ConfigurationError, Event, EventType
from pywats_events.config import load_settings
from pywats_events.plugins import PluginContext
from pywats_events.testing import plugin_context


async def test_handler_writes_one_line_per_test_result(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.csv"
    bus = AsyncEventBus()
    bus.subscribe(CsvArchiveHandler(path))
    async with bus:
        await bus.publish(
            Event(
                event_type=EventType.TEST_RESULT,
                payload={"unit_serial": "SN-1", "result": "Passed", "method": "ICT"},
                source="ICT-1",
            )
        )
        await bus.publish(Event(event_type=EventType.ASSET_FAULT, payload={"fault": "x"}, source="ICT-1"))
        await bus.publish(
            Event(
                event_type=EventType.TEST_RESULT,
                payload={"unit_serial": "SN-2", "result": "Failed"},
                source="FCT",
            )
        )
    # different units are handled concurrently: compare by unit, not by line order
    rows = {r["unit"]: r for r in csv.DictReader(path.open())}
    assert set(rows) == {"SN-1", "SN-2"}
    assert rows["SN-1"]["method"] == "ICT" and rows["SN-1"]["station"] == "ICT-1"
    assert rows["SN-1"]["result"] != rows["SN-2"]["result"]


def test_factory_follows_the_plugin_contract(tmp_path: Path) -> None:
    settings = load_settings(overrides={"listener": {"data_dir": str(tmp_path)}}, environ={})
    ctx = PluginContext(name="csv_archive", settings=settings, options={})
    [handler] = create_handlers(ctx)
    assert isinstance(handler, CsvArchiveHandler)
    assert handler.path == tmp_path / "test-results.csv"
    [custom] = create_handlers(
        PluginContext(name="csv_archive", settings=settings, options={"path": "x.csv"})
    )
    assert isinstance(custom, CsvArchiveHandler) and custom.path == Path("x.csv")


def test_a_wrong_option_stops_the_start_naming_it(tmp_path: Path) -> None:
    for options, setting in (
        ({"pth": "x.csv"}, "handlers.csv_archive.pth"),
        ({"path": 5}, "handlers.csv_archive.path"),
    ):
        with pytest.raises(ConfigurationError) as exc:
            create_handlers(plugin_context("csv_archive", options, data_dir=tmp_path))
        assert exc.value.setting == setting
