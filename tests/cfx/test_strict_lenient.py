"""The typed path (msgspec structs straight from bytes) and the lenient path (dicts, any shape) agree.

Over the SDK corpus and the bundled samples, every message the typed path accepts yields the same events as
the lenient path. Over generated mutations (keys in other cases, numbers as text, placeholders in number
fields, flattened NumericValues) the typed path refuses what it cannot read exactly, and the codec's answer
equals the typed reading of the unmutated message (with the placeholder's field null).
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from cfx_helpers import INVALID_CORPUS_FILES, corpus_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_cfx import MAPPED_MESSAGES, CFXCodec
from pywats_cfx._names import CANONICAL_NAMES
from pywats_cfx.mappers import decode_typed
from pywats_events import Event

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "pywats_cfx" / "samples"
SAMPLE_FILES = sorted(SAMPLES_DIR.glob("*.json"))
#: samples whose Fault is a subclass (SMTPlacementFault) with properties the base Fault lacks
LENIENT_ONLY_SAMPLES = {"fault_feeder.json", "station_state_changed.json"}

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CODEC = CFXCodec()


def _facts(events: list[Event]) -> list[tuple[Any, ...]]:
    return [
        (
            e.event_type,
            e.payload,
            e.metadata.event_id,
            e.metadata.ordering_key,
            e.metadata.correlation_id,
            e.metadata.causation_id,
            e.metadata.timestamp,
            e.metadata.source,
            e.metadata.source_topic,
            e.metadata.extras,
        )
        for e in events
    ]


def _typed(raw: bytes, topic: str | None = None) -> list[Event] | None:
    try:
        return decode_typed(raw, topic=topic, source_hint=None)
    except Exception:
        return None


def _lenient(raw: bytes, topic: str | None = None) -> list[Event]:
    messages, quarantined = CODEC.decode_messages(raw, topic=topic)  # never the typed path
    assert not quarantined, quarantined
    return [e for m in messages for e in m.events]


def _mapped(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("MessageName") in MAPPED_MESSAGES


def _examples() -> list[tuple[str, bytes]]:
    out = [(p.name, p.read_bytes()) for p in SAMPLE_FILES]
    out += [(p.name, p.read_bytes()) for p in corpus_files() if p.name not in INVALID_CORPUS_FILES]
    return out


@pytest.mark.parametrize(("name", "raw"), _examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_typed_and_lenient_paths_yield_the_same_events(name: str, raw: bytes) -> None:
    doc = json.loads(raw.decode("utf-8-sig"))
    if not _mapped(doc):
        assert _typed(raw.removeprefix(b"\xef\xbb\xbf")) is None
        return
    typed = _typed(raw.removeprefix(b"\xef\xbb\xbf"), topic="t")
    if name in {p.name for p in SAMPLE_FILES} - LENIENT_ONLY_SAMPLES:
        assert typed is not None, f"{name}: an SDK-shaped sample must take the typed path"
    if typed is not None:
        assert _facts(typed) == _facts(_lenient(raw, topic="t"))
        assert _facts(CODEC.decode(raw, topic="t").events) == _facts(typed)


# --------------------------------------------------------------------------- mutations

_TYPED_SAMPLES = [p for p in SAMPLE_FILES if p.name not in LENIENT_ONLY_SAMPLES]
_NUMERIC_VALUE_KEYS = ("Value", "MinimumAcceptableValue", "MaximumAcceptableValue")
#: number-valued properties the events carry as numbers (not inside a body passed on as sent)
_NUMBER_KEYS = frozenset(
    ("Value", "ExpectedValue", "MinimumAcceptableValue", "MaximumAcceptableValue", "Sequence", "Lane",
     "UnitPositionNumber", "PositionNumber", "UnitCount", "Priority", "ConfidenceLevel", "RefNo",
     "TotalInspectionCount", "QuantityInstalled", "QuantityNonInstalled", "Quantity", "MeanValue",
     "MinValue", "MaxValue", "MedianValue")
)  # fmt: skip
_PASSED_AS_SENT = frozenset(("SamplingInformation", "DescriptionTranslations", "MessageBody_endpoint"))


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text("utf-8-sig"))
    return doc


def _objects(value: Any, inside_sent: bool = False) -> list[tuple[dict[str, Any], bool]]:
    """Every JSON object in `value`, and whether it lies in a part the events carry as sent."""
    found: list[tuple[dict[str, Any], bool]] = []
    if isinstance(value, dict):
        found.append((value, inside_sent))
        for k, v in value.items():
            found += _objects(v, inside_sent or k in _PASSED_AS_SENT)
    elif isinstance(value, list):
        for v in value:
            found += _objects(v, inside_sent)
    return found


def _respell(key: str, rnd: random.Random) -> str:
    variants = [key.lower(), key.upper(), key[0].lower() + key[1:], key.swapcase()]
    return rnd.choice([v for v in variants if v != key] or [key])


def _case_variants(doc: dict[str, Any], rnd: random.Random) -> bool:
    changed = False
    for obj, as_sent in _objects(doc):
        if as_sent:
            continue
        for key in list(obj):
            if key in CANONICAL_NAMES and key != "$type" and rnd.random() < 0.3:
                new = _respell(key, rnd)
                if new != key and new not in obj:
                    obj[new] = obj.pop(key)
                    changed = True
    return changed


def _numbers_as_text(doc: dict[str, Any], rnd: random.Random) -> bool:
    changed = False
    for obj, as_sent in _objects(doc):
        if as_sent:
            continue
        for key, value in obj.items():
            if key in _NUMBER_KEYS and type(value) in (int, float) and rnd.random() < 0.5:
                obj[key] = str(value)
                changed = True
    return changed


def _numeric_values(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o, _ in _objects(doc) if isinstance(o.get("MeasuredValue"), dict)]


@SETTINGS
@given(st.sampled_from(_TYPED_SAMPLES), st.randoms(use_true_random=False))
def test_case_variant_keys_decode_like_the_original(path: Path, rnd: random.Random) -> None:
    doc = _load(path)
    expected = _typed(orjson.dumps(doc))
    assert expected is not None
    if not _case_variants(doc, rnd):
        return
    raw = orjson.dumps(doc)
    assert _typed(raw) is None, "a key in another case must not be read as absent"
    assert _facts(CODEC.decode(raw).events) == _facts(expected)


@SETTINGS
@given(st.sampled_from(_TYPED_SAMPLES), st.randoms(use_true_random=False))
def test_numbers_as_text_decode_like_the_original(path: Path, rnd: random.Random) -> None:
    doc = _load(path)
    expected = _typed(orjson.dumps(doc))
    assert expected is not None
    if not _numbers_as_text(doc, rnd):
        return
    assert _facts(CODEC.decode(orjson.dumps(doc)).events) == _facts(expected)


_WITH_MEASUREMENTS = [p for p in _TYPED_SAMPLES if _numeric_values(_load(p))]


@SETTINGS
@given(
    st.sampled_from(_WITH_MEASUREMENTS),
    st.randoms(use_true_random=False),
    st.sampled_from(["string", "", "N/A", "NaN", "null"]),
)
def test_placeholders_in_number_fields_read_as_null(path: Path, rnd: random.Random, placeholder: str) -> None:
    doc = _load(path)
    nulled = copy.deepcopy(doc)
    pairs = list(zip(_numeric_values(doc), _numeric_values(nulled), strict=True))
    for mutated, reference in rnd.sample(pairs, min(len(pairs), 3)):
        key = rnd.choice(_NUMERIC_VALUE_KEYS)
        mutated["MeasuredValue"][key] = placeholder
        reference["MeasuredValue"][key] = None
    expected = _typed(orjson.dumps(nulled))
    assert expected is not None
    raw = orjson.dumps(doc)
    assert _typed(raw) is None
    assert _facts(CODEC.decode(raw).events) == _facts(expected)


@SETTINGS
@given(st.sampled_from(_WITH_MEASUREMENTS), st.randoms(use_true_random=False))
def test_flattened_numeric_values_decode_like_the_original(path: Path, rnd: random.Random) -> None:
    doc = _load(path)
    expected = _typed(orjson.dumps(doc))
    measurements = _numeric_values(doc)
    for m in rnd.sample(measurements, min(len(measurements), 3)):
        m.update(m.pop("MeasuredValue"))  # the NumericValue's properties on the measurement itself
    raw = orjson.dumps(doc)
    assert _typed(raw) is None
    assert expected is not None
    assert _facts(CODEC.decode(raw).events) == _facts(expected)


def _measurements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o, _ in _objects(doc) if "$type" in o and str(o["$type"]).endswith("Measurement, CFX")]


def _kind_shows(m: dict[str, Any]) -> bool:
    """Whether a measurement's kind can be told without its ``$type``."""
    return m.get("MeasuredValue") is not None or type(m.get("Value")) in (bool, str)


_WITH_ANY_MEASUREMENT = [p for p in _TYPED_SAMPLES if any(_kind_shows(m) for m in _measurements(_load(p)))]


@SETTINGS
@given(st.sampled_from(_WITH_ANY_MEASUREMENT), st.randoms(use_true_random=False))
def test_measurements_without_type_decode_like_the_original(path: Path, rnd: random.Random) -> None:
    doc = _load(path)
    expected = _typed(orjson.dumps(doc))
    telling = [m for m in _measurements(doc) if _kind_shows(m)]
    for m in rnd.sample(telling, min(len(telling), 5)):
        del m["$type"]  # the kind follows from the properties present
    raw = orjson.dumps(doc)
    assert _typed(raw) is None
    assert expected is not None
    assert _facts(CODEC.decode(raw).events) == _facts(expected)
