"""Distributed mode: a broker message is settled only after the handlers finished with its events.

In a single listener the journal accepts an event and the broker message is acknowledged at once; the
handlers catch up from the journal. With several listener processes that would strand work on one
machine's disk, so in distributed mode (``[listener] distributed = true``) there is no journal: the
transport waits until every handler finished the message's events and then settles the message with its
broker — acknowledge it, hand it to a delay queue for a later attempt, or dead-letter it.

`SettlingHandler` wraps each handler so that a failure is *recorded* rather than retried forever: after a
short in-process retry budget (the handler's own `RetryPolicy`) the failure is written to `Settlements`
under the event id and the handler returns. `submit_settled` then tells the transport which handlers
failed how. A redelivered message may name the handlers that still owe it work (`only`): the others
skip it, so a handler that already succeeded is not called again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._event import Event
from .._handlers import BaseHandler, HandleResult, resolve_event_types
from ..policies import FailureKind, RetryPolicy

__all__ = ["HandlerFailure", "Settlements", "SettlingHandler", "settling_handlers"]

log = logging.getLogger("pywats_events.listener")

#: longest in-process pause between two attempts: longer waits belong to the broker's delay queues, so
#: no process holds a message while WATS is away
MAX_LOCAL_DELAY = 2.0


@dataclass(frozen=True)
class HandlerFailure:
    """A handler gave up on an event: `permanent` ones go to the dead-letter queue, others are retried."""

    event_id: str
    handler: str
    permanent: bool
    error: str
    error_type: str
    attempts: int


class Settlements:
    """Per event id: the handlers that failed it, and (for a redelivery) the handlers still wanted."""

    def __init__(self) -> None:
        self._failures: dict[str, list[HandlerFailure]] = {}
        self._only: dict[str, frozenset[str]] = {}

    def expect(self, events: Iterable[Event], only: Collection[str] | None) -> None:
        """Before submitting: which handlers should run (None: all that subscribe)."""
        for event in events:
            self._failures.pop(event.id, None)
            if only is not None:
                self._only[event.id] = frozenset(only)

    def wanted(self, event_id: str, handler: str) -> bool:
        only = self._only.get(event_id)
        return only is None or handler in only

    def fail(self, failure: HandlerFailure) -> None:
        self._failures.setdefault(failure.event_id, []).append(failure)

    def collect(self, events: Iterable[Event]) -> list[HandlerFailure]:
        """After the handlers finished: their failures, and forget the events."""
        out: list[HandlerFailure] = []
        for event in events:
            self._only.pop(event.id, None)
            out.extend(self._failures.pop(event.id, ()))
        return out

    def forget(self, events: Iterable[Event]) -> None:
        self.collect(events)


class SettlingHandler(BaseHandler):
    """`inner` under its retry policy for a few quick attempts; a give-up is recorded, never raised."""

    def __init__(self, inner: BaseHandler, settlements: Settlements, retry: RetryPolicy) -> None:
        self.inner = inner
        self.settlements = settlements
        self.retry = retry
        self._name = inner.name
        self._types = resolve_event_types(inner)
        self.ordering_group = inner.ordering_group
        self.is_async = True

    @property
    def name(self) -> str:
        return self._name

    @property
    def event_types(self) -> list[str]:
        return self._types

    def on_start(self) -> HandleResult:
        return self.inner.on_start()

    def on_stop(self) -> HandleResult:
        return self.inner.on_stop()

    async def handle(self, event: Event) -> None:
        if not self.settlements.wanted(event.id, self._name):
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                await _call(self.inner, event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            await _tell(self.inner, event, error)
            kind = self.retry.classify(error)
            give_up = kind is FailureKind.PERMANENT or self.retry.should_stop(attempt)
            if give_up:
                failure = HandlerFailure(
                    event_id=event.id,
                    handler=self._name,
                    permanent=kind is FailureKind.PERMANENT,
                    error=str(error) or repr(error),
                    error_type=f"{type(error).__module__}.{type(error).__qualname__}",
                    attempts=attempt,
                )
                self.settlements.fail(failure)
                log.info(
                    "%s gave up on %s after %d attempt(s) (%s): %r",
                    self._name,
                    event.id,
                    attempt,
                    "permanent" if failure.permanent else "back to the broker",
                    error,
                )
                return
            retry_after = getattr(error, "retry_after", None)
            delay = self.retry.delay(attempt, retry_after if isinstance(retry_after, (int, float)) else None)
            await asyncio.sleep(min(delay, MAX_LOCAL_DELAY))


def settling_handlers(
    handlers: Sequence[BaseHandler], settlements: Settlements, default_retry: RetryPolicy
) -> list[SettlingHandler]:
    """Each handler wrapped for distributed mode, keeping its name, event types and ordering group."""
    return [SettlingHandler(h, settlements, h.retry_policy or default_retry) for h in handlers]


async def _call(handler: BaseHandler, event: Event) -> None:
    if inspect.iscoroutinefunction(handler.handle) or getattr(handler, "is_async", False):
        result: Any = handler.handle(event)
    else:
        result = await asyncio.to_thread(handler.handle, event)
    if inspect.isawaitable(result):
        await result


async def _tell(handler: BaseHandler, event: Event, error: Exception) -> None:
    try:
        result = handler.on_error(event, error)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("%s.on_error raised", handler.name)
