"""Fixtures of the listener tests (helpers live in listener_support.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from brokers import require_rabbitmq
from listener_support import LISTENER_TOKEN, Cli, delete_topology

from handlers.wats.fake import FakeWATS


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def rabbit() -> str:
    return require_rabbitmq()


@pytest.fixture
def topology(rabbit: str) -> Iterator[tuple[str, str, str]]:
    """Unique exchange / queue / dead-letter exchange names, deleted after the test."""
    uid = uuid.uuid4().hex[:10]
    names = (f"test-cfx-{uid}", f"test-q-{uid}", f"test-dlx-{uid}")
    yield names
    asyncio.run(delete_topology(*names))


@pytest.fixture
def wats() -> Iterator[FakeWATS]:
    """A FakeWATS over HTTP that takes `LISTENER_TOKEN`."""
    with FakeWATS(token=LISTENER_TOKEN) as fake:
        yield fake
