"""``python -m pywats_cfx.explorer``: arguments in, a report out, an exit status saying if all decoded.

``--json`` writes only JSON to stdout; errors go to stderr. Without a terminal the text carries no colour
codes; a character stdout cannot encode is escaped (JSON) or replaced by ``?`` (text).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..codec import CFXCodec
from ..samples import list_samples
from .conformance import check_paths, check_samples
from .render import (
    conformance_to_json,
    render_conformance,
    render_report,
    render_samples,
    report_to_json,
    samples_to_json,
)
from .report import ExplorerError, ExplorerReport, build_report, bundled_samples, read_capture, sample_report

__all__ = ["EXIT_FAILED", "EXIT_OK", "main"]

EXIT_OK = 0
#: an unknown sample, an unreadable file or input that could not be decoded (argparse uses 2)
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pywats_cfx.explorer",
        description="Show what a CFX message decodes into: raw message, typed model, domain events "
        "and what the installed handler plugins would send, e.g. the requests WATS would receive (an "
        "offline preview: values marked * are placeholders).",
        epilog="Exit status: 0 when everything decoded (with --check: conforms), 1 for an unknown sample, an "
        "unreadable file or input that could not be decoded (with --check: anything deviates; the reason is "
        "on stderr), 2 for wrong arguments.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list the bundled samples")
    what.add_argument(
        "--sample", metavar="NAME", help="show a bundled sample in full: raw, decoded model, events, previews"
    )
    what.add_argument(
        "--convert",
        metavar="NAME",
        help="what a bundled sample becomes: decoded model, domain events, previews (no raw message)",
    )
    what.add_argument(
        "--file",
        metavar="PATH",
        type=Path,
        help="a captured message: gzipped or not, AMQP 1.0 framed or not, an envelope, a JSON array of "
        "envelopes or a bare MessageBody; with --check also a directory or a JSON-lines recording",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="check the messages (--file, --sample, or all bundled samples) against the CFX standard: "
        "unknown names, versions and properties, wrong types, template placeholders, missing properties, "
        "timestamps without offset; exit status 1 when anything deviates",
    )
    p.add_argument(
        "--message-name",
        metavar="NAME",
        help="message name for a bare MessageBody without $type, e.g. CFX.Production.WorkStarted",
    )
    p.add_argument("--topic", metavar="TOPIC", help="the routing key / topic the message arrived on")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout (errors on stderr)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.check:
        if args.list or args.convert:
            parser.error("--check takes --file, --sample or nothing (all bundled samples)")
        return _check(args)
    if not (args.list or args.sample or args.convert or args.file):
        parser.error("one of --list, --sample, --convert, --file, --check is required")
    if args.list:
        samples = bundled_samples()
        if args.json:
            _write_json(samples_to_json(samples))
        else:
            _write_text(render_samples(samples))
        return EXIT_OK

    codec = CFXCodec()
    try:
        report = _report(args, codec)
    except ExplorerError as exc:
        return _fail(str(exc))
    if args.json:
        _write_json(report_to_json(report))
    else:
        _write_text(render_report(report, show_raw=args.convert is None))
    failure = report.failure
    return EXIT_OK if failure is None else _fail(failure)


def _check(args: argparse.Namespace) -> int:
    if args.file is not None:
        if not args.file.exists():
            return _fail(f"cannot read {args.file}: no such file or directory")
        report = check_paths([args.file], message_name=args.message_name)
    else:
        names = [args.sample] if args.sample else list_samples()
        unknown = [n for n in names if n not in list_samples()]
        if unknown:
            return _fail(f"unknown sample {unknown[0]!r}; bundled: {', '.join(list_samples())}")
        report = check_samples(names)
    if args.json:
        _write_json(conformance_to_json(report))
    else:
        _write_text(render_conformance(report))
    return EXIT_OK if report.clean else EXIT_FAILED


def _report(args: argparse.Namespace, codec: CFXCodec) -> ExplorerReport:
    if args.file is None:
        return sample_report(
            args.sample or args.convert, codec=codec, message_name=args.message_name, topic=args.topic
        )
    capture = read_capture(args.file, codec)
    if isinstance(capture, ExplorerReport):  # too big: refused unread
        return capture
    return build_report(
        capture, label=str(args.file), codec=codec, message_name=args.message_name, topic=args.topic
    )


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_FAILED


def _write_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):  # e.g. an ASCII-only locale: escape, stay valid JSON
        text = json.dumps(data, indent=2, ensure_ascii=True, default=str)
    sys.stdout.write(text + "\n")


def _write_text(text: str) -> None:
    encoding = sys.stdout.encoding or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):  # a terminal that cannot show a character gets "?"
        text = text.encode(encoding, "replace").decode(encoding)
    sys.stdout.write(text)
