"""What a run ends with: its summary, the events it leaves unfinished, and why they wait."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._event import Event
from .._observer import BusObserver
from ..exit_codes import ExitCode
from ..logging_setup import redact

__all__ = ["DeferralWatch", "RunSummary", "Unfinished"]


class DeferralWatch(BusObserver):
    """Why handlers have not finished their events: what waits behind an outage or an open circuit breaker
    right now, and each handler's last failure. A run that could not drain tells its user from this."""

    def __init__(self) -> None:
        #: handler name → {event id: the last deferral reason}
        self.waiting: dict[str, dict[str, str]] = {}
        #: handler name → its last failed attempt's error
        self.last_error: dict[str, str] = {}

    def on_retry(
        self, event: Event, handler_name: str, attempt: int, delay: float, error: BaseException
    ) -> None:
        self.last_error[handler_name] = repr(error)

    def on_deferred(self, event: Event, handler_name: str, delay: float, reason: str) -> None:
        self.waiting.setdefault(handler_name, {})[event.id] = reason

    def on_handled(self, event: Event, handler_name: str, seconds: float) -> None:
        waiting = self.waiting.get(handler_name)
        if waiting:
            waiting.pop(event.id, None)

    def on_dead_letter(self, event: Event, handler_name: str, error: BaseException) -> None:
        self.on_handled(event, handler_name, 0.0)

    def reason(self, handler: str) -> str:
        """Why `handler` still has unfinished events when the run ended."""
        reasons = list((self.waiting.get(handler) or {}).values())
        if any(r == "circuit open" for r in reasons):
            return f"deferred behind an open circuit breaker ({len(reasons)} waiting)"
        if reasons:
            return f"deferred by an outage ({len(reasons)} waiting; {redact(reasons[-1])[:200]})"
        if handler in self.last_error:
            return f"retrying after failures (last: {redact(self.last_error[handler])[:200]})"
        return "not finished within listener.drain_timeout (in progress or waiting their turn)"


@dataclass
class Unfinished:
    """Events a run leaves unfinished in the journal: how many, for which handlers, and why."""

    total: int = 0
    #: handler name → unfinished events that handler has not finished yet
    by_handler: dict[str, int] = field(default_factory=dict)
    #: handler name → why (see `DeferralWatch.reason`)
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.total:
            return "no unfinished events"
        parts = [f"{h}: {n} ({self.reasons.get(h, '?')})" for h, n in sorted(self.by_handler.items())]
        return (
            f"{self.total} event(s) unfinished in the journal"
            + (f" — {'; '.join(parts)}" if parts else "")
            + "; the next start resumes them"
        )


@dataclass
class RunSummary:
    """What `Listener.run` returns: counts, the plugins' facts and summary rows, and how the run ended."""

    stats: dict[str, Any]
    facts: dict[str, str]
    #: the plugins' rows of the summary table (``PluginContext.summary``), e.g. WATS requests by endpoint
    rows: list[tuple[str, str]]
    journal_depth: int
    dlq_size: int
    quarantine_size: int
    elapsed: float
    stopped_by: str
    #: nothing accepted is left unfinished (journal empty, nothing in flight)
    drained: bool
    report: Any = None
    unfinished: Unfinished = field(default_factory=Unfinished)
    #: the run stopped on its own because its input ended (not by a signal)
    input_ended: bool = False

    @property
    def exit_code(self) -> ExitCode:
        """`ExitCode` of the run: a signal stop is the service contract (OK); a run whose input ended says
        whether everything was delivered."""
        if not self.input_ended:
            return ExitCode.OK
        if not self.drained:
            return ExitCode.NOT_DRAINED
        if self.stats.get("dead_letters"):
            return ExitCode.DEAD_LETTERS
        return ExitCode.OK
