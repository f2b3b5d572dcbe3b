"""The plugin contract of the settings: a plugin's own section, validated, refused when unknown, set from
the environment and from its command-line options, exactly like a core section."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from pywats_events import ConfigurationError
from pywats_events.config import Settings, load_settings, settings_model
from pywats_events.plugins import RunOption, SettingsSection, settings_sections


class _Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    depth: int = Field(3, gt=0)
    topics: list[str] = Field(default_factory=list)


PROBE = SettingsSection(
    "probe",
    _Probe,
    run_options=(RunOption("--probe-url", "probe.url", "Probe server."),),
    transport="probe",
    input="url",
)


def test_a_plugin_section_is_validated_and_named_in_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[probe]\ndepth = 0\n")
    with pytest.raises(ConfigurationError) as err:
        load_settings(cfg, environ={}, sections={"probe": PROBE})
    assert err.value.setting == "probe.depth"
    cfg.write_text("[probe]\ndeep = 1\n")
    with pytest.raises(ConfigurationError) as err:
        load_settings(cfg, environ={}, sections={"probe": PROBE})
    assert err.value.setting == "probe.deep" and "depth" in str(err.value)


def test_a_plugin_section_is_set_from_the_environment() -> None:
    s = load_settings(
        environ={"PYWATS_EVENTS_PROBE_URL": "p://x", "PYWATS_EVENTS_PROBE_TOPICS": "a, b"},
        sections={"probe": PROBE},
    )
    probe = s.section("probe", _Probe)
    assert (probe.url, probe.topics, probe.depth) == ("p://x", ["a", "b"], 3)
    assert s.inputs() == [("probe", "probe.url")] and s.has_input
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={"PYWATS_EVENTS_PROBE_DEEP": "1"}, sections={"probe": PROBE})
    assert err.value.setting == "probe.deep"


def test_without_the_plugin_its_section_is_unknown() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(overrides={"probe": {"url": "p://x"}}, environ={}, sections={})
    assert err.value.setting == "probe" and "unknown setting" in str(err.value)
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={"PYWATS_EVENTS_PROBE_URL": "p://x"}, sections={})
    assert err.value.setting == "PYWATS_EVENTS_PROBE_URL"
    assert load_settings(environ={}, sections={}).section("probe", _Probe) == _Probe()


def test_a_plugin_cannot_replace_a_core_section() -> None:
    with pytest.raises(ConfigurationError) as err:
        settings_model({"journal": SettingsSection("journal", _Probe)})
    assert err.value.setting == "journal"


def test_the_installed_plugins_contribute_amqp_wats_and_webhook() -> None:
    sections = settings_sections()
    assert {"amqp", "wats", "webhook"} <= set(sections)
    flags = {opt.flag: opt.setting for section in sections.values() for opt in section.run_options}
    assert flags == {
        "--amqp": "amqp.url",
        "--exchange": "amqp.exchange",
        "--queue": "amqp.queue",
        "--binding": "amqp.bindings",
        "--wats-url": "wats.url",
        "--token-file": "wats.token_file",
        "--outbox": "wats.outbox",
        "--webhook-port": "webhook.port",
        "--webhook-host": "webhook.host",
    }
    assert set(Settings.model_fields) == {
        "listener",
        "journal",
        "quarantine",
        "bus",
        "replay",
        "console",
        "mqtt",
        "handlers",
        "plugins",
    }
