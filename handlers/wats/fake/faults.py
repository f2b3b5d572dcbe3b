"""Fault injection for FakeWATS: make the server misbehave for a period, a number of requests, or a
fraction of them, so tests can exercise retry, defer and breaker paths over real HTTP.

Kinds:
    ``error``  answer `status` (default 500) with a JSON message
    ``429``    answer 429 with ``Retry-After: <retry_after>``
    ``hang``   hold the request `hang` seconds (a client timeout), then close the connection
    ``drop``   close the connection without answering

A fault normally strikes before the request is carried out (`after=False`, nothing changes on the
server). With `after=True` the request is carried out first and then the answer is lost, the case in
which a client cannot know whether its request took effect. `skip` lets the first matching requests
through untouched (e.g. fail the check a client makes *after* a lost answer, not the one before).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

__all__ = ["FAULT_KINDS", "Fault", "FaultSet"]

FAULT_KINDS = ("error", "429", "hang", "drop")


@dataclass
class Fault:
    kind: str
    until: float | None = None  # monotonic deadline; None = until cleared
    fraction: float = 1.0
    remaining: int | None = None  # strike at most this many times
    status: int = 500
    retry_after: str | None = "1"
    hang: float = 30.0
    after: bool = False
    path_prefix: str = ""
    method: str | None = None
    skip: int = 0  # let this many matching requests through first
    struck: int = field(default=0)

    def active(self, now: float) -> bool:
        return (self.until is None or now < self.until) and (self.remaining is None or self.remaining > 0)


class FaultSet:
    """The faults in force; thread-safe. `pick` decides for one request which fault (if any) strikes."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random(seed)

    def add(
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
        aliases = {"5xx": "error", "500": "error", "503": "error", "timeout": "hang", "rate_limit": "429"}
        if kind in ("500", "503") and status is None:
            status = int(kind)
        kind = aliases.get(kind, kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        fault = Fault(
            kind=kind,
            until=None if duration is None else time.monotonic() + duration,
            fraction=fraction,
            remaining=count,
            status=status if status is not None else (429 if kind == "429" else 500),
            retry_after=None if retry_after is None else str(retry_after),
            hang=hang,
            after=after,
            path_prefix=path,
            method=method.upper() if method else None,
            skip=max(0, skip),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        now = time.monotonic()
        with self._lock:
            return [f for f in self._faults if f.active(now)]

    def pick(self, method: str, path: str) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.active(now)]
            for fault in self._faults:
                if fault.method is not None and fault.method != method:
                    continue
                if not path.startswith(fault.path_prefix):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.fraction < 1.0 and self._random.random() >= fault.fraction:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                fault.struck += 1
                return fault
        return None
