"""One handler, one event: run it under its retry policy, circuit breaker and dead-letter queue.

A `Subscription` binds a handler to the policies it runs under. The bus calls the handler directly on the
happy path and hands over to `Subscription.deliver` only when a policy needs attention (a breaker to ask,
an observer to time the call, or a failure to recover from), so policies cost nothing until they matter.

Outcome of a delivery: "done" or "dead_lettered". A transient failure never ends a delivery: after the
retry budget the event is *deferred* (it waits with capped backoff) until it succeeds or the bus stops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from .._event import Event
from .._handlers import BaseHandler, FunctionHandler, resolve_event_types
from .._observer import call_hook
from ..policies import CircuitBreaker, DeadLetterEntry, FailureKind, RetryPolicy
from ..policies._dead_letter import DeadLetterStore

if TYPE_CHECKING:
    from .lanes import OrderingGroup

__all__ = ["DEAD_LETTERED", "DONE", "DeliveryHost", "Subscription", "log_extra"]

log = logging.getLogger("pywats_events.dispatch")

DONE = "done"
DEAD_LETTERED = "dead_lettered"


class DeliveryHost(Protocol):
    """What a `Subscription` needs from the bus it runs in (and nothing more)."""

    @property
    def timing_hooks(self) -> Sequence[Callable[..., Any]]:
        """Observer hooks that time handler calls (`on_handled`); empty when calls are not timed."""
        ...

    async def call_sync(self, fn: Callable[[Event], Any], event: Event) -> Any:
        """Run a synchronous handler call off the loop (in the bus's worker threads)."""
        ...

    def notify(self, hook: str, *args: Any) -> None:
        """Tell the observers (`on_retry`, `on_deferred`, `on_dead_letter`)."""
        ...

    def emit_handler_error(self, event: Event, handler: str, error: BaseException, attempt: int) -> None: ...

    def emit_dead_letter(
        self, event: Event, handler: str, error: BaseException, attempts: int, entry_id: str
    ) -> None: ...


def _is_async_handler(h: BaseHandler) -> bool:
    return inspect.iscoroutinefunction(h.handle) or bool(getattr(h, "is_async", False))


class Subscription:
    """A handler bound to its policies inside one bus."""

    __slots__ = (
        "breaker",
        "call",
        "dlq",
        "event_types",
        "fast",
        "group",
        "handler",
        "is_async",
        "name",
        "ordering",
        "retry",
    )

    def __init__(
        self,
        handler: BaseHandler,
        name: str,
        retry: RetryPolicy,
        dlq: DeadLetterStore,
        breaker: CircuitBreaker | None,
        group: str | None = None,
    ) -> None:
        self.handler = handler
        self.name = name
        #: ordering group: subscriptions of one group share lanes and run one after the other per event
        self.group = group or name
        #: the group's lanes and in-flight budget (set by the bus on start)
        self.ordering: OrderingGroup | None = None
        self.retry = retry
        self.dlq = dlq
        self.breaker = breaker
        self.event_types = resolve_event_types(handler)
        self.is_async = _is_async_handler(handler)
        self.call: Callable[[Event], Any] = handler.handle
        if isinstance(handler, FunctionHandler) and type(handler).handle is FunctionHandler.handle:
            self.call = handler.func  # skip one wrapper call per event
        #: True when no observer times handler calls; the bus then calls the handler inline whenever
        #: its breaker (if any) is idle (has recorded nothing yet)
        self.fast = True

    def __repr__(self) -> str:
        return f"Subscription({self.name!r}, types={self.event_types})"

    async def invoke(self, bus: DeliveryHost, event: Event) -> None:
        """One call of the handler; the caller has set `current_delivery` (a sync handler's worker
        thread gets a copy of this context, so its log lines carry the event's ids too)."""
        if self.is_async:
            await self.call(event)
            return
        result = await bus.call_sync(self.call, event)
        if inspect.isawaitable(result):
            await result

    async def deliver(self, bus: DeliveryHost, event: Event, first_error: Exception | None = None) -> str:
        """Run until the handler is done with `event` or gave up on it; returns DONE or DEAD_LETTERED.

        `first_error` is the failure of an attempt the bus already made inline."""
        breaker = self.breaker
        key = self.handler.breaker_key(event) if breaker is not None else ""
        timed = bus.timing_hooks
        attempt = 0
        first_failure: datetime | None = None
        pending_error = first_error
        while True:
            if pending_error is None:
                if breaker is not None:
                    wait = breaker.acquire(key)
                    if wait > 0:
                        bus.notify("on_deferred", event, self.name, wait, "circuit open")
                        await asyncio.sleep(wait)
                        continue
                attempt += 1
                current = event if attempt == 1 else _with_attempt(event, attempt - 1)
                t0 = time.perf_counter()
                try:
                    await self.invoke(bus, current)
                except asyncio.CancelledError:
                    if breaker is not None:
                        breaker.release(key)
                    raise
                except Exception as exc:
                    error: Exception = exc
                else:
                    if breaker is not None:
                        breaker.record_success(key)
                    if timed:
                        seconds = time.perf_counter() - t0
                        for hook in timed:
                            call_hook(hook, current, self.name, seconds)
                    return DONE
            else:
                attempt += 1
                error, pending_error = pending_error, None
                current = event

            # -- the attempt failed ------------------------------------------------------------
            now = datetime.now(timezone.utc)
            first_failure = first_failure or now
            kind = self.retry.classify(error)
            await self._tell_handler(current, error)
            bus.emit_handler_error(event, self.name, error, attempt)
            if kind is FailureKind.PERMANENT:
                if breaker is not None:
                    breaker.record_success(key)  # the far side answered; the event itself is bad
                await self._dead_letter(bus, current, error, attempt, first_failure, now)
                return DEAD_LETTERED
            if breaker is not None:
                breaker.record_failure(key)
            retry_after = getattr(error, "retry_after", None)
            delay = self.retry.delay(attempt, retry_after if isinstance(retry_after, (int, float)) else None)
            if not self.retry.should_stop(attempt):
                bus.notify("on_retry", event, self.name, attempt, delay, error)
                log.info(
                    "%s failed on %s (attempt %d): %r; retrying in %.2fs",
                    self.name,
                    event.id,
                    attempt,
                    error,
                    delay,
                    extra=log_extra(event, self.name),
                )
            elif kind is FailureKind.TRANSIENT:
                bus.notify("on_deferred", event, self.name, delay, f"outage: {error!r}")
                log.warning(
                    "%s: outage on %s (attempt %d): %r; deferred %.2fs",
                    self.name,
                    event.id,
                    attempt,
                    error,
                    delay,
                    extra=log_extra(event, self.name),
                )
            else:
                await self._dead_letter(bus, current, error, attempt, first_failure, now)
                return DEAD_LETTERED
            await asyncio.sleep(delay)

    async def give_up(self, bus: DeliveryHost, event: Event, error: Exception) -> str:
        """Dead-letter `event` for this handler without further attempts (used when delivery itself broke)."""
        now = datetime.now(timezone.utc)
        await self._dead_letter(bus, event, error, 1, now, now)
        return DEAD_LETTERED

    async def _tell_handler(self, event: Event, error: Exception) -> None:
        try:
            result = self.handler.on_error(event, error)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s.on_error raised", self.name, extra=log_extra(event, self.name))

    async def _dead_letter(
        self,
        bus: DeliveryHost,
        event: Event,
        error: Exception,
        attempts: int,
        first_failure: datetime,
        last_failure: datetime,
    ) -> None:
        entry = DeadLetterEntry(
            event=event,
            handler=self.name,
            error=str(error) or repr(error),
            error_type=f"{type(error).__module__}.{type(error).__qualname__}",
            attempts=attempts,
            first_failure=first_failure,
            last_failure=last_failure,
        )
        try:
            if getattr(self.dlq, "blocking", False):
                await asyncio.to_thread(self.dlq.add, entry)
            else:
                self.dlq.add(entry)
        except Exception:
            # never a silent drop: the full event goes to the log if the store itself fails
            log.exception(
                "dead-letter store failed; event %s for %s: %s",
                event.id,
                self.name,
                event.to_json(),
                extra=log_extra(event, self.name),
            )
        log.warning(
            "%s dead-lettered event %s after %d attempt(s): %r",
            self.name,
            event.id,
            attempts,
            error,
            extra=log_extra(event, self.name),
        )
        bus.notify("on_dead_letter", event, self.name, error)
        bus.emit_dead_letter(event, self.name, error, attempts, entry.id)


def log_extra(event: Event, handler: str | None = None, **more: Any) -> dict[str, Any]:
    """`extra=` for a log line about one event: structured (JSON) logs carry its ids, so a line can be
    joined with the message it came from (correlation id) and with the DLQ entry (event id)."""
    extra: dict[str, Any] = {
        "event_id": event.id,
        "correlation_id": event.metadata.correlation_id,
        "event_type": event.type_name,
    }
    if handler is not None:
        extra["handler"] = handler
    extra.update(more)
    return extra


def _with_attempt(event: Event, attempt: int) -> Event:
    return event.model_copy(update={"metadata": event.metadata.model_copy(update={"attempt": attempt})})
