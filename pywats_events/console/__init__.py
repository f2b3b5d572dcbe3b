"""The operator console: a small web page on the listener's metrics port (see `app.console_app`).

This package's top level imports no web framework, so a plugin can contribute a `ConsolePanel` cheaply."""

from .panels import ConsolePanel, PanelAction, PanelView

__all__ = ["ConsolePanel", "PanelAction", "PanelView"]
