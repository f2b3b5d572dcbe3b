"""What the console's data layer hands out, on real stores: credentials masked wherever they hide."""

from __future__ import annotations

import json
from pathlib import Path

from pywats_events.config import load_settings
from pywats_events.console.source import ConsoleSource, redacted_settings
from pywats_events.listener.composition import ListenerParts
from pywats_events.metrics import MetricsObserver
from pywats_events.policies import SqliteDeadLetterQueue
from pywats_events.quarantine import SqliteQuarantine
from pywats_events.transports import QuarantineRecord

PASSWORD = "pw-in-url-9d8c7b"
TOKEN = "opt-token-1a2b3c4d"


def test_settings_are_masked_however_a_credential_is_given(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={
            "listener": {"data_dir": str(tmp_path)},
            "mqtt": {"url": f"mqtt://line:{PASSWORD}@broker:1883", "password": PASSWORD},
            "plugins": {"amqp": {"api_key": TOKEN, "broker": f"amqp://u:{PASSWORD}@rabbit/"}},
        },
        environ={"PYWATS_EVENTS_CONSOLE_TOKEN": TOKEN},
        sections={},
    )
    text = json.dumps(redacted_settings(settings))
    assert PASSWORD not in text and TOKEN not in text
    data = redacted_settings(settings)
    assert data["plugins"]["amqp"]["api_key"] == "***"
    assert data["plugins"]["amqp"]["broker"].startswith("amqp://u:")


def test_a_quarantined_message_is_shown_bounded_with_its_credentials_masked(tmp_path: Path) -> None:
    settings = load_settings(overrides={"listener": {"data_dir": str(tmp_path)}}, environ={}, sections={})
    quarantine = SqliteQuarantine(tmp_path / "q.db")
    raw = (b'{"broker": "amqp://plant:' + PASSWORD.encode() + b'@rabbit:5672/"} ') + b"\x00\xff" * 5000
    item = quarantine.add_sync(QuarantineRecord(raw=raw, reason="not JSON", topic="line1/x"))
    parts = ListenerParts(
        bus=None,
        journal=None,
        dlq=SqliteDeadLetterQueue(tmp_path / "dlq.db"),
        quarantine=quarantine,
        metrics=MetricsObserver(),
        handlers=[],
        codec=None,  # type: ignore[arg-type]
    )
    shown = ConsoleSource(settings, parts, environ={}).quarantined_one(item)
    assert shown is not None
    assert shown["size"] == len(raw) and shown["shown"] == 4096 and shown["masked"] is True
    assert PASSWORD not in json.dumps(shown)
    assert PASSWORD.encode().hex(" ")[:20] not in shown["hex"]
    assert shown["hex"].splitlines()[0].startswith("00000000  7b 22 62 72")
    assert len(shown["hex"].splitlines()) == 4096 // 16
