"""CFX decode micro-benchmark: µs per message for `CFXCodec.decode` on the bundled samples, gzipped as an SDK
sends them (compact JSON, gzip level 6): the typed path (msgspec structs straight from the bytes, what
ingest runs for SDK-shaped messages) against the lenient path (dicts of any shape, the fallback) in the
same run, with a breakdown into gunzip, typed decode+map, lenient parse and lenient map.

Best-of-N over repeated batches, so the figure is the cost on a quiet machine, not the average under load.

    python bench/cfx_decode.py [--repeat 7] [--number 200] [--sample units_tested_ict ... | --all] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import pstats
import timeit
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pywats_cfx import CFXCodec
from pywats_cfx import _json as cfx_json
from pywats_cfx import samples as cfx_samples
from pywats_cfx._wire import DecodeLimits, unwrap
from pywats_cfx.mappers import decode_typed
from pywats_cfx.mapping import map_envelope
from pywats_cfx.samples import load_sample_dict

DEFAULT_SAMPLES = ("units_tested_ict", "units_tested_fct", "units_inspected_aoi")


def _wire_message(name: str) -> tuple[bytes, dict[str, Any], str]:
    """The sample as CFXTransport receives it: gzipped compact JSON, SDK headers and routing key."""
    env = load_sample_dict(name)
    raw = json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = gzip.compress(raw, compresslevel=6, mtime=0)
    handle = str(env.get("Source") or "Acme.Station")
    headers = {"content-encoding": "gzip", "cfx-message": env["MessageName"], "cfx-handle": handle}
    return body, headers, f"{handle}.{env['MessageName']}"


def _best_us(fn: Callable[[], object], repeat: int, number: int) -> float:
    return min(timeit.repeat(fn, repeat=repeat, number=number)) / number * 1e6


def bench_sample(name: str, repeat: int, number: int) -> dict[str, float]:
    body, headers, topic = _wire_message(name)
    codec = CFXCodec()
    limits = DecodeLimits()
    text, _ = unwrap(body, headers, limits)
    received = datetime.now(timezone.utc)

    result = codec.decode(body, headers, topic)
    assert result.events and not result.quarantined, result.quarantined

    def gunzip() -> object:
        return unwrap(body, headers, limits)

    def parse() -> object:
        return cfx_json.parse(text)

    def envelope_and_map() -> object:
        doc = cfx_json.parse(text)
        env = codec._envelope(doc, 0, text, True, None, headers, None)
        return map_envelope(env, topic=topic, source_hint=None, received=received)

    def typed() -> object:
        return decode_typed(text, topic=topic, source_hint=None)

    def lenient_decode() -> object:
        return codec._decode(body, headers, topic, None, False, typed=False)

    def decode() -> object:
        return codec.decode(body, headers, topic)

    try:
        takes_typed = bool(typed())
    except Exception:  # a shape the typed path refuses (a Fault subclass, ...): the lenient path's
        takes_typed = False
    out = {
        "bytes_gz": float(len(body)),
        "bytes_json": float(len(text)),
        "events": float(len(result.events)),
        "gunzip": _best_us(gunzip, repeat, number),
        "typed": _best_us(typed, repeat, number) if takes_typed else float("nan"),
        "parse": _best_us(parse, repeat, number),
        "parse+map": _best_us(envelope_and_map, repeat, number),
        "lenient": _best_us(lenient_decode, repeat, number),
        "decode": _best_us(decode, repeat, number),
    }
    out["map"] = out["parse+map"] - out["parse"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="batches; the best one counts")
    parser.add_argument("--number", type=int, default=200, help="decodes per batch")
    parser.add_argument(
        "--sample", action="append", help=f"sample name (default: {', '.join(DEFAULT_SAMPLES)})"
    )
    parser.add_argument("--all", action="store_true", help="every bundled sample")
    parser.add_argument("--profile", action="store_true", help="cProfile decode of the first sample")
    args = parser.parse_args()
    samples = args.sample or list(DEFAULT_SAMPLES)
    if args.all:
        samples = sorted(p.stem for p in (Path(cfx_samples.__file__).parent).glob("*.json"))

    print(f"best of {args.repeat} x {args.number}, µs per message")
    print(
        "typed = decode+map from bytes (nan: not SDK-shaped); lenient parse/map/total = the fallback "
        "path; decode = CFXCodec.decode"
    )
    columns = ("gunzip", "typed", "l.parse", "l.map", "lenient", "decode", "speedup")
    print(f"{'sample':<22}{'gz KB':>7}{'JSON KB':>8}{'events':>7}" + "".join(f"{c:>9}" for c in columns))
    for name in samples:
        r = bench_sample(name, args.repeat, args.number)
        print(
            f"{name:<22}{r['bytes_gz'] / 1024:>7.1f}{r['bytes_json'] / 1024:>8.1f}{r['events']:>7.0f}"
            f"{r['gunzip']:>9.1f}{r['typed']:>9.1f}{r['parse']:>9.1f}{r['map']:>9.1f}{r['lenient']:>9.1f}"
            f"{r['decode']:>9.1f}{r['lenient'] / r['decode']:>8.1f}x"
        )

    if args.profile:
        body, headers, topic = _wire_message(samples[0])
        codec = CFXCodec()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.number * 5):
            codec.decode(body, headers, topic)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
