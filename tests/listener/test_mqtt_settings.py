"""`[mqtt]` settings (file, environment, CLI) → the `MQTTConfig` that `pywats-events run` connects with."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto
from listener_support import Cli

from pywats_events import ConfigurationError
from pywats_events.config import load_settings
from pywats_events.listener.builtin_transports import mqtt_config, mqtt_transport
from pywats_events.plugins import PluginContext
from pywats_events.transports.mqtt import MQTTConfig, Subscription

pytestmark = pytest.mark.timeout(30)

PASSWORD = "Pw-9f3kq7"
URL_PASSWORD = "UrlPw-2m8x"


def _ctx(tmp_path: Path, toml: str, environ: dict[str, str] | None = None, **options: Any) -> PluginContext:
    """Settings loaded the way the listener loads them: a TOML file, then the environment."""
    cfg = tmp_path / "pywats-events.toml"
    cfg.write_text(toml, encoding="utf-8")
    settings = load_settings(cfg, environ=environ or {})
    return PluginContext(name="mqtt", settings=settings, options=dict(options))


def _config(tmp_path: Path, toml: str, environ: dict[str, str] | None = None, **options: Any) -> MQTTConfig:
    config = mqtt_config(_ctx(tmp_path, toml, environ, **options))
    assert isinstance(config, MQTTConfig)
    return config


# ------------------------------------------------------------------ subscriptions


def test_subscription_tables_become_subscriptions_after_the_topics(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        """
        [mqtt]
        url = "mqtt://broker.local"
        topics = ["cfx/line1/#"]

        [[mqtt.subscriptions]]
        template = "factory/{line}/{station}/temperature"
        fields = {units = "degC"}
        qos = 0

        [[mqtt.subscriptions]]
        topic = "events/#"
        codec = "event"
        """,
    )
    cfx, template, events = config.all_subscriptions
    assert cfx == Subscription(topic="cfx/line1/#")
    assert (template.topic, template.codec, template.template) == (
        "factory/+/+/temperature",
        "template",
        "factory/{line}/{station}/temperature",
    )
    assert (template.fields, template.qos, template.event_type) == ({"units": "degC"}, 0, "asset.telemetry")
    assert (events.topic, events.codec) == ("events/#", "event")
    assert config.subscription_for("factory/L1/ICT-01/temperature") is template
    assert config.subscription_for("events/line1") is events
    assert config.subscription_for("other/topic") is None


def test_the_transport_reads_each_subscription_with_its_codec(tmp_path: Path) -> None:
    """What the settings promise reaches the decoding: a template reading becomes a telemetry event."""
    ctx = _ctx(
        tmp_path,
        """
        [mqtt]
        url = "mqtt://broker.local"
        [[mqtt.subscriptions]]
        template = "factory/{line}/{station}/temperature"
        [[mqtt.subscriptions]]
        topic = "events/#"
        codec = "event"
        """,
    )
    transport = mqtt_transport(ctx)
    assert transport is not None
    template, events = transport.config.all_subscriptions  # type: ignore[attr-defined]
    result = transport._codecs[id(template)].decode(  # type: ignore[attr-defined]
        b"23.5", {}, "factory/L1/ICT-01/temperature"
    )
    [event] = result.events
    assert event.payload == {"line": "L1", "station": "ICT-01", "value": 23.5}
    refused = transport._codecs[id(events)].decode(b"23.5", {}, "events/x")  # type: ignore[attr-defined]
    assert refused.events == [] and len(refused.quarantined) == 1
    assert "factory/+/+/temperature" in ctx.facts["input"] and "events/#" in ctx.facts["input"]


def test_without_topics_or_subscriptions_the_listener_reads_cfx(tmp_path: Path) -> None:
    config = _config(tmp_path, '[mqtt]\nurl = "mqtt://broker.local"\n')
    assert [s.topic for s in config.all_subscriptions] == ["cfx/#"]
    assert config.all_subscriptions[0].codec is None, "read with the listener's codec"


def test_topics_and_subscriptions_from_the_environment(tmp_path: Path) -> None:
    """Containers configure by environment: a comma list of topics, a JSON list of subscription tables."""
    config = _config(
        tmp_path,
        "",
        {
            "PYWATS_EVENTS_MQTT_URL": "mqtt://broker.local",
            "PYWATS_EVENTS_MQTT_TOPICS": "cfx/a/#, cfx/b/#",
            "PYWATS_EVENTS_MQTT_SUBSCRIPTIONS": '[{"template": "plant/{station}/pressure"}]',
        },
    )
    assert [s.topic for s in config.all_subscriptions] == ["cfx/a/#", "cfx/b/#", "plant/+/pressure"]


# ------------------------------------------------------------------ bad subscriptions


@pytest.mark.parametrize(
    ("table", "setting", "reason"),
    [
        ('topic = "a/#/b"', "mqtt.subscriptions.0", "'#' must be the whole last level"),
        ('topic = "a/b+/c"', "mqtt.subscriptions.0", "'+' must be a whole level"),
        ('template = "factory/{line}x/temperature"', "mqtt.subscriptions.0", "a field must be a whole level"),
        ('template = "factory/+/temperature"', "mqtt.subscriptions.0", "name the level instead of '+'"),
        ('codec = "event"', "mqtt.subscriptions.0", "needs a topic (or a template)"),
        ('topic = "a/#"\ncodec = "template"', "mqtt.subscriptions.0", "codec 'template' needs a template"),
        ('topic = "a/#"\nqos = 3', "mqtt.subscriptions.0.qos", "0, 1 or 2"),
        ('topic = "a/#"\ncolour = "red"', "mqtt.subscriptions.0.colour", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_subscription_names_the_setting(tmp_path: Path, table: str, setting: str, reason: str) -> None:
    toml = f'[mqtt]\nurl = "mqtt://user:{URL_PASSWORD}@broker.local"\n[[mqtt.subscriptions]]\n{table}\n'
    with pytest.raises(ConfigurationError) as err:
        _config(tmp_path, toml, {"PYWATS_EVENTS_MQTT_PASSWORD": PASSWORD})
    assert err.value.setting == setting
    assert reason in str(err.value)
    assert PASSWORD not in str(err.value) and URL_PASSWORD not in str(err.value)


def test_the_second_bad_table_is_named_by_its_index(tmp_path: Path) -> None:
    toml = (
        '[mqtt]\nurl = "mqtt://broker.local"\n'
        '[[mqtt.subscriptions]]\ntopic = "ok/#"\n'
        '[[mqtt.subscriptions]]\ntopic = "a/#/b"\n'
    )
    with pytest.raises(ConfigurationError) as err:
        _config(tmp_path, toml)
    assert err.value.setting == "mqtt.subscriptions.1"


@pytest.mark.parametrize(
    ("table", "setting", "reason"),
    [
        ('topic = "a/#"\ncodec = "nope"', "mqtt.subscriptions[a/#].codec", "no plugin named 'nope'"),
        (
            'template = "factory/{line}/temperature"\nevent_type = "sensor.{quantity}"',
            "mqtt.subscriptions.0",
            "names ['quantity']",
        ),
    ],
)
def test_a_subscription_the_transport_cannot_read_names_the_setting(
    tmp_path: Path, table: str, setting: str, reason: str
) -> None:
    """Codec names and event types are checked when the listener builds the transport, before connecting."""
    toml = f'[mqtt]\nurl = "mqtt://broker.local"\n[[mqtt.subscriptions]]\n{table}\n'
    with pytest.raises(ConfigurationError) as err:
        mqtt_transport(
            _ctx(
                tmp_path, toml, {"PYWATS_EVENTS_MQTT_USERNAME": "u", "PYWATS_EVENTS_MQTT_PASSWORD": PASSWORD}
            )
        )
    assert err.value.setting == setting
    assert reason in str(err.value)
    assert PASSWORD not in str(err.value)


# ------------------------------------------------------------------ connection, credentials, TLS


def test_environment_credentials_override_the_url(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f'[mqtt]\nurl = "mqtt://urluser:{URL_PASSWORD}@broker.local:1884"\n',
        {"PYWATS_EVENTS_MQTT_USERNAME": "envuser", "PYWATS_EVENTS_MQTT_PASSWORD": PASSWORD},
    )
    assert (config.host, config.port, config.username) == ("broker.local", 1884, "envuser")
    assert config.password is not None and config.password.get_secret_value() == PASSWORD
    for text in (repr(config), str(config), config.url):
        assert PASSWORD not in text and URL_PASSWORD not in text and "urluser" not in text
    assert repr(config).startswith("MQTTConfig(mqtt://broker.local:1884")


def test_url_credentials_are_used_when_the_environment_has_none(tmp_path: Path) -> None:
    config = _config(tmp_path, f'[mqtt]\nurl = "mqtt://urluser:{URL_PASSWORD}@broker.local"\n')
    assert config.username == "urluser"
    assert config.password is not None and config.password.get_secret_value() == URL_PASSWORD
    assert URL_PASSWORD not in repr(config)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtts://broker.local", ("broker.local", 8883, True)),
        ("ssl://broker.local", ("broker.local", 8883, True)),
        ("mqtts://broker.local:9883", ("broker.local", 9883, True)),
        ("mqtt://broker.local", ("broker.local", 1883, False)),
        ("tcp://broker.local", ("broker.local", 1883, False)),
    ],
)
def test_the_url_scheme_decides_tls_and_the_default_port(
    tmp_path: Path, url: str, expected: tuple[str, int, bool]
) -> None:
    config = _config(tmp_path, f'[mqtt]\nurl = "{url}"\n')
    assert (config.host, config.port, config.tls) == expected
    assert config.url.startswith("mqtts://" if expected[2] else "mqtt://")


def test_a_missing_ca_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(ConfigurationError) as err:
        _config(
            tmp_path,
            f'[mqtt]\nurl = "mqtts://user:{URL_PASSWORD}@broker.local"\nca_file = "{missing.as_posix()}"\n',
        )
    assert err.value.setting.startswith("mqtt")
    assert err.value.setting == "mqtt.ca_file" and str(missing) in str(err.value)
    assert URL_PASSWORD not in str(err.value)


def test_an_existing_ca_file_is_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    config = _config(tmp_path, f'[mqtt]\nurl = "mqtts://broker.local"\nca_file = "{ca.as_posix()}"\n')
    assert config.ca_file == ca and config.tls


def test_protocol_session_and_plugin_options_pass_through(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[mqtt]\nurl = "mqtt://broker.local"\nprotocol = "5"\nsession_expiry = 600\nqos = 2\n'
        "persistent_session = false\n",
        connect_timeout=2.5,
        batch_size=10,
    )
    assert (config.protocol, config.session_expiry, config.qos) == ("5", 600, 2)
    assert not config.persistent_session
    assert (config.connect_timeout, config.batch_size) == (2.5, 10)


def test_an_unknown_protocol_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as err:
        _ctx(tmp_path, '[mqtt]\nurl = "mqtt://broker.local"\nprotocol = "3.1"\n')
    assert err.value.setting == "mqtt.protocol"


def test_client_id_from_the_environment_or_the_command_line(tmp_path: Path) -> None:
    toml = '[mqtt]\nurl = "mqtt://broker.local"\nclient_id = "from-file"\n'
    assert _config(tmp_path, toml).client_id == "from-file"
    from_env = _config(tmp_path, toml, {"PYWATS_EVENTS_MQTT_CLIENT_ID": "line1-listener"})
    assert from_env.client_id == "line1-listener"
    cfg = tmp_path / "pywats-events.toml"
    settings = load_settings(
        cfg,
        overrides={"mqtt": {"client_id": "from-cli"}},
        environ={"PYWATS_EVENTS_MQTT_CLIENT_ID": "line1-listener"},
    )
    from_cli = mqtt_config(PluginContext(name="mqtt", settings=settings, options={}))
    assert from_cli.client_id == "from-cli", "command line over environment over file"


def test_the_default_client_id_is_stable(tmp_path: Path) -> None:
    """A persistent session is found again only under the same id: it must not change between runs."""
    first = _config(tmp_path, '[mqtt]\nurl = "mqtt://broker.local"\n')
    second = _config(tmp_path, '[mqtt]\nurl = "mqtt://broker.local"\n')
    assert first.client_id == second.client_id
    assert first.client_id.startswith("pywats-events-")


def test_an_unescaped_password_never_reaches_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as err:
        _config(tmp_path, '[mqtt]\nurl = "mqtt://user:Pw9f3/kq7@broker.local"\n')
    assert "Pw9f3" not in str(err.value) and "percent-encoded" in str(err.value)
    assert err.value.setting == "mqtt.url"


# ------------------------------------------------------------------ the running listener


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_run_logs_and_summary_never_show_the_password(tmp_path: Path, cli: Cli) -> None:
    """Credentials from URL and environment; debug logging; the summary names broker, client id, filters."""
    require_mosquitto()
    client_id = f"test-settings-{uuid.uuid4().hex[:10]}"
    prefix = f"pywats-test/{uuid.uuid4().hex[:10]}"
    cfg = tmp_path / "pywats-events.toml"
    cfg.write_text(
        f'[mqtt]\nurl = "mqtt://urluser:{URL_PASSWORD}@{MQTT_HOST}:{MQTT_PORT}"\n'
        f'topics = ["{prefix}/cfx/#"]\n'
        f'[[mqtt.subscriptions]]\ntemplate = "{prefix}/{{station}}/temperature"\n',
        encoding="utf-8",
    )
    res = cli(
        "run",
        "--config",
        cfg,
        "--data-dir",
        tmp_path / "data",
        "--idle-exit",
        "1",
        cwd=tmp_path,
        timeout=45,
        PYWATS_EVENTS_MQTT_USERNAME="envuser",
        PYWATS_EVENTS_MQTT_PASSWORD=PASSWORD,
        PYWATS_EVENTS_MQTT_CLIENT_ID=client_id,
        # leave no session behind on the shared broker
        PYWATS_EVENTS_MQTT_PERSISTENT_SESSION="false",
        PYWATS_EVENTS_LISTENER_LOG_LEVEL="DEBUG",
    )
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-3000:]
    assert PASSWORD not in output and URL_PASSWORD not in output
    assert f"mqtt://{MQTT_HOST}:{MQTT_PORT} ({client_id})" in output, output[-3000:]
    assert f"{prefix}/cfx/#" in output and f"{prefix}/+/temperature" in output


def test_run_refuses_a_bad_subscription_before_connecting(tmp_path: Path, cli: Cli) -> None:
    """Exit 2 with the setting named; the broker's address is never tried and no password is printed."""
    cfg = tmp_path / "pywats-events.toml"
    cfg.write_text(
        f'[mqtt]\nurl = "mqtt://urluser:{URL_PASSWORD}@192.0.2.1"\n[[mqtt.subscriptions]]\ntopic = "a/#/b"\n',
        encoding="utf-8",
    )
    res = cli("run", "--config", cfg, "--data-dir", tmp_path / "data", cwd=tmp_path, timeout=30)
    output = res.stdout + res.stderr
    assert res.returncode == 2, output[-3000:]
    flat = " ".join(output.split())  # the console wraps long lines
    assert "mqtt.subscriptions.0" in flat and "'#' must be the whole last level" in flat
    assert URL_PASSWORD not in output
