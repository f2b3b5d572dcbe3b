"""/metrics of a running listener against the Prometheus naming conventions, and the shipped alert rules and
Grafana dashboard against /metrics: every metric they use must exist, or an alert silently never fires."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from listener_support import ListenerProcess, amqp_toml, publish, units_tested, wait_until, wats_settings_toml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
#: series Prometheus itself adds to every scrape
SYNTHETIC = {"up"}
#: suffixes naming the unit (or kind) of a gauge
GAUGE_UNITS = ("_entries", "_bytes", "_seconds", "_connected", "_state", "_info")
#: label names that would grow without bound or mix kinds of value
FORBIDDEN_LABELS = {"endpoint", "status", "serial", "serial_number", "event_id", "id", "path", "url"}
MAX_SERIES_PER_FAMILY = 50

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
}


def _served(text: str) -> tuple[dict[str, Any], set[str]]:
    """Families by name, and every sample name a query may use (also of families without samples yet)."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    names: set[str] = set()
    for name, family in families.items():
        names.add(name)
        names.update(name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return families, names


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (ours all start with pywats_; `up` is Prometheus's own)."""
    selectors_removed = re.sub(r"\{[^}]*\}", "", expr)  # label matchers (the enum's state label)
    names = set(re.findall(r"\b(pywats_[a-z0-9_]+)\b", selectors_removed))
    if re.search(r"\bup\{", expr):
        names.add("up")
    return names


def _rule_exprs() -> dict[str, str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    found: dict[str, str] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in {"critical", "warning"}
            found[rule["alert"]] = rule["expr"]
    return found


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_alert_rules_cover_the_operational_failures() -> None:
    names = set().union(*map(_metric_names, _rule_exprs().values()))
    for needed in (
        "up",
        "pywats_transport_connected",
        "pywats_breaker_state",
        "pywats_journal_oldest_unfinished_age_seconds",
        "pywats_dead_letters_total",
        "pywats_messages_quarantined_total",
    ):
        assert needed in names, needed


def test_running_listener_metrics_follow_conventions_and_back_rules_and_dashboard(
    tmp_path: Path, topology: tuple[str, str, str]
) -> None:
    exchange, queue, dlx = topology
    listener = ListenerProcess(tmp_path, amqp_toml(exchange, queue, dlx) + wats_settings_toml()).start()
    try:
        bodies = [units_tested(i, f"MON-{i:05d}", tmp_path.name)[1] for i in range(20)]
        asyncio.run(publish(exchange, bodies))
        wait_until(lambda: listener.metric("pywats_events_accepted_total") >= 20, 60, what="20 events")
        wait_until(lambda: listener.metric("pywats_journal_unfinished_entries") == 0, 60, what="delivery")
        request = urllib.request.Request(
            f"http://127.0.0.1:{listener.port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            text = response.read().decode()
        status, plain = listener.http("/metrics")  # without asking: the Prometheus text format
        assert status == 200 and "# EOF" not in plain and "pywats_messages_received_total" in plain
    finally:
        assert listener.stop() == 0

    families, served = _served(text)
    ours = {name: f for name, f in families.items() if name.startswith("pywats_")}
    assert ours["pywats_transport_connected"].samples[0].labels == {"transport": "cfx-amqp"}
    assert ours["pywats_transport_connected"].samples[0].value == 1
    for name, family in ours.items():
        assert re.fullmatch(r"pywats_[a-z0-9_]+", name), name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        else:
            assert not name.endswith("_total"), f"{name}: only counters end in _total"
        if family.type == "histogram":
            assert name.endswith("_seconds"), f"{name}: durations are histograms in seconds"
        if family.type in ("gauge", "stateset"):
            assert name.endswith(GAUGE_UNITS), f"{name}: a gauge names its unit"
        label_sets = {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) for s in family.samples}
        assert len(label_sets) <= MAX_SERIES_PER_FAMILY, f"{name}: {len(label_sets)} series"
        used = {k for labels in label_sets for k, _ in labels}
        assert not used & FORBIDDEN_LABELS, f"{name}: labels {used & FORBIDDEN_LABELS}"
    routes = {s.labels["route"] for s in ours["pywats_wats_requests"].samples}
    assert routes and not any("MON-" in r for r in routes), routes  # one series per route, not per unit

    for origin, exprs in (("alerts.yml", _rule_exprs().values()), ("dashboard", _dashboard_exprs())):
        for expr in exprs:
            missing = _metric_names(expr) - served - SYNTHETIC
            assert not missing, f"{origin}: {expr!r} uses {missing}, which /metrics does not serve"
