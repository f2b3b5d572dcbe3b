"""CFX explorer: what does a CFX message become?

    python -m pywats_cfx.explorer --list
    python -m pywats_cfx.explorer --sample units_tested_fct      # raw, decoded model, events, WATS preview
    python -m pywats_cfx.explorer --convert units_tested_fct     # the same without the raw message
    python -m pywats_cfx.explorer --file capture.bin [--message-name CFX.Production.WorkCompleted]
    ... --json                                                   # machine-readable

"What WATS would receive" comes from the WATS handlers package when it is installed and offers
``handlers.preview.preview(events)``; without it that section is left out. The import happens only when
needed, so this package never depends on WATS code. The preview runs offline: part number, revision,
process and location are stand-ins, and the explorer marks them as such.

Human output never crops: long values wrap, so message names, serials and limits are shown in full on
any terminal width; without a terminal it carries no colour codes. ``--json`` writes only JSON to stdout;
errors go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pywats_events import Event

from ._wire import WireError, unwrap
from .codec import CFXCodec, DecodedMessage
from .models import parse_envelope
from .samples import SAMPLE_DESCRIPTIONS, UnknownSampleError, list_samples, load_sample

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1

#: WATS field names (as the preview reports them) → the request keys that carry them
_PLACEHOLDER_KEYS: dict[str, tuple[str, ...]] = {
    "partNumber": ("pn", "partNumber"),
    "revision": ("rev", "revision"),
    "processCode": ("processCode",),
    "location": ("location", "currentLocation"),
}
_CFX_NAME_IN_TEXT = re.compile(r"CFX(?:\.[A-Z][A-Za-z0-9]*)+")
_RAW_TEXT_LIMIT = 4000


@dataclasses.dataclass
class _Preview:
    items: Callable[[Sequence[Event]], list[Any]]
    placeholders: dict[str, object]


def _load_preview() -> _Preview | None:
    try:
        from handlers.preview import preview, preview_placeholders
    except Exception:  # absent or broken: the explorer works without it
        return None
    try:
        placeholders = dict(preview_placeholders())
    except Exception:  # a broken configuration only costs the placeholder marks
        placeholders = {}
    return _Preview(preview, placeholders)


def _plain(value: Any) -> Any:
    """Anything the WATS preview returns, as JSON-ready data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _placeholders_in(request: dict[str, Any], placeholders: dict[str, object]) -> list[str]:
    """Where a request carries a preview stand-in, as ``json.pn`` / ``params.partNumber`` / ``path``."""
    found: list[str] = []
    for section in ("params", "json"):
        data = request.get(section)
        if not isinstance(data, dict):
            continue
        for field, value in placeholders.items():
            for key in _PLACEHOLDER_KEYS.get(field, (field,)):
                if key in data and data[key] == value:
                    found.append(f"{section}.{key}")
    pn = placeholders.get("partNumber")
    if isinstance(pn, str) and pn and f"/{pn}" in str(request.get("path", "")):
        found.append("path")
    return found


def _wats_preview(events: list[Event]) -> dict[str, Any] | None:
    """The WATS section of the report, or None without the handlers package."""
    loaded = _load_preview()
    if loaded is None:
        return None
    try:
        items = loaded.items(events)
    except Exception as exc:  # a preview bug must not hide the decoded message
        return {"requests": [], "per_event": [], "placeholders": {}, "error": f"{type(exc).__name__}: {exc}"}
    requests: list[dict[str, Any]] = []
    per_event: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        first = len(requests)
        for r in getattr(item, "requests", []):
            plain = _plain(r)
            if isinstance(plain, dict):
                plain["placeholders"] = _placeholders_in(plain, loaded.placeholders)
            requests.append(plain)
        per_event.append(
            {
                "event": index,
                "event_type": str(item.event.event_type),
                "handlers": list(getattr(item, "handlers", [])),
                "requests": list(range(first, len(requests))),
                "error": item.error,
            }
        )
    return {"requests": requests, "per_event": per_event, "placeholders": _plain(loaded.placeholders)}


def _report(
    label: str, raw: bytes, codec: CFXCodec, message_name: str | None, topic: str | None
) -> dict[str, Any]:
    messages, quarantined = codec.decode_messages(raw, None, topic, message_name=message_name)
    try:
        text, layers = unwrap(raw, None, codec.limits)
        peeled = True
    except WireError:
        text, layers, peeled = raw, [], False
    events = [e for m in messages for e in m.events]
    report: dict[str, Any] = {
        "input": label,
        "bytes": len(raw),
        "encoding": layers,
        "messages": [_message_report(m) for m in messages],
        "quarantined": [{"reason": q.reason, "bytes": len(q.raw)} for q in quarantined],
        "_text": text,
        "_peeled": peeled,
    }
    wats = _wats_preview(events) if events else None
    if wats is not None:
        # "wats" stays the flat request list; the rest explains it
        report["wats"] = wats["requests"]
        report["wats_per_event"] = wats["per_event"]
        report["wats_placeholders"] = wats["placeholders"]
        if "error" in wats:
            report["wats_error"] = wats["error"]
    return report


def _message_report(m: DecodedMessage) -> dict[str, Any]:
    try:
        model: Any = parse_envelope(m.envelope).model_dump(mode="json", exclude_none=True)
    except Exception as exc:  # the typed view is informative only; events are what counts
        model = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "message_name": m.envelope.message_name,
        "envelope": m.envelope.to_dict(),
        "model": model,
        "events": [json.loads(e.to_json()) for e in m.events],
    }


def _hint(reason: str, label: str) -> str:
    """What the user can do about a quarantine reason."""
    if "without a message name" in reason:
        guess = _CFX_NAME_IN_TEXT.search(Path(label).name)
        example = guess.group(0) if guess else "CFX.Production.WorkStarted"
        return f" (a bare MessageBody: name it with --message-name, e.g. --message-name {example})"
    return ""


# ---------------------------------------------------------------- rendering


def _print_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):  # e.g. an ASCII-only locale: escape, stay valid JSON
        text = json.dumps(data, indent=2, ensure_ascii=True, default=str)
    sys.stdout.write(text + "\n")


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _emit(render: Callable[[Any], None]) -> None:
    """Render to stdout without the trailing blanks rich pads wrapped lines with."""
    console = _console()
    with console.capture() as captured:
        render(console)
    text = "".join(line.rstrip() + "\n" for line in captured.get().splitlines())
    encoding = sys.stdout.encoding or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):  # a terminal that cannot show a character gets "?"
        text = text.encode(encoding, "replace").decode(encoding)
    sys.stdout.write(text)


def _say(console: Any, text: str, indent: int = 0, style: str = "") -> None:
    """A line that wraps onto indented continuation lines (never cropped)."""
    from rich.padding import Padding
    from rich.text import Text

    console.print(Padding(Text(text, style=style, overflow="fold"), (0, 0, 0, indent), expand=False))


def _section(console: Any, title: str, body: Any) -> None:
    """A titled block; no frame, so the JSON in it can be copied as it is."""
    _say(console, title, 0, "bold")
    console.print(body, soft_wrap=True)  # long lines are left to the terminal: nothing cropped or split


def _json_view(data: Any) -> Any:
    """Highlighted JSON that wraps long strings instead of cropping them."""
    from rich.json import JSON

    view = JSON(json.dumps(data, ensure_ascii=False, default=str))
    view.text.no_wrap = False
    view.text.overflow = "fold"
    return view


def _raw_view(report: dict[str, Any]) -> Any:
    text: bytes = report["_text"]
    try:
        return _json_view(json.loads(text.decode("utf-8")))
    except Exception:  # not JSON: shown below as text or bytes
        pass
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data, {len(text)} bytes, starting {text[:32].hex(' ')}"
    shown = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in decoded[:_RAW_TEXT_LIMIT])
    if len(decoded) > _RAW_TEXT_LIMIT:
        shown += f"\n[... {len(decoded) - _RAW_TEXT_LIMIT} more characters not shown]"
    from rich.text import Text

    return Text(shown, overflow="fold")


def _render(console: Any, report: dict[str, Any], *, show_raw: bool) -> None:
    from rich.text import Text

    enc = ", ".join(report["encoding"]) or ("plain" if report["_peeled"] else "not decoded")
    # the input may be a long path: left whole for the terminal to wrap, so it can be copied
    console.print(Text(f"{report['input']} ({report['bytes']} bytes, {enc})", style="bold"), soft_wrap=True)
    if show_raw:
        _section(console, "raw message", _raw_view(report))
    index = 0
    for m in report["messages"]:
        _section(console, f"decoded {m['message_name']}", _json_view(m["model"]))
        _say(console, f"domain events from {m['message_name']}: {len(m['events'])}", 0, "bold")
        for ev in m["events"]:
            meta = ev["metadata"]
            line = f"[{index}] {ev['event_type']}  key={meta.get('ordering_key')}  at {meta.get('timestamp')}"
            if (meta.get("extras") or {}).get("timestamp_missing"):
                line += " (the message has no timestamp: this is the time it was read)"
            _say(console, line, 2)
            summary = _summary(ev["payload"])
            if summary:
                _say(console, f"{summary}", 6)
            index += 1
        for ev in m["events"]:
            _section(console, f"event {ev['event_type']}", _json_view(ev))
    if "wats" in report:
        _render_wats(console, report)
    for q in report["quarantined"]:
        _say(console, f"quarantined ({q['bytes']} bytes): {q['reason']}", 0, "bold red")


def _render_wats(console: Any, report: dict[str, Any]) -> None:

    requests: list[dict[str, Any]] = report["wats"]
    placeholders: dict[str, Any] = report.get("wats_placeholders") or {}
    _say(console, "what WATS would receive", 0, "bold")
    if "wats_error" in report:
        _say(console, f"the WATS preview failed: {report['wats_error']}", 2, "red")
    for entry in report.get("wats_per_event", []):
        _say(console, f"event [{entry['event']}] {entry['event_type']}:", 2)
        if not entry["handlers"]:
            _say(console, "nothing: no WATS handler takes this event type", 6)
        elif not entry["requests"] and not entry["error"]:
            _say(console, f"nothing: {', '.join(entry['handlers'])} sends no request for it", 6)
        for i in entry["requests"]:
            _say(console, f"{_describe_request(requests[i])}", 6)
        if entry["error"]:
            _say(console, f"would be dead-lettered: {entry['error']}", 6, "red")
    if placeholders and any(r.get("placeholders") for r in requests):
        shown = ", ".join(f"{k}={v}" for k, v in placeholders.items())
        _say(
            console,
            "* placeholder: the preview has no plant configuration and no WATS to ask, so it uses "
            f"stand-ins ({shown}). The listener sends the part number, revision and process from its "
            "configuration (products, stations, processes) or from WATS.",
            2,
            "yellow",
        )
    if requests:
        _say(
            console,
            "WATS answers are simulated as from a fresh server: no units exist yet, every asset is "
            "registered (asset ids are made up), no processes are defined.",
            2,
        )
    for i, r in enumerate(requests):
        body = {k: v for k, v in r.items() if k != "placeholders"}
        _section(console, f"request {i}: {r.get('method')} {r.get('path')}", _json_view(body))


def _describe_request(r: dict[str, Any]) -> str:
    """One line a test engineer can read: the call, and the fields that matter to WATS."""
    marked = set(r.get("placeholders") or [])
    params: dict[str, Any] = r["params"] if isinstance(r.get("params"), dict) else {}
    body: dict[str, Any] = r["json"] if isinstance(r.get("json"), dict) else {}

    def show(section: str, data: dict[str, Any], keys: Sequence[str]) -> list[str]:
        out = []
        for key in keys:
            if key in data and data[key] not in (None, ""):
                star = "*" if f"{section}.{key}" in marked else ""
                out.append(f"{key}={data[key]}{star}")
        return out

    head = f"{r.get('method')} {r.get('path')}{'*' if 'path' in marked else ''}"
    if r.get("operation"):
        head += f" ({r['operation']})"
    fields = show("params", params, ("serialNumber", "partNumber", "phase", "processCode", "comment"))
    if "root" in body:  # a WSJF report
        kind = {"T": "UUT report", "R": "repair report"}.get(str(body.get("type")), "report")
        fields += [kind]
        fields += show(
            "json", body, ("sn", "pn", "rev", "processCode", "result", "machineName", "location", "start")
        )
        steps = body["root"].get("steps") if isinstance(body["root"], dict) else None
        if isinstance(steps, list):
            fields.append(f"steps={len(steps)}")
    else:
        fields += show(
            "json", body, ("serialNumber", "partNumber", "revision", "currentLocation", "assetId", "comment")
        )
    return "  ".join([head, *fields])


_SUMMARY_KEYS = (
    "unit_serial",
    "result",
    "method",
    "old_state",
    "new_state",
    "new_state_code",
    "fault_code",
    "severity",
    "material_serial",
    "part_number",
    "location",
    "reason",
    "work_order",
)


def _summary(p: dict[str, Any]) -> str:
    parts = [f"{key}={p[key]}" for key in _SUMMARY_KEYS if p.get(key) not in (None, "")]
    if isinstance(p.get("tests"), list):
        n = sum(len(t.get("measurements", [])) for t in p["tests"] if isinstance(t, dict))
        parts.append(f"tests={len(p['tests'])} measurements={n}")
    if isinstance(p.get("materials"), list):
        parts.append(f"materials={len(p['materials'])}")
    return " ".join(parts)


def _public(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def _render_list(console: Any, rows: list[dict[str, Any]]) -> None:

    _say(
        console,
        f"{len(rows)} bundled CFX samples (show one with --sample NAME, what it becomes with --convert NAME)",
        0,
        "bold",
    )
    for r in rows:
        _say(console, "")
        _say(console, r["name"], style="bold")
        _say(console, f"{r['message_name']}", 4)
        if r["description"]:
            _say(console, f"{r['description']}", 4)


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pywats_cfx.explorer",
        description="Show what a CFX message decodes into: raw message, typed model, domain events "
        "and the requests WATS would receive (an offline preview: values marked * are placeholders).",
        epilog="Exit status: 0 when everything decoded, 1 for an unknown sample, an unreadable file or "
        "input that could not be decoded (the reason is on stderr), 2 for wrong arguments.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the bundled samples")
    what.add_argument(
        "--sample", metavar="NAME", help="show a bundled sample in full: raw, decoded model, events, WATS"
    )
    what.add_argument(
        "--convert",
        metavar="NAME",
        help="what a bundled sample becomes: decoded model, domain events, WATS requests (no raw message)",
    )
    what.add_argument(
        "--file",
        metavar="PATH",
        type=Path,
        help="a captured message: gzipped or not, AMQP 1.0 framed or not, an envelope, a JSON array of "
        "envelopes or a bare MessageBody",
    )
    p.add_argument(
        "--message-name",
        metavar="NAME",
        help="message name for a bare MessageBody without $type, e.g. CFX.Production.WorkStarted",
    )
    p.add_argument("--topic", metavar="TOPIC", help="the routing key / topic the message arrived on")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout (errors on stderr)")
    return p


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_FAILED


def _read_capture(path: Path, codec: CFXCodec) -> bytes | dict[str, Any] | str:
    """The file's bytes; a report when it is too big to decode; an error message when unreadable."""
    try:
        if path.is_dir():
            return f"{path} is a directory: give one captured message file"
        size = path.stat().st_size
        limit = codec.limits.max_compressed_bytes
        if size > limit:  # refuse before reading, like the codec would after
            reason = f"body of {size} bytes exceeds the {limit}-byte limit"
            return {
                "input": str(path),
                "bytes": size,
                "encoding": [],
                "messages": [],
                "quarantined": [{"reason": reason, "bytes": size}],
            }
        return path.read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    codec = CFXCodec()
    if args.list:
        rows = []
        for name in list_samples():
            env = json.loads(load_sample(name))
            rows.append(
                {
                    "name": name,
                    "message_name": env.get("MessageName"),
                    "description": SAMPLE_DESCRIPTIONS.get(name, ""),
                }
            )
        if args.json:
            _print_json(rows)
        else:
            _emit(lambda console: _render_list(console, rows))
        return EXIT_OK

    if args.file is not None:
        label = str(args.file)
        capture = _read_capture(args.file, codec)
        if isinstance(capture, str):
            return _fail(capture)
        if isinstance(capture, dict):
            report: dict[str, Any] = capture
            if args.json:
                _print_json(report)
            else:
                _emit(lambda console: _say(console, f"{label} ({report['bytes']} bytes): too big, not read"))
            return _fail(f"{label}: could not decode: {report['quarantined'][0]['reason']}")
        raw = capture
    else:
        name = args.sample or args.convert
        try:
            raw = load_sample(name)
        except UnknownSampleError as exc:
            return _fail(str(exc))
        label = f"sample {name}"

    report = _report(label, raw, codec, args.message_name, args.topic)
    if args.json:
        _print_json(_public(report))
    else:
        show_raw = args.convert is None
        _emit(lambda console: _render(console, report, show_raw=show_raw))
    if report["quarantined"]:
        reasons = "; ".join(q["reason"] + _hint(q["reason"], label) for q in report["quarantined"])
        return _fail(f"{label}: could not decode: {reasons}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
