"""A plant configuration for the bundled CFX samples (line L1), a FakeWATS seeded to match it, events from
its FCT station and an HTTP sender tuned for tests."""

from __future__ import annotations

from typing import Any

from handlers import WatsHandlersConfig
from handlers.wats.fake import FakeWATS
from handlers.wats.sender import HttpSender
from pywats_events import Event, EventMetadata, EventType

PN, REV = "PCBA-4471", "C"
UNITS = ("MB-4471-000145", "MB-4471-000146")
PSU = ("PSU-220-00987", "PSU-220-REV-B")
TOKEN = FakeWATS.make_token("bus", "secret")
FCT = "Acme.FCT5000.FCT-L1-02"
STATIONS = {
    "Keysight.i3070.ICT-L1-01": "ICT-L1-01",
    FCT: "FCT-L1-02",
    "KohYoung.Zenith.AOI-L1-01": "AOI-L1-01",
    "KohYoung.aSPIre3.SPI-L1-01": "SPI-L1-01",
    "ASMPT.SIPLACE-TX.SMT-L1-03": "SMT-L1-03",
    "Heller.1936MKV.REFLOW-L1-01": "REFLOW-L1-01",
    "Ersa.VERSAFLOW.THT-L1-01": "THT-L1-01",
}
ASSET_IDS = {serial: f"00000000-0000-4000-8000-{i:012d}" for i, serial in enumerate(STATIONS.values(), 1)}


def plant_config(**overrides: Any) -> WatsHandlersConfig:
    values: dict[str, Any] = {
        "location": "Line L1",
        "products": [{"station": "*", "part_number": PN, "revision": REV}],
        "assets": dict(STATIONS),
        "stations": {FCT: {"last_operation": True, "process": "FCT"}},
        # a short open spell keeps outage tests quick; the breaker itself is tested with its defaults too
        "breaker": {"reset_timeout": 1.0},
    }
    values.update(overrides)
    return WatsHandlersConfig.model_validate(values)


def seed(wats: FakeWATS, *, units: bool = True) -> None:
    for serial, asset_id in ASSET_IDS.items():
        wats.add_asset(serial, asset_id=asset_id)
    wats.add_unit(*PSU, "B", phase=16)  # a finalized sub-assembly, ready to be attached
    if units:
        for sn in UNITS:
            wats.add_unit(sn, PN, REV)


def sample_events(name: str) -> list[Event]:
    from pywats_cfx.codec import CFXCodec
    from pywats_cfx.samples import load_sample

    result = CFXCodec().decode(load_sample(name))
    assert not result.quarantined, result.quarantined
    return list(result.events)


def fct_event(kind: EventType, payload: Any) -> Event:
    """`payload` (a payload model) as an event from the FCT station."""
    return Event(event_type=kind, payload=payload.model_dump(mode="json"), metadata=EventMetadata(source=FCT))


def fast_sender(wats: FakeWATS, **overrides: Any) -> HttpSender:
    """An HttpSender to `wats` with short retries and no practical rate limit."""
    options: dict[str, Any] = {
        "rate_limit_per_minute": 1_000_000,
        "max_attempts": 2,
        "backoff_base": 0.05,
        "max_retry_wait": 0.2,
        "timeout": 5.0,
    }
    options.update(overrides)
    return HttpSender(wats.url, TOKEN, **options)
