"""Bundled samples: the documented names, valid CFX envelopes, loadable by name."""

from __future__ import annotations

import json

import pytest

from pywats_cfx import MAPPED_MESSAGES, CFXCodec
from pywats_cfx.samples import (
    SAMPLE_DESCRIPTIONS,
    UnknownSampleError,
    list_samples,
    load_sample,
    load_sample_dict,
)

DOCUMENTED = {
    "units_tested_ict", "units_tested_fct", "units_inspected_aoi", "units_inspected_spi", "work_started",
    "work_completed_pass", "work_completed_fail", "materials_smt", "materials_th", "materials_loaded",
    "fault_temp", "fault_feeder", "fault_cleared", "station_state_changed", "units_disqualified",
}  # fmt: skip


def test_documented_samples_are_bundled() -> None:
    assert set(list_samples()) == DOCUMENTED == set(SAMPLE_DESCRIPTIONS)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_sample_is_a_standard_envelope(name: str) -> None:
    env = load_sample_dict(name)
    assert set(env) == {
        "MessageName",
        "Version",
        "TimeStamp",
        "UniqueID",
        "Source",
        "Target",
        "RequestID",
        "MessageBody",
    }
    assert env["MessageName"] in MAPPED_MESSAGES
    assert env["MessageBody"]["$type"] == f"{env['MessageName']}, CFX"
    assert env["Source"].count(".") >= 2  # Vendor.Model.Serial handle
    assert CFXCodec().decode(load_sample(name)).quarantined == []


def test_load_sample_returns_bytes_and_unknown_names_fail_clearly() -> None:
    assert json.loads(load_sample("work_started.json"))["MessageName"] == "CFX.Production.WorkStarted"
    with pytest.raises(UnknownSampleError, match="available: fault_cleared"):
        load_sample("nope")
    with pytest.raises(UnknownSampleError):
        load_sample("../samples/__init__")


def test_unique_ids_are_unique() -> None:
    ids = [load_sample_dict(n)["UniqueID"] for n in list_samples()]
    assert len(set(ids)) == len(ids)
