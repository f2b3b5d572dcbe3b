"""The pytest plugin a handler plugin's tests use: its fixtures with the real WATS handlers and FakeWATS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handlers.plugin import DEMO_WATS_SETTINGS
from handlers.wats.fake import FakeWATS
from pywats_events import ConfigurationError, Event, EventType
from pywats_events.testing import BusHarness, eventually

#: the demo line's WATS settings with FakeWATS's process codes
WATS_OPTIONS = {**DEMO_WATS_SETTINGS, "processes": {"ICT": 10, "FCT": 50, "AOI": 20, "SPI": 25}}


@pytest.fixture
def pywats_plugins() -> dict[str, dict[str, Any]]:
    return {"wats": WATS_OPTIONS}


def test_cfx_sample_events_reach_fake_wats(
    pywats_bus: BusHarness, fake_wats: FakeWATS, cfx_events: Any
) -> None:
    events = cfx_events("units_tested_ict")
    assert [e.event_type for e in events] == [EventType.TEST_RESULT] * 2
    pywats_bus.publish(*events)
    reports = fake_wats.wait_for_reports(2)
    assert {r["sn"] for r in reports.values()} == {"MB-4471-000145", "MB-4471-000146"}
    assert not pywats_bus.dead_letters()


def test_an_outage_is_deferred_then_delivered(
    pywats_bus: BusHarness, fake_wats: FakeWATS, cfx_events: Any
) -> None:
    fake_wats.inject("error", status=503, path="/api/Report")
    pywats_bus.publish(*cfx_events("units_tested_ict"))
    refused = fake_wats.wait_for_requests("/api/Report", 3, method="POST")
    assert {r.status for r in refused} == {503} and not fake_wats.reports
    fake_wats.clear_faults()
    fake_wats.wait_for_reports(2)
    assert not pywats_bus.dead_letters()


def test_cfx_events_reads_a_file(cfx_events: Any, tmp_path: Path) -> None:
    from pywats_cfx.samples import load_sample

    path = tmp_path / "ict.json"
    path.write_bytes(load_sample("units_tested_fct"))
    [event] = cfx_events(path)
    assert event.payload["unit_serial"] == "MB-4471-000145"
    with pytest.raises(KeyError, match="no_such_sample"):
        cfx_events("no_such_sample")


def test_plugin_handlers_are_made_by_the_installed_factory(plugin_handlers: Any) -> None:
    names = {h.name for h in plugin_handlers("wats", WATS_OPTIONS)}
    assert {"ReportHandler", "AssetHandler", "ProductionHandler"} <= names
    with pytest.raises(ConfigurationError) as exc:
        plugin_handlers("wats", {"no_such_option": 1})
    assert exc.value.setting.startswith("handlers.wats")


def test_harness_runs_a_handler_of_the_test_and_names_what_did_not_happen(tmp_path: Path) -> None:
    from pywats_events import handler

    seen: list[str] = []

    @handler(EventType.TEST_RESULT, name="recorder")
    def record(event: Event) -> None:
        seen.append(event.payload["unit_serial"])

    with BusHarness(tmp_path, timeout=0.2) as bus:
        bus.subscribe(record)
        bus.publish(Event(event_type=EventType.TEST_RESULT, payload={"unit_serial": "SN-1"}))
        bus.wait_for("on_handled", handler="recorder")
        assert [e.payload["unit_serial"] for e in bus.handled("recorder")] == ["SN-1"] == seen
        with pytest.raises(TimeoutError, match="on_dead_letter seen 0"):
            bus.wait_for("on_dead_letter")
        with pytest.raises(RuntimeError, match="before the first publish"):
            bus.subscribe(record)
    with pytest.raises(AssertionError, match="never not met within"):
        eventually(lambda: False, timeout=0.05, what="never")


def test_the_plugin_imports_nothing_until_a_fixture_is_used(tmp_path: Path) -> None:
    """Installed for every pytest run in the environment, it must not load the packages at collection."""
    (tmp_path / "test_bare.py").write_text(
        "import sys\n"
        "def test_nothing_loaded():\n"
        "    loaded = {m.split('.')[0] for m in sys.modules}\n"
        "    assert not loaded & {'pywats_events', 'pywats_cfx', 'handlers'}, loaded\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bare.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "pywats_events_pytest"
        in subprocess.run(
            [sys.executable, "-m", "pytest", "--trace-config", "--co", "-q", "-p", "no:cacheprovider"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
