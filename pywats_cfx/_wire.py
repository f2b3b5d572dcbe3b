"""Bytes as they arrive → the JSON text inside: gzip, AMQP 1.0 section framing, UTF-8 BOM.

Gzip is inflated incrementally with a cap, so a bomb is refused after inflating at most the cap (plus one
chunk), never in full. Layers may nest (an amqp-value binary holding gzip), so unwrapping loops a few times.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DecodeLimits", "WireError", "unwrap"]

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
# AMQP 1.0 section descriptors as a 0-9-1 consumer sees them: 0x00 0x53 <code>; 0x77 amqp-value, 0x75 data.
_SECTION_PREFIXES = (b"\x00\x53\x77", b"\x00\x53\x75")
_MAX_LAYERS = 4


class WireError(ValueError):
    """The bytes cannot be turned into text (bad gzip, truncated framing, over a size limit)."""


@dataclass(frozen=True)
class DecodeLimits:
    """Hard size limits; anything larger is quarantined, not processed."""

    #: largest body accepted as received (compressed or not)
    max_compressed_bytes: int = 16 * 1024 * 1024
    #: largest body after inflating gzip
    max_decompressed_bytes: int = 64 * 1024 * 1024
    #: largest number of envelopes in one JSON array
    max_batch: int = 10_000


def _is_gzip_header(headers: Mapping[str, Any] | None) -> bool:
    if not headers:
        return False
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() in ("content-encoding", "content_encoding"):
            return (
                isinstance(value, (str, bytes))
                and b"gzip"
                in (value if isinstance(value, bytes) else value.encode("latin-1", "replace")).lower()
            )
    return False


def _gunzip(data: bytes, limit: int) -> bytes:
    out: list[bytes] = []
    total = 0
    rest = data
    while rest[:2] == _GZIP_MAGIC:
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(rest, limit - total + 1)
        except zlib.error as exc:
            raise WireError(f"invalid gzip data: {exc}") from None
        total += len(chunk)
        if total > limit or d.unconsumed_tail:
            raise WireError(f"gzip body inflates beyond the {limit}-byte limit: refused")
        try:
            chunk += d.flush()
        except zlib.error as exc:  # pragma: no cover - flush after a full decompress rarely fails
            raise WireError(f"invalid gzip data: {exc}") from None
        if not d.eof:
            raise WireError("truncated gzip data")
        out.append(chunk)
        rest = d.unused_data
    if rest.strip(b"\x00 \t\r\n"):
        raise WireError("unexpected bytes after the gzip stream")
    return b"".join(out)


def _strip_section(data: bytes) -> bytes:
    """Remove an AMQP 1.0 amqp-value/data section header: descriptor + vbin8/vbin32/str8/str32 constructor."""
    if len(data) < 5:
        raise WireError("truncated AMQP 1.0 section")
    ctor = data[3]
    if ctor in (0xA0, 0xA1):
        size, start = data[4], 5
    elif ctor in (0xB0, 0xB1):
        if len(data) < 8:
            raise WireError("truncated AMQP 1.0 section")
        size, start = int.from_bytes(data[4:8], "big"), 8
    elif ctor == 0x40:
        raise WireError("AMQP 1.0 amqp-value is null (empty message)")
    else:
        raise WireError(f"unsupported AMQP 1.0 value constructor 0x{ctor:02x} (expected binary or string)")
    end = start + size
    if end > len(data):
        raise WireError(f"AMQP 1.0 section declares {size} bytes but only {len(data) - start} follow")
    return data[start:end]


def unwrap(body: bytes, headers: Mapping[str, Any] | None, limits: DecodeLimits) -> tuple[bytes, list[str]]:
    """Peel framing, compression and BOM off `body`; returns the JSON bytes and notes on what was peeled."""
    if len(body) > limits.max_compressed_bytes:
        raise WireError(f"body of {len(body)} bytes exceeds the {limits.max_compressed_bytes}-byte limit")
    notes: list[str] = []
    data = body
    for _ in range(_MAX_LAYERS):
        head = data[:3]
        if head == _BOM:
            data = data[3:]
            notes.append("bom")
        elif head[:2] == _GZIP_MAGIC:
            data = _gunzip(data, limits.max_decompressed_bytes)
            notes.append("gzip")
        elif head in _SECTION_PREFIXES:
            data = _strip_section(data)
            notes.append("amqp-1.0")
        else:
            break
    else:
        raise WireError("too many nested encodings")
    if "gzip" not in notes and _is_gzip_header(headers):
        # Declared gzip but not gzip bytes: a proxy may have inflated it already; the JSON parser decides.
        notes.append("content-encoding gzip declared but body is not gzip")
    return data, notes
