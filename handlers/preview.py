"""What WATS would receive: run the handlers against a recording sink, without any server.

`RecordingSink` keeps every request and answers from a small simulation (unknown units → 404, assets
known with a synthetic id, empty process list), so the request sequence is the one a real first
delivery produces. `preview_requests` uses offline placeholder resolution (see `preview_config`) unless
given a configuration; used by tests. `wats_preview` offers the same dry run to tools through the core's
``pywats_events.previews`` entry point group (the CFX explorer shows it as "what WATS would receive"), with
each request summed up in one line and the placeholder values it carries marked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pywats_events import Event, resolve_event_types
from pywats_events.previews import Preview, PreviewOutcome, PreviewRequest

from ._exceptions import WatsPermanentError
from .config import WatsHandlersConfig
from .factory import create_handlers
from .wats.sink import WatsRequest, WatsResponse

__all__ = [
    "PreviewItem",
    "RecordingSink",
    "apreview",
    "preview",
    "preview_config",
    "preview_placeholders",
    "preview_requests",
    "simulated_response",
    "wats_preview",
]

Responder = Callable[[WatsRequest], "WatsResponse | Awaitable[WatsResponse]"]
_ASSET_NAMESPACE = uuid.UUID("0c7f4a2b-91d3-4e55-8f0a-6b2d9e1c3a77")


def simulated_response(request: WatsRequest) -> WatsResponse:
    """A plausible answer for a fresh WATS: no units, every asset registered, no processes."""
    path = request.path
    if request.method == "GET":
        if path.startswith("/api/Production/Unit/Query"):
            return WatsResponse(200, [])
        if path.startswith("/api/Production/Unit/"):
            raise WatsPermanentError(f"GET {path}: WATS answered 404: unit not found", status=404)
        if path.startswith("/api/Asset/"):
            serial = path.rsplit("/", 1)[-1]
            asset_id = str(uuid.uuid5(_ASSET_NAMESPACE, serial))
            return WatsResponse(200, {"assetId": asset_id, "serialNumber": serial})
        if path == "/api/App/Processes":
            return WatsResponse(200, [])
        return WatsResponse(200, None)
    if path == "/api/Report/WSJF":
        return WatsResponse(200, {"ID": (request.json or {}).get("id")})
    return WatsResponse(200, None)


class RecordingSink:
    """A `RequestSink` that records requests; answers come from `responder` (default: the simulation).
    A responder may raise `WatsTransientError` / `WatsPermanentError` to play an unhappy server."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.requests: list[WatsRequest] = []
        self.responder: Responder = responder or simulated_response
        self.closed = False

    async def send(self, request: WatsRequest) -> WatsResponse:
        self.requests.append(request)
        answer = self.responder(request)
        if isinstance(answer, WatsResponse):
            return answer
        return await answer

    async def aclose(self) -> None:
        self.closed = True

    def writes(self) -> list[WatsRequest]:
        """The requests that change WATS (everything but GET)."""
        return [r for r in self.requests if r.method != "GET"]

    def clear(self) -> None:
        self.requests.clear()


def preview_config(**overrides: object) -> WatsHandlersConfig:
    """Offline resolution defaults for previews: placeholder part number ``PREVIEW-PN`` rev ``A``,
    process code 100 when nothing maps, asset serial = last segment of the CFX handle."""
    values: dict[str, object] = {
        "default_part_number": "PREVIEW-PN",
        "default_revision": "A",
        "default_process_code": 100,
        "asset_serial_from_handle": True,
        "location": "Preview",
        "lookup_part_number": False,
        "lookup_processes": False,
    }
    values.update(overrides)
    return WatsHandlersConfig.model_validate(values)


def preview_placeholders(config: WatsHandlersConfig | None = None) -> dict[str, object]:
    """The defaults a preview falls back to, by WATS field name (``partNumber``, ``revision``,
    ``processCode``, ``location``): a request carrying one of these values shows a stand-in, not a value
    the listener would send once the plant's configuration or WATS supplies the real one."""
    cfg = config or preview_config()
    values: dict[str, object | None] = {
        "partNumber": cfg.default_part_number,
        "revision": cfg.default_revision,
        "processCode": cfg.default_process_code,
        "location": cfg.location,
    }
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class PreviewItem:
    event: Event
    requests: list[WatsRequest] = field(default_factory=list)
    #: why the event would be dead-lettered (e.g. a `ResolutionError`), else None
    error: str | None = None
    #: names of the handlers that take this event type (empty: WATS never hears of it)
    handlers: list[str] = field(default_factory=list)


async def apreview(
    events: Iterable[Event], config: WatsHandlersConfig | None = None, sink: RecordingSink | None = None
) -> list[PreviewItem]:
    """Per event: the requests the handlers would send, or the error that would dead-letter it."""
    sink = sink or RecordingSink()
    handlers = create_handlers(config or preview_config(), sink)
    for h in handlers:
        await h.on_start()  # type: ignore[misc]
    items = []
    for event in events:
        item = PreviewItem(event)
        for h in handlers:
            if str(event.event_type) not in resolve_event_types(h):
                continue
            item.handlers.append(h.name)
            start = len(sink.requests)
            try:
                await h.handle(event)  # type: ignore[misc]
            except Exception as exc:
                item.error = f"{h.name}: {type(exc).__name__}: {exc}"
            item.requests += sink.requests[start:]
        items.append(item)
    return items


def preview(events: Iterable[Event], config: WatsHandlersConfig | None = None) -> list[PreviewItem]:
    """Synchronous `apreview` (not from inside a running event loop)."""
    return asyncio.run(apreview(list(events), config))


def preview_requests(events: Iterable[Event], config: WatsHandlersConfig | None = None) -> list[WatsRequest]:
    """Every request WATS would receive for these events, in order."""
    return [r for item in preview(events, config) for r in item.requests]


#: WATS field names (as `preview_placeholders` gives them) → the request keys that carry them
_PLACEHOLDER_KEYS: dict[str, tuple[str, ...]] = {
    "partNumber": ("pn", "partNumber"),
    "revision": ("rev", "revision"),
    "processCode": ("processCode",),
    "location": ("location", "currentLocation"),
}


def wats_preview() -> Preview:
    """The ``pywats_events.previews`` plugin: `preview` with the offline defaults, requests summed up."""
    placeholders = preview_placeholders()
    shown = ", ".join(f"{k}={v}" for k, v in placeholders.items())

    def run(events: Sequence[Event]) -> list[PreviewOutcome]:
        return [
            PreviewOutcome(
                handlers=tuple(item.handlers),
                requests=tuple(_preview_request(r, placeholders) for r in item.requests),
                error=item.error,
            )
            for item in preview(events)
        ]

    return Preview(
        target="WATS",
        run=run,
        placeholders=placeholders,
        placeholder_note=f"the preview has no plant configuration and no WATS to ask, so it uses stand-ins "
        f"({shown}). The listener sends the part number, revision and process from its configuration "
        "(products, stations, processes) or from WATS.",
        note="WATS answers are simulated as from a fresh server: no units exist yet, every asset is "
        "registered (asset ids are made up), no processes are defined.",
    )


def _preview_request(request: WatsRequest, placeholders: Mapping[str, object]) -> PreviewRequest:
    data: dict[str, Any] = _json_ready(dataclasses.asdict(request))
    marked = _placeholders_in(data, placeholders)
    return PreviewRequest(
        method=request.method,
        path=request.path,
        summary=_describe_request(data, marked),
        data=data,
        placeholders=tuple(marked),
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _placeholders_in(request: dict[str, Any], placeholders: Mapping[str, object]) -> list[str]:
    """Where a request carries a preview stand-in, as ``json.pn`` / ``params.partNumber`` / ``path``."""
    found: list[str] = []
    for section in ("params", "json"):
        data = request.get(section)
        if not isinstance(data, dict):
            continue
        for name, value in placeholders.items():
            for key in _PLACEHOLDER_KEYS.get(name, (name,)):
                if key in data and data[key] == value:
                    found.append(f"{section}.{key}")
    pn = placeholders.get("partNumber")
    if isinstance(pn, str) and pn and f"/{pn}" in str(request.get("path", "")):
        found.append("path")
    return found


def _describe_request(r: dict[str, Any], marked: Sequence[str]) -> str:
    """One line a test engineer can read: the call, and the fields that matter to WATS (``*``: a stand-in)."""
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
