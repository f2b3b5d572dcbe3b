"""The real brokers the tests use, the skip-or-fail rule for missing parts, and a cuttable TCP proxy.

Rule: a reachable broker → the test runs; unreachable → skip with the reason, except under CI=true, where a
missing part is a failure (CI must not go green by skipping).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from typing import NoReturn

import pytest

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"
MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883
#: RabbitMQ's MQTT plugin, beside Mosquitto (which holds 1883)
RABBITMQ_MQTT_PORT = 1884

#: Erlang run in the broker before enabling the plugin: load the app so its defaults are in place, then set
#: the listener port persistently (a plain set_env before the load is overwritten by the app's default, 1883)
RABBITMQ_MQTT_LISTENER = (
    "application:load(rabbitmq_mqtt), "
    f'application:set_env(rabbitmq_mqtt, tcp_listeners, [{{"127.0.0.1", {RABBITMQ_MQTT_PORT}}}],'
    " [{persistent, true}])."
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test for `reason`, or fail it under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run)")
    pytest.skip(reason)


def require_port(host: str, port: int, what: str) -> None:
    """Return if `host:port` accepts a TCP connection; otherwise skip (or fail under CI)."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return
    except OSError as exc:
        skip_or_fail(f"{what} not reachable at {host}:{port} ({exc})")


def require_rabbitmq() -> str:
    """The AMQP URL of the test RabbitMQ, once it is known to be reachable."""
    require_port(RABBITMQ_HOST, RABBITMQ_PORT, "RabbitMQ")
    return RABBITMQ_URL


def require_mosquitto() -> None:
    require_port(MQTT_HOST, MQTT_PORT, "Mosquitto")


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def enable_rabbitmq_mqtt() -> str | None:
    """Start RabbitMQ's MQTT plugin on `RABBITMQ_MQTT_PORT` at run time (no broker restart); None when it
    answers, else why not. The same recipe as in .ci/run: set the port, enable the plugin, then take it out of
    the enabled-plugins file again, so a broker restart does not start it on the default port, 1883."""
    ctl, plugins = shutil.which("rabbitmqctl"), shutil.which("rabbitmq-plugins")
    if ctl is None or plugins is None:
        return "rabbitmqctl/rabbitmq-plugins not found"
    steps = [
        [ctl, "eval", RABBITMQ_MQTT_LISTENER],
        [plugins, "enable", "rabbitmq_mqtt"],
        [plugins, "disable", "--offline", "rabbitmq_mqtt"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(step[1:])}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(step[1:])}: {(done.stderr or done.stdout).strip()[:300]}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _port_answers(RABBITMQ_HOST, RABBITMQ_MQTT_PORT):
            return None
        time.sleep(0.5)
    return f"the plugin is enabled but nothing answers on {RABBITMQ_MQTT_PORT}"


def require_rabbitmq_mqtt() -> int:
    """The port of RabbitMQ's MQTT plugin, enabled at run time if it does not answer yet."""
    require_rabbitmq()
    if not _port_answers(RABBITMQ_HOST, RABBITMQ_MQTT_PORT):
        why = enable_rabbitmq_mqtt()
        if why is not None:
            skip_or_fail(
                f"RabbitMQ's MQTT plugin not reachable at {RABBITMQ_HOST}:{RABBITMQ_MQTT_PORT} ({why})"
            )
    return RABBITMQ_MQTT_PORT


class TcpProxy:
    """A relay in front of a broker, to kill live connections without touching the broker itself."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepting = True
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.transport.abort()

    def cut(self) -> None:
        """Abort every live connection (like a broker crash or a pulled cable); keep listening."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
