"""The ASGI app of the webhook transport: ``POST /hooks/<name>[/<rest>]`` → codec → journal → ``202``.

The delivery contract (docs/operations.md, "Webhooks"):

* ``202 Accepted`` only once `TransportContext.submit` returned, i.e. the events are in the journal (the
  rule a broker ack follows); the body says how many events were accepted and how many were duplicates;
* ``400`` with the reason when nothing in the body can be decoded; the raw bytes are quarantined. A batch
  with some broken items is accepted (``202``) with the broken items quarantined and named in the body;
* ``401`` for a missing or wrong secret or a stale timestamp, ``404`` for an unknown hook;
* ``413`` above ``max_body_bytes``, or above ``max_inflated_bytes`` once gzip is inflated;
* ``429`` with ``Retry-After`` above ``max_concurrent`` requests, ``503`` with ``Retry-After`` while the
  journal or bus pushes back longer than ``accept_timeout`` or the listener is stopping;
* an ``Idempotency-Key`` header, and the events' ids (which the CFX codec derives from the envelope's
  UniqueID), make a retry after a lost response a no-op answered ``202``.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..._codec import Codec
from ..._event import Event
from ..._exceptions import BusStateError
from ...tracing import decode as traced_decode
from .._base import QuarantineRecord, TransportContext
from ._auth import SIGNATURE_HEADER, AuthError, HookAuth
from ._config import WebhookSettings
from ._idempotency import IdempotencyStore

__all__ = ["Hook", "WebhookApp"]

log = logging.getLogger("pywats_events.transports.webhook")

#: request headers never handed to a codec or kept in a quarantine record
_MAX_KEY = 256
_PRIVATE_HEADERS = frozenset({"authorization", SIGNATURE_HEADER, "cookie", "content-encoding"})


@dataclass
class Hook:
    """One configured hook: its codec and how its callers authenticate."""

    name: str
    codec: Codec
    auth: HookAuth
    #: the rest of the path is the topic a template codec extracts fields from
    template: bool = False
    message_name: str | None = None
    dedupe_events: bool = True


class _Refused(Exception):
    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class WebhookApp:
    """Builds the Starlette app; `context` is set once the transport started."""

    def __init__(
        self,
        settings: WebhookSettings,
        hooks: Mapping[str, Hook],
        store: IdempotencyStore,
        *,
        on_request: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.hooks = dict(hooks)
        self.store = store
        self.context: TransportContext | None = None
        self.stopping = asyncio.Event()
        self.active = 0
        self._on_request = on_request
        self.app = Starlette(routes=[Route("/hooks/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> JSONResponse:
        path: str = request.path_params["path"]
        name, _, rest = path.partition("/")
        try:
            if self.active >= self.settings.max_concurrent:
                raise _Refused(429, "too many requests in progress", self.settings.retry_after)
            self.active += 1
            try:
                response = await self._accept(request, name, rest)
            finally:
                self.active -= 1
        except _Refused as refused:
            headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after is not None else None
            response = JSONResponse({"error": refused.reason}, refused.status, headers=headers)
        if self._on_request is not None:
            self._on_request(name if name in self.hooks else "(unknown)", response.status_code)
        return response

    async def _accept(self, request: Request, name: str, rest: str) -> JSONResponse:
        hook = self.hooks.get(name)
        if hook is None:
            raise _Refused(404, f"unknown hook {name!r}")
        if self.stopping.is_set() or self.context is None:
            raise _Refused(503, "the listener is stopping", self.settings.retry_after)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not hook.auth.needs_body:
            self._authenticate(hook, headers, b"")
        raw = await self._read(request, headers)
        if hook.auth.needs_body:
            self._authenticate(hook, headers, raw)
        topic = rest if hook.template else path_topic(name, rest)
        safe = {k: v for k, v in headers.items() if k not in _PRIVATE_HEADERS}
        if hook.message_name and "cfx-message" not in safe:
            safe["cfx-message"] = hook.message_name
        try:
            body = self._inflate(raw) if "gzip" in headers.get("content-encoding", "").lower() else raw
        except ValueError as exc:
            await self._quarantine([QuarantineRecord(raw, str(exc), safe, "webhook", topic)])
            raise _Refused(400, str(exc)) from None
        result = traced_decode(hook.codec, body, safe, topic, transport="webhook")
        await self._quarantine(result.quarantined)
        reasons = [record.reason for record in result.quarantined]
        if not result.events:
            raise _Refused(400, "; ".join(reasons) or "the body holds no event")
        key = headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= _MAX_KEY:
            raise _Refused(400, f"Idempotency-Key must be 1 to {_MAX_KEY} characters")
        accepted, duplicates = await self._submit(hook, key, result.events)
        out: dict[str, Any] = {"accepted": accepted, "duplicates": duplicates}
        if reasons:
            out["quarantined"] = reasons
        return JSONResponse(out, 202)

    def _authenticate(self, hook: Hook, headers: Mapping[str, str], body: bytes) -> None:
        try:
            hook.auth.check(headers, body)
        except AuthError as exc:
            raise _Refused(401, str(exc)) from None

    async def _read(self, request: Request, headers: Mapping[str, str]) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Refused(413, f"body of {declared} bytes exceeds the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Refused(413, f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise _Refused(400, "the client went away before the body was read") from None
        return b"".join(chunks)

    def _inflate(self, raw: bytes) -> bytes:
        """Inflates gzip with a cap: a bomb is refused after inflating at most the cap, never in full."""
        limit = self.settings.max_inflated_bytes
        inflater = zlib.decompressobj(wbits=31)
        try:
            out = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise ValueError(f"Content-Encoding gzip, but the body is not gzip: {exc}") from None
        if len(out) > limit:
            raise _Refused(413, f"body inflates to more than the limit of {limit} bytes")
        if not inflater.eof:
            raise ValueError("Content-Encoding gzip, but the gzip stream is truncated")
        return out

    async def _quarantine(self, records: list[QuarantineRecord]) -> None:
        assert self.context is not None
        for record in records:
            try:
                await self.context.quarantine(record)
            except Exception as exc:
                log.exception("webhook: quarantine failed")
                raise _Refused(503, "the quarantine store failed", self.settings.retry_after) from exc

    async def _submit(self, hook: Hook, key: str | None, events: list[Event]) -> tuple[int, int]:
        """Submits the events not accepted before; (accepted, duplicates)."""
        request_key = f"request:{hook.name}:{key}" if key else None
        keys = [request_key] if request_key else []
        if hook.dedupe_events:
            keys += [f"event:{event.metadata.event_id}" for event in events]
        fresh = await self.store.claim(keys)
        try:
            if request_key is not None and request_key not in fresh:
                return 0, len(events)
            if hook.dedupe_events:
                new = set(fresh)
                todo = [e for e in events if f"event:{e.metadata.event_id}" in new]
            else:
                todo = events
            if todo:
                await self._submit_bounded(todo)
            self.store.remember(fresh)
            return len(todo), len(events) - len(todo)
        finally:
            self.store.release(fresh)

    async def _submit_bounded(self, events: list[Event]) -> None:
        """`submit`, given up after `accept_timeout` or when the listener stops (→ 503: retry later)."""
        assert self.context is not None
        submit = asyncio.ensure_future(self.context.submit(events))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {submit, stopping}, timeout=self.settings.accept_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
        if submit in done:
            exc = submit.exception()
            if exc is None:
                return
            if isinstance(exc, BusStateError):
                raise _Refused(503, f"the bus refused the events: {exc}", self.settings.retry_after)
            log.error("webhook: submit failed: %r", exc)
            raise _Refused(503, "the bus could not accept the events", self.settings.retry_after)
        submit.cancel()
        await asyncio.gather(submit, return_exceptions=True)
        if self.stopping.is_set():
            raise _Refused(503, "the listener is stopping", self.settings.retry_after)
        raise _Refused(
            503,
            f"the journal did not accept the events within {self.settings.accept_timeout:g} s",
            self.settings.retry_after,
        )


def path_topic(name: str, rest: str) -> str:
    """The topic a codec sees: ``<hook>`` or ``<hook>/<rest of the path>`` (``line1/CFX.Production.…``
    names a bare CFX body)."""
    return f"{name}/{rest}" if rest else name
