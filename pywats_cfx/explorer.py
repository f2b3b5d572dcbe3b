"""CFX explorer: what does a CFX message become?

    python -m pywats_cfx.explorer --list
    python -m pywats_cfx.explorer --sample units_tested_fct      # raw, decoded model, events, WATS preview
    python -m pywats_cfx.explorer --convert units_tested_fct     # events (and WATS preview) only
    python -m pywats_cfx.explorer --file capture.bin [--message-name CFX.Production.WorkCompleted]
    ... --json                                                   # machine-readable

"What WATS would receive" comes from the WATS handlers package when it is installed and offers
``handlers.preview.preview_requests(events)``; without it that section is left out. The import happens
only when needed, so this package never depends on WATS code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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


def _load_preview() -> Callable[[Sequence[Event]], Any] | None:
    try:
        from handlers.preview import preview_requests
    except Exception:  # absent or broken: the explorer works without it
        return None
    return preview_requests


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


def _wats_preview(events: list[Event]) -> tuple[bool, Any]:
    preview = _load_preview()
    if preview is None:
        return False, None
    try:
        return True, _plain(preview(events))
    except Exception as exc:  # a preview bug must not hide the decoded message
        return True, {"error": f"{type(exc).__name__}: {exc}"}


def _report(
    label: str, raw: bytes, codec: CFXCodec, message_name: str | None, topic: str | None
) -> dict[str, Any]:
    messages, quarantined = codec.decode_messages(raw, None, topic, message_name=message_name)
    try:
        text, layers = unwrap(raw, None, codec.limits)
    except WireError:
        text, layers = raw, []
    events = [e for m in messages for e in m.events]
    report: dict[str, Any] = {
        "input": label,
        "bytes": len(raw),
        "encoding": layers,
        "messages": [_message_report(m) for m in messages],
        "quarantined": [{"reason": q.reason, "bytes": len(q.raw)} for q in quarantined],
        "_text": text,
        "_events": events,
    }
    shown, wats = _wats_preview(events) if events else (False, None)
    if shown:
        report["wats"] = wats
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


# ---------------------------------------------------------------- rendering


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _render(report: dict[str, Any], *, show_raw: bool, show_model: bool) -> None:
    from rich.console import Console
    from rich.json import JSON
    from rich.panel import Panel
    from rich.table import Table

    console = Console()
    enc = ", ".join(report["encoding"]) or "plain"
    console.rule(f"[bold]{report['input']}[/] ({report['bytes']} bytes, {enc})")
    if show_raw:
        text = report["_text"]
        try:
            raw_view: Any = JSON(text.decode("utf-8"))
        except Exception:  # not JSON: show it as text
            raw_view = text.decode("utf-8", "replace")[:4000]
        console.print(Panel(raw_view, title="raw message"))
    for m in report["messages"]:
        if show_model:
            console.print(
                Panel(JSON(json.dumps(m["model"], default=str)), title=f"decoded {m['message_name']}")
            )
        table = Table(title=f"domain events from {m['message_name']}", show_lines=False)
        for col in ("#", "type", "ordering key", "timestamp", "summary"):
            table.add_column(col)
        for i, ev in enumerate(m["events"]):
            p, meta = ev["payload"], ev["metadata"]
            table.add_row(
                str(i),
                ev["event_type"],
                str(meta.get("ordering_key")),
                str(meta.get("timestamp")),
                _summary(p),
            )
        console.print(table)
        for ev in m["events"]:
            console.print(Panel(JSON(json.dumps(ev, default=str)), title=ev["event_type"]))
    if "wats" in report:
        console.print(Panel(JSON(json.dumps(report["wats"], default=str)), title="what WATS would receive"))
    for q in report["quarantined"]:
        console.print(f"[bold red]quarantined[/] ({q['bytes']} bytes): {q['reason']}")


def _summary(p: dict[str, Any]) -> str:
    parts = []
    for key in ("unit_serial", "result", "method", "new_state", "fault_code", "material_serial", "reason"):
        if p.get(key) not in (None, ""):
            parts.append(f"{key}={p[key]}")
    if "tests" in p:
        n = sum(len(t.get("measurements", [])) for t in p["tests"])
        parts.append(f"tests={len(p['tests'])} measurements={n}")
    return " ".join(parts)


def _public(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if not k.startswith("_")}


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pywats_cfx.explorer",
        description="Show what a CFX message decodes into: raw message, typed model, domain events "
        "and the requests WATS would receive.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the bundled samples")
    what.add_argument("--sample", metavar="NAME", help="show a bundled sample in full")
    what.add_argument("--convert", metavar="NAME", help="show only the events a bundled sample becomes")
    what.add_argument(
        "--file", metavar="PATH", type=Path, help="a captured message (gzipped or not, envelope or body)"
    )
    p.add_argument("--message-name", metavar="NAME", help="message name for a bare MessageBody without $type")
    p.add_argument("--topic", metavar="TOPIC", help="the routing key / topic the message arrived on")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_FAILED


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
            from rich.console import Console
            from rich.table import Table

            table = Table(title="bundled CFX samples")
            for col in ("name", "message", "description"):
                table.add_column(col)
            for r in rows:
                table.add_row(r["name"], r["message_name"], r["description"])
            Console().print(table)
        return EXIT_OK

    if args.file is not None:
        try:
            raw = args.file.read_bytes()
        except OSError as exc:
            return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
        label = str(args.file)
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
        full = args.convert is None
        _render(report, show_raw=full, show_model=full)
    if report["quarantined"]:
        reasons = "; ".join(q["reason"] for q in report["quarantined"])
        return _fail(f"{label}: could not decode: {reasons}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
