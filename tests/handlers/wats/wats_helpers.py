"""Helpers for the WATS wire tests: a token and valid WSJF documents."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from handlers.wats.fake import FakeWATS

TOKEN = FakeWATS.make_token("bus-user", "s3cret-Passw0rd")

_MINIMAL_UUT: dict[str, Any] = {
    "type": "T",
    "id": "3f2c6a1e-8d4b-4c1e-9a51-0c2b7f1d9e01",
    "pn": "PCBA-100",
    "sn": "SN000123",
    "rev": "A",
    "processCode": 100,
    "result": "P",
    "machineName": "ICT-01",
    "location": "Line 1",
    "purpose": "Production",
    "start": "2026-01-30T12:00:00+01:00",
    "uut": {"user": "operator1"},
    "root": {
        "stepType": "SequenceCall",
        "name": "MainSequence Callback",
        "status": "P",
        "seqCall": {"path": "C:/SequenceCall.seq", "name": "TestSequence.seq", "version": "1.0.0"},
        "steps": [
            {
                "stepType": "ET_PFT",
                "name": "Power on",
                "group": "M",
                "status": "P",
                "booleanMeas": [{"status": "P", "value": True}],
            }
        ],
    },
}


def make_report(**overrides: Any) -> dict[str, Any]:
    """The spec's minimal valid UUT (§2.6) with a fresh id unless given, plus `overrides`."""
    doc = copy.deepcopy(_MINIMAL_UUT)
    doc["id"] = str(uuid.uuid4())
    doc.update(overrides)
    return doc
