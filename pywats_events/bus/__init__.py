"""The event bus: `AsyncEventBus` (the asyncio engine) and `EventBus` (its synchronous facade).

One module per concept: `engine` (lifecycle, subscription, configuration), `publishing` (the way in:
publish, submit), `lane_worker` (the lanes' run loops), `admission` (in-flight budgets, waiting line),
`lanes` (ordering groups), `journal_feeder` (journal → lanes), `subscription` (one handler under its
policies), `system_events`, `stop_report`, `facade`.
"""

from .engine import DEFAULT_RETRY_POLICY, AsyncEventBus
from .facade import EventBus
from .stop_report import BusState, StopReport

__all__ = ["DEFAULT_RETRY_POLICY", "AsyncEventBus", "BusState", "EventBus", "StopReport"]
