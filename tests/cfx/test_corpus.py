"""Conformance against the SDK's published examples (the corpus is read in place, never copied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cfx_helpers import INVALID_CORPUS_FILES, corpus_files, corpus_message_name

from pywats_cfx import MAPPED_MESSAGES, CFXCodec
from pywats_cfx.models import model_for, parse_envelope
from pywats_events import EventType
from pywats_events import payloads as P

PAYLOAD_MODELS: dict[EventType, type] = {
    EventType.TEST_RESULT: P.TestResultEvent,
    EventType.INSPECTION_RESULT: P.TestResultEvent,
    EventType.WORK_STARTED: P.WorkStartedEvent,
    EventType.WORK_COMPLETED: P.WorkCompletedEvent,
    EventType.UNIT_DISQUALIFIED: P.UnitDisqualifiedEvent,
    EventType.UNITS_ARRIVED: P.UnitMovedEvent,
    EventType.UNITS_DEPARTED: P.UnitMovedEvent,
    EventType.MATERIAL_INSTALLED: P.MaterialInstalledEvent,
    EventType.MATERIALS_LOADED: P.MaterialsLoadedEvent,
    EventType.MATERIALS_UNLOADED: P.MaterialsLoadedEvent,
    EventType.ASSET_FAULT: P.AssetFaultEvent,
    EventType.ASSET_FAULT_CLEARED: P.AssetFaultClearedEvent,
    EventType.ASSET_FAULT_ACKNOWLEDGED: P.AssetFaultClearedEvent,
    EventType.ASSET_STATE_CHANGED: P.AssetStateChangedEvent,
    EventType.ENDPOINT_CONNECTED: P.EndpointEvent,
    EventType.ENDPOINT_SHUTTING_DOWN: P.EndpointEvent,
    EventType.ENDPOINT_HEARTBEAT: P.EndpointEvent,
    EventType.PASSTHROUGH: P.PassthroughEvent,
}

FILES = corpus_files()
VALID = [f for f in FILES if f.name not in INVALID_CORPUS_FILES]
MAPPED = [f for f in VALID if (corpus_message_name(f) or "CFX.EndpointConnected") in MAPPED_MESSAGES]


def _ids(paths: list[Path]) -> list[str]:
    return [p.name[len("cfx-sdk__") : -len(".json")][:60] for p in paths]


def test_corpus_is_present_and_complete(corpus_dir: Path) -> None:
    assert len(corpus_files()) == 222
    present = {p.name for p in corpus_files()}
    assert INVALID_CORPUS_FILES <= present


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_every_valid_example_decodes_as_a_body_named_by_its_file(
    corpus_dir: Path, codec: CFXCodec, path: Path
) -> None:
    name = corpus_message_name(path)
    messages, quarantined = codec.decode_messages(path.read_bytes(), message_name=name)
    assert quarantined == [], quarantined[0].reason
    assert len(messages) == 1
    env = messages[0].envelope
    assert env.message_name == (name or "CFX.EndpointConnected")
    assert messages[0].events, "every decoded message yields at least one event"
    # the typed description reads it too (a message without a struct of its own stays a dict)
    typed = parse_envelope(env)
    cls = model_for(env.message_name)
    assert isinstance(typed.message_body, cls or dict)
    if env.message_name not in MAPPED_MESSAGES:
        assert cls is None
        assert [e.event_type for e in messages[0].events] == [EventType.PASSTHROUGH]


@pytest.mark.parametrize("path", MAPPED, ids=_ids(MAPPED))
def test_mapped_examples_convert_to_valid_domain_payloads(
    corpus_dir: Path, codec: CFXCodec, path: Path
) -> None:
    name = corpus_message_name(path) or "CFX.EndpointConnected"
    result = codec.decode(path.read_bytes(), {"cfx-message": name})
    assert result.quarantined == []
    assert result.events
    for ev in result.events:
        assert ev.event_type is MAPPED_MESSAGES[name]
        model = PAYLOAD_MODELS[ev.event_type]
        typed = model.model_validate(ev.payload)
        # every field of the payload model is present: the payload is the model's JSON dump
        assert set(model.model_fields) <= set(ev.payload)
        assert typed.message_name == name
        assert ev.metadata.causation_id == ev.payload["message_id"]


@pytest.mark.parametrize("name", sorted(INVALID_CORPUS_FILES), ids=lambda n: n[9:60])
def test_invalid_json_examples_are_quarantined_with_a_clear_reason(
    corpus_dir: Path, codec: CFXCodec, name: str
) -> None:
    path = corpus_dir / "messages" / name
    raw = path.read_bytes()
    with pytest.raises(ValueError):
        json.loads(raw)
    result = codec.decode(raw, {"cfx-message": corpus_message_name(path)})
    assert result.events == []
    assert len(result.quarantined) == 1
    q = result.quarantined[0]
    assert q.reason.startswith("invalid JSON:") and " line " in q.reason
    assert q.raw == raw


def test_unknown_fields_in_work_completed_are_kept(corpus_dir: Path, codec: CFXCodec) -> None:
    path = next(p for p in VALID if "WorkCompleted__ex3" in p.name)  # carries a non-standard `Stage`
    messages, _ = codec.decode_messages(path.read_bytes(), message_name="CFX.Production.WorkCompleted")
    assert messages[0].envelope.body["Stage"]["StageName"] == "STAGE1"
    typed = parse_envelope(messages[0].envelope).message_body
    assert typed.stage is not None and typed.stage.stage_name == "STAGE1"
    assert messages[0].events[0].payload["stage"] == "STAGE1"
