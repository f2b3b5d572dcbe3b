"""The webhook transport: systems that can only call a URL post events and CFX messages over HTTP.

``POST /hooks/<name>`` on ``[webhook] host/port``; the delivery contract and security are described in
`._app` and in docs/operations.md ("Webhooks"). The server parts (Starlette, uvicorn) are imported when first
used, so reading the ``[webhook]`` settings costs a listener without hooks nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, AuthError, HookAuth, sign
from ._config import HookSettings, WebhookSettings, is_loopback, load_secret
from ._idempotency import IdempotencyStore

if TYPE_CHECKING:
    from ._app import Hook, WebhookApp
    from ._transport import WebhookTransport

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AuthError",
    "Hook",
    "HookAuth",
    "HookSettings",
    "IdempotencyStore",
    "WebhookApp",
    "WebhookSettings",
    "WebhookTransport",
    "is_loopback",
    "load_secret",
    "sign",
]

_LAZY = {"Hook": "._app", "WebhookApp": "._app", "WebhookTransport": "._transport"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
