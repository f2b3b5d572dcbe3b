"""Resolution order for part numbers, processes and assets; unresolvable input is a ResolutionError."""

from __future__ import annotations

import logging

import pytest
from handler_helpers import PROCESSES, STATION, base_config, server_sink

from handlers import RecordingSink, ResolutionError, Resolver, WatsTransientError, create_handlers
from handlers.wats.sink import WatsRequest, WatsResponse
from handlers.wats_handler import WatsHandler


async def test_product_rule_by_recipe_wins_and_is_remembered() -> None:
    sink, _ = server_sink()
    r = Resolver(base_config(), sink)
    assert await r.part("SN1", station=STATION, recipe="PCBA-100-ICT") == ("PCBA-100", "B")
    assert sink.requests == []  # configuration answered, WATS not asked
    assert await r.part("SN1", station=STATION) == ("PCBA-100", "B")  # remembered for the serial


async def test_event_part_number_comes_first() -> None:
    r = Resolver(base_config(), RecordingSink())
    assert await r.part("SN1", recipe="PCBA-100-ICT", part_number="OTHER", revision="C") == ("OTHER", "C")


async def test_station_product_then_wats_lookup_then_default() -> None:
    sink, server = server_sink()
    cfg = base_config(products=[], default_part_number="DEFAULT-PN")
    cfg.stations[STATION].part_number = "ST-PN"
    assert await Resolver(cfg, sink).part("SN1", station=STATION) == ("ST-PN", "A")

    server.units[("SN2", "KNOWN")] = {"serialNumber": "SN2", "partNumber": "KNOWN", "revision": "R7"}
    r = Resolver(base_config(products=[], default_part_number="DEFAULT-PN"), sink)
    assert await r.part("SN2", station="//other") == ("KNOWN", "R7")
    assert sink.requests[-1].path == "/api/Production/Unit/Query"
    assert await r.part("SN3", station="//other") == ("DEFAULT-PN", "A")


async def test_ambiguous_serial_in_wats_is_not_guessed() -> None:
    sink, server = server_sink()
    server.units[("SN2", "P1")] = {"serialNumber": "SN2", "partNumber": "P1", "revision": "A"}
    server.units[("SN2", "P2")] = {"serialNumber": "SN2", "partNumber": "P2", "revision": "A"}
    with pytest.raises(ResolutionError, match="no part number for unit 'SN2'"):
        await Resolver(base_config(products=[]), sink).part("SN2", station="//other")


async def test_missing_revision_is_a_resolution_error() -> None:
    cfg = base_config(products=[{"recipe": "X", "part_number": "PN"}], default_revision=None)
    with pytest.raises(ResolutionError, match="no revision"):
        await Resolver(cfg, RecordingSink()).part("SN1", recipe="X")


async def test_process_by_override_station_and_method_name() -> None:
    sink, _ = server_sink()
    cfg = base_config(lookup_processes=True, processes={"aoi": "AOI"})
    cfg.stations[STATION].process = None
    r = Resolver(cfg, sink)
    await r.load_processes()
    assert [q.path for q in sink.requests] == ["/api/App/Processes"]
    assert await r.process_code(station=STATION, method="ICT") == 10  # by method name
    assert await r.process_code(station=STATION, method="FCT") == 50  # by alias "Functional test"
    assert await r.process_code(station=STATION, method="AOI") == 20  # override table, case-insensitive
    with pytest.raises(ResolutionError, match="no WATS process"):
        await r.process_code(station=STATION, method="XRAY")
    await r.load_processes()
    assert len(sink.requests) == 1  # loaded once


async def test_process_must_be_a_test_operation_for_reports() -> None:
    sink, _ = server_sink()
    r = Resolver(base_config(lookup_processes=True, processes={"ICT": "Assembly"}), sink)
    with pytest.raises(ResolutionError, match="not a test operation"):
        await r.process_code(station="//x", method="ICT")
    assert await r.process_code(station="//x", method="ICT", test_operation=False) == 200


async def test_process_name_without_lookup_is_a_resolution_error() -> None:
    r = Resolver(base_config(processes={"ICT": "In-circuit"}), RecordingSink())
    with pytest.raises(ResolutionError, match="lookup is off"):
        await r.process_code(station="//x", method="ICT")


async def test_process_lookup_failure_at_start_is_retried_on_first_use() -> None:
    from handlers import WatsTransientError

    calls = 0

    def flaky(req):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise WatsTransientError("down")
        from handlers import WatsResponse

        return WatsResponse(200, PROCESSES)

    r = Resolver(base_config(lookup_processes=True), RecordingSink(flaky))
    await r.load_processes()  # logged, not raised
    assert await r.process_code(station="//x", method="ICT") == 10
    assert calls == 2


async def test_assets() -> None:
    sink, _ = server_sink()
    r = Resolver(base_config(assets={"//Acme/Line3/AOI-2": "AOI-2"}), sink)
    assert r.asset_serial(STATION) == "ICT-01"
    assert r.asset_serial("//Acme/Line3/AOI-2") == "AOI-2"
    with pytest.raises(ResolutionError, match="no WATS asset for CFX handle"):
        r.asset_serial("//Acme/Line3/SPI-1")
    assert Resolver(base_config(asset_serial_from_handle=True)).asset_serial("//Acme/Line3/SPI-1") == "SPI-1"
    assert await r.asset_id("ICT-01") == "11111111-1111-1111-1111-111111111111"
    assert await r.asset_id("ICT-01") == "11111111-1111-1111-1111-111111111111"
    assert len(sink.requests) == 1  # cached
    with pytest.raises(ResolutionError, match="not registered"):
        await r.asset_id("NOPE")


async def test_offline_resolution_never_asks_wats() -> None:
    sink = RecordingSink()
    r = Resolver(base_config(products=[], offline=True, default_part_number="D", asset_ids={"A": "id"}), sink)
    assert await r.part("SN1") == ("D", "A")
    assert await r.asset_id("A") == "id"
    with pytest.raises(ResolutionError, match="asset_ids"):
        await r.asset_id("B")
    assert sink.requests == []


async def test_processes_unreadable_at_start_up_is_read_and_logged_once_for_all_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down(request: WatsRequest) -> WatsResponse:
        raise WatsTransientError(f"{request.method} {request.path}: cannot reach WATS")

    sink = RecordingSink(down)
    handlers = create_handlers(base_config(lookup_processes=True), sink)
    assert len(handlers) == 3
    caplog.set_level(logging.WARNING)
    for h in handlers:
        assert isinstance(h, WatsHandler)
        await h.on_start()
    warnings = [r for r in caplog.records if "could not read WATS processes" in r.getMessage()]
    assert len(warnings) == 1
    assert [r.operation for r in sink.requests] == ["get_processes"]
