"""CFXConfig resolution: documented construction, URL/env precedence, TLS, redaction (no broker needed)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from pywats_cfx.amqp import AMQPConfig, CFXConfig, CFXTransport, EndpointConfig
from pywats_events import ConfigurationError


def test_documented_construction() -> None:
    config = CFXConfig(
        amqp=AMQPConfig(host="cfx-broker.factory.local"),
        endpoint=EndpointConfig(cfx_handle="//Company/WATS/Station1"),
    )
    params = config.amqp.connection_parameters({})
    assert (params.host, params.port, params.login, params.virtualhost, params.ssl) == (
        "cfx-broker.factory.local",
        5672,
        "guest",
        "/",
        False,
    )
    assert config.amqp.bindings() == ["#"]
    assert config.amqp.dead_letter_queue_name() == "pywats-events.dead-letter"
    transport = CFXTransport(config)
    assert "cfx-broker.factory.local" in repr(transport)


def test_message_types_become_sdk_subject_bindings() -> None:
    amqp = AMQPConfig(
        message_types=["CFX.Production.TestAndInspection.UnitsTested", "CFX.Production.WorkStarted"]
    )
    assert amqp.bindings() == [
        "#.CFX.Production.TestAndInspection.UnitsTested",
        "#.CFX.Production.WorkStarted",
    ]


def test_url_then_environment_then_defaults() -> None:
    env = {"CFX_AMQP_URL": "amqps://svc:envpw@mq.plant:5999/line%2F1", "CFX_AMQP_USER": "ignored"}
    params = AMQPConfig().connection_parameters(env)
    assert (params.host, params.port, params.login, params.password) == ("mq.plant", 5999, "svc", "envpw")
    assert params.virtualhost == "line/1" and params.ssl
    # Explicit configuration wins over the environment.
    explicit = AMQPConfig(url="amqp://cfg:cfgpw@cfg-host/", username="other")
    params = explicit.connection_parameters(env)
    assert (params.host, params.login, params.password, params.port) == ("cfg-host", "other", "cfgpw", 5672)
    # User and password alone from the environment.
    params = AMQPConfig(host="h").connection_parameters({"CFX_AMQP_USER": "u", "CFX_AMQP_PASSWORD": "p"})
    assert (params.login, params.password) == ("u", "p")


def test_tls_defaults_to_port_5671() -> None:
    params = AMQPConfig(host="h", ssl=True).connection_parameters({})
    assert params.port == 5671 and params.ssl


def test_bad_url_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        AMQPConfig(url="http://u:topsecret@h/").connection_parameters({})
    assert info.value.setting == "amqp.url"
    assert "topsecret" not in str(info.value)


def test_reprs_hide_secrets() -> None:
    config = CFXConfig(
        amqp=AMQPConfig(url="amqp://u:topsecret@h/", password="alsosecret"),
        endpoint=EndpointConfig(cfx_handle="x"),
    )
    for text in (
        repr(config),
        str(config),
        repr(config.amqp),
        config.model_dump_json(),
        repr(config.amqp.connection_parameters({})),
        repr(CFXTransport(config)),
    ):
        assert "topsecret" not in text and "alsosecret" not in text


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        EndpointConfig(cfx_handle=" ")
    with pytest.raises(ValidationError):
        AMQPConfig(queue_type="stream")
    with pytest.raises(ValidationError):
        AMQPConfig(routing_keys=[])
    with pytest.raises(ValidationError):
        AMQPConfig(hots="typo")  # type: ignore[call-arg]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=pywats-test",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_context_loads_ca_and_client_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    amqp = AMQPConfig(url="amqps://h/", ca_file=cert, cert_file=cert, key_file=key)
    context = amqp.ssl_context({})
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert any(c.get("subject") == ((("commonName", "pywats-test"),),) for c in context.get_ca_certs())
    assert AMQPConfig(host="h").ssl_context({}) is None


def test_tls_bad_files_name_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError) as info:
        AMQPConfig(ssl=True, ca_file=missing).ssl_context({})
    assert info.value.setting == "amqp.ca_file"
    with pytest.raises(ConfigurationError) as info:
        AMQPConfig(ssl=True, cert_file=missing).ssl_context({})
    assert info.value.setting == "amqp.cert_file"
