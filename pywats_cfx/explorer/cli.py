"""``python -m pywats_cfx.explorer``: arguments in, a report out, an exit status saying if all decoded.

``--json`` writes only JSON to stdout; errors go to stderr. Without a terminal the text carries no colour
codes; a character stdout cannot encode is escaped (JSON) or replaced by ``?`` (text). The live view
numbers its lines; a number typed on stdin (a terminal or a pipe) and Enter shows that message's detail,
the report ``--file`` gives, between the lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pywats_events.transports.replay import iter_messages

from ..codec import CFXCodec
from ..samples import list_samples
from .conformance import check_paths, check_samples
from .live import (
    DEFAULT_KEEP,
    LiveHistory,
    LiveMessage,
    LiveSourceError,
    Recorder,
    amqp_messages,
    live_line,
    mqtt_messages,
)
from .render import (
    conformance_to_json,
    live_line_to_json,
    render_conformance,
    render_live_line,
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
    what = p.add_mutually_exclusive_group()  # or --amqp / --mqtt
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
    p.add_argument(
        "--topic",
        metavar="TOPIC",
        help="the routing key / topic the message arrived on; with --mqtt the topic filter (default cfx/#)",
    )
    live = p.add_argument_group(
        "live view (one numbered line per message; a number and Enter on stdin shows that message's "
        "detail; Ctrl-C stops)"
    )
    live.add_argument(
        "--amqp", metavar="URL", help="watch an AMQP 0-9-1 broker, e.g. amqp://guest:guest@host/"
    )
    live.add_argument("--mqtt", metavar="URL", help="watch an MQTT broker, e.g. mqtt://host:1883")
    live.add_argument("--exchange", default="cfx", help="the exchange to watch (--amqp; default cfx)")
    live.add_argument(
        "--binding", default="#", help="the binding key of the explorer's queue (--amqp; default #)"
    )
    live.add_argument(
        "--filter", metavar="TEXT", help="show (and record) only messages whose name or source contains TEXT"
    )
    live.add_argument(
        "--record",
        metavar="FILE.jsonl",
        type=Path,
        help="append what arrives (exact bytes) as JSON lines for --file and pywats-events run --replay",
    )
    live.add_argument("--count", type=int, metavar="N", help="stop after N messages (after the filter)")
    live.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    live.add_argument(
        "--detail",
        action="store_true",
        help="show each message's detail (what --file shows) after its line, instead of on request",
    )
    live.add_argument(
        "--keep",
        type=int,
        default=DEFAULT_KEEP,
        metavar="N",
        help=f"keep the last N messages for their detail (default {DEFAULT_KEEP})",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout (errors on stderr)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.check:
        if args.list or args.convert:
            parser.error("--check takes --file, --sample or nothing (all bundled samples)")
        return _check(args)
    if args.amqp or args.mqtt:
        if (args.amqp and args.mqtt) or args.list or args.sample or args.convert or args.file:
            parser.error("--amqp and --mqtt each stand alone")
        if args.keep < 1:
            parser.error("--keep must be at least 1")
        return _live(args)
    if not (args.list or args.sample or args.convert or args.file):
        parser.error("one of --list, --sample, --convert, --file, --check, --amqp, --mqtt is required")
    if args.list:
        samples = bundled_samples()
        if args.json:
            _write_json(samples_to_json(samples))
        else:
            _write_text(render_samples(samples))
        return EXIT_OK

    codec = CFXCodec()
    if args.file is not None and args.file.suffix.lower() in (".jsonl", ".ndjson") and args.file.is_file():
        return _recording(args, codec)
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


def _live(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_watch(args))
    except KeyboardInterrupt:
        return EXIT_OK
    except LiveSourceError as exc:
        return _fail(str(exc))


async def _watch(args: argparse.Namespace) -> int:
    """Show (and record) messages until --count or --duration is reached, or Ctrl-C; answer the numbers
    typed on stdin with their message's detail."""
    codec = CFXCodec()
    detail_codec = CFXCodec()  # used by one detail thread at a time, never beside the view's
    history = LiveHistory(args.keep)
    asking = False  # whether stdin is read for numbers

    def ready(text: str) -> None:
        sys.stderr.write(text + "\n")
        if asking and sys.stdin.isatty():
            sys.stderr.write("type a message's number and Enter for its detail\n")
        sys.stderr.flush()

    requests: asyncio.Queue[str] = asyncio.Queue()

    async def answer_requests() -> None:
        """Answer the lines typed on stdin in their order, a detail at a time."""
        while True:
            typed = (await requests.get()).strip()
            request = typed.removeprefix("#")
            if not request:
                continue
            if not (request.isascii() and request.isdigit()):
                _live_answer(args, None, f"not a message number: {typed!r} (type e.g. 3 and Enter)")
                continue
            number = int(request)
            message = history.get(number)
            if message is None:
                _live_answer(args, number, history.why_missing(number))
            else:
                try:
                    text = await asyncio.to_thread(_detail, args, number, message, detail_codec)
                except Exception as exc:  # one message's detail must not end the answering
                    _live_answer(args, number, f"cannot show message #{number}: {exc!r}")
                else:
                    _emit(args, text)

    if args.amqp:
        source = amqp_messages(args.amqp, exchange=args.exchange, binding=args.binding, on_ready=ready)
    else:
        source = mqtt_messages(args.mqtt, topic=args.topic or "cfx/#", on_ready=ready)
    with contextlib.ExitStack() as stack:
        recorder = stack.enter_context(Recorder(args.record)) if args.record else None
        if not args.detail:
            stop_reading = _read_stdin_lines(requests.put_nowait)
            if stop_reading is not None:
                asking = True
                stack.callback(stop_reading)
                stack.callback(asyncio.create_task(answer_requests()).cancel)
        loop = asyncio.get_running_loop()
        deadline = None if args.duration is None else loop.time() + args.duration
        shown = 0
        try:
            while args.count is None or shown < args.count:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    message = await asyncio.wait_for(anext(source), remaining)
                except (asyncio.TimeoutError, StopAsyncIteration):
                    break
                line = live_line(message, codec)
                if not line.matches(args.filter):
                    continue
                if recorder is not None:
                    recorder.write(message)
                number = history.add(message)
                if args.json:
                    sys.stdout.write(json.dumps(live_line_to_json(line, number), ensure_ascii=False) + "\n")
                else:
                    _write_text(render_live_line(line, number))
                sys.stdout.flush()
                if args.detail:
                    _emit(args, await asyncio.to_thread(_detail, args, number, message, detail_codec))
                shown += 1
        finally:
            await source.aclose()
    return EXIT_OK


def _detail(args: argparse.Namespace, number: int, message: LiveMessage, codec: CFXCodec) -> str:
    """Message `number` as ``--file`` shows it (with --json: one line ``{"number", "detail"}``).

    Called in a thread: a preview plugin may run an event loop of its own, which it cannot inside the
    view's, and the view keeps receiving meanwhile.
    """
    stamp = message.received_at.astimezone().strftime("%H:%M:%S.%f")[:-3]
    label = f"#{number} received {stamp}" + (f" on {message.topic}" if message.topic else "")
    report = build_report(message.body, label=label, codec=codec, topic=message.topic)
    if args.json:
        detail = {"number": number, "detail": report_to_json(report)}
        return json.dumps(detail, ensure_ascii=False, default=str) + "\n"
    return render_report(report, show_raw=True)


def _emit(args: argparse.Namespace, text: str) -> None:
    """Write a block of the live view at once, so it never mixes with another."""
    if args.json:
        sys.stdout.write(text)
    else:
        _write_text(text)
    sys.stdout.flush()


def _live_answer(args: argparse.Namespace, number: int | None, text: str) -> None:
    """The one-line answer to a request the live view cannot show."""
    if args.json:
        _emit(args, json.dumps({"number": number, "error": text}, ensure_ascii=False) + "\n")
    else:
        _emit(args, text + "\n")


def _read_stdin_lines(on_line: Callable[[str], None]) -> Callable[[], None] | None:
    """Call `on_line` in the event loop with each line that arrives on stdin, without blocking the loop.

    Only a terminal or a pipe is read: stdin that is a file or ``/dev/null`` (a service) asks for nothing,
    and neither does a terminal the explorer runs in the background of (reading it would stop the
    explorer). Returns what stops reading, or None when stdin is not read. The end of stdin ends only the
    reading.
    """
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):  # no stdin, or one without a descriptor
        return None
    if not (os.isatty(fd) or stat.S_ISFIFO(mode)):
        return None
    if os.isatty(fd) and not _in_foreground(fd):
        return None
    loop = asyncio.get_running_loop()
    pending = bytearray()

    def take(chunk: bytes) -> None:
        if not chunk:  # end of input: a last line without its newline still counts
            if pending:
                on_line(pending.decode("utf-8", "replace"))
                pending.clear()
            return
        pending.extend(chunk)
        while (end := pending.find(b"\n")) >= 0:
            text = pending[:end].decode("utf-8", "replace")
            del pending[: end + 1]
            on_line(text)

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)  # ready: returns what is there without waiting
        except OSError:  # e.g. the terminal went away: as the end of input
            chunk = b""
        if not chunk:
            loop.remove_reader(fd)
        take(chunk)

    def stop() -> None:
        loop.remove_reader(fd)

    try:
        loop.add_reader(fd, readable)
    except NotImplementedError:  # an event loop without add_reader (Windows): a thread does the waiting
        threading.Thread(target=_pump, args=(fd, loop, take), name="explorer-stdin", daemon=True).start()
        return lambda: None  # the thread ends with the input or the loop
    return stop


def _in_foreground(tty: int) -> bool:
    """Whether the explorer is the terminal's foreground job (true where there are no jobs, e.g. Windows)."""
    try:
        return os.tcgetpgrp(tty) == os.getpgrp()
    except (AttributeError, OSError):
        return True


def _pump(fd: int, loop: asyncio.AbstractEventLoop, take: Callable[[bytes], None]) -> None:
    """Hand what arrives on `fd` to `take` in `loop` until the end of input or of the loop."""
    while True:
        try:
            chunk = os.read(fd, 4096)  # unbuffered: a thread left waiting here does not block the exit
        except OSError:
            chunk = b""
        try:
            loop.call_soon_threadsafe(take, chunk)
        except RuntimeError:  # the loop is closed
            return
        if not chunk:
            return


def _recording(args: argparse.Namespace, codec: CFXCodec) -> int:
    """A JSON-lines recording: one report per line (a JSON array of them with --json)."""
    reports = [
        build_report(m.body, label=m.origin, codec=codec, message_name=args.message_name, topic=m.topic)
        for m in iter_messages([args.file])
    ]
    if args.json:
        _write_json([report_to_json(r) for r in reports])
    else:
        for r in reports:
            _write_text(render_report(r, show_raw=True))
    failures = [r.failure for r in reports if r.failure is not None]
    return EXIT_OK if not failures else _fail("; ".join(failures))


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
