"""The FPY watch on a real bus, with FakeWATS as the WATS server, through the pywats-events pytest plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pywats_fpy_watch import FPY_LOW, create_handlers

from handlers.wats.fake import FakeWATS
from pywats_events import ConfigurationError, Event, EventType, handler
from pywats_events.testing import BusHarness

ASSET_ID = "7d0c3b52-0000-4000-8000-0000000000c1"


def result(unit: str, passed: bool, station: str = "ICT-1", method: str = "ICT") -> Event:
    payload = {"unit_serial": unit, "result": "Passed" if passed else "Failed", "method": method}
    return Event(event_type=EventType.TEST_RESULT, payload=payload, source=station)


def options(**more: Any) -> dict[str, Any]:
    return {"threshold": 0.8, "window": 5, "min_units": 5, "asset_ids": {"ICT-1": ASSET_ID}, **more}


class Alarms:
    """Records the ``fpy.low`` events the watch publishes, as another plugin would receive them."""

    def __init__(self) -> None:
        self.seen: list[Event] = []

        @handler(FPY_LOW, name="alarms")
        def record(event: Event) -> None:
            self.seen.append(event)

        self.handler = record


def watch(bus: BusHarness, **more: Any) -> Alarms:
    alarms = Alarms()
    bus.plugin("fpy_watch", options(**more), factory=create_handlers)
    bus.subscribe(alarms.handler)
    return alarms


def test_a_yield_drop_is_published_and_logged_in_wats_once(
    pywats_bus: BusHarness, fake_wats: FakeWATS
) -> None:
    fake_wats.add_asset("ICT-1", asset_id=ASSET_ID)
    alarms = watch(pywats_bus)
    # 3 of 5 first tests pass (60 % < 80 %); the retest of SN-4 passes but does not count
    pywats_bus.publish(*(result(f"SN-{i}", i < 3) for i in range(4)), result("SN-3", True))
    pywats_bus.wait_for("on_handled", 5, handler="fpy_watch")
    assert alarms.seen == [] and fake_wats.asset_log == []
    pywats_bus.publish(result("SN-4", False))
    [log] = fake_wats.wait_for_asset_log(1, contains="FPY 60% at ICT-1 / ICT")
    assert log["assetId"] == ASSET_ID
    pywats_bus.wait_for("on_handled", handler="alarms")
    assert alarms.seen[0].payload == {
        "station": "ICT-1",
        "process": "ICT",
        "fpy": 0.6,
        "units": 5,
        "threshold": 0.8,
    }
    pywats_bus.publish(result("SN-5", False), result("SN-5", False, station="FCT-1", method="FCT"))
    pywats_bus.wait_for("on_handled", 8, handler="fpy_watch")
    assert len(fake_wats.asset_log) == 1 and len(alarms.seen) == 1


def test_units_handled_at_once_tell_a_drop_once(pywats_bus: BusHarness, fake_wats: FakeWATS) -> None:
    """Units are handled concurrently (one lane per unit): while the alarm is being told, the units after it
    still see it pending; they must not tell it again."""
    fake_wats.add_asset("ICT-1", asset_id=ASSET_ID)
    alarms = watch(pywats_bus)
    pywats_bus.publish(*(result(f"SN-{i}", False) for i in range(40)))
    pywats_bus.wait_for("on_handled", 40, handler="fpy_watch")
    pywats_bus.wait_for("on_handled", 1, handler="alarms")
    assert len(fake_wats.wait_for_asset_log(1, contains="FPY")) == 1
    assert len(alarms.seen) == 1


def test_state_survives_a_restart(tmp_path: Path, fake_wats: FakeWATS) -> None:
    fake_wats.add_asset("ICT-1", asset_id=ASSET_ID)
    wats = {"wats": {"url": fake_wats.url, "token": fake_wats.token}}
    with BusHarness(tmp_path, settings=wats) as first:
        watch(first)
        first.publish(*(result(f"SN-{i}", i < 3) for i in range(4)))
        first.wait_for("on_handled", 4, handler="fpy_watch")
    assert (tmp_path / "fpy_watch.db").exists()
    with BusHarness(tmp_path, settings=wats) as second:
        alarms = watch(second)
        second.publish(result("SN-0", False), result("SN-4", False))  # SN-0 was seen before the restart
        second.wait_for("on_handled", handler="alarms")
        assert alarms.seen[0].payload["units"] == 5
    assert len(fake_wats.asset_log) == 1


def test_wats_down_defers_the_message_until_it_is_back(pywats_bus: BusHarness, fake_wats: FakeWATS) -> None:
    fake_wats.add_asset("ICT-1", asset_id=ASSET_ID)
    fake_wats.inject("error", status=503, path="/api/Asset/Message")
    watch(pywats_bus, threshold=1.0, window=1, min_units=1)
    pywats_bus.publish(result("SN-1", False))
    fake_wats.wait_for_requests("/api/Asset/Message", 2)
    assert fake_wats.asset_log == []
    fake_wats.clear_faults()
    fake_wats.wait_for_asset_log(1, contains="FPY 0%")
    pywats_bus.wait_for("on_handled", handler="alarms")
    assert not pywats_bus.dead_letters()


@pytest.mark.parametrize(
    ("bad", "setting"),
    [
        ({"threshold": 1.5}, "handlers.fpy_watch.threshold"),
        ({"window": 0}, "handlers.fpy_watch.window"),
        ({"windw": 5}, "handlers.fpy_watch.windw"),
        ({"window": 5, "min_units": 6}, "handlers.fpy_watch.min_units"),
    ],
)
def test_bad_options_stop_the_start_naming_them(tmp_path: Path, bad: dict[str, Any], setting: str) -> None:
    with BusHarness(tmp_path) as bus:
        bus.plugin("fpy_watch", bad, factory=create_handlers)
        with pytest.raises(ConfigurationError) as exc:
            bus.start()
    assert exc.value.setting == setting
