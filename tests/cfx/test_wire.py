"""Byte-level decoding: gzip (header and magic), size limits and bombs, AMQP 1.0 framing, BOM, batches."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest
from cfx_helpers import gz

from pywats_cfx import CFXCodec, DecodeLimits
from pywats_cfx.samples import load_sample

ENVELOPE = load_sample("work_started")


def _section(ctor: int, payload: bytes) -> bytes:
    if ctor in (0xA0, 0xA1):
        return b"\x00\x53\x77" + bytes([ctor, len(payload)]) + payload
    return b"\x00\x53\x77" + bytes([ctor]) + len(payload).to_bytes(4, "big") + payload


def _one_event(codec: CFXCodec, body: bytes, headers: dict | None = None) -> None:
    result = codec.decode(body, headers)
    assert result.quarantined == []
    assert [e.type_name for e in result.events] == ["production.work_started"]
    assert result.events[0].payload["unit_serial"] == "MB-4471-000145"


def test_plain_json_envelope(codec: CFXCodec) -> None:
    _one_event(codec, ENVELOPE)


def test_gzip_detected_by_magic_bytes_without_header(codec: CFXCodec) -> None:
    _one_event(codec, gz(ENVELOPE))


def test_gzip_with_content_encoding_header(codec: CFXCodec) -> None:
    _one_event(codec, gz(ENVELOPE), {"content-encoding": "gzip"})


def test_header_says_gzip_but_body_already_inflated(codec: CFXCodec) -> None:
    _one_event(codec, ENVELOPE, {"Content-Encoding": "gzip"})


def test_concatenated_gzip_members_are_joined(codec: CFXCodec) -> None:
    half = len(ENVELOPE) // 2
    _one_event(codec, gz(ENVELOPE[:half]) + gz(ENVELOPE[half:]))


@pytest.mark.parametrize("ctor", [0xA0, 0xB0, 0xA1, 0xB1])
def test_amqp_1_0_amqp_value_framing_is_stripped(codec: CFXCodec, ctor: int) -> None:
    payload = ENVELOPE if ctor in (0xB0, 0xB1) else json.dumps(json.loads(ENVELOPE)["MessageBody"]).encode()
    if ctor in (0xA0, 0xA1):
        # one-byte length: a small bare body named by its $type
        payload = json.dumps(
            {"$type": "CFX.Heartbeat, CFX", "CFXHandle": "A.B.C", "HeartbeatFrequency": "00:01:00"}
        ).encode()
        result = codec.decode(_section(ctor, payload), {"type": "amqp-1.0"})
        assert result.quarantined == []
        assert result.events[0].type_name == "endpoint.heartbeat"
        assert result.events[0].payload["heartbeat_frequency_s"] == 60.0
    else:
        _one_event(codec, _section(ctor, payload), {"type": "amqp-1.0"})


def test_amqp_framing_around_gzip(codec: CFXCodec) -> None:
    _one_event(codec, _section(0xB0, gz(ENVELOPE)))


def test_truncated_amqp_framing_is_quarantined(codec: CFXCodec) -> None:
    framed = _section(0xB0, ENVELOPE)[:-10]
    result = codec.decode(framed)
    assert result.events == []
    assert "AMQP 1.0 section declares" in result.quarantined[0].reason
    assert result.quarantined[0].raw == framed


def test_utf8_bom_is_stripped(codec: CFXCodec) -> None:
    _one_event(codec, b"\xef\xbb\xbf" + ENVELOPE)
    _one_event(codec, gz(b"\xef\xbb\xbf" + ENVELOPE))


def test_json_array_batch_yields_events_of_every_envelope(codec: CFXCodec) -> None:
    batch = b"[" + load_sample("work_started") + b"," + load_sample("work_completed_fail") + b"]"
    result = codec.decode(gz(batch))
    assert result.quarantined == []
    assert [e.type_name for e in result.events] == ["production.work_started", "production.work_completed"]


def test_batch_with_a_broken_item_keeps_the_good_ones(codec: CFXCodec) -> None:
    batch = (
        b"[" + load_sample("work_started") + b', 42, {"MessageName": "CFX.Heartbeat", "MessageBody": "x"}]'
    )
    result = codec.decode(batch)
    assert [e.type_name for e in result.events] == ["production.work_started"]
    reasons = [q.reason for q in result.quarantined]
    assert len(reasons) == 2
    assert reasons[0].startswith("batch item 1:") and "expected a JSON object" in reasons[0]
    assert reasons[1].startswith("batch item 2:") and "MessageBody must be an object" in reasons[1]
    assert json.loads(result.quarantined[0].raw) == 42


def test_empty_body_and_empty_array_are_quarantined(codec: CFXCodec) -> None:
    assert codec.decode(b"").quarantined[0].reason == "empty message body"
    assert "empty JSON array" in codec.decode(b"[]").quarantined[0].reason


def test_invalid_gzip_is_quarantined_with_reason(codec: CFXCodec) -> None:
    body = gz(ENVELOPE)[:20]
    result = codec.decode(body)
    assert result.events == []
    assert "gzip" in result.quarantined[0].reason
    assert result.quarantined[0].raw == body


def test_non_utf8_text_is_quarantined(codec: CFXCodec) -> None:
    result = codec.decode('{"MessageName": "CFX.Heartbeat", "x": "é"}'.encode("latin-1"))
    assert "not UTF-8" in result.quarantined[0].reason


def test_compressed_size_limit(codec: CFXCodec) -> None:
    small = CFXCodec(limits=DecodeLimits(max_compressed_bytes=100))
    result = small.decode(ENVELOPE)
    assert "exceeds the 100-byte limit" in result.quarantined[0].reason


def test_decompressed_size_limit() -> None:
    small = CFXCodec(limits=DecodeLimits(max_decompressed_bytes=len(ENVELOPE) - 1))
    result = small.decode(gz(ENVELOPE))
    assert "inflates beyond" in result.quarantined[0].reason
    ok = CFXCodec(limits=DecodeLimits(max_decompressed_bytes=len(ENVELOPE)))
    assert ok.decode(gz(ENVELOPE)).quarantined == []


def _bomb(total: int) -> bytes:
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"\0" * (4 << 20)
    parts = [comp.compress(chunk) for _ in range(total >> 22)]
    parts.append(comp.flush())
    return b"".join(parts)


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = _bomb(256 << 20)  # 256 MiB of zeros in ~1.2 MB, under the 16 MiB compressed limit
    assert len(bomb) < 2 << 20
    codec = CFXCodec()  # default limit: 64 MiB
    start = time.perf_counter()
    result = codec.decode(bomb, {"content-encoding": "gzip"})
    elapsed = time.perf_counter() - start
    assert result.events == []
    assert "refused" in result.quarantined[0].reason
    # stopping at the 64 MiB cap (not inflating 256 MiB) keeps this well under a second
    assert elapsed < 2.0


def test_gzip_json_bomb_within_limit_passes_but_nested_bomb_does_not() -> None:
    inner = _bomb(8 << 20)
    double = gzip.compress(inner)  # gzip of a gzip bomb: each layer is capped
    codec = CFXCodec(limits=DecodeLimits(max_decompressed_bytes=4 << 20))
    assert "refused" in codec.decode(double).quarantined[0].reason
