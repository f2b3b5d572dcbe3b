"""A plant configuration for the bundled CFX samples (line L1) and a FakeWATS seeded to match it."""

from __future__ import annotations

from typing import Any

from handlers import WatsHandlersConfig
from handlers.wats.fake import FakeWATS
from pywats_events import Event

PN, REV = "PCBA-4471", "C"
UNITS = ("MB-4471-000145", "MB-4471-000146")
PSU = ("PSU-220-00987", "PSU-220-REV-B")
TOKEN = FakeWATS.make_token("bus", "secret")
STATIONS = {
    "Keysight.i3070.ICT-L1-01": "ICT-L1-01",
    "Acme.FCT5000.FCT-L1-02": "FCT-L1-02",
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
        "stations": {"Acme.FCT5000.FCT-L1-02": {"last_operation": True, "process": "FCT"}},
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
