"""Prometheus counters of the WATS handlers, in the registry every listener serves on /metrics."""

from __future__ import annotations

from prometheus_client import Counter

from pywats_events.metrics import PLUGIN_METRICS

__all__ = ["LIMIT_CONTRADICTIONS", "UNIT_MISMATCHES"]

#: measurements sent to WATS with limits in units that cannot be converted to the value's
#: (reason: quantity, unknown_unit, ambiguous_unit)
UNIT_MISMATCHES = Counter(
    "pywats_wats_unit_mismatch",
    "Measurements reported with limit units not convertible to the value's unit",
    ["reason"],
    registry=PLUGIN_METRICS,
)

#: measurements sent to WATS whose value contradicts its limits and CFX result
#: (reason: outside_limits for a pass, within_limits for a fail)
LIMIT_CONTRADICTIONS = Counter(
    "pywats_wats_limit_contradiction",
    "Measurements reported whose value contradicts their limits and CFX result",
    ["reason"],
    registry=PLUGIN_METRICS,
)
