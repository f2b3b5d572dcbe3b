"""Root of the test tree: pytest puts this directory on sys.path, so every test directory can import the
shared helpers here (`brokers`, `transport_doubles`) by plain name."""

from collections.abc import Iterator

import pytest

from pywats_events import logging_setup


@pytest.fixture(autouse=True)
def _registered_secrets_stay_in_their_test() -> Iterator[None]:
    """A listener run in-process registers its credentials for redaction (process-wide, as in production);
    a later test must not see them (e.g. "guest" would hide the user name in a redaction test)."""
    before = set(logging_setup._SECRETS)
    yield
    logging_setup._SECRETS.intersection_update(before)
