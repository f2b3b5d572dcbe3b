"""FakeWATS: a real HTTP/1.1 server on loopback (stdlib, one thread per connection, keep-alive) that serves
the WATS endpoints the handlers use, with state, strict validation, Basic auth and fault injection.

    with FakeWATS(token="dXNlcjpwdw==") as wats:
        sender = HttpSender(wats.url, "dXNlcjpwdw==")
        ...
        wats.inject("error", duration=5)          # 500 for 5 s
        wats.inject("429", fraction=0.3, retry_after=1)
        wats.clear_faults()
        assert wats.submissions[report_id] == 1

It runs in a background thread, so sync and async tests use it alike. ``/_fake/...`` is a small control
API (state, faults, seeding) for use from the command line (``python -m handlers.wats.fake``).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .faults import Fault, FaultSet
from .state import ApiError, WatsState

__all__ = ["FakeWATS", "RequestRecord"]

log = logging.getLogger(__name__)

Endpoint = Callable[..., Any]


@dataclass(frozen=True)
class RequestRecord:
    """One request as FakeWATS saw it. `status` is None when a fault gave no answer."""

    time: float  # unix time when the request arrived
    monotonic: float
    method: str
    path: str
    params: dict[str, str]
    json: Any
    status: int | None
    fault: str | None = None
    #: client "host:port": one value across requests means one kept-alive connection
    peer: str = ""
    #: the W3C ``traceparent`` header the client sent (the span of the request, when it traces)
    traceparent: str | None = None


def _routes(state: WatsState) -> list[tuple[str, re.Pattern[str], Endpoint]]:
    seg = r"([^/]+)"
    table: list[tuple[str, str, Endpoint]] = [
        ("GET", "/api/App/Version", state.version),
        ("GET", "/api/App/Processes", state.get_processes),
        ("GET", "/api/internal/Mes/GetUnitPhases", state.get_unit_phases),
        ("POST", "/api/Report/WSJF", state.submit_wsjf),
        ("GET", f"/api/Report/Wsjf/{seg}", state.get_wsjf),
        ("GET", "/api/Production/Unit/Query", state.query_units),
        ("GET", f"/api/Production/Unit/{seg}/{seg}", state.get_unit),
        ("POST", "/api/Production/Unit", state.create_unit),
        ("PUT", "/api/Production/Unit", state.update_unit),
        ("GET", "/api/internal/Production/GetUnit", state.get_unit_internal),
        ("PUT", "/api/Production/SetUnitPhase", state.set_unit_phase),
        ("PUT", "/api/Production/SetUnitProcess", state.set_unit_process),
        ("POST", "/api/Production/AddChildUnit", state.add_child_unit),
        ("POST", "/api/Production/RemoveChildUnit", state.remove_child_unit),
        ("GET", "/api/Asset/Log", state.get_asset_log),
        ("GET", "/api/Asset/Status", state.get_asset_status),
        ("PUT", "/api/Asset/State", state.set_asset_state),
        ("PUT", "/api/Asset/Count", state.increment_asset_count),
        ("POST", "/api/Asset/Message", state.add_asset_message),
        ("GET", "/api/Asset", state.list_assets),
        ("PUT", "/api/Asset", state.put_asset),
        ("GET", f"/api/Asset/{seg}", state.get_asset),
    ]
    return [(m, re.compile(f"^{p}$", re.IGNORECASE), fn) for m, p, fn in table]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeWATS) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeWATS"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self) -> None:
        fake = self.server.fake
        arrived, mono = time.time(), time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path = unquote(split.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True

        def record(status: int | None, fault: str | None = None) -> None:
            peer = f"{self.client_address[0]}:{self.client_address[1]}"
            fake._record(
                RequestRecord(
                    arrived,
                    mono,
                    self.command,
                    path,
                    params,
                    body,
                    status,
                    fault,
                    peer,
                    self.headers.get("traceparent"),
                )
            )

        if path.startswith("/_fake/"):
            status, answer = fake._control(self.command, path, body)
            self._reply(status, answer)
            return
        if fake.latency:
            time.sleep(fake.latency)
        if fake.token is not None and self.headers.get("Authorization") != f"Basic {fake.token}":
            record(401)
            self._reply(401, {"message": "Authorization has been denied for this request."})
            return
        if path.lower().startswith("/api/internal/") and not self.headers.get("Referer"):
            record(400)
            self._reply(400, {"message": "Internal endpoints need a Referer header"})
            return

        fault = fake.faults.pick(self.command, path)
        if fault is not None and not fault.after:
            self._apply(fault, record)
            return
        if bad_json:
            record(400)
            self._reply(400, {"message": "The request body is not valid JSON"})
            return
        status, answer, extra = fake._dispatch(self.command, path, params, body)
        if fault is not None:
            record(status, f"{fault.kind}-after")
            self._apply(fault, None)
            return
        record(status)
        self._reply(status, answer, extra)

    def _apply(self, fault: Fault, record: Callable[[int | None, str | None], None] | None) -> None:
        fake = self.server.fake
        if fault.kind == "error":
            if record:
                record(fault.status, fault.kind)
            self._reply(fault.status, {"message": f"Injected server error {fault.status}"})
        elif fault.kind == "429":
            if record:
                record(429, fault.kind)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._reply(429, {"message": "Too many requests"}, headers)
        elif fault.kind == "hang":
            if record:
                record(None, fault.kind)
            fake._stopping.wait(fault.hang)
            self._drop()
        else:
            if record:
                record(None, fault.kind)
            self._drop()


class FakeWATS:
    """A stateful fake WATS server on loopback. Start with `with FakeWATS() as wats:` or `start()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        processes: list[dict[str, Any]] | None = None,
        implicit_units: bool = True,
        strict_assembly: bool = True,
        latency: float = 0.0,
        seed: int | None = None,
        max_log: int = 100_000,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.latency = latency
        self.state = WatsState(processes, implicit_units=implicit_units, strict_assembly=strict_assembly)
        self.faults = FaultSet(seed)
        self._routes = _routes(self.state)
        self._requests: deque[RequestRecord] = deque(maxlen=max_log)
        self._requests_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self) -> FakeWATS:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="FakeWATS",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeWATS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> FakeWATS:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @staticmethod
    def make_token(username: str, password: str) -> str:
        return base64.b64encode(f"{username}:{password}".encode()).decode()

    # -- faults --------------------------------------------------------------------------------------

    def inject(
        self,
        kind: str,
        *,
        duration: float | None = None,
        fraction: float = 1.0,
        count: int | None = None,
        status: int | None = None,
        retry_after: float | str | None = 1,
        hang: float = 30.0,
        after: bool = False,
        path: str = "",
        method: str | None = None,
        skip: int = 0,
    ) -> Fault:
        """Misbehave: `kind` is error (`status`, default 500), 429 (`retry_after`), hang or drop; for
        `duration` seconds and/or `count` requests (default: until `clear_faults`), for `fraction` of
        matching requests, optionally only for paths starting with `path` and/or one `method`, after
        letting the first `skip` matching requests through."""
        return self.faults.add(
            kind,
            duration=duration,
            fraction=fraction,
            count=count,
            status=status,
            retry_after=retry_after,
            hang=hang,
            after=after,
            path=path,
            method=method,
            skip=skip,
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- seeding and inspection ----------------------------------------------------------------------

    def set_processes(self, processes: list[dict[str, Any]]) -> None:
        self.state.set_processes(processes)

    def add_unit(
        self, serial_number: str, part_number: str, revision: str = "A", **kw: Any
    ) -> dict[str, Any]:
        return self.state.add_unit(serial_number, part_number, revision, **kw)

    def add_asset(self, serial_number: str, **kw: Any) -> dict[str, Any]:
        return self.state.add_asset(serial_number, **kw)

    @property
    def reports(self) -> dict[str, dict[str, Any]]:
        """Stored reports by (lower-case) id."""
        with self.state.lock:
            return copy.deepcopy(self.state.reports)

    @property
    def submissions(self) -> dict[str, int]:
        """How many times each report id was accepted."""
        with self.state.lock:
            return dict(self.state.submissions)

    @property
    def units(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Units by (serial number, part number)."""
        with self.state.lock:
            return copy.deepcopy(self.state.units)

    @property
    def unit_history(self) -> list[dict[str, Any]]:
        """Phase and process changes in the order they were made."""
        with self.state.lock:
            return copy.deepcopy(self.state.unit_history)

    @property
    def assets(self) -> dict[str, dict[str, Any]]:
        """Assets by serial number."""
        with self.state.lock:
            return {a["serialNumber"]: copy.deepcopy(a) for a in self.state.assets.values()}

    @property
    def asset_log(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.asset_log)

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests received (control API excluded; the last `max_log`), in arrival order."""
        with self._requests_lock:
            return list(self._requests)

    # -- waiting for what a test expects (no sleeps) ----------------------------------------------------

    def wait_for_reports(self, count: int = 1, *, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """Waits until at least `count` reports are stored; returns them by id."""
        from pywats_events.testing import eventually

        def found() -> dict[str, dict[str, Any]] | None:
            reports = self.reports
            return reports if len(reports) >= count else None

        return eventually(found, timeout=timeout, what=f"{count} report(s) in FakeWATS")

    def wait_for_asset_log(
        self, count: int = 1, *, contains: str = "", timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Waits until at least `count` asset log entries whose comment contains `contains` exist."""
        from pywats_events.testing import eventually

        def found() -> list[dict[str, Any]] | None:
            entries = [e for e in self.asset_log if contains in str(e.get("comment", ""))]
            return entries if len(entries) >= count else None

        return eventually(found, timeout=timeout, what=f"{count} asset log entr(ies) with {contains!r}")

    def wait_for_requests(
        self, path: str, count: int = 1, *, method: str | None = None, timeout: float = 10.0
    ) -> list[RequestRecord]:
        """Waits until at least `count` requests to paths starting with `path` (and `method`) arrived."""
        from pywats_events.testing import eventually

        def found() -> list[RequestRecord] | None:
            hits = [
                r
                for r in self.requests
                if r.path.startswith(path) and (method is None or r.method == method.upper())
            ]
            return hits if len(hits) >= count else None

        return eventually(found, timeout=timeout, what=f"{count} request(s) to {path}")

    def clear_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()

    def reset(self) -> None:
        """Forget reports, units, assets, logs, faults and requests (processes are kept)."""
        with self.state.lock:
            self.state.reports.clear()
            self.state.submissions.clear()
            self.state.units.clear()
            self.state.unit_history.clear()
            self.state.assets.clear()
            self.state.asset_log.clear()
        self.clear_faults()
        self.clear_requests()

    # -- request handling (called from server threads) -----------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._requests_lock:
            self._requests.append(record)

    def _dispatch(
        self, method: str, path: str, params: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str] | None]:
        path_known = False
        for route_method, pattern, endpoint in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            path_known = True
            if route_method != method:
                continue
            try:
                result = endpoint(params, body, *match.groups())
            except ApiError as exc:
                answer: dict[str, Any] = {"message": exc.message}
                if exc.errors:
                    answer["errors"] = exc.errors
                return exc.status, answer, None
            except Exception as exc:  # a bug in the fake must show up as a 500, not a hung client
                log.exception("FakeWATS endpoint %s %s failed", method, path)
                return 500, {"message": f"FakeWATS internal error: {exc}"}, None
            return 200, result, None
        if path_known:
            return 405, {"message": f"The requested resource does not support http method '{method}'."}, None
        return 404, {"message": f"No HTTP resource was found that matches the request URI '{path}'."}, None

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """``/_fake/...``: GET state/requests, POST/DELETE faults, POST reset, POST units/assets/processes."""
        try:
            if path == "/_fake/state" and method == "GET":
                return 200, {
                    "reports": self.reports,
                    "submissions": self.submissions,
                    "units": [u for u in self.units.values()],
                    "assets": self.assets,
                    "assetLog": self.asset_log,
                    "faults": [asdict(f) for f in self.faults.active()],
                    "requests": len(self.requests),
                }
            if path == "/_fake/requests" and method == "GET":
                return 200, [_summary(r) for r in self.requests]
            if path == "/_fake/faults" and method == "POST":
                spec = dict(body or {})
                fault = self.inject(spec.pop("kind"), **spec)
                return 200, asdict(fault)
            if path == "/_fake/faults" and method == "DELETE":
                self.clear_faults()
                return 200, None
            if path == "/_fake/reset" and method == "POST":
                self.reset()
                return 200, None
            if path == "/_fake/units" and method == "POST":
                spec = dict(body or {})
                return 200, self.add_unit(spec.pop("serialNumber"), spec.pop("partNumber"), **spec)
            if path == "/_fake/assets" and method == "POST":
                spec = dict(body or {})
                return 200, self.add_asset(spec.pop("serialNumber"), **spec)
            if path == "/_fake/processes" and method == "POST":
                self.set_processes(list(body or []))
                return 200, None
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"message": f"bad control request: {exc!r}"}
        return 404, {"message": f"unknown control endpoint {method} {path}"}


def _summary(record: RequestRecord) -> dict[str, Any]:
    """A request-log entry without its body (the report id and serial number are kept)."""
    out = {k: v for k, v in asdict(record).items() if k != "json"}
    if isinstance(record.json, dict):
        out["id"], out["sn"] = record.json.get("id"), record.json.get("sn")
    return out
