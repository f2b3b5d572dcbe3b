"""`HttpSender`: carries `WatsRequest`s to a WATS server over httpx (keep-alive pool, rate limit, safe retry).

Error classification (what the bus sees):

* 2xx                                   → `WatsResponse`
* 408, 429, 5xx, timeout, connection    → `WatsTransientError` (429/503 carry `retry_after` from Retry-After)
* 401, 403                              → `WatsAuthError` (transient): a wrong token is a fault of the whole
  sink, not of the event, so events wait (deferred, behind the breaker) until the token is fixed;
  logged at ERROR once per spell of failures and never retried inside the sender
* other 4xx (400, 404, 409, 422, ...)   → `WatsPermanentError` with the server's message
* outcome unknown for a non-idempotent request → `WatsOutcomeUnknownError` (permanent, flagged)

Retrying. A few short retries happen here; after that the exception goes to the bus, whose retry/defer
policy takes over. What is retried depends on whether sending twice is harmless:

* idempotent requests (GET, absolute PUTs, the WSJF POST whose report id is deterministic) are retried
  on every transient failure;
* non-idempotent requests (`request.idempotent=False`, e.g. ``PUT /api/Asset/Count``) are retried only
  when the server provably did not act on them: the connection could not be opened, or the server
  answered 408/429/503 (it declined the request). When the request may have reached the server and no
  answer came back (read timeout, dropped connection, 500/502/504), the sender never resends it and
  raises `WatsOutcomeUnknownError` (`outcome_unknown` is True). Only the caller knows whether it can
  check WATS and resend safely: the WATS handlers do (they read the asset count, asset log or child
  units, and turn the error into a transient one with `as_transient()`, so an outage never
  dead-letters an event); a caller that cannot check (the outbox) sees a permanent error and keeps the
  request for a person rather than risk carrying it out twice.

The token is never put in logs, reprs or exception messages: it lives only in the client's default
headers, and any text that reaches an exception is scrubbed of it (a token shorter than
`MIN_SCRUB_LENGTH` only where it stands alone, so a test token like ``T`` does not mangle "POST").
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from pywats_events import ConfigurationError, tracing

from .._exceptions import WatsPermanentError, WatsTransientError
from .ratelimit import RateLimiter
from .sink import WatsRequest, WatsResponse

__all__ = ["MIN_SCRUB_LENGTH", "HttpSender", "WatsAuthError", "WatsOutcomeUnknownError", "parse_retry_after"]

log = logging.getLogger(__name__)

ENV_BASE_URL = "WATS_BASE_URL"
ENV_TOKEN = "WATS_AUTH_TOKEN"

#: statuses where the server declined to act, so even a non-idempotent request may be sent again
_DECLINED = frozenset({408, 429, 503})
_MESSAGE_KEYS = ("message", "Message", "error", "detail", "title")
_REDACTED = "***"
#: statuses that mean "the token is wrong or lacks rights": the sink's configuration, not the event
_AUTH = frozenset({401, 403})
#: tokens at least this long are scrubbed wherever they occur; shorter ones only where they stand alone
MIN_SCRUB_LENGTH = 8
_TOKEN_CHARS = "A-Za-z0-9+/=_-"
AUTH_HINT = "check WATS_AUTH_TOKEN / the token file: the WATS API token of a user with API rights"


class WatsOutcomeUnknownError(WatsPermanentError):
    """A non-idempotent request may or may not have been carried out (its answer was lost).

    Permanent by default, because resending blindly could count twice; a caller that can check WATS
    first turns it into a transient error with `as_transient()` (retried or deferred, never
    dead-lettered)."""

    outcome_unknown = True

    def as_transient(self) -> WatsTransientError:
        """The same failure as an outage: raise it (``from`` this error) once a later attempt is known
        to check WATS before sending the request again."""
        return WatsTransientError(f"{self}; WATS is checked before it is sent again", status=self.status)


class WatsAuthError(WatsTransientError):
    """WATS refused the credentials (401/403). Transient: every event would fail the same way, so the
    bus defers them until the token is fixed instead of dead-lettering them; push stops on it."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date. None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _normalise_base_url(value: str) -> str:
    """The server root: trailing ``/`` and a trailing ``/api`` are dropped (routes all start with /api)."""
    url = value.strip().rstrip("/")
    if url.lower().endswith("/api"):
        url = url[: -len("/api")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(ENV_BASE_URL, "must be an http(s) URL such as https://company.wats.com")
    if parts.username or parts.password:
        raise ConfigurationError(ENV_BASE_URL, "must not contain credentials; use the token setting")
    return url


def _normalise_token(value: str) -> str:
    token = value.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "basic":
        token = rest.strip()
    if not token:
        raise ConfigurationError(ENV_TOKEN, "is empty")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        # never echo the value: it is a secret
        raise ConfigurationError(ENV_TOKEN, "must be a base64 Basic token (printable ASCII, no spaces)")
    return token


class HttpSender:
    """A `RequestSink` talking to a real WATS server.

    `base_url`/`token` default to the ``WATS_BASE_URL`` / ``WATS_AUTH_TOKEN`` environment variables.
    `max_attempts` counts the in-sender attempts (1 = no retry); `max_retry_wait` is the longest wait
    (Retry-After or backoff) spent inside `send` before handing the failure to the bus instead.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        rate_limit_per_minute: float = 500,
        rate_limit_burst: int | None = None,
        max_connections: int = 20,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 4.0,
        max_retry_wait: float = 5.0,
        verify: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        raw_url = base_url if base_url is not None else os.environ.get(ENV_BASE_URL)
        if not raw_url:
            raise ConfigurationError(ENV_BASE_URL, "the WATS server URL is not set")
        raw_token = token if token is not None else os.environ.get(ENV_TOKEN)
        if not raw_token:
            raise ConfigurationError(ENV_TOKEN, "the WATS API token is not set")
        if not timeout > 0:
            raise ConfigurationError("timeout", f"must be > 0, got {timeout!r}")
        if max_attempts < 1:
            raise ConfigurationError("max_attempts", f"must be >= 1, got {max_attempts!r}")
        if max_connections < 1:
            raise ConfigurationError("max_connections", f"must be >= 1, got {max_connections!r}")
        self.base_url = _normalise_base_url(raw_url)
        self.__token = _normalise_token(raw_token)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_wait = max_retry_wait
        self.limiter = RateLimiter(rate_limit_per_minute, burst=rate_limit_burst)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Basic {self.__token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            follow_redirects=True,
            verify=verify,
            transport=transport,
        )
        self.max_connections = max_connections
        self._slots: asyncio.Semaphore | None = None
        self._closed = False
        #: in a spell of auth failures (logged once at ERROR until a request succeeds again)
        self._auth_failing = False
        self._short_token = (
            None
            if len(self.__token) >= MIN_SCRUB_LENGTH
            else re.compile(f"(?<![{_TOKEN_CHARS}]){re.escape(self.__token)}(?![{_TOKEN_CHARS}])")
        )

    def __repr__(self) -> str:
        return f"HttpSender(base_url={self.base_url!r}, token={_REDACTED!r})"

    async def __aenter__(self) -> HttpSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    # -- sending -----------------------------------------------------------------------------------

    async def send(self, request: WatsRequest) -> WatsResponse:
        if self._closed:
            raise WatsTransientError("the WATS sender is closed")
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(request)
            except WatsAuthError:
                raise  # the same token fails the same way; waiting is the bus's job
            except WatsTransientError as exc:
                if attempt >= self.max_attempts:
                    raise
                delay = self._retry_delay(attempt, exc.retry_after)
                if delay > self.max_retry_wait:
                    raise  # a long wait is the bus's job (defer), not a blocked handler's
                log.info(
                    "WATS %s %s: %s; retry %d/%d in %.2fs",
                    request.method,
                    request.path,
                    exc,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    async def _attempt(self, request: WatsRequest) -> WatsResponse:
        await self.limiter.acquire()
        what = f"{request.method} {request.path}"
        headers = {"Referer": self.base_url} if request.path.startswith("/api/internal/") else None
        try:
            content = None if request.json is None else json.dumps(request.json, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            # a bug upstream, not an outage: retrying cannot help (WSJF sends NaN/Infinity as strings)
            raise WatsPermanentError(f"{what}: the request body cannot be sent as JSON: {exc}") from None
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        attributes = {"http.request.method": request.method, "url.path": request.path}
        if request.operation:
            attributes["pywats.wats.operation"] = request.operation
        # one span per HTTP request (a no-op unless tracing), a child of the handler's span; WATS sees it
        # as the parent through `traceparent`
        with tracing.client_span(f"WATS {request.operation or request.method}", attributes) as span:
            trace_headers: dict[str, str] = {}
            span.inject(trace_headers)
            if trace_headers:
                headers = {**(headers or {}), **trace_headers}
            try:
                # callers beyond the pool size wait here, in order: httpcore's own pool queue costs
                # O(waiting x connections) per request and made throughput drop as concurrency grew
                async with self._slots:
                    response = await self._client.request(
                        request.method,
                        request.path,
                        params=_query_params(request.params),
                        content=content,
                        headers=headers,
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # the request never left this machine: safe to retry whatever it is
                raise WatsTransientError(
                    self._scrub(f"{what}: cannot reach WATS ({_describe(exc)})")
                ) from None
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                message = self._scrub(f"{what}: no answer from WATS ({_describe(exc)})")
                if not request.idempotent:
                    raise WatsOutcomeUnknownError(_unknown(message)) from None
                raise WatsTransientError(message) from None
            except httpx.HTTPError as exc:
                raise WatsPermanentError(self._scrub(f"{what}: {_describe(exc)}")) from None
            span.set_attribute("http.response.status_code", response.status_code)
            return self._classify(request, response)

    def _classify(self, request: WatsRequest, response: httpx.Response) -> WatsResponse:
        status = response.status_code
        body: Any = None
        text = response.text
        if text:
            try:
                body = response.json()
            except ValueError:
                body = None
        if 200 <= status < 300:
            if self._auth_failing:
                self._auth_failing = False
                log.info("WATS accepts the API token again")
            return WatsResponse(status=status, json=body, text=text)
        detail = self._scrub(_server_message(body, text) or response.reason_phrase or "no message")
        message = f"{request.method} {request.path}: WATS answered {status}: {detail}"
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if not request.idempotent and status not in _DECLINED:
                raise WatsOutcomeUnknownError(_unknown(message), status=status)
            raise WatsTransientError(message, status=status, retry_after=retry_after)
        if status in _AUTH:
            if not self._auth_failing:
                self._auth_failing = True
                log.error(
                    "WATS at %s refused the API token (%d); events wait until it is fixed: %s",
                    self.base_url,
                    status,
                    AUTH_HINT,
                )
            raise WatsAuthError(f"{message} ({AUTH_HINT})", status=status)
        raise WatsPermanentError(message, status=status)

    def _scrub(self, text: str) -> str:
        token = self.__token
        if token not in text:
            return text
        if self._short_token is not None:
            return self._short_token.sub(_REDACTED, text)
        return text.replace(token, _REDACTED)


def _query_params(params: dict[str, Any]) -> dict[str, Any]:
    """Booleans as WATS expects them (``true``/``false``); None means 'leave the parameter out'."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


def _server_message(body: Any, text: str) -> str:
    if isinstance(body, dict):
        for key in _MESSAGE_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    if isinstance(body, str) and body:
        return body
    return text.strip()[:500]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unknown(message: str) -> str:
    return f"{message}; outcome unknown and the request is not idempotent, so it was not resent"
