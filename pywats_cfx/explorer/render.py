"""The explorer's two views of a report: JSON-ready data (``--json``) and text for people.

Text never crops: long values wrap, so message names, serials and limits are shown in full on any
terminal width; a preview's values marked ``*`` are stand-ins. Writing to stdout is the CLI's business.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.json import JSON
from rich.padding import Padding
from rich.text import Text

from pywats_events import Event
from pywats_events.plugins import PREVIEWS

from ..models import to_wire
from .conformance import ConformanceReport, Finding, MessageConformance
from .live import LiveLine
from .report import ExplorerReport, MessageReport, PreviewReport, SampleInfo

__all__ = [
    "conformance_to_json",
    "live_line_to_json",
    "render_conformance",
    "render_live_line",
    "render_report",
    "render_samples",
    "report_to_json",
    "samples_to_json",
]

_RAW_TEXT_LIMIT = 4000

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


# ---------------------------------------------------------------- JSON


def samples_to_json(samples: Sequence[SampleInfo]) -> list[dict[str, Any]]:
    return [{"name": s.name, "message_name": s.message_name, "description": s.description} for s in samples]


def report_to_json(report: ExplorerReport) -> dict[str, Any]:
    """The report as ``--json`` writes it; a preview plugin ``NAME`` adds the keys ``NAME`` (the flat
    request list), ``NAME_per_event``, ``NAME_placeholders`` and, when it failed, ``NAME_error``."""
    data: dict[str, Any] = {
        "input": report.label,
        "bytes": report.size,
        "encoding": list(report.encoding),
        "messages": [_message_json(m) for m in report.messages],
        "quarantined": [{"reason": q.reason, "bytes": q.size} for q in report.quarantined],
    }
    for preview in report.previews:
        requests: list[dict[str, Any]] = []
        per_event: list[dict[str, Any]] = []
        for index, (event, outcome) in enumerate(preview.per_event):
            first = len(requests)
            requests += [{**r.data, "placeholders": list(r.placeholders)} for r in outcome.requests]
            per_event.append(
                {
                    "event": index,
                    "event_type": str(event.event_type),
                    "handlers": list(outcome.handlers),
                    "requests": list(range(first, len(requests))),
                    "error": outcome.error,
                }
            )
        data[preview.name] = requests
        data[f"{preview.name}_per_event"] = per_event
        data[f"{preview.name}_placeholders"] = dict(preview.placeholders)
        if preview.error is not None:
            data[f"{preview.name}_error"] = preview.error
    return data


def _message_json(m: MessageReport) -> dict[str, Any]:
    return {
        "message_name": m.message_name,
        "envelope": m.envelope.to_dict(),
        "model": _model_json(m),
        "events": [_event_json(e) for e in m.events],
    }


def _model_json(m: MessageReport) -> dict[str, Any]:
    if m.model is None:
        return {"error": m.model_error}
    wire: dict[str, Any] = to_wire(m.model)
    return wire


def _event_json(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.to_json())
    return data


def conformance_to_json(report: ConformanceReport) -> dict[str, Any]:
    """The ``--check --json`` document: per message its findings, then the count per kind."""
    return {
        "clean": report.clean,
        "messages": [
            {
                "input": m.label,
                "message_name": m.message_name,
                "body_checked": m.body_checked,
                "findings": [_finding_json(f) for f in m.findings],
            }
            for m in report.messages
        ],
        "counts": report.counts(),
    }


def _finding_json(f: Finding) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": f.kind.value, "path": f.path, "detail": f.detail}
    if f.suggestion is not None:
        data["suggestion"] = f.suggestion
    return data


# ---------------------------------------------------------------- text


def render_samples(samples: Sequence[SampleInfo]) -> str:
    """The ``--list`` text."""

    def draw(console: Console) -> None:
        _say(
            console,
            f"{len(samples)} bundled CFX samples (show one with --sample NAME, what it becomes with "
            "--convert NAME)",
            0,
            "bold",
        )
        for s in samples:
            _say(console, "")
            _say(console, s.name, style="bold")
            _say(console, f"{s.message_name}", 4)
            if s.description:
                _say(console, s.description, 4)

    return _draw(draw)


def render_conformance(report: ConformanceReport) -> str:
    """The ``--check`` text: the messages that deviate with their findings, then a summary."""

    def draw(console: Console) -> None:
        deviating = [m for m in report.messages if m.findings]
        for m in deviating:
            _render_deviating(console, m)
        unchecked = sum(1 for m in report.messages if not m.body_checked and not m.findings)
        total = sum(len(m.findings) for m in deviating)
        summary = f"{len(report.messages)} messages checked: " + (
            f"{len(deviating)} deviate from CFX ({total} findings)" if deviating else "all conform to CFX"
        )
        _say(console, summary, 0, "bold" if deviating else "bold green")
        if deviating:
            counts = ", ".join(f"{kind} {n}" for kind, n in report.counts().items() if n)
            _say(console, counts, 2)
        if unchecked:
            _say(
                console,
                f"{unchecked} of them are CFX messages whose properties the definitions do not describe: "
                "only their envelope was checked",
                2,
            )

    return _draw(draw)


def render_live_line(line: LiveLine, number: int) -> str:
    """One line per message: its number (for its detail), time, source, message name, units, result,
    size (text for people)."""
    units = ",".join(line.units) if line.units else "-"
    what = f"error: {line.error}" if line.error else f"units={units}  result={line.result or '-'}"
    stamp = line.received_at.astimezone().strftime("%H:%M:%S.%f")[:-3]
    return f"#{number}  {stamp}  {line.source}  {line.message_name}  {what}  {line.size} B\n"


def live_line_to_json(line: LiveLine, number: int) -> dict[str, Any]:
    return {
        "number": number,
        "received_at": line.received_at.isoformat(),
        "source": line.source,
        "message_name": line.message_name,
        "units": list(line.units),
        "result": line.result,
        "bytes": line.size,
        "error": line.error,
    }


def _render_deviating(console: Console, m: MessageConformance) -> None:
    _say(console, f"{m.label}  {m.message_name or '(no message name)'}", 0, "bold")
    for f in m.findings:
        hint = f" (did you mean {f.suggestion}?)" if f.suggestion else ""
        where = f"{f.path}: " if f.path else ""
        _say(console, f"{f.kind.value}  {where}{f.detail}{hint}", 2, "yellow")


def render_report(report: ExplorerReport, *, show_raw: bool) -> str:
    """The report for people: the raw message when `show_raw`, then models, events, previews, problems."""
    return _draw(lambda console: _render_report(console, report, show_raw=show_raw))


def _draw(draw: Callable[[Console], None]) -> str:
    """What `draw` prints, without the trailing blanks rich pads wrapped lines with."""
    console = Console(highlight=False)
    with console.capture() as captured:
        draw(console)
    return "".join(line.rstrip() + "\n" for line in captured.get().splitlines())


def _say(console: Console, text: str, indent: int = 0, style: str = "") -> None:
    """A line that wraps onto indented continuation lines (never cropped)."""
    console.print(Padding(Text(text, style=style, overflow="fold"), (0, 0, 0, indent), expand=False))


def _section(console: Console, title: str, body: RenderableType) -> None:
    """A titled block; no frame, so the JSON in it can be copied as it is."""
    _say(console, title, 0, "bold")
    console.print(body, soft_wrap=True)  # long lines are left to the terminal: nothing cropped or split


def _json_view(data: Any) -> JSON:
    """Highlighted JSON that wraps long strings instead of cropping them."""
    view = JSON(json.dumps(data, ensure_ascii=False, default=str))
    view.text.no_wrap = False
    view.text.overflow = "fold"
    return view


def _raw_view(text: bytes) -> RenderableType:
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
    return Text(shown, overflow="fold")


def _render_report(console: Console, report: ExplorerReport, *, show_raw: bool) -> None:
    if report.text is None:
        _say(console, f"{report.label} ({report.size} bytes): too big, not read")
        return
    enc = ", ".join(report.encoding) or ("plain" if report.peeled else "not decoded")
    # the input may be a long path: left whole for the terminal to wrap, so it can be copied
    console.print(Text(f"{report.label} ({report.size} bytes, {enc})", style="bold"), soft_wrap=True)
    if show_raw:
        _section(console, "raw message", _raw_view(report.text))
    index = 0
    for m in report.messages:
        _section(console, f"decoded {m.message_name}", _json_view(_model_json(m)))
        _say(console, f"domain events from {m.message_name}: {len(m.events)}", 0, "bold")
        events = [_event_json(e) for e in m.events]
        for ev in events:
            meta = ev["metadata"]
            line = f"[{index}] {ev['event_type']}  key={meta.get('ordering_key')}  at {meta.get('timestamp')}"
            if (meta.get("extras") or {}).get("timestamp_missing"):
                line += " (the message has no timestamp: this is the time it was read)"
            _say(console, line, 2)
            summary = _summary(ev["payload"])
            if summary:
                _say(console, summary, 6)
            index += 1
        for ev in events:
            _section(console, f"event {ev['event_type']}", _json_view(ev))
    if report.events and not report.previews:
        _say(
            console,
            "what handlers would send: not shown, no preview plugin is installed "
            f"(entry point group {PREVIEWS})",
            0,
            "bold",
        )
    for preview in report.previews:
        _render_preview(console, preview)
    for q in report.quarantined:
        _say(console, f"quarantined ({q.size} bytes): {q.reason}", 0, "bold red")


def _render_preview(console: Console, preview: PreviewReport) -> None:
    target = preview.target
    _say(console, f"what {target} would receive", 0, "bold")
    if preview.error is not None:
        _say(console, f"the {target} preview failed: {preview.error}", 2, "red")
    for index, (event, outcome) in enumerate(preview.per_event):
        _say(console, f"event [{index}] {event.event_type!s}:", 2)
        if not outcome.handlers:
            _say(console, f"nothing: no {target} handler takes this event type", 6)
        elif not outcome.requests and not outcome.error:
            _say(console, f"nothing: {', '.join(outcome.handlers)} sends no request for it", 6)
        for r in outcome.requests:
            _say(console, r.summary, 6)
        if outcome.error:
            _say(console, f"would be dead-lettered: {outcome.error}", 6, "red")
    requests = [r for _, outcome in preview.per_event for r in outcome.requests]
    if preview.placeholder_note and any(r.placeholders for r in requests):
        _say(console, f"* placeholder: {preview.placeholder_note}", 2, "yellow")
    if requests and preview.note:
        _say(console, preview.note, 2)
    for i, r in enumerate(requests):
        _section(console, f"request {i}: {r.method} {r.path}", _json_view(r.data))


def _summary(p: dict[str, Any]) -> str:
    parts = [f"{key}={p[key]}" for key in _SUMMARY_KEYS if p.get(key) not in (None, "")]
    if isinstance(p.get("tests"), list):
        n = sum(len(t.get("measurements", [])) for t in p["tests"] if isinstance(t, dict))
        parts.append(f"tests={len(p['tests'])} measurements={n}")
    if isinstance(p.get("materials"), list):
        parts.append(f"materials={len(p['materials'])}")
    return " ".join(parts)
