"""Fixtures for the WATS wire tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wats_helpers import TOKEN

from handlers.wats.fake import FakeWATS


@pytest.fixture
def wats() -> Iterator[FakeWATS]:
    with FakeWATS(token=TOKEN) as server:
        yield server
