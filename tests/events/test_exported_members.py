"""The public API of the bus and policies is pinned: changes must be deliberate."""

import pywats_events
import pywats_events.policies
import pywats_events.previews
import pywats_events.transports


def test_core_exports():
    for name in (
        "AsyncEventBus",
        "EventBus",
        "BusObserver",
        "StopReport",
        "BusState",
        "Event",
        "BaseHandler",
        "resolve_event_types",
    ):
        assert name in pywats_events.__all__
    assert pywats_events.__all__ == sorted(pywats_events.__all__, key=lambda s: (not s.isupper(), s))


def test_policy_exports():
    assert pywats_events.policies.__all__ == [
        "DEFAULT_TRANSIENT_ERRORS",
        "CircuitBreaker",
        "CircuitState",
        "DeadLetterEntry",
        "DeadLetterQueue",
        "ErrorPolicy",
        "FailureKind",
        "ReplayReport",
        "RetryPolicy",
        "SqliteDeadLetterQueue",
    ]
    assert "MockTransport" in pywats_events.transports.__all__


def test_preview_exports():
    assert pywats_events.previews.__all__ == ["Preview", "PreviewOutcome", "PreviewRequest"]
