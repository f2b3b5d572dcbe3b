"""What a handler wants WATS to do, as data: a `WatsRequest`, and the `RequestSink` that carries it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["RequestSink", "WatsRequest", "WatsResponse"]


@dataclass(frozen=True)
class WatsRequest:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    #: safe to send twice (GET/PUT, report POST with a deterministic id); `Asset/Count` is not
    idempotent: bool = True
    #: short name for metrics and logs, e.g. "submit_report"
    operation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "params": dict(self.params), "json": self.json}


@dataclass(frozen=True)
class WatsResponse:
    status: int
    json: Any = None
    text: str = ""


class RequestSink(Protocol):
    """Carries out requests: the httpx sender (a real server) or the outbox (store and forward).
    Raises `WatsTransientError` for outages and `WatsPermanentError` for requests WATS refuses."""

    async def send(self, request: WatsRequest) -> WatsResponse: ...

    async def aclose(self) -> None: ...
