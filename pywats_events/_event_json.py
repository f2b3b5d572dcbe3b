"""Fast JSON for batches of events: orjson on the plain fields, pydantic when orjson cannot.

The journal serialises every accepted event on the event loop, so this is on the hot path. orjson writes
the same bytes as pydantic for everything it accepts (UTC timestamps as "Z"); for anything else (big
ints, non-str keys, bytes, sets, models, subclasses of built-in types...) it raises and the whole batch
goes through pydantic, so what is stored never depends on which path wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import orjson
from pydantic import TypeAdapter

from ._event import Event, EventMetadata

__all__ = ["dump_events"]

_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])

#: subclasses of built-in types and dataclasses go to pydantic (orjson would write them its own way)
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS


def _orjson(events: Sequence[Event]) -> str:
    return orjson.dumps(
        [{"event_type": e.event_type, "payload": e.payload, "metadata": e.metadata.__dict__} for e in events],
        option=_OPTIONS,
    ).decode()


def _pydantic(events: Sequence[Event]) -> str:
    return _EVENTS.dump_json(list(events)).decode()


def _fast_path_matches() -> bool:
    """The fast path mirrors the models' fields; if the models ever serialise differently, it is off."""
    sample = [
        Event(
            event_type="plugin.type",
            payload={"n": [1, 2.5, None, True], "s": "ü"},
            metadata=EventMetadata(
                timestamp=datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
                trace_context={"traceparent": "x"},
                extras={"k": {"v": 1}},
            ),
        )
    ]
    try:
        return _orjson(sample) == _pydantic(sample)
    except Exception:
        return False


_FAST = _fast_path_matches()


def dump_events(events: Sequence[Event]) -> str:
    """`events` as one JSON array text (each element reads back with `Event.model_validate_json`).
    Raises what pydantic raises for an event that cannot be serialised at all."""
    if _FAST:
        try:
            return _orjson(events)
        except (TypeError, AttributeError):
            pass
    return _pydantic(events)
