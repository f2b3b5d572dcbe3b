"""Key spelling on the fast ingest path: bodies are parsed with keys as sent and fixed only where read, so
every spelling and every shape (SDK-complete or not) must still yield the same events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cfx_helpers import gz

from pywats_cfx import CFXCodec
from pywats_cfx._names import canonical_name
from pywats_cfx.samples import load_sample

RESULT_SAMPLES = ["units_tested_ict", "units_tested_fct", "units_inspected_aoi", "units_inspected_spi"]
OTHER_SAMPLES = ["fault_feeder", "station_state_changed", "materials_smt", "work_completed_pass"]


def _rekey(obj: Any, spell: Callable[[str, int], str], depth: int = 0) -> Any:
    """Respell every CFX property name (data keys such as culture names stay as they are)."""
    if isinstance(obj, dict):
        return {
            (spell(k, depth) if canonical_name(k) else k): _rekey(v, spell, depth + 1) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_rekey(v, spell, depth) for v in obj]
    return obj


SPELLINGS: dict[str, Callable[[str, int], str]] = {
    "lower": lambda k, d: k.lower(),
    "upper": lambda k, d: k.upper(),
    # alternate levels: canonical objects next to non-canonical ones (fast and general paths mixed)
    "odd-levels": lambda k, d: k.lower() if d % 2 else k,
    "deep-only": lambda k, d: k.upper() if d >= 5 else k,
}


def _events(codec: CFXCodec, env: dict[str, Any]) -> list[tuple[object, dict[str, Any], object]]:
    result = codec.decode(gz(json.dumps(env).encode()), {"content-encoding": "gzip"})
    assert result.quarantined == []
    return [(e.event_type, e.payload, e.metadata) for e in result.events]


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize("sample", RESULT_SAMPLES + OTHER_SAMPLES)
def test_any_key_spelling_yields_the_same_events(codec: CFXCodec, sample: str, spelling: str) -> None:
    env = json.loads(load_sample(sample))
    expected = _events(codec, env)
    assert expected
    assert _events(codec, _rekey(env, SPELLINGS[spelling])) == expected


@pytest.mark.parametrize("sample", RESULT_SAMPLES)
def test_unknown_properties_on_tests_and_measurements_change_nothing_mapped(
    codec: CFXCodec, sample: str
) -> None:
    env = json.loads(load_sample(sample))
    expected = _events(codec, env)
    body = env["MessageBody"]
    for unit in body.get("TestedUnits") or body.get("InspectedUnits"):
        for step in unit.get("Tests") or unit.get("Inspections") or []:
            step["VendorStepInfo"] = {"measuredvalue": 1}
            for m in step.get("Measurements") or []:
                m["VendorInfo"] = {"Channel": 3}
                if isinstance(m.get("MeasuredValue"), dict):
                    m["MeasuredValue"]["VendorPrecision"] = 4
    assert _events(codec, env) == expected


def _non_canonical_keys(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        bad = [k for k in obj if canonical_name(k) not in (None, k) and canonical_name(k) not in obj]
        return bad + [b for v in obj.values() for b in _non_canonical_keys(v)]
    if isinstance(obj, list):
        return [b for v in obj for b in _non_canonical_keys(v)]
    return []


@pytest.mark.parametrize("sample", RESULT_SAMPLES + OTHER_SAMPLES)
def test_decoded_envelopes_have_canonical_keys_at_every_depth(codec: CFXCodec, sample: str) -> None:
    env = _rekey(json.loads(load_sample(sample)), SPELLINGS["lower"])
    env["vendorExtension"] = {"testname": "x"}
    [message] = codec.decode_strict(json.dumps(env).encode())
    assert _non_canonical_keys(message.envelope.body) == []
    assert message.envelope.extra == {"vendorExtension": {"TestName": "x"}}
    canonical = _rekey(json.loads(load_sample(sample)), lambda k, d: canonical_name(k) or k)
    assert message.envelope.body == canonical["MessageBody"]


def test_nan_and_infinity_literals_read_as_null(codec: CFXCodec) -> None:
    body = b'{"MessageName":"CFX.Heartbeat","MessageBody":{"CFXHandle":"a.b","HeartbeatFrequency":NaN,'
    body += b'"X":-Infinity}}'
    [message] = codec.decode_strict(body)
    assert message.envelope.body == {"CFXHandle": "a.b", "HeartbeatFrequency": None, "X": None}
    assert message.events[0].payload["heartbeat_frequency_s"] is None


def test_case_clash_keeps_the_first_spelling_and_the_other_as_sent(codec: CFXCodec) -> None:
    env = json.loads(load_sample("units_tested_fct"))
    unit = env["MessageBody"]["TestedUnits"][0]
    unit["unitidentifier"] = "SECOND"
    [message] = codec.decode_strict(json.dumps(env).encode())
    assert message.events[0].payload["unit_serial"] == unit["UnitIdentifier"] != "SECOND"
    assert message.envelope.body["TestedUnits"][0]["unitidentifier"] == "SECOND"
