"""What WATS would receive: run the handlers against a recording sink, without any server.

`RecordingSink` keeps every request and answers from a small simulation (unknown units → 404, assets
known with a synthetic id, empty process list), so the request sequence is the one a real first
delivery produces. `preview_requests` uses offline placeholder resolution (see `preview_config`) unless
given a configuration; used by the CFX explorer and by tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from pywats_events import Event
from pywats_events._handlers import resolve_event_types

from ._exceptions import WatsPermanentError
from .config import WatsHandlersConfig
from .factory import create_handlers
from .wats._request import WatsRequest, WatsResponse

__all__ = [
    "PreviewItem",
    "RecordingSink",
    "apreview",
    "preview",
    "preview_config",
    "preview_placeholders",
    "preview_requests",
    "simulated_response",
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
