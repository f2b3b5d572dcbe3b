"""The pywats_events examples of the pyWATS "Event Architecture" docs, run as written (placeholders filled).

The CFX adapter example is covered by the CFX tests."""

from __future__ import annotations

from pydantic import ValidationError

from pywats_events import BaseHandler, Event, EventBus, EventType
from pywats_events.transports import MockTransport


def test_core_example(capsys):
    from pywats_events import BaseHandler, Event, EventBus, EventType

    # Create an event
    event = Event(
        event_type=EventType.TEST_RESULT,
        payload={"unit_id": "SN-123", "result": "pass"},
        source="test-station",
    )

    # Create a handler
    class MyHandler(BaseHandler):
        @property
        def event_types(self):
            return [EventType.TEST_RESULT]

        async def handle(self, event):
            print(f"Processing: {event.payload['unit_id']}")

    # Wire it up
    bus = EventBus()
    bus.subscribe(MyHandler())
    bus.start()
    bus.publish(event)

    report = bus.stop()  # not in the docs: drains, so the print has happened
    assert report.clean and report.handled == 1
    assert "Processing: SN-123" in capsys.readouterr().out


def test_retry_policy_example():
    from pywats_events.policies import RetryPolicy

    policy = RetryPolicy(
        max_retries=3,
        initial_delay=1.0,  # 1 second
        max_delay=60.0,  # Max 60 seconds
        exponential_base=2.0,  # Exponential backoff
        jitter=True,  # Add randomness
    )

    # Filter which exceptions to retry
    policy.retry_on(ConnectionError, TimeoutError)
    policy.no_retry_on(ValidationError)  # Never retry these

    assert policy.classify(ConnectionError()).value == "transient"
    assert policy.classify(ValueError()).value == "permanent"  # not in retry_on
    try:
        Event.model_validate({"event_type": 1, "payload": "x"})
    except ValidationError as exc:
        assert policy.classify(exc).value == "permanent"
    assert 1.0 <= policy.delay(1) <= 1.25
    assert 2.0 <= policy.delay(2) <= 2.25
    assert policy.delay(20) <= 60.0 * 1.25


def test_error_policy_example(capsys):
    from pywats_events.policies import CircuitBreaker, DeadLetterQueue, ErrorPolicy

    dlq = DeadLetterQueue(max_size=1000)
    cb = CircuitBreaker(
        failure_threshold=5,  # Open after 5 failures
        reset_timeout=30.0,  # Try again after 30 seconds
    )

    policy = ErrorPolicy(dead_letter_queue=dlq, circuit_breaker=cb)

    # (not in the docs) make one event fail permanently so the loop below has something to print
    from pywats_events import PermanentError

    def reject(event):
        raise PermanentError("bad data")

    bus = EventBus()
    bus.subscribe(reject, [EventType.TEST_RESULT], error_policy=policy)
    bus.start()
    failing = Event(event_type=EventType.TEST_RESULT, payload={"unit_id": "SN-9"})
    bus.publish(failing)
    bus.stop()

    # Get failed events for analysis/replay
    for entry in dlq.get_entries():
        print(f"Failed: {entry.event.id} - {entry.error}")

    assert f"Failed: {failing.id} - bad data" in capsys.readouterr().out
    assert policy.dead_letter_queue is dlq


def test_my_handler():
    # the docs' testing example; `BaseHandler` is imported at module level (the docs forget it)
    bus = EventBus()
    transport = MockTransport()
    bus.register_transport(transport)

    received = []

    class TestHandler(BaseHandler):
        def event_types(self):
            return [EventType.TEST_RESULT]

        def handle(self, event):
            received.append(event)

    bus.subscribe(TestHandler())
    bus.start()

    # Inject test event
    transport.inject_event(
        Event(event_type=EventType.TEST_RESULT, payload={"unit_id": "TEST-123", "passed": True})
    )

    assert len(received) == 1
    bus.stop()
