"""The WATS handlers as a plugin of the listener: their ``[wats]`` section, and the requests they count
(by endpoint and status) in the listener's Prometheus registry and in the run summary."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from handlers._exceptions import WatsTransientError
from handlers.metrics import MeteredSink, RequestMeter, endpoint_label
from handlers.settings import WatsSettings, outbox_path
from handlers.wats.sink import WatsRequest, WatsResponse
from pywats_events import ConfigurationError
from pywats_events.config import load_settings
from pywats_events.listener import Listener


def test_wats_section_is_read_from_file_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[wats]\nurl = "https://file.example"\ntimeout = 5\n')
    s = load_settings(cfg, environ={"PYWATS_EVENTS_WATS_URL": "https://env.example"})
    wats = s.section("wats", WatsSettings)
    assert (wats.url, wats.timeout) == ("https://env.example", 5.0)
    assert outbox_path(s) == s.listener.data_dir / "outbox"


def test_wats_section_names_a_bad_or_unknown_setting(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[wats]\ntimout = 5\n")
    with pytest.raises(ConfigurationError) as err:
        load_settings(cfg, environ={})
    assert err.value.setting == "wats.timout" and "timeout" in str(err.value)
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={"PYWATS_EVENTS_WATS_TIMEOUT": "-1"})
    assert err.value.setting == "wats.timeout"


def test_wats_request_metrics_have_one_label_per_endpoint_not_per_unit() -> None:
    assert endpoint_label("get", "/api/Production/Unit/PCB-4711-0000001/PCB-4711") == (
        "GET /api/Production/Unit/{id}/{id}"
    )
    assert endpoint_label("GET", "/api/Asset/SN1001") == "GET /api/Asset/{id}"
    assert endpoint_label("POST", "/api/Report/WSJF") == "POST /api/Report/WSJF"

    class Sink:
        def __init__(self) -> None:
            self.fail = False

        async def send(self, request: WatsRequest) -> WatsResponse:
            if self.fail:
                raise WatsTransientError("down", status=503)
            return WatsResponse(200)

        async def aclose(self) -> None:
            pass

    registry = CollectorRegistry()
    meter = RequestMeter(registry)
    inner = Sink()
    sink = MeteredSink(inner, meter)

    async def drive() -> None:
        for n in range(5):
            await sink.send(WatsRequest("GET", f"/api/Production/Unit/SN-{n:04d}/PN-1"))
        inner.fail = True
        with pytest.raises(WatsTransientError):
            await sink.send(WatsRequest("GET", "/api/Production/Unit/SN-9999/PN-1"))

    asyncio.run(drive())
    assert dict(meter.by_endpoint) == {"GET /api/Production/Unit/{id}/{id}": 6}
    assert dict(meter.by_status) == {"200": 5, "503": 1}
    route = {"method": "GET", "route": "/api/Production/Unit/{id}/{id}"}
    sample = registry.get_sample_value
    assert sample("pywats_wats_requests_total", {**route, "code": "503", "error": "WatsTransientError"}) == 1
    assert sample("pywats_wats_requests_total", {**route, "code": "200", "error": ""}) == 5
    assert sample("pywats_wats_request_duration_seconds_count", route) == 6
    assert list(meter.summary_rows()) == [
        ("  WATS GET /api/Production/Unit/{id}/{id}", "6"),
        ("  WATS status 200", "5"),
        ("  WATS status 503", "1"),
    ]


def test_a_run_counts_its_wats_requests_in_the_listeners_registry_and_summary(tmp_path: Path) -> None:
    """The no-argument demo run (bundled samples into the outbox): the WATS plugin meters its requests
    into the registry the listener serves on /metrics, and adds them as rows of the summary."""
    settings = load_settings(overrides={"listener": {"data_dir": tmp_path, "progress": False}}, environ={})
    listener = Listener(settings)
    summary = asyncio.run(listener.run())
    assert summary.drained
    rows = dict(summary.rows)
    reports = int(rows["  WATS POST /api/Report/WSJF"])
    assert reports > 0 and int(rows["  WATS status 202"]) >= reports
    labels = {"method": "POST", "route": "/api/Report/WSJF", "code": "202", "error": ""}
    assert listener.metrics.registry.get_sample_value("pywats_wats_requests_total", labels) == reports
    assert summary.facts["outbox"].endswith("outbox.db")
