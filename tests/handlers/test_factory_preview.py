"""`create_handlers` (entry point for the listener), sink building, and `preview_requests`."""

from __future__ import annotations

from pathlib import Path

import pytest
from handler_helpers import STATION, base_config, event, make_result

import handlers
from handlers import (
    AssetHandler,
    ProductionHandler,
    RecordingSink,
    ReportHandler,
    WatsHandlersConfig,
    create_handlers,
    preview,
    preview_requests,
)
from pywats_events import ConfigurationError, EventType
from pywats_events.payloads import WorkStartedEvent
from pywats_events.plugins import preview_factories


def test_exported_names_are_pinned() -> None:
    assert handlers.__all__ == [
        "DEFAULT_ASSET_STATE_MAP",
        "DEFAULT_PROCESS_ALIASES",
        "WATS_ASSET_STATES",
        "AssetHandler",
        "AssetSettings",
        "PhaseSettings",
        "PreviewItem",
        "ProductRule",
        "ProductionHandler",
        "RecordingSink",
        "ReportHandler",
        "RequestSink",
        "ResolutionError",
        "Resolver",
        "StationConfig",
        "WatsError",
        "WatsHandlersConfig",
        "WatsPermanentError",
        "WatsRequest",
        "WatsResponse",
        "WatsTransientError",
        "build_sink",
        "build_uut_report",
        "create_handlers",
        "preview",
        "preview_config",
        "preview_requests",
        "report_id",
    ]
    for name in handlers.__all__:
        assert hasattr(handlers, name), name


def test_create_handlers_from_a_dict_with_a_given_sink() -> None:
    sink = RecordingSink()
    built = create_handlers({"default_revision": "A", "enable_assets": False}, sink)
    assert [type(h) for h in built] == [ReportHandler, ProductionHandler]
    assert all(h.sink is sink and not h.owns_sink for h in built)  # type: ignore[attr-defined]
    assert built[0].resolver is built[1].resolver  # type: ignore[attr-defined]


def test_settings_are_validated() -> None:
    with pytest.raises(Exception, match="unknown_setting"):
        create_handlers({"unknown_setting": 1}, RecordingSink())


def test_without_url_or_outbox_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATS_BASE_URL", raising=False)
    monkeypatch.delenv("WATS_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigurationError):
        create_handlers({})


async def test_url_and_token_build_an_http_sender_closed_with_the_last_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handlers.wats.sender import HttpSender

    monkeypatch.setenv("WATS_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WATS_AUTH_TOKEN", "dXNlcjpwdw==")
    built = create_handlers({})
    assert len(built) == 3
    inner = built[0].sink.inner  # type: ignore[attr-defined]
    assert isinstance(inner, HttpSender)
    for h in built:
        await h.on_stop()  # type: ignore[misc]
    assert inner._closed


async def test_outbox_without_server_is_offline_and_stores_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.wats.outbox import Outbox

    monkeypatch.delenv("WATS_BASE_URL", raising=False)
    built = create_handlers(
        {
            "outbox": str(tmp_path / "outbox.db"),
            "default_revision": "A",
            "products": [{"station": "*", "part_number": "PCBA-100"}],
            "stations": {STATION: {"process": 10}},
        }
    )
    report, production = built[0], built[2]
    assert report.config.offline  # type: ignore[attr-defined]
    outbox = report.sink.inner  # type: ignore[attr-defined]
    assert isinstance(outbox, Outbox)
    await report.on_start()  # type: ignore[misc]  # no process lookup attempted offline
    await report.handle(event(EventType.TEST_RESULT, make_result()))  # type: ignore[misc]
    await production.handle(
        event(EventType.WORK_STARTED, WorkStartedEvent(unit_serial="SN9", station=STATION))
    )  # type: ignore[misc]
    ops = [e.operation for e in outbox.list()]
    assert ops == ["submit_report", "create_unit", "set_unit_phase", "set_unit_process"]  # no GET
    for h in built:
        await h.on_stop()  # type: ignore[misc]


def test_preview_shows_requests_and_errors() -> None:
    events = [
        event(EventType.TEST_RESULT, make_result()),
        event(EventType.WORK_STARTED, WorkStartedEvent(unit_serial="SN1", station=STATION)),
        event(EventType.TEST_RESULT, make_result(serial="bad/serial")),
    ]
    items = preview(events)
    assert [r.operation for r in items[0].requests] == ["submit_report"]
    assert items[0].requests[0].json["pn"] == "PREVIEW-PN"
    assert [r.operation for r in items[1].requests] == [
        "get_unit",
        "create_unit",
        "set_unit_phase",
        "set_unit_process",
    ]
    assert items[2].requests == [] and "refuses" in (items[2].error or "")
    flat = preview_requests(events)
    assert [r.operation for r in flat] == [r.operation for i in items for r in i.requests]


def test_the_wats_preview_is_installed_as_a_preview_plugin() -> None:
    """Tools find it through the core's entry point group; requests come summed up, stand-ins marked."""
    wats = preview_factories()["wats"]()
    assert wats.target == "WATS" and wats.placeholders["partNumber"] == "PREVIEW-PN"
    events = [
        event(EventType.TEST_RESULT, make_result()),
        event(EventType.TEST_RESULT, make_result(serial="bad/serial")),
    ]
    good, bad = wats.run(events)
    [req] = good.requests
    assert (req.method, req.path, req.data["operation"]) == ("POST", "/api/Report/WSJF", "submit_report")
    assert {"json.pn", "json.rev", "json.processCode"} <= set(req.placeholders)
    assert "pn=PREVIEW-PN*" in req.summary and "UUT report" in req.summary
    assert bad.requests == () and "refuses" in (bad.error or "") and bad.handlers


def test_preview_with_a_plant_configuration() -> None:
    [req] = preview_requests([event(EventType.TEST_RESULT, make_result())], base_config())
    assert (req.json["pn"], req.json["rev"], req.json["processCode"]) == ("PCBA-100", "B", 10)


def test_asset_handler_subscriptions_follow_configuration() -> None:
    cfg = WatsHandlersConfig(asset={"count_usage": True})
    h = AssetHandler(RecordingSink(), cfg)
    assert EventType.TEST_RESULT in list(h.event_types)
