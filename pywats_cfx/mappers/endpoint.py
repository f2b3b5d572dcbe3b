"""CFX root messages about endpoints: connected, shutting down, heartbeat. The body travels in the event."""

from __future__ import annotations

from typing import Any

from pywats_events import Event, EventType

from .._values import parse_timespan
from ._context import MessageContext

__all__ = ["map_endpoint_connected", "map_endpoint_shutting_down", "map_heartbeat"]


def _endpoint(ctx: MessageContext, body: dict[str, Any], event_type: EventType) -> list[Event]:
    freq = parse_timespan(body.get("HeartbeatFrequency"))
    payload = {
        **ctx.facts,
        "endpoint": body,
        "heartbeat_frequency_s": freq.total_seconds() if freq is not None else None,
    }
    return [ctx.event(event_type, payload, 0, None)]


def map_endpoint_connected(ctx: MessageContext, body: dict[str, Any]) -> list[Event]:
    return _endpoint(ctx, body, EventType.ENDPOINT_CONNECTED)


def map_endpoint_shutting_down(ctx: MessageContext, body: dict[str, Any]) -> list[Event]:
    return _endpoint(ctx, body, EventType.ENDPOINT_SHUTTING_DOWN)


def map_heartbeat(ctx: MessageContext, body: dict[str, Any]) -> list[Event]:
    return _endpoint(ctx, body, EventType.ENDPOINT_HEARTBEAT)
