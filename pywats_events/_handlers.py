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
    """Subclass and implement `event_types` (property *or* plain method) and `handle` (sync *or* async).

    Optional hooks: `on_start` / `on_stop` (sync or async) run once when the bus starts / after it drained;
    `on_error(event, exc)` is told about every failed attempt. Class attributes `retry_policy` and
    `error_policy` are used when `subscribe()` is not given policies. `breaker_key(event)` lets one handler
    keep separate circuit breakers per destination (default: one per handler).
    """

    retry_policy: RetryPolicy | None = None
    error_policy: ErrorPolicy | None = None

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
    ) -> None:
        self._func = func
        self._types = list(event_types)
        self._name: str = name or str(getattr(func, "__qualname__", repr(func)))
        self.retry_policy = retry_policy
        self.error_policy = error_policy
        self.is_async = inspect.iscoroutinefunction(func)

    @property
    def name(self) -> str:
        return self._name

    @property
    def event_types(self) -> list[EventType | str]:
        return self._types

    def handle(self, event: Event) -> HandleResult:
        return self._func(event)


def handler(
    *event_types: EventType | str,
    name: str | None = None,
    retry_policy: RetryPolicy | None = None,
    error_policy: ErrorPolicy | None = None,
) -> Callable[[Callable[[Event], HandleResult]], FunctionHandler]:
    """Decorator turning a function into a handler.

    ``@handler(EventType.TEST_RESULT)`` over ``def f(event)``, then ``bus.subscribe(f)``."""

    def wrap(func: Callable[[Event], HandleResult]) -> FunctionHandler:
        return FunctionHandler(
            func, event_types, name=name, retry_policy=retry_policy, error_policy=error_policy
        )

    return wrap
