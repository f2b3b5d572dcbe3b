"""The console's ASGI app: pages (one static shell and its script), a JSON API, and the listener's
/healthz, /readyz and /metrics answered by its `HealthServer` exactly as before.

Reads are open (like /metrics); every POST is an action: it needs the token (bearer header, or the
session cookie set by /api/login together with the CSRF double submit) and a same-origin ``Origin``.
Each action, refused or done, is logged with the token's id."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..health import HealthServer
from ..logging_setup import redact
from .security import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, ConsoleGuard, is_loopback
from .source import ConsoleSource

__all__ = ["console_app"]

log = logging.getLogger("pywats_events.console")

STATIC = files("pywats_events.console") / "static"
#: the pages the shell renders (by path); plugin panels live under /panels/<name>
PAGES = ("/", "/dead-letters", "/quarantine", "/configuration")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Action = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=_SECURITY_HEADERS)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    if value.endswith("Z"):  # what a browser's toISOString gives; fromisoformat takes it from 3.11 on
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.astimezone()


def console_app(source: ConsoleSource, guard: ConsoleGuard, health: HealthServer) -> ASGIApp:
    """The app for one listener's `source`; `health` answers /healthz, /readyz and /metrics."""

    def health_route(request: Request) -> Response:
        status, ctype, body = health.respond(
            request.method, request.url.path, request.headers.get("accept", "")
        )
        return Response(body, status_code=int(status.split()[0]), media_type=ctype)

    def shell(request: Request) -> Response:
        response: Response = FileResponse(str(STATIC / "console.html"), headers=_SECURITY_HEADERS)
        if not request.cookies.get(CSRF_COOKIE):
            response.set_cookie(CSRF_COOKIE, guard.new_csrf(), httponly=False, samesite="strict")
        return response

    def meta(request: Request) -> Response:
        return _json(
            {
                "panels": [{"name": p.name, "title": p.title} for p in source.panels.values()],
                "writable": guard.writable,
                "signed_in": guard.session_ok(request.cookies.get(SESSION_COOKIE)),
                "live": source.listener is not None,
            }
        )

    def overview(request: Request) -> Response:
        return _json(source.overview())

    def dead_letters(request: Request) -> Response:
        q = request.query_params
        return _json(
            source.dead_letters(
                handler=q.get("handler") or None,
                event_type=q.get("event_type") or None,
                text=q.get("q") or None,
                since=_time(q.get("since")),
                until=_time(q.get("until")),
                offset=_int(q.get("offset"), 0),
                limit=_int(q.get("limit"), 50),
            )
        )

    def dead_letter(request: Request) -> Response:
        found = source.dead_letter(request.path_params["entry_id"])
        return _json(found) if found is not None else _json({"error": "no such dead letter"}, 404)

    def quarantine(request: Request) -> Response:
        q = request.query_params
        return _json(
            source.quarantined(
                reason=q.get("q") or None, offset=_int(q.get("offset"), 0), limit=_int(q.get("limit"), 50)
            )
        )

    def quarantined(request: Request) -> Response:
        found = source.quarantined_one(request.path_params["item_id"])
        return _json(found) if found is not None else _json({"error": "no such message"}, 404)

    def configuration(request: Request) -> Response:
        return _json(source.configuration())

    def panel(request: Request) -> Response:
        found = source.panels.get(request.path_params["name"])
        if found is None:
            return _json({"error": "no such panel"}, 404)
        view = found.view()
        return _json(
            json.loads(
                redact(
                    json.dumps(
                        {
                            "name": found.name,
                            "title": found.title,
                            "counts": dict(view.counts),
                            "columns": list(view.columns),
                            "rows": [dict(r) for r in view.rows],
                            "note": view.note,
                            "actions": [
                                {"name": n, "label": a.label, "confirm": a.confirm}
                                for n, a in found.actions.items()
                            ],
                        },
                        default=str,
                    )
                )
            )
        )

    # ------------------------------------------------------------------ actions
    def _ids(body: dict[str, Any]) -> list[str] | None:
        ids = body.get("ids")
        if body.get("all") is True:
            return None
        if not isinstance(ids, list) or not ids:
            raise ValueError("give ids (a non-empty list) or all: true")
        return [str(i) for i in ids][:10_000]

    async def replay(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        ids = _ids(body)
        if ids is None:
            ids = [e.id for e in source.parts.dlq.get_entries()]
        return await source.replay(ids)

    async def purge_dead_letters(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("confirm") is not True:
            raise ValueError("a purge needs confirm: true")
        return {"purged": await asyncio.to_thread(source.purge_dead_letters, _ids(body))}

    async def redecode(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        ids = _ids(body)
        if ids is None:
            ids = [str(q.id) for q in source.parts.quarantine.list(limit=10_000)]
        return await source.redecode([int(i) for i in ids])

    async def purge_quarantine(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("confirm") is not True:
            raise ValueError("a purge needs confirm: true")
        ids = _ids(body)
        numbers = None if ids is None else [int(i) for i in ids]
        return {"purged": await asyncio.to_thread(source.purge_quarantine, numbers)}

    async def panel_action(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        found = source.panels.get(request.path_params["name"])
        action = found.actions.get(request.path_params["action"]) if found else None
        if action is None:
            raise LookupError("no such panel action")
        return {"message": redact(await action.run())}

    def guarded(what: str, work: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            target = f"{what} {request.url.path}"
            refused = _refusal(request, guard)
            if refused is not None:
                status, reason = refused
                log.warning(
                    "console action refused (%s): %s from %s",
                    reason,
                    target,
                    request.client.host if request.client else "?",
                )
                return _json({"error": reason}, status)
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                body = {}
            if not isinstance(body, dict):
                body = {}
            try:
                result = await work(request, body)
            except (ValueError, LookupError) as exc:
                log.info("console action %s by %s rejected: %s", target, guard.token_id, exc)
                return _json({"error": str(exc)}, 400 if isinstance(exc, ValueError) else 404)
            log.info(
                "console action %s by %s: %s %s",
                target,
                guard.token_id,
                json.dumps({k: v for k, v in body.items() if k != "ids"}, default=str),
                redact(json.dumps(result, default=str))[:300],
            )
            return _json(result)

        return endpoint

    async def login(request: Request) -> Response:
        if not guard.origin_ok(request.headers.get("origin"), request.headers.get("host")):
            return _json({"error": "cross-site request"}, 403)
        if not guard.csrf_ok(request.cookies.get(CSRF_COOKIE), request.headers.get(CSRF_HEADER)):
            return _json({"error": "missing or wrong CSRF token"}, 403)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = {}
        presented = body.get("token") if isinstance(body, dict) else None
        if not guard.token_ok(presented if isinstance(presented, str) else None):
            log.warning("console sign-in refused: wrong or no token")
            return _json({"error": "wrong token" if guard.writable else "the console is read-only"}, 401)
        log.info("console sign-in with %s", guard.token_id)
        response = _json({"signed_in": True, "token_id": guard.token_id})
        response.set_cookie(SESSION_COOKIE, guard.session_value(), httponly=True, samesite="strict")
        return response

    routes = [
        *(Route(p, health_route, methods=["GET", "POST"]) for p in ("/healthz", "/readyz", "/metrics")),
        *(Route(p, shell) for p in PAGES),
        Route("/panels/{name}", shell),
        Route("/api/meta", meta),
        Route("/api/overview", overview),
        Route("/api/dead-letters", dead_letters),
        Route("/api/dead-letters/{entry_id}", dead_letter),
        Route("/api/quarantine", quarantine),
        Route("/api/quarantine/{item_id:int}", quarantined),
        Route("/api/configuration", configuration),
        Route("/api/panels/{name}", panel),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/actions/dead-letters/replay", guarded("replay", replay), methods=["POST"]),
        Route("/api/actions/dead-letters/purge", guarded("purge", purge_dead_letters), methods=["POST"]),
        Route("/api/actions/quarantine/redecode", guarded("re-decode", redecode), methods=["POST"]),
        Route("/api/actions/quarantine/purge", guarded("purge", purge_quarantine), methods=["POST"]),
        Route(
            "/api/actions/panels/{name}/{action}",
            guarded("panel action", panel_action),
            methods=["POST"],
        ),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes)
    if is_loopback(health.host):
        # against DNS rebinding: a page of another name resolving to 127.0.0.1 must not read the console
        return _LoopbackHostOnly(app)
    return app


_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]"}
_UNGUARDED = ("/healthz", "/readyz", "/metrics")


class _LoopbackHostOnly:
    """Answers 421 to a request whose Host header is not a loopback name (the health routes excepted)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _UNGUARDED:
            host = Headers(scope=scope).get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in _LOOPBACK_NAMES:
                response = PlainTextResponse("this console answers to loopback names only\n", 421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(request: Request, guard: ConsoleGuard) -> tuple[int, str] | None:
    """Why an action request is refused (status, reason), or None when it may go ahead."""
    if not guard.writable:
        return 403, "the console is read-only: no token is configured"
    if not guard.origin_ok(request.headers.get("origin"), request.headers.get("host")):
        return 403, "cross-site request"
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        # a header a cross-site page cannot send without a CORS preflight, which is never granted
        return None if guard.token_ok(auth[7:].strip()) else (401, "wrong token")
    if not guard.session_ok(request.cookies.get(SESSION_COOKIE)):
        return 401, "sign in with the console token first"
    if not guard.csrf_ok(request.cookies.get(CSRF_COOKIE), request.headers.get(CSRF_HEADER)):
        return 403, "missing or wrong CSRF token"
    return None
