"""Settings, redaction, replay input, plugins, quarantine store, metrics and health endpoints."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from handlers.settings import WatsSettings
from pywats_cfx.amqp import AmqpSettings
from pywats_events import ConfigurationError, DecodeResult, Event, EventType
from pywats_events.config import load_settings
from pywats_events.health import HealthServer
from pywats_events.logging_setup import JsonFormatter, RedactingFilter, redact, register_secret
from pywats_events.metrics import MetricsObserver
from pywats_events.plugins import CODECS, TRANSPORTS, PluginContext, available, load, settings_sections
from pywats_events.quarantine import SqliteQuarantine
from pywats_events.transports import QuarantineRecord
from pywats_events.transports.replay import ReplayTransport, iter_messages

# ------------------------------------------------------------------ settings


def test_precedence_defaults_file_env_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[amqp]\nqueue = "from-file"\nexchange = "ex-file"\n[listener]\nidle_exit = 5\n')
    s = load_settings(
        cfg,
        environ={"PYWATS_EVENTS_AMQP_QUEUE": "from-env", "PYWATS_EVENTS_AMQP_BINDINGS": "a.#, b.#"},
        overrides={"listener": {"idle_exit": 1.5}},
    )
    amqp = s.section("amqp", AmqpSettings)
    assert amqp.queue == "from-env"
    assert amqp.exchange == "ex-file"
    assert amqp.routing_keys == ["a.#", "b.#"]
    assert s.listener.idle_exit == 1.5
    assert s.journal.enabled and amqp.prefetch_count == 200


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"PYWATS_EVENTS_JOURNAL_MAX_ENTRIES": "0"}, "journal.max_entries"),
        ({"PYWATS_EVENTS_WATS_URL": "ftp://x"}, "wats.url"),
        ({"PYWATS_EVENTS_AMQP_NOPE": "1"}, "amqp.nope"),
        ({"PYWATS_EVENTS_LISTENER_LOG_LEVEL": "loud"}, "listener.log_level"),
    ],
)
def test_invalid_settings_name_the_setting(environ: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ=environ)
    assert err.value.setting == setting


def test_secrets_do_not_show_in_settings_repr() -> None:
    s = load_settings(
        environ={"PYWATS_EVENTS_AMQP_URL": "amqp://u:topsecret@h/", "PYWATS_EVENTS_WATS_TOKEN": "tok123"}
    )
    assert "topsecret" not in repr(s) and "tok123" not in repr(s)
    assert s.section("wats", WatsSettings).resolved_token() == "tok123"


def test_token_from_file(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("filetoken\n")
    s = load_settings(overrides={"wats": {"token_file": str(tmp_path / "t")}}, environ={})
    assert s.section("wats", WatsSettings).resolved_token() == "filetoken"


# ------------------------------------------------------------------ redaction and logs


def test_redact_urls_tokens_and_registered_secrets() -> None:
    register_secret("Zm9vOmJhcg==")
    text = (
        "connect amqp://guest:hunter2@broker:5672/ failed; Authorization: Basic Zm9vOmJhcg== "
        "token=abc.def&x=1 url=https://u:p%40ss@wats.example.com/api"
    )
    out = redact(text)
    for secret in ("hunter2", "Zm9vOmJhcg==", "abc.def", "p%40ss"):
        assert secret not in out
    assert "amqp://guest:***@broker:5672/" in out


def test_json_log_lines_carry_ids_and_are_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.listener.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(
            "cannot reach %s", "mqtt://user:pw123@host", extra={"event_id": "e1", "correlation_id": "c1"}
        )
    finally:
        log.removeHandler(handler)
    data = json.loads(stream.getvalue())
    assert data["event_id"] == "e1" and data["correlation_id"] == "c1"
    assert "pw123" not in data["message"] and data["level"] == "WARNING"


# ------------------------------------------------------------------ replay


class _Recorder:
    def __init__(self) -> None:
        self.submitted: list[Event] = []
        self.quarantined: list[QuarantineRecord] = []

    async def submit(self, events: Sequence[Event]) -> None:
        self.submitted.extend(events)

    async def quarantine(self, record: QuarantineRecord) -> None:
        self.quarantined.append(record)

    def connection_changed(self, *args: object) -> None:
        pass


class _EchoCodec:
    """bytes → one event carrying the text; 'bad' → quarantine."""

    def decode(self, body: bytes, headers: object = None, topic: str | None = None) -> DecodeResult:
        if body.startswith(b"bad"):
            return DecodeResult([], [QuarantineRecord(body, "bad body", {}, None, topic)])
        return DecodeResult(
            [Event(event_type=EventType.PASSTHROUGH, payload={"t": body.decode(), "topic": topic})]
        )


def test_iter_messages_reads_dirs_files_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.json").write_bytes(b"B")
    (tmp_path / "d" / "a.json").write_bytes(b"A")
    lines = tmp_path / "c.jsonl"
    lines.write_text(
        json.dumps(
            {"body_b64": base64.b64encode(b"\x1f\x8b raw").decode(), "headers": {"h": 1}, "topic": "t/x"}
        )
        + "\n\n"
        + json.dumps({"MessageName": "CFX.Heartbeat"})
        + "\n"
    )
    msgs = list(iter_messages([tmp_path / "d", lines]))
    assert [m.body for m in msgs[:2]] == [b"A", b"B"]
    assert msgs[2].body == b"\x1f\x8b raw" and msgs[2].headers == {"h": 1} and msgs[2].topic == "t/x"
    assert json.loads(msgs[3].body) == {"MessageName": "CFX.Heartbeat"}


async def test_replay_transport_submits_in_order_and_quarantines(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(
        "\n".join(json.dumps({"body_b64": base64.b64encode(f"m{i}".encode()).decode()}) for i in range(50))
    )
    (tmp_path / "bad.txt").write_bytes(b"bad!")
    ctx = _Recorder()
    t = ReplayTransport(_EchoCodec(), paths=[f, tmp_path / "bad.txt"])
    await t.start(ctx)
    await asyncio.wait_for(t.finished.wait(), 5)
    assert [e.payload["t"] for e in ctx.submitted] == [f"m{i}" for i in range(50)]
    assert [q.raw for q in ctx.quarantined] == [b"bad!"]
    await t.stop()


async def test_replay_rate_limits() -> None:
    from pywats_events.transports.replay import ReplayMessage

    ctx = _Recorder()
    t = ReplayTransport(_EchoCodec(), messages=[ReplayMessage(b"x")] * 6, rate=20)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await t.start(ctx)
    await asyncio.wait_for(t.finished.wait(), 5)
    assert loop.time() - t0 >= 0.2
    assert len(ctx.submitted) == 6


def test_missing_replay_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ReplayTransport(_EchoCodec(), paths=[tmp_path / "nope"])


# ------------------------------------------------------------------ plugins


def test_first_party_plugins_are_available() -> None:
    assert {"replay", "amqp", "mqtt"} <= set(available(TRANSPORTS))
    assert "cfx" in available(CODECS)


def test_unknown_plugin_names_the_setting() -> None:
    with pytest.raises(ConfigurationError) as err:
        load(CODECS, "does-not-exist", setting="listener.codec")
    assert err.value.setting == "listener.codec" and "cfx" in str(err.value)


# ------------------------------------------------------------------ quarantine store


async def test_quarantine_store_keeps_raw_bytes(tmp_path: Path) -> None:
    store = SqliteQuarantine(tmp_path / "q.db")
    raw = bytes(range(256)) * 10
    qid = await store.add(QuarantineRecord(raw, "not UTF-8", {"k": b"v"}, "src", "a/b"))
    assert store.count() == 1
    [item] = store.list()
    assert item.reason == "not UTF-8" and item.topic == "a/b" and item.size == len(raw)
    full = store.get(qid)
    assert full is not None and full.raw == raw and full.headers == {"k": "v"}
    assert store.list(reason="nothing like this") == []


# ------------------------------------------------------------------ metrics and health


async def test_health_and_metrics_endpoints() -> None:
    obs = MetricsObserver()
    ev = Event(event_type=EventType.TEST_RESULT, payload={}, source="s")
    obs.message_received()
    obs.on_accepted(ev)
    obs.on_handled(ev, "ReportHandler", 0.02)
    obs.on_breaker_change("wats", "open")
    ready = [False]
    server = HealthServer(obs.registry, lambda: (ready[0], {"transports": {}}), port=0)
    port = await server.start()

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    try:
        assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
        assert (await asyncio.to_thread(get, "/readyz"))[0] == 503
        ready[0] = True
        assert (await asyncio.to_thread(get, "/readyz"))[0] == 200
        status, text = await asyncio.to_thread(get, "/metrics")
        assert status == 200
        assert "pywats_messages_received_total 1.0" in text
        assert 'pywats_events_accepted_total{event_type="test.result"} 1.0' in text
        assert 'pywats_handler_duration_seconds_bucket{handler="ReportHandler",le="0.025"} 1.0' in text
        assert 'pywats_breaker_state{key="wats",pywats_breaker_state="open"} 1.0' in text
        assert 'pywats_breaker_state{key="wats",pywats_breaker_state="closed"} 0.0' in text
        assert (await asyncio.to_thread(get, "/nope"))[0] == 404
    finally:
        await server.stop()


@pytest.mark.parametrize("name", ["listener.toml", "offline-outbox.toml", "line-simulator.toml"])
def test_sample_configurations_are_valid(name: str) -> None:
    from handlers.config import WatsHandlersConfig

    path = Path(__file__).resolve().parents[2] / "samples" / "config" / name
    settings = load_settings(path, environ={})
    WatsHandlersConfig.model_validate(settings.handlers.get("wats", {}))
    if settings.mqtt.url is not None:  # subscriptions are checked when the transport's config is built
        from pywats_events.listener.builtin_transports import mqtt_config
        from pywats_events.plugins import PluginContext

        assert mqtt_config(PluginContext(name="mqtt", settings=settings, options={})).all_subscriptions


def test_the_commented_mqtt_example_in_listener_toml_is_valid() -> None:
    """Uncommented (with the CA file left out), the [mqtt] example of the plant template loads and builds."""
    import tomllib

    from pywats_events.config import settings_model
    from pywats_events.listener.builtin_transports import mqtt_config
    from pywats_events.plugins import PluginContext

    text = (Path(__file__).resolve().parents[2] / "samples" / "config" / "listener.toml").read_text("utf-8")
    start = text.index("# [mqtt]")
    block = [line[2:] for line in text[start:].splitlines() if line.startswith("# ") or line == "#"]
    toml = "\n".join(line for line in block[: block.index('fields = { units = "degC" }') + 1])
    doc = tomllib.loads(toml.replace('ca_file = "/etc/pywats-events/plant-ca.pem"', ""))
    settings = settings_model(settings_sections()).model_validate(doc)
    config = mqtt_config(PluginContext(name="mqtt", settings=settings, options={}))
    assert config.tls and config.protocol == "5" and config.client_id == "pywats-line3"
    assert [s.codec for s in config.all_subscriptions] == [None, None, "event", "template"]


def test_first_party_plugins_resolve_to_their_packages() -> None:
    """The core names no CFX or WATS object: the entry points of the outer packages supply them."""
    from handlers.plugin import wats_handlers
    from pywats_cfx.plugin import amqp_transport, codec
    from pywats_events import plugins

    assert plugins.load(plugins.HANDLERS, "wats", setting="listener.handlers") is wats_handlers
    assert plugins.load(plugins.TRANSPORTS, "amqp", setting="amqp.url") is amqp_transport
    assert plugins.load(plugins.CODECS, "cfx", setting="listener.codec") is codec
    samples = dict(plugins.load_samples("cfx"))
    assert "units_tested_ict" in samples and samples["units_tested_ict"].lstrip().startswith(b"{")
    assert plugins.load_samples("no-such-codec") == []
    assert "outbox" in plugins.command_plugins()


def test_mqtt_transport_finds_a_codec_by_name() -> None:
    from pywats_cfx import CFXCodec
    from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport

    assert isinstance(MQTTTransport(MQTTConfig(), "cfx").codec, CFXCodec)


def _mqtt_ctx(url: str, **options: object) -> PluginContext:
    settings = load_settings(
        overrides={"mqtt": {"url": url, "topics": ["line1/#", "line2/+/cfx"], "client_id": "lst-1"}},
        environ={},
    )
    return PluginContext(name="mqtt", settings=settings, options=dict(options))


def test_mqtt_settings_become_the_transport_config() -> None:
    from pywats_events.listener.builtin_transports import mqtt_config

    cfg = mqtt_config(_mqtt_ctx("mqtts://user:p%40ss@gateway.local", persistent_session=True))
    assert (cfg.host, cfg.port, cfg.tls) == ("gateway.local", 8883, True)
    assert cfg.username == "user" and cfg.password is not None
    assert cfg.password.get_secret_value() == "p@ss"
    assert cfg.topics == {"line1/#": None, "line2/+/cfx": None}
    assert cfg.client_id == "lst-1" and cfg.persistent_session
    plain = mqtt_config(_mqtt_ctx("mqtt://127.0.0.1:1884"))
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 1884, False, None)


@pytest.mark.parametrize(
    ("url", "options", "setting"),
    [
        ("http://host", {}, "mqtt.url"),
        ("mqtt://host:99999", {}, "mqtt.url"),
        ("mqtt://host", {"keepalive": 1}, "plugins.mqtt.keepalive"),
        ("mqtt://host", {"no_such_field": 1}, "plugins.mqtt.no_such_field"),
    ],
)
def test_bad_mqtt_settings_name_the_setting(url: str, options: dict[str, object], setting: str) -> None:
    from pywats_events.listener.builtin_transports import mqtt_config

    with pytest.raises(ConfigurationError) as err:
        mqtt_config(_mqtt_ctx(url, **options))
    assert err.value.setting == setting


# ------------------------------------------------------------------ operator-facing details


def test_unknown_environment_name_is_named_with_the_sections() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={"PYWATS_EVENTS_FOO": "1"})
    assert err.value.setting == "PYWATS_EVENTS_FOO"
    assert "AMQP" in str(err.value) and "<SECTION>_<NAME>" in str(err.value)


def test_unknown_setting_lists_the_known_names(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[listener]\nmetrics_prot = 9108\n")
    with pytest.raises(ConfigurationError) as err:
        load_settings(cfg, environ={})
    assert err.value.setting == "listener.metrics_prot"
    assert "unknown setting" in str(err.value) and "metrics_port" in str(err.value)


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ("amqp", "htp://guest:pw123@host/"),
        ("amqp", "broker:5672"),
        ("mqtt", "http://u:pw123@h"),
        ("mqtt", "h:1883"),
    ],
)
def test_broker_urls_are_checked_at_load_without_echoing_them(section: str, url: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(overrides={section: {"url": url}}, environ={})
    assert err.value.setting == f"{section}.url"
    assert "pw123" not in str(err.value) and "Value error" not in str(err.value)


def test_redaction_keeps_prose_readable_but_hides_quoted_values() -> None:
    prose = "wats.token: no WATS token: set WATS_AUTH_TOKEN or --token-file"
    assert redact(prose) == prose
    assert redact("Authorization has been denied for this request") == (
        "Authorization has been denied for this request"
    )
    out = redact('{"token": "tok-9f8e", "password": "pw-1a2b"} Authorization: rawtok-77 secret=s-3c4d')
    for secret in ("tok-9f8e", "pw-1a2b", "rawtok-77", "s-3c4d"):
        assert secret not in out


# ------------------------------------------------------------------ plugin tables, cleanups


def test_plugin_options_from_the_environment_nest_with_double_underscores(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[handlers.failjson]\nfile = "from-file"\nkeep = 1\n')
    s = load_settings(
        cfg,
        environ={
            "PYWATS_EVENTS_HANDLERS__FAILJSON__DESTINATIONS": '["d"]',
            "PYWATS_EVENTS_HANDLERS__FAILJSON__FILE": "from-env",
            "PYWATS_EVENTS_HANDLERS__WATS__RETRY__MAX": "3",
            "PYWATS_EVENTS_PLUGINS__AMQP__QUEUE_TYPE": "quorum",
        },
    )
    assert s.handlers["failjson"] == {"file": "from-env", "keep": 1, "destinations": ["d"]}
    assert s.handlers["wats"] == {"retry": {"max": "3"}}
    assert s.plugins["amqp"] == {"queue_type": "quorum"}


@pytest.mark.parametrize(
    "name",
    [
        "PYWATS_EVENTS_HANDLERS_FAILJSON_DESTINATIONS",
        "PYWATS_EVENTS_PLUGINS__AMQP",
        "PYWATS_EVENTS_HANDLERS__",
    ],
)
def test_a_flat_plugin_environment_name_explains_the_scheme(name: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={name: '["d"]'})
    assert err.value.setting == name
    assert "__<NAME>__<OPTION>" in str(err.value)


def test_bad_json_in_a_plugin_option_names_it() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={"PYWATS_EVENTS_HANDLERS__FAILJSON__DESTINATIONS": '["d"'})
    assert err.value.setting == "handlers.failjson.destinations"


@pytest.mark.parametrize("setting", ["handlers", "transports"])
def test_a_plugin_listed_twice_is_rejected(tmp_path: Path, setting: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[listener]\n{setting} = ["x", "y", "x"]\n')
    with pytest.raises(ConfigurationError) as err:
        load_settings(cfg, environ={})
    assert err.value.setting == f"listener.{setting}" and "'x' is listed twice" in str(err.value)


def test_options_for_a_handler_plugin_that_does_not_exist_are_an_error(tmp_path: Path) -> None:
    from pywats_events.listener import check_plugin_tables

    s = load_settings(overrides={"handlers": {"failjsn": {"destinations": ["d"]}}}, environ={})
    with pytest.raises(ConfigurationError) as err:
        check_plugin_tables(s)
    assert err.value.setting == "handlers.failjsn"
    assert "no such handler plugin (installed: " in str(err.value) and "wats" in str(err.value)
    s = load_settings(overrides={"plugins": {"amqpp": {"queue_type": "quorum"}}}, environ={})
    with pytest.raises(ConfigurationError) as err:
        check_plugin_tables(s)
    assert err.value.setting == "plugins.amqpp" and "amqp" in str(err.value)


def test_options_for_an_installed_but_unlisted_handler_plugin_warn(caplog: pytest.LogCaptureFixture) -> None:
    from pywats_events.listener import check_plugin_tables

    s = load_settings(
        overrides={"listener": {"handlers": []}, "handlers": {"wats": {"x": 1}}, "plugins": {"mqtt": {}}},
        environ={},
    )
    with caplog.at_level(logging.WARNING, logger="pywats_events.listener"):
        check_plugin_tables(s)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("handlers.wats:") and "listener.handlers" in m for m in messages), messages
    assert any(m.startswith("plugins.mqtt:") for m in messages), messages
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pywats_events.listener"):
        check_plugin_tables(load_settings(overrides={"handlers": {"wats": {"x": 1}}}, environ={}))
    assert not caplog.records  # listed: used, nothing to say


_closed: list[str] = []


def _good_plugin(ctx: PluginContext) -> list[object]:
    async def close() -> None:
        _closed.append(ctx.name)

    ctx.cleanups.append(close)
    return []


def _bad_plugin(ctx: PluginContext) -> list[object]:
    async def close_half_opened() -> None:
        _closed.append(ctx.name)

    ctx.cleanups.append(close_half_opened)
    raise RuntimeError("destination unreachable")


async def test_a_failing_plugin_factory_still_closes_the_plugins_built_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pywats_events import plugins
    from pywats_events.listener import Listener

    monkeypatch.setitem(
        plugins._FIRST_PARTY,
        plugins.HANDLERS,
        {"good": f"{__name__}:_good_plugin", "bad": f"{__name__}:_bad_plugin"},
    )
    _closed.clear()
    s = load_settings(
        overrides={"listener": {"handlers": ["good", "bad"], "data_dir": str(tmp_path)}}, environ={}
    )
    with pytest.raises(ConfigurationError) as err:
        await Listener(s).build()
    assert err.value.setting == "handlers.bad"
    assert _closed == ["good", "bad"]


async def test_a_failing_cleanup_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    from pywats_events.listener import run_cleanups

    ran: list[str] = []

    async def broken() -> None:
        raise OSError("outbox disk gone")

    async def fine() -> None:
        ran.append("fine")

    with caplog.at_level(logging.ERROR, logger="pywats_events.listener"):
        await run_cleanups([("outbox", broken), ("wats", fine)])
    assert ran == ["fine"]
    (record,) = caplog.records
    assert "'outbox'" in record.getMessage() and "broken" in record.getMessage()
    assert record.exc_info is not None and "outbox disk gone" in str(record.exc_info[1])


async def test_the_wats_handlers_keep_their_state_in_the_data_directory(tmp_path: Path) -> None:
    """Open work transactions and usage counts survive a restart only if the state file is in the listener's
    data directory, next to the journal."""
    from handlers.plugin import wats_handlers
    from pywats_events.config import settings_model
    from pywats_events.plugins import PluginContext

    settings = settings_model(settings_sections()).model_validate(
        {"listener": {"data_dir": str(tmp_path / "data")}, "wats": {"outbox": str(tmp_path / "outbox")}}
    )
    ctx = PluginContext(name="wats", settings=settings, options={"asset": {"count_usage": True}})
    built = wats_handlers(ctx)
    try:
        assert {h.config.state_file for h in built} == {tmp_path / "data" / "wats-state.db"}
    finally:
        for handler in built:
            await handler.on_stop()
        for cleanup in ctx.cleanups:
            await cleanup()
    assert (tmp_path / "data" / "wats-state.db").is_file()


def test_the_readme_mqtt_example_builds_and_reads_as_documented() -> None:
    """The README's [mqtt] example is a valid configuration, and its template reads `23.5` as it says."""
    import tomllib

    from pywats_events import EventType
    from pywats_events.config import settings_model
    from pywats_events.listener.builtin_transports import mqtt_config
    from pywats_events.plugins import PluginContext
    from pywats_events.transports.mqtt import MQTTTransport

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    section = readme[readme.index("## MQTT") :]
    toml = section[
        section.index("```toml") + len("```toml") : section.index("```", section.index("```toml") + 7)
    ]
    settings = settings_model(settings_sections()).model_validate(tomllib.loads(toml))
    config = mqtt_config(PluginContext(name="mqtt", settings=settings, options={}))
    assert config.tls and config.client_id == "pywats-line1"
    transport = MQTTTransport(config, codec="cfx")
    template = config.subscription_for("factory/L1/ICT-01/temperature")
    assert template is not None and template.codec == "template"
    [event] = transport._codecs[id(template)].decode(b"23.5", {}, "factory/L1/ICT-01/temperature").events
    assert event.event_type is EventType.ASSET_TELEMETRY
    assert event.payload == {"units": "degC", "value": 23.5, "line": "L1", "station": "ICT-01"}


def test_the_commented_webhook_example_in_listener_toml_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented (secrets given), the [webhook] example of the plant template loads and builds."""
    import tomllib

    from pywats_events.config import settings_model
    from pywats_events.listener.builtin_transports import webhook_transport
    from pywats_events.plugins import PluginContext

    text = (Path(__file__).resolve().parents[2] / "samples" / "config" / "listener.toml").read_text("utf-8")
    start = text.index("# [webhook]")
    block = [line[2:] for line in text[start:].splitlines() if line.startswith("# ") or line == "#"]
    block = [line for line in block[: block.index('secret_env = "MES_HOOK_TOKEN"') + 1]]
    doc = tomllib.loads("\n".join(block))
    doc["webhook"]["hooks"]["line1"].pop("secret_file")
    doc["webhook"]["hooks"]["line1"]["secret_env"] = "LINE1_HOOK"
    monkeypatch.setenv("LINE1_HOOK", "x")
    monkeypatch.setenv("MES_HOOK_TOKEN", "y")
    settings = settings_model(settings_sections()).model_validate(doc)
    transport = webhook_transport(PluginContext(name="webhook", settings=settings, options={}))
    assert transport is not None and set(transport.hooks) == {"line1", "mes"}  # type: ignore[attr-defined]
