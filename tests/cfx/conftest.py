"""Fixtures for the CFX codec tests: the codec and the SDK example corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfx_helpers import CORPUS_DIR

from pywats_cfx import CFXCodec


@pytest.fixture
def corpus_dir() -> Path:
    if not (CORPUS_DIR / "messages").is_dir():
        pytest.fail(f"CFX example corpus not found at {CORPUS_DIR} (it ships with the tests)")
    return CORPUS_DIR


@pytest.fixture
def codec() -> CFXCodec:
    return CFXCodec()
