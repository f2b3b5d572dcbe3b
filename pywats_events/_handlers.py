"""Handlers: `BaseHandler` for classes, `handler(...)` for plain functions."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._event import Event, EventType

if TYPE_CHECKING:
    from .policies import ErrorPolicy, RetryPolicy

__all__ = ["BaseHandler", "FunctionHandler", "handler", "resolve_event_types"]

HandleResult = Awaitable[None] | None


class BaseHandler:
    """Subclass and implement `event_types` (property, plain method or class attribute) and `handle`.

    An async `handle` runs on the bus's event loop and must not block it; a sync `handle` runs in a
    worker thread, possibly for several units at once, so shared state needs a lock. Raise
    `TransientError` when the destination is down (retried, then deferred, never dead-lettered) and
    `PermanentError` when the event itself is bad (dead-lettered at once).

    `ordering_group` decides which handlers wait for each other. Handlers of one group share ordering
    lanes: per event they run one after the other in subscription order, so a handler can rely on an
    earlier one of its group (create the unit before posting its report), and while one of them keeps
    an event deferred (an outage), the later events of its lane wait for the whole group. Handlers of
    different groups run independently: one group's outage never holds up another. The default `None`
    puts the handler in a group of its own (named after the handler); `subscribe(ordering_group=...)`
    overrides the class attribute.

    Hooks, sync or async; sync hooks run on the event loop, so keep them short:

    * `on_start` runs once per `start()`, in subscription order, before any event is delivered;
      `on_stop` runs once after the bus drained, in reverse order. An exception from either is logged
      at ERROR with the handler's name and the exception, and swallowed: the bus keeps running, the
      handler stays subscribed and still receives events, and its `on_stop` still runs. So a handler
      whose `on_start` could not reach its destination should raise `TransientError` from `handle`
      until it can.
    * `on_error(event, exc)` is told about every failed attempt, before the retry or dead-lettering.

    `name` (default: the class name) identifies the handler in the journal's per-handler progress, in
    dead letters (``pywats-events dlq list --handler``) and in logs and metrics. Two subscriptions with
    the same name are told apart by a ``#2`` suffix given in subscription order, so a handler that is
    instantiated more than once (one per destination) should override `name` with a stable, unique value.

    Class attributes `retry_policy` and `error_policy` are used when `subscribe()` is not given policies
    (they may also be set per instance in `__init__`). `breaker_key(event)` keys the circuit breaker of
    `error_policy`, so one handler can keep one breaker per destination (default: one per handler); it
    is consulted only when `error_policy` has a `circuit_breaker`.
    """

    retry_policy: RetryPolicy | None = None
    error_policy: ErrorPolicy | None = None
    ordering_group: str | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def event_types(self) -> Iterable[EventType | str]:  # may also be overridden as a plain method
        raise NotImplementedError

    def handle(self, event: Event) -> HandleResult:
        raise NotImplementedError

    def on_start(self) -> HandleResult:
        return None

    def on_stop(self) -> HandleResult:
        return None

    def on_error(self, event: Event, error: BaseException) -> HandleResult:
        return None

    def breaker_key(self, event: Event) -> str:
        return self.name


def resolve_event_types(h: Any) -> list[str]:
    """The subscribed type names, whether `event_types` is a property, a method or a plain list.
    ``"*"`` subscribes to every non-system event."""
    types = h.event_types
    if callable(types):
        types = types()
    if isinstance(types, (str, EventType)):
        types = [types]
    return [t.value if isinstance(t, EventType) else str(t) for t in types]


class FunctionHandler(BaseHandler):
    """Adapts a plain (sync or async) function to `BaseHandler`."""

    def __init__(
        self,
        func: Callable[[Event], HandleResult],
        event_types: Iterable[EventType | str],
        *,
        name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        error_policy: ErrorPolicy | None = None,
        ordering_group: str | None = None,
    ) -> None:
        self._func = func
        self._types = list(event_types)
        self._name: str = name or str(getattr(func, "__qualname__", repr(func)))
        self.retry_policy = retry_policy
        self.error_policy = error_policy
        self.ordering_group = ordering_group
        self.is_async = inspect.iscoroutinefunction(func)

    @property
    def name(self) -> str:
        return self._name

    @property
    def event_types(self) -> list[EventType | str]:
        return self._types

    @property
    def func(self) -> Callable[[Event], HandleResult]:
        """The adapted function (the bus calls it directly, skipping `handle`)."""
        return self._func

    def handle(self, event: Event) -> HandleResult:
        return self._func(event)


def handler(
    *event_types: EventType | str,
    name: str | None = None,
    retry_policy: RetryPolicy | None = None,
    error_policy: ErrorPolicy | None = None,
    ordering_group: str | None = None,
) -> Callable[[Callable[[Event], HandleResult]], FunctionHandler]:
    """Decorator turning a function into a handler.

    ``@handler(EventType.TEST_RESULT)`` over ``def f(event)``, then ``bus.subscribe(f)``. `f` becomes a
    `FunctionHandler`: call ``f.handle(event)`` to run the function directly (e.g. in a unit test). Its
    `name` defaults to the function's qualified name; pass ``name=`` for one that survives refactoring."""

    def wrap(func: Callable[[Event], HandleResult]) -> FunctionHandler:
        return FunctionHandler(
            func,
            event_types,
            name=name,
            retry_policy=retry_policy,
            error_policy=error_policy,
            ordering_group=ordering_group,
        )

    return wrap
