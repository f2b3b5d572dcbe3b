"""The handler plugin contract as `pywats-events run` applies it: what a factory gets, what it may return,
how its failures are reported, and the handler lifecycle a plugin relies on."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from pywats_events import (
    AsyncEventBus,
    BaseHandler,
    ConfigurationError,
    Event,
    EventBus,
    EventType,
    TransientError,
    handler,
    plugins,
)
from pywats_events.plugins import PluginContext, make_handlers
from pywats_events.policies import CircuitBreaker, ErrorPolicy, RetryPolicy
from pywats_events.testing import RecordingObserver, plugin_context
from pywats_events.transports import MockTransport


def result(serial: str) -> Event:
    return Event(event_type=EventType.TEST_RESULT, payload={"unit_serial": serial}, source="FCT")


def _plugin(monkeypatch: pytest.MonkeyPatch, obj: Any) -> None:
    """Installs `obj` as the target of every handler plugin name."""
    monkeypatch.setattr(plugins, "load", lambda group, name, *, setting: obj)


class Recorder(BaseHandler):
    event_types = [EventType.TEST_RESULT]

    def __init__(self, tag: str = "r", log: list[str] | None = None, *, fail_start: bool = False) -> None:
        self.tag = tag
        self.log = log if log is not None else []
        self.fail_start = fail_start

    @property
    def name(self) -> str:
        return f"recorder:{self.tag}"

    async def on_start(self) -> None:
        self.log.append(f"start {self.tag}")
        if self.fail_start:
            raise ConnectionError("destination unreachable")

    def on_stop(self) -> None:
        self.log.append(f"stop {self.tag}")

    async def handle(self, event: Event) -> None:
        self.log.append(f"handle {self.tag} {event.payload['unit_serial']}")


# ------------------------------------------------------------------ factory failures name the plugin


def test_factory_exception_is_a_configuration_error_naming_the_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def factory(ctx: PluginContext) -> list[BaseHandler]:
        return [Recorder(ctx.options["tag"])]

    _plugin(monkeypatch, factory)
    with pytest.raises(ConfigurationError) as exc:
        make_handlers("mine", plugin_context("mine", data_dir=tmp_path))
    assert exc.value.setting == "handlers.mine"
    assert "KeyError" in str(exc.value) and "tag" in str(exc.value)


def test_configuration_error_from_the_factory_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(ctx: PluginContext) -> list[BaseHandler]:
        raise ConfigurationError("handlers.mine.port", "must be > 0")

    _plugin(monkeypatch, factory)
    with pytest.raises(ConfigurationError) as exc:
        make_handlers("mine", plugin_context("mine"))
    assert exc.value.setting == "handlers.mine.port"


def test_handler_class_with_a_wrong_option_names_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin(monkeypatch, Recorder)
    assert make_handlers("mine", plugin_context("mine", {"tag": "x"}))[0].name == "recorder:x"
    with pytest.raises(ConfigurationError) as exc:
        make_handlers("mine", plugin_context("mine", {"colour": "red"}))
    assert exc.value.setting == "handlers.mine" and "colour" in str(exc.value)


@pytest.mark.parametrize("returned", ["oops", 42, [object()]])
def test_factory_returning_no_handler_is_rejected(monkeypatch: pytest.MonkeyPatch, returned: Any) -> None:
    _plugin(monkeypatch, lambda ctx: returned)
    with pytest.raises(ConfigurationError, match="not a handler") as exc:
        make_handlers("mine", plugin_context("mine"))
    assert exc.value.setting == "handlers.mine"


def test_plain_function_needs_event_types(monkeypatch: pytest.MonkeyPatch) -> None:
    def f(event: Event) -> None:
        return None

    _plugin(monkeypatch, lambda ctx: [f])
    with pytest.raises(ConfigurationError, match="without event_types"):
        make_handlers("mine", plugin_context("mine"))


def test_function_with_event_types_attribute_is_subscribable(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def f(event: Event) -> None:
        seen.append(event.payload["unit_serial"])

    f.event_types = [EventType.TEST_RESULT]  # type: ignore[attr-defined]

    @handler(EventType.WORK_STARTED, name="deco")
    def g(event: Event) -> None:
        return None

    _plugin(monkeypatch, lambda ctx: [f, g])
    made = make_handlers("mine", plugin_context("mine"))
    assert [h.name for h in made][1] == "deco"
    bus = EventBus()
    for h in made:
        bus.subscribe(h)
    bus.start()
    try:
        bus.publish(result("SN-1"))
    finally:
        bus.stop()
    assert seen == ["SN-1"]


def test_handler_without_event_types_names_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTypes(BaseHandler):
        def handle(self, event: Event) -> None:
            return None

    class Empty(NoTypes):
        event_types: list[EventType] = []

    for cls in (NoTypes, Empty):
        _plugin(monkeypatch, lambda ctx, cls=cls: [cls()])
        with pytest.raises(ConfigurationError) as exc:
            make_handlers("mine", plugin_context("mine"))
        assert exc.value.setting == "handlers.mine"


def test_module_failing_at_import_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "broken_plugin_mod.py").write_text("undefined_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(plugins._FIRST_PARTY, plugins.HANDLERS, {"broken": "broken_plugin_mod:factory"})
    monkeypatch.delitem(sys.modules, "broken_plugin_mod", raising=False)
    with pytest.raises(ConfigurationError) as exc:
        plugins.load(plugins.HANDLERS, "broken", setting="listener.handlers")
    assert exc.value.setting == "listener.handlers" and "NameError" in str(exc.value)


# ------------------------------------------------------------------ options


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 1883
    topic: str


def test_parse_options_names_the_bad_option() -> None:
    ctx = plugin_context("mqtt_fail", {"topic": "t", "port": "x"})
    with pytest.raises(ConfigurationError) as exc:
        ctx.parse_options(Options)
    assert exc.value.setting == "handlers.mqtt_fail.port"
    with pytest.raises(ConfigurationError) as exc:
        plugin_context("mqtt_fail", {"topic": "t", "prot": 1}).parse_options(Options)
    assert exc.value.setting == "handlers.mqtt_fail.prot"
    with pytest.raises(ConfigurationError) as exc:
        plugin_context("mqtt_fail", {}).parse_options(Options)
    assert exc.value.setting == "handlers.mqtt_fail.topic"
    assert plugin_context("m", {"topic": "t"}).parse_options(Options).port == 1883


def test_plugin_context_uses_the_given_data_dir(tmp_path: Path) -> None:
    ctx = plugin_context("x", {"a": 1}, data_dir=tmp_path)
    assert ctx.settings.listener.data_dir == tmp_path
    assert ctx.options == {"a": 1} and ctx.name == "x" and ctx.cleanups == []


# ------------------------------------------------------------------ lifecycle a plugin relies on


async def test_on_start_in_order_on_stop_in_reverse_and_a_failed_on_start_still_subscribed() -> None:
    log: list[str] = []
    bus = AsyncEventBus()
    bus.subscribe(Recorder("a", log))
    bus.subscribe(Recorder("b", log, fail_start=True))
    async with bus:
        await bus.publish(result("SN-1"))
    assert log == ["start a", "start b", "handle a SN-1", "handle b SN-1", "stop b", "stop a"]


async def test_same_named_handlers_are_told_apart_in_subscription_order() -> None:
    bus = AsyncEventBus()
    bus.subscribe(Recorder("x"))
    bus.subscribe(Recorder("x"))
    obs = RecordingObserver()
    bus.add_observer(obs)
    async with bus:
        await bus.publish(result("SN-1"))
    assert sorted(args[1] for args in obs.named("on_handled")) == ["recorder:x", "recorder:x#2"]


async def test_breaker_key_keeps_one_breaker_per_destination() -> None:
    down = {"b"}

    class PerDestination(BaseHandler):
        event_types = [EventType.TEST_RESULT]
        retry_policy = RetryPolicy(max_retries=0, initial_delay=0.01, max_delay=0.02, jitter=False)

        def __init__(self) -> None:
            self.error_policy = ErrorPolicy(circuit_breaker=CircuitBreaker(1, reset_timeout=0.05))

        def breaker_key(self, event: Event) -> str:
            return str(event.payload["unit_serial"])[0]

        async def handle(self, event: Event) -> None:
            if self.breaker_key(event) in down:
                raise TransientError("down")

    h = PerDestination()
    obs = RecordingObserver()
    bus = AsyncEventBus()
    bus.add_observer(obs)
    bus.subscribe(h)
    t = MockTransport()
    bus.register_transport(t)
    async with bus:
        await bus.publish(result("b-1"))
        await obs.wait_for("on_deferred")
        assert h.error_policy is not None and h.error_policy.circuit_breaker is not None
        states = h.error_policy.circuit_breaker.states()
        assert set(states) == {"b"}
        down.clear()
        await obs.wait_for("on_handled", handler="PerDestination")
    assert not obs.named("on_dead_letter")


async def test_wait_for_times_out_with_what_was_seen() -> None:
    obs = RecordingObserver()
    bus = AsyncEventBus()
    bus.add_observer(obs)
    bus.subscribe(Recorder())
    async with bus:
        await bus.publish(result("SN-1"))
        assert len(await obs.wait_for("on_handled", handler="recorder:r")) == 1
        with pytest.raises(TimeoutError, match=r"on_dead_letter seen 0 of 1.*on_handled"):
            await obs.wait_for("on_dead_letter", timeout=0.05)


def test_sync_handler_runs_in_a_worker_thread_with_the_sync_facade() -> None:
    threads: list[int] = []

    @handler(EventType.TEST_RESULT, name="sync")
    def record(event: Event) -> None:
        threads.append(threading.get_ident())

    assert record.handle(result("SN-0")) is None  # callable directly in a unit test
    threads.clear()
    bus = EventBus()
    transport = MockTransport()
    bus.subscribe(record)
    bus.register_transport(transport)
    bus.start()
    try:
        transport.inject_event(result("SN-1"))  # returns once handlers ran (no journal)
        assert len(threads) == 1 and threads[0] != threading.get_ident()
    finally:
        bus.stop()
