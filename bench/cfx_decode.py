"""CFX decode micro-benchmark: µs per message for `CFXCodec.decode` on the bundled samples, gzipped as an SDK
sends them (compact JSON, gzip level 6): the typed path (msgspec structs straight from the bytes, what
ingest runs for SDK-shaped messages) against the lenient path (dicts of any shape, the fallback) in the
same run, with a breakdown into gunzip, typed decode+map, lenient parse and lenient map.

Best-of-N over repeated batches, so the figure is the cost on a quiet machine, not the average under load.

A large solder-paste inspection message (`--spi-mb`, default 5: thousands of inspections over 4 units,
built from the bundled `units_inspected_spi` sample) is decoded too; `--write-spi FILE` writes it as a
capture for ``pywats-events run --replay FILE`` (peak memory of the whole listener on one big message).

    python bench/cfx_decode.py [--repeat 7] [--number 200] [--sample units_tested_ict ... | --all] [--profile]
                               [--spi-mb 5] [--write-spi FILE]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gzip
import json
import pstats
import time
import timeit
import uuid
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


def large_spi_message(megabytes: float, units: int = 4) -> dict[str, Any]:
    """The bundled SPI sample grown to about `megabytes` of compact JSON: `units` boards, each with as
    many inspections (pads, three measurements each) as it takes, every id unique and every name its own."""
    env = load_sample_dict("units_inspected_spi")
    body = env["MessageBody"]
    template_unit = body["InspectedUnits"][0]
    pads = template_unit["Inspections"]
    pad_bytes = len(json.dumps(pads, separators=(",", ":"))) / len(pads)
    per_unit = max(1, int(megabytes * 1024 * 1024 / pad_bytes / units))
    inspected = []
    for u in range(units):
        unit = copy.deepcopy(template_unit)
        unit["UnitIdentifier"] = f"{template_unit['UnitIdentifier']}-{u + 1}"
        unit["UnitPositionNumber"] = u + 1
        inspections = []
        for i in range(per_unit):
            pad = copy.deepcopy(pads[i % len(pads)])
            ref = f"R{u + 1}.{i + 1}"
            pad["UniqueIdentifier"] = str(uuid.uuid5(uuid.NAMESPACE_OID, f"spi/{u}/{i}"))
            pad["InspectionName"] = f"PAD_{ref}"
            pad["RefNo"] = i + 1
            for k, m in enumerate(pad["Measurements"]):
                m["UniqueIdentifier"] = str(uuid.uuid5(uuid.NAMESPACE_OID, f"spi/{u}/{i}/{k}"))
                m["MeasurementName"] = f"{ref}_{m['MeasurementName'].rsplit('_', 1)[-1]}"
                m["CRDs"] = ref
            inspections.append(pad)
        unit["Inspections"] = inspections
        unit["TotalInspectionCount"] = per_unit
        inspected.append(unit)
    body["InspectedUnits"] = inspected
    return env


def bench_large_spi(megabytes: float, repeat: int) -> dict[str, float]:
    """Decode time of the large SPI message (gzipped as on the wire): best of `repeat`, in ms."""
    env = large_spi_message(megabytes)
    raw = json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = gzip.compress(raw, compresslevel=6, mtime=0)
    headers = {"content-encoding": "gzip", "cfx-message": env["MessageName"], "cfx-handle": env["Source"]}
    topic = f"{env['Source']}.{env['MessageName']}"
    codec = CFXCodec()
    best = float("inf")
    events = 0
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = codec.decode(body, headers, topic)
        best = min(best, time.perf_counter() - t0)
        assert result.events and not result.quarantined, result.quarantined
        events = len(result.events)
    inspections = sum(len(u["Inspections"]) for u in env["MessageBody"]["InspectedUnits"])
    return {
        "mb_json": len(raw) / 1024 / 1024,
        "kb_gz": len(body) / 1024,
        "inspections": float(inspections),
        "events": float(events),
        "decode_ms": best * 1e3,
    }


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
    parser.add_argument("--spi-mb", type=float, default=5.0, help="size of the large SPI message (0: skip)")
    parser.add_argument("--write-spi", type=Path, help="write the large SPI message to FILE and exit")
    args = parser.parse_args()
    if args.write_spi:
        env = large_spi_message(args.spi_mb)
        args.write_spi.write_text(json.dumps(env, separators=(",", ":"), ensure_ascii=False), "utf-8")
        print(f"{args.write_spi}: {args.write_spi.stat().st_size / 1024 / 1024:.1f} MB")
        return
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

    if args.spi_mb > 0:
        r = bench_large_spi(args.spi_mb, min(args.repeat, 3))
        print(
            f"large SPI message: {r['mb_json']:.1f} MB JSON ({r['kb_gz']:.0f} KB gzipped), "
            f"{r['inspections']:,.0f} inspections on 4 units -> {r['events']:.0f} events: "
            f"CFXCodec.decode {r['decode_ms']:,.0f} ms (best of {min(args.repeat, 3)})"
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
