"""Every event the CFX codec makes from the bundled samples validates against its declared payload model."""

from __future__ import annotations

import pytest

from pywats_cfx import MAPPED_MESSAGES, CFXCodec
from pywats_cfx.samples import list_samples, load_sample
from pywats_events.payloads import PAYLOAD_MODELS


def test_every_mapped_event_type_has_a_payload_model() -> None:
    assert {t.value for t in MAPPED_MESSAGES.values()} <= set(PAYLOAD_MODELS)


@pytest.mark.parametrize("sample", list_samples())
def test_sample_events_validate_against_their_model(sample: str) -> None:
    events = CFXCodec().decode(load_sample(sample)).events
    assert events
    for event in events:
        model = PAYLOAD_MODELS[event.event_type.value]
        parsed = model.model_validate(event.payload)
        declared = {
            name for name, value in event.payload.items() if name in model.model_fields and value is not None
        }
        assert declared <= parsed.model_fields_set
