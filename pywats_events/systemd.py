"""systemd service notifications (``Type=notify``): readiness, watchdog keep-alives, stopping.

The protocol is one datagram per message to the unix socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract socket when it starts with ``@``), so a plain socket does it: no dependency. Outside systemd
(no ``$NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

log = logging.getLogger("pywats_events.systemd")


class SystemdNotifier:
    """Sends ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1`` and ``STATUS=...`` to the service manager."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if raw.startswith("@"):
            self.address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            self.address = raw
        #: seconds between keep-alives systemd expects (``WatchdogSec=``), None without a watchdog
        self.watchdog_interval: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if self.address is not None and usec.isdigit() and int(usec) > 0 and pid in ("", str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6
        self._ready = False
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Sends one message (``KEY=value`` lines); False when not under systemd or the send failed."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.warning("systemd notification failed (%s): %s", ", ".join(lines), exc)
            return False
        return True

    def ready(self, status: str) -> None:
        """``READY=1`` once: the transports are connected and the listener takes input."""
        if not self._ready:
            self._ready = True
            self.notify("READY=1", f"STATUS={status}")

    def keep_alive(self, now: float) -> None:
        """``WATCHDOG=1`` at half the watchdog interval (as sd_watchdog_enabled(3) advises); call often."""
        if self.watchdog_interval is not None and now - self._last_ping >= self.watchdog_interval / 2:
            self._last_ping = now
            self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.notify("STOPPING=1", f"STATUS={status}")
