"""Property-based: random and mutated bytes never make CFXCodec.decode raise, and whatever it returns is
usable (events serialise, quarantine records carry bytes and a reason)."""

from __future__ import annotations

import gzip
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_cfx import CFXCodec, DecodeLimits
from pywats_cfx.samples import list_samples, load_sample, load_sample_dict
from pywats_events import DecodeResult

CODEC = CFXCodec(limits=DecodeLimits(max_decompressed_bytes=4 << 20))
SAMPLES = [load_sample(n) for n in list_samples() if n not in ("units_tested_ict", "units_inspected_spi")]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(result: DecodeResult, body: bytes) -> None:
    assert isinstance(result, DecodeResult)
    for q in result.quarantined:
        assert q.reason and isinstance(q.raw, bytes)
    for ev in result.events:
        json.loads(ev.to_json())  # serialisable for journal and DLQ
        assert ev.metadata.timestamp.tzinfo is not None
    if not result.events:
        assert result.quarantined, "nothing may be dropped silently"


def _frame(data: bytes, how: int) -> bytes:
    if how == 1:
        return gzip.compress(data)
    if how == 2:
        return b"\x00\x53\x77\xb0" + len(data).to_bytes(4, "big") + data
    if how == 3:
        return b"\xef\xbb\xbf" + data
    if how == 4:
        return b"\x00\x53\x77\xb0" + len(data).to_bytes(4, "big") + gzip.compress(data)
    return data


@SETTINGS
@given(st.binary(max_size=2048), st.sampled_from([None, "a.b.CFX.Heartbeat", "x/y", ""]))
def test_random_bytes(body: bytes, topic: str | None) -> None:
    _check(CODEC.decode(body, {"content-encoding": "gzip"}, topic), body)


@SETTINGS
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 10**6),
    st.integers(0, 4),
)
def test_mutated_samples(sample: bytes, flips: list[tuple[int, int]], cut: int, how: int) -> None:
    data = bytearray(sample)
    for pos, value in flips:
        data[pos % len(data)] = value
    body = _frame(bytes(data[: max(1, len(data) - cut % 64)]), how)
    _check(CODEC.decode(body), body)


@SETTINGS
@given(st.sampled_from(SAMPLES), st.integers(0, 4), st.data())
def test_mutated_framing_and_gzip(sample: bytes, how: int, data: st.DataObject) -> None:
    body = bytearray(_frame(sample, how))
    for _ in range(data.draw(st.integers(0, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    _check(CODEC.decode(bytes(body)), bytes(body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@SETTINGS
@given(
    st.sampled_from([n for n in list_samples() if n not in ("units_tested_ict", "units_inspected_spi")]),
    st.data(),
)
def test_structurally_mutated_envelopes(name: str, data: st.DataObject) -> None:
    doc = load_sample_dict(name)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        value = data.draw(json_values)
        if not path:
            doc = value
            break
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    body = json.dumps(doc, allow_nan=True).encode()
    batch = data.draw(st.booleans())
    if batch:
        body = b"[" + body + b"," + load_sample("work_started") + b"]"
    result = CODEC.decode(gzip.compress(body))
    _check(result, body)
    if batch:
        assert any(
            e.payload.get("unit_serial") == "MB-4471-000145" and e.type_name == "production.work_started"
            for e in result.events
        )
