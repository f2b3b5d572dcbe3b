"""`create_handlers`: the WATS handlers from settings, as the listener builds them (entry point)."""

from __future__ import annotations

import logging
import os
from typing import Any

from pywats_events import BaseHandler, ConfigurationError

from .asset import AssetHandler
from .config import WatsHandlersConfig
from .production import ProductionHandler
from .report import ReportHandler
from .resolution import Resolver
from .wats.sink import RequestSink, WatsRequest, WatsResponse
from .wats_handler import wats_error_policy

__all__ = ["build_sink", "create_handlers"]

log = logging.getLogger(__name__)

ENV_BASE_URL = "WATS_BASE_URL"
ENV_TOKEN = "WATS_AUTH_TOKEN"


class _SharedSink:
    """One sink used by several handlers; really closed when the last of them stops."""

    def __init__(self, inner: RequestSink, users: int) -> None:
        self.inner = inner
        self._users = users

    async def send(self, request: WatsRequest) -> WatsResponse:
        return await self.inner.send(request)

    async def aclose(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.inner.aclose()


def build_sink(config: WatsHandlersConfig) -> tuple[RequestSink, bool]:
    """The sink the settings describe, and whether WATS can be read through it.

    `wats_url` (or env WATS_BASE_URL) + `token` (or env WATS_AUTH_TOKEN) → `HttpSender`; `outbox` →
    `Outbox`, which reads through the sender when a server is also configured and is offline otherwise."""
    url = config.wats_url or os.environ.get(ENV_BASE_URL)
    token = config.token.get_secret_value() if config.token is not None else os.environ.get(ENV_TOKEN)
    sender: RequestSink | None = None
    if url:
        from .wats.sender import HttpSender  # imported lazily: the wire layer is optional for previews

        sender = HttpSender(url, token)
    if config.outbox is not None:
        from .wats.outbox import Outbox

        return Outbox(config.outbox, reads=sender), sender is not None
    if sender is None:
        raise ConfigurationError(
            "wats_url", f"set wats_url (or {ENV_BASE_URL} and {ENV_TOKEN}) or an outbox path"
        )
    return sender, True


def create_handlers(
    settings: dict[str, Any] | WatsHandlersConfig | None = None, sink: RequestSink | None = None
) -> list[BaseHandler]:
    """The enabled WATS handlers sharing one sink, one resolver and one circuit breaker.

    Without `sink` one is built from the settings (`build_sink`) and closed when the handlers stop;
    a given sink stays the caller's to close."""
    config = (
        settings
        if isinstance(settings, WatsHandlersConfig)
        else WatsHandlersConfig.model_validate(settings or {})
    )
    owns = sink is None
    if sink is None:
        sink, can_read = build_sink(config)
        if not can_read and not config.offline:
            log.info("WATS outbox without a server: lookups are off, resolution uses the configuration only")
            config = config.model_copy(update={"offline": True})
    resolver = Resolver(config, sink)
    classes: list[type[ReportHandler | AssetHandler | ProductionHandler]] = []
    if config.enable_reports:
        classes.append(ReportHandler)
    if config.enable_assets:
        classes.append(AssetHandler)
    if config.enable_production:
        classes.append(ProductionHandler)
    shared: RequestSink = _SharedSink(sink, len(classes)) if owns else sink
    policy = wats_error_policy(config)
    return [cls(shared, config, resolver, owns_sink=owns, error_policy=policy) for cls in classes]
