"""A private Mosquitto broker for tests that must stop, kill or restart the broker.

The system broker on 1883 is shared and must never be touched; a `MosquittoInstance` runs its own
`mosquitto -c <conf>` on a free 127.0.0.1 port with its config, log and persistence database in one directory
(a test's `tmp_path`), so a test can restart it and see what survived:

    with MosquittoInstance(tmp_path, recommended_config()) as broker:
        ...  # connect to broker.host, broker.port
        broker.restart()  # clean stop (Mosquitto saves its database) and start on the same port

TLS and authentication go in `listener_options` (placed right after the instance's listener line, where
Mosquitto applies per-listener options) and the extra text:

    MosquittoInstance(tmp_path, f"allow_anonymous false\npassword_file {passwd}\n",
                      listener_options=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from brokers import skip_or_fail

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
RECOMMENDED_CONFIG = REPO_ROOT / "samples" / "config" / "mosquitto.conf"
_FALLBACK_BINARY = "/usr/sbin/mosquitto"

# Options the instance sets itself. Mosquitto rejects a second `persistence_location` or `log_dest file`
# ("Duplicate ... value"), so these are commented out of the extra text; the others would point the broker at
# system paths or another user.
_OWNED_OPTIONS = {"persistence_location", "pid_file", "user"}
# The instance owns its network: a listener in the extra text would be a second, unmanaged one.
_FORBIDDEN_OPTIONS = {"listener", "port", "bind_address", "bind_interface"}

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Never leave a broker behind when a test forgot to stop its instance."""
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def find_mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(_FALLBACK_BINARY, os.X_OK):
        return _FALLBACK_BINARY
    return None


def require_mosquitto_binary() -> str:
    """The `mosquitto` executable; skip the test (fail under CI=true) when it is not installed."""
    binary = find_mosquitto_binary()
    if binary is None:
        skip_or_fail("mosquitto binary not found (PATH or /usr/sbin/mosquitto)")
    return binary


def recommended_config() -> str:
    """The project's recommended broker settings (samples/config/mosquitto.conf): test what users deploy."""
    return RECOMMENDED_CONFIG.read_text(encoding="utf-8")


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _sets(text: str, option: str) -> bool:
    return any(line.split()[:1] == [option] for line in text.splitlines())


def _filter_extra(extra: str) -> str:
    """The extra config with the options this instance owns commented out (see `_OWNED_OPTIONS`)."""
    out: list[str] = []
    for line in extra.splitlines():
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else ""
        if key in _FORBIDDEN_OPTIONS:
            raise ValueError(f"extra config must not set {key!r}: the instance owns its listener ({line!r})")
        if key in _OWNED_OPTIONS or (key == "log_dest" and words[1:2] == ["file"]):
            out.append(f"# set by MosquittoInstance: {line}")
        else:
            out.append(line)
    return "\n".join(out)


class MosquittoInstance:
    """One private broker: config, log (`mosquitto.log`) and database (`mosquitto.db`) live in `directory`.

    The port is picked at the first `start()` (or given) and kept for every restart, so clients configured
    with it reconnect to the restarted broker. Extra config (e.g. `recommended_config()`) comes after the
    listener and before the instance's own persistence/logging lines, which win where Mosquitto keeps the
    last value (`persistence` is always true); `autosave_interval` and the rest come from the extra text.
    Anonymous clients are allowed unless the extra text or `listener_options` sets `allow_anonymous` itself.
    """

    def __init__(
        self,
        directory: Path | str,
        extra_config: str = "",
        *,
        port: int | None = None,
        binary: str | None = None,
        start_timeout: float = 10.0,
        listener_options: str = "",
    ) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.extra_config = _filter_extra(extra_config)
        #: per-listener options (TLS files, `require_certificate`, ...) for the instance's one listener
        self.listener_options = _filter_extra(listener_options)
        self.binary = binary or require_mosquitto_binary()
        self.host = HOST
        self._port = port
        self._port_fixed = port is not None
        self.start_timeout = start_timeout
        self.conf_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self.stderr_path = self.directory / "mosquitto.stderr"
        self.db_path = self.directory / "mosquitto.db"
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the port is chosen at the first start()")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config_text(self) -> str:
        user = pwd.getpwuid(os.geteuid()).pw_name
        return "\n".join(
            [
                f"listener {self.port} {self.host}",
                self.listener_options,
                "",
                self.extra_config,
                "",
                # Mosquitto keeps the last value: a default after the extra text would override a test's own.
                "" if self._sets_allow_anonymous() else "allow_anonymous true",
                "persistence true",
                f"persistence_location {self.directory}/",
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                # As root, Mosquitto drops to the `mosquitto` user, which cannot write a test's tmp directory.
                f"user {user}",
                "",
            ]
        )

    def _sets_allow_anonymous(self) -> bool:
        return _sets(self.extra_config, "allow_anonymous") or _sets(self.listener_options, "allow_anonymous")

    def start(self) -> None:
        """Start the broker and return once its port accepts connections; fail with its log tail if not."""
        if self.running:
            raise RuntimeError("broker already running")
        # A probed free port can be taken before Mosquitto binds it: on the first start, try another one.
        attempts = 1 if self._port_fixed or self.starts > 0 else 3
        for attempt in range(attempts):
            if self._port is None:
                self._port = free_port(self.host)
            try:
                self._launch()
                return
            except RuntimeError:
                if attempt + 1 == attempts:
                    raise
                self._port = None

    def _launch(self) -> None:
        self.conf_path.write_text(self.config_text(), encoding="utf-8")
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.stderr_path, "ab") as err:
            proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self._proc = proc
        _live.add(proc)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _live.discard(proc)
                raise RuntimeError(
                    f"mosquitto exited with code {proc.returncode} on start (port {self.port}):\n"
                    + self.log_tail()
                )
            # "running" is logged once the listener is bound: a port answering before that is someone else's.
            if self._logged_since(log_offset, " running") and _port_open(self.host, self.port):
                self.starts += 1
                return
            time.sleep(0.02)
        self._terminate(signal.SIGKILL, 5.0)
        raise RuntimeError(
            f"mosquitto did not accept connections on {self.host}:{self.port} within "
            f"{self.start_timeout} s:\n" + self.log_tail()
        )

    def _logged_since(self, offset: int, text: str) -> bool:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return text.encode() in log.read()
        except FileNotFoundError:
            return False

    def _terminate(self, sig: signal.Signals, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                _live.discard(proc)
                self._proc = None
                raise RuntimeError(
                    f"mosquitto ignored {sig.name} for {timeout} s; killed:\n{self.log_tail()}"
                ) from None
        _live.discard(proc)
        self._proc = None
        return proc.returncode

    def stop(self, timeout: float = 10.0) -> int | None:
        """Clean shutdown (SIGTERM): Mosquitto writes its database on the way out. Returns the exit code."""
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """Crash the broker (SIGKILL): only what the last autosave wrote survives."""
        return self._terminate(signal.SIGKILL, 5.0)

    def restart(self) -> None:
        """Clean stop, then start on the same port with the same database."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log and of its stdout/stderr (config errors land there)."""
        parts: list[str] = []
        for path in (self.log_path, self.stderr_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            parts.append(f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no broker output)"

    def __enter__(self) -> MosquittoInstance:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
