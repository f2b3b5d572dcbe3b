"""Realistic CFX messages bundled as package data: full envelopes with ``$type`` bodies, as CFX 2.1 SDKs send.

They tell one coherent story on line L1: SPI and AOI inspect panel PNL-4471-000073 (units MB-4471-000145/146),
SMT installs reels (materials_smt) after loading them (materials_loaded), a feeder fault stops the placer
(fault_feeder, station_state_changed) and is cleared (fault_cleared); THT installs a serialized PSU
sub-assembly (materials_th); ICT passes both units (units_tested_ict, work_completed_pass); FCT starts unit
…145 (work_started), fails it on Ethernet (units_tested_fct, work_completed_fail) and it is scrapped
(units_disqualified); the reflow oven warns about zone 5 (fault_temp).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["SAMPLE_DESCRIPTIONS", "UnknownSampleError", "list_samples", "load_sample", "load_sample_dict"]

SAMPLE_DESCRIPTIONS: dict[str, str] = {
    "units_tested_ict": "UnitsTested, ICT of a 2-up panel, ~34 numeric measurements per unit, all passed",
    "units_tested_fct": "UnitsTested, FCT of one unit: numeric/boolean/text measurements, a failed "
    "Ethernet test with symptom and defect, test conditions",
    "units_inspected_aoi": "UnitsInspected, AOI of a 2-up panel with offsets and a false-call tombstone",
    "units_inspected_spi": "UnitsInspected, SPI volume/height/area per pad for a 2-up panel",
    "work_started": "WorkStarted at FCT for unit MB-4471-000145 (CFX 2.1 recipe + work order)",
    "work_completed_pass": "WorkCompleted (Completed) at ICT for both units of the panel",
    "work_completed_fail": "WorkCompleted (Failed) at FCT for unit MB-4471-000145",
    "materials_smt": "MaterialsInstalled at the SMT placer: three reels onto two units",
    "materials_th": "MaterialsInstalled at THT: a serialized PSU sub-assembly and connectors",
    "materials_loaded": "MaterialsLoaded: three reels on tape feeders at the SMT placer",
    "fault_temp": "FaultOccurred (generic Fault, CFX 1.7): reflow zone 5 over temperature",
    "fault_feeder": "FaultOccurred (SMTPlacementFault): repeated pick-up errors at a feeder",
    "fault_cleared": "FaultCleared for the feeder fault, with operator",
    "station_state_changed": "StationStateChanged 1100 -> 5500 with the related feeder fault",
    "units_disqualified": "UnitsDisqualified: the FCT-failed unit is scrapped",
}


class UnknownSampleError(KeyError):
    """No bundled sample has that name."""

    def __str__(self) -> str:
        return f"unknown sample {self.args[0]!r}; available: {', '.join(list_samples())}"


def list_samples() -> list[str]:
    """Names of the bundled samples, sorted."""
    files = resources.files(__name__)
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json"))


def load_sample(name: str) -> bytes:
    """The sample's bytes exactly as a broker would deliver them (plain JSON, not gzipped)."""
    name = name[:-5] if name.endswith(".json") else name
    path = resources.files(__name__).joinpath(f"{name}.json")
    if "/" in name or "\\" in name or not path.is_file():
        raise UnknownSampleError(name)
    return path.read_bytes()


def load_sample_dict(name: str) -> dict[str, Any]:
    """The sample as a parsed JSON object (the full envelope)."""
    data: dict[str, Any] = json.loads(load_sample(name))
    return data
