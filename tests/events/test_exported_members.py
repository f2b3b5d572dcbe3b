"""The public API of the policies is pinned (the packages themselves: tests/test_public_api.py)."""

import pywats_events.policies
import pywats_events.previews
import pywats_events.tracing
import pywats_events.transports


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


def test_tracing_exports():
    assert pywats_events.tracing.__all__ == [
        "AVAILABLE",
        "TRACE_HEADERS",
        "Span",
        "client_span",
        "decode",
        "enabled",
        "handler_span",
        "log_ids",
        "trace_context_from",
    ]
