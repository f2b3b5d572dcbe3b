"""Shared helpers for the core bus tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pywats_events import Event, EventType


def make_event(unit: str = "SN-1", i: int = 0, etype: EventType = EventType.TEST_RESULT) -> Event:
    return Event(event_type=etype, payload={"unit_id": unit, "i": i}, source="test")


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
