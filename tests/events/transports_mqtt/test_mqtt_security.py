"""MQTTTransport against private Mosquitto brokers with TLS and authentication: a trusted broker delivers, an
untrusted one, a missing client certificate or a wrong password fail `start()` fast with a reason, and the
password never shows up in the error, its traceback or the logs.

Certificates come from the `openssl` command line (a test CA, a server certificate for 127.0.0.1/localhost,
one for another host name, a client certificate, and a second CA nothing chains to); the password file from
`mosquitto_passwd`. Each test runs its own broker in its `tmp_path`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from brokers import skip_or_fail
from mosquitto_instance import MosquittoInstance, find_mosquitto_binary, require_mosquitto_binary
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from transport_doubles import RecordingContext

from pywats_events import Event
from pywats_events.transports import BaseTransport, ConnectionState
from pywats_events.transports.mqtt import MQTTConfig, MQTTTransport, Subscription

pytestmark = [pytest.mark.broker]

TOPIC = "secure/line1/events"
CONNECT_TIMEOUT = 5.0
#: a refused connection must fail well inside `connect_timeout`, not by running into it
FAST = 3.0
USER = "line1-listener"
PASSWORD = "Pa55-right-7f3c1e"
WRONG_PASSWORD = "Pa55-wrong-9d2b4a"


# -- certificates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files: `ca` signed `server_*` (127.0.0.1, localhost), `wrong_host_*` (another name only) and
    `client_*`; `other_ca` signed nothing the brokers present."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    wrong_host_cert: Path
    wrong_host_key: Path
    client_cert: Path
    client_key: Path


_CA_EXT = (
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
)
_LEAF_EXT = (
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
)


def _openssl(openssl: str, *args: str | Path) -> None:
    done = subprocess.run([openssl, *map(str, args)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))} failed:\n{done.stderr}"


def _key_and_csr(openssl: str, directory: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, csr = directory / f"{name}.key", directory / f"{name}.csr"
    _openssl(openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl(openssl, "req", "-new", "-key", key, "-subj", subject, "-out", csr)
    return key, csr


def _make_ca(openssl: str, directory: Path, name: str) -> tuple[Path, Path]:
    key, csr = _key_and_csr(openssl, directory, name, f"/CN=pywats test {name}")
    ext, cert = directory / f"{name}.ext", directory / f"{name}.pem"
    ext.write_text(_CA_EXT, encoding="utf-8")
    _openssl(
        openssl, "x509", "-req", "-in", csr, "-signkey", key, "-days", "2", "-extfile", ext, "-out", cert
    )
    return cert, key


def _make_leaf(
    openssl: str, directory: Path, name: str, ca: tuple[Path, Path], extensions: str
) -> tuple[Path, Path]:
    key, csr = _key_and_csr(openssl, directory, name, f"/CN={name}")
    ext, cert = directory / f"{name}.ext", directory / f"{name}.pem"
    ext.write_text(_LEAF_EXT + extensions, encoding="utf-8")
    ca_cert, ca_key = ca
    _openssl(
        openssl,
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_cert,
        "-CAkey",
        ca_key,
        "-days",
        "2",
        "-extfile",
        ext,
        "-out",
        cert,
    )
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("openssl command not found (needed to make test certificates)")
    directory = tmp_path_factory.mktemp("pki")
    ca = _make_ca(openssl, directory, "ca")
    other_ca, _ = _make_ca(openssl, directory, "other-ca")
    server = _make_leaf(
        openssl,
        directory,
        "server",
        ca,
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    wrong_host = _make_leaf(
        openssl,
        directory,
        "wrong-host",
        ca,
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:broker.invalid\n",
    )
    client = _make_leaf(openssl, directory, "line1-client", ca, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], other_ca, *server, *wrong_host, *client)


def _tls_listener(
    pki: Pki, *, server: tuple[Path, Path] | None = None, require_client_cert: bool = False
) -> str:
    cert, key = server or (pki.server_cert, pki.server_key)
    lines = [f"cafile {pki.ca}", f"certfile {cert}", f"keyfile {key}"]
    if require_client_cert:
        lines.append("require_certificate true")
    return "\n".join(lines) + "\n"


def _client_tls(pki: Pki, *, client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client_cert:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


# -- brokers, publisher, transport ---------------------------------------------------------------------------


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    require_mosquitto_binary()
    return tmp_path / "broker"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    mosquitto = find_mosquitto_binary()
    candidates = [shutil.which("mosquitto_passwd")]
    if mosquitto is not None:  # packages put it in bin/ next to sbin/mosquitto
        candidates.append(str(Path(mosquitto).parent.parent / "bin" / "mosquitto_passwd"))
    tool = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if tool is None:
        skip_or_fail("mosquitto_passwd not found (needed to write the broker's password file)")
    path = tmp_path / "passwd"
    done = subprocess.run(
        [tool, "-c", "-b", str(path), USER, PASSWORD], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def event() -> Event:
    return Event(event_type="x", payload={"station": "ict-1", "serial": f"SN-{uuid.uuid4().hex[:8]}"})


def _publish(
    broker: MosquittoInstance,
    event: Event,
    *,
    tls: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """One QoS 1 publish from a separate client; returns once the broker's PUBACK arrived. Retained, so it
    reaches the transport whether or not its SUBSCRIBE was processed first."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    if username is not None:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set_context(tls)
    connected = threading.Event()

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        assert connected.wait(5), "publisher did not connect:\n" + broker.log_tail()
        info = client.publish(TOPIC, event.to_json(), qos=1, retain=True)
        info.wait_for_publish(5)
        assert info.is_published(), "broker did not acknowledge the publish"
    finally:
        client.disconnect()
        client.loop_stop()


def _config(broker: MosquittoInstance, **settings: Any) -> MQTTConfig:
    defaults: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": f"pywats-sec-{uuid.uuid4().hex[:8]}",
        "persistent_session": False,
        "connect_timeout": CONNECT_TIMEOUT,
        "subscriptions": [Subscription(topic=TOPIC, codec="event")],
    }
    return MQTTConfig(**{**defaults, **settings})


@dataclass
class DetailContext(RecordingContext):
    """Also keeps the detail text of every connection change (it reaches the bus, its status and logs)."""

    details: list[str] = field(default_factory=list)

    def connection_changed(self, transport: BaseTransport, state: ConnectionState, detail: str = "") -> None:
        self.details.append(detail)
        super().connection_changed(transport, state, detail)


async def _receives(
    transport: MQTTTransport, broker: MosquittoInstance, event: Event, **publish: Any
) -> None:
    """Start the transport, publish `event` from another client, and see exactly it arrive and be acked."""
    context = RecordingContext()
    await transport.start(context)
    try:
        assert transport.state is ConnectionState.CONNECTED
        await asyncio.to_thread(_publish, broker, event, **publish)
        await context.wait_for(lambda: len(context.events) >= 1 and transport.stats.acked >= 1, timeout=5)
        await asyncio.sleep(0.1)  # a duplicate would show up here
    finally:
        await transport.stop()
    assert [(e.id, e.type_name, e.payload) for e in context.events] == [(event.id, "x", event.payload)]
    assert transport.stats.acked == 1 and transport.pending_acks() == 0


async def _refused(transport: MQTTTransport) -> tuple[ConnectionError, float, DetailContext]:
    """`start()` must raise ConnectionError; returns it, how long it took and what the context saw."""
    context = DetailContext()
    began = time.monotonic()
    with pytest.raises(ConnectionError) as caught:
        await transport.start(context)
    elapsed = time.monotonic() - began
    assert ConnectionState.CONNECTED not in context.states
    assert transport.state is not ConnectionState.CONNECTED
    return caught.value, elapsed, context


def _accepted_clients(broker: MosquittoInstance) -> int:
    """MQTT sessions the broker accepted (the readiness probe is a bare TCP connect, never one of these)."""
    return broker.log_path.read_text(encoding="utf-8", errors="replace").count("New client connected")


@pytest.fixture
def brokers() -> Iterator[list[MosquittoInstance]]:
    """Stops every broker a test started, also when it fails half-way."""
    started: list[MosquittoInstance] = []
    yield started
    for broker in started:
        broker.stop()


def _start(
    brokers: list[MosquittoInstance], directory: Path, extra: str = "", **options: Any
) -> MosquittoInstance:
    broker = MosquittoInstance(directory, extra, **options)
    brokers.append(broker)
    broker.start()
    return broker


# -- TLS -----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_tls_with_the_ca_file_connects_and_receives(
    pki: Pki, broker_dir: Path, brokers: list[MosquittoInstance], event: Event
) -> None:
    broker = _start(brokers, broker_dir, listener_options=_tls_listener(pki))
    transport = MQTTTransport(_config(broker, tls=True, ca_file=pki.ca))
    assert transport.config.url.startswith("mqtts://")
    await _receives(transport, broker, event, tls=_client_tls(pki))


@pytest.mark.timeout(30)
async def test_tls_by_host_name_matches_the_certificate(
    pki: Pki, broker_dir: Path, brokers: list[MosquittoInstance], event: Event
) -> None:
    """The certificate names both 127.0.0.1 and localhost: a broker addressed by name verifies too."""
    broker = _start(brokers, broker_dir, listener_options=_tls_listener(pki))
    transport = MQTTTransport(_config(broker, host="localhost", tls=True, ca_file=pki.ca))
    await _receives(transport, broker, event, tls=_client_tls(pki))


_UNTRUSTED = {
    "system trust store": None,  # no ca_file: the test CA is in no system store
    "other CA": "other_ca",
    "host name mismatch": "ca",  # trusted CA, but the certificate names another host
}


async def _untrusted_refusal(
    pki: Pki, directory: Path, brokers: list[MosquittoInstance], case: str
) -> tuple[MosquittoInstance, ConnectionError, float]:
    server = (pki.wrong_host_cert, pki.wrong_host_key) if case == "host name mismatch" else None
    broker = _start(brokers, directory, listener_options=_tls_listener(pki, server=server))
    ca_name = _UNTRUSTED[case]
    ca_file = getattr(pki, ca_name) if ca_name else None
    error, elapsed, _ = await _refused(MQTTTransport(_config(broker, tls=True, ca_file=ca_file)))
    return broker, error, elapsed


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(_UNTRUSTED))
async def test_tls_untrusted_server_is_refused_fast(
    pki: Pki, broker_dir: Path, brokers: list[MosquittoInstance], case: str
) -> None:
    broker, error, elapsed = await _untrusted_refusal(pki, broker_dir, brokers, case)

    assert elapsed < FAST, f"took {elapsed:.1f} s (connect_timeout {CONNECT_TIMEOUT:g} s): {error}"
    text = str(error)
    assert f"mqtts://{broker.host}:{broker.port}" in text
    assert "no answer" not in text, text  # refused, not timed out
    assert "TLS" in text or "certificate" in text.lower(), text
    assert _accepted_clients(broker) == 0, broker.log_tail()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", ["other CA", "host name mismatch"])
async def test_tls_refusal_names_the_certificate_problem(
    pki: Pki, broker_dir: Path, brokers: list[MosquittoInstance], case: str
) -> None:
    """An operator with the wrong CA or host name must read that in the error, not a list of guesses."""
    _, error, _ = await _untrusted_refusal(pki, broker_dir, brokers, case)
    assert "certificate verify failed" in str(error).lower(), str(error)


@pytest.mark.timeout(30)
async def test_client_certificate_signed_by_the_ca_is_accepted(
    pki: Pki, broker_dir: Path, brokers: list[MosquittoInstance], event: Event
) -> None:
    broker = _start(brokers, broker_dir, listener_options=_tls_listener(pki, require_client_cert=True))
    transport = MQTTTransport(
        _config(broker, tls=True, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    )
    await _receives(transport, broker, event, tls=_client_tls(pki, client_cert=True))


@pytest.mark.timeout(30)
async def test_missing_client_certificate_is_refused_fast(
    pki: Pki, broker_dir: Path, brokers: list[MosquittoInstance]
) -> None:
    broker = _start(brokers, broker_dir, listener_options=_tls_listener(pki, require_client_cert=True))

    error, elapsed, _ = await _refused(MQTTTransport(_config(broker, tls=True, ca_file=pki.ca)))

    assert _accepted_clients(broker) == 0, broker.log_tail()
    assert elapsed < FAST, f"took {elapsed:.1f} s (connect_timeout {CONNECT_TIMEOUT:g} s): {error}"
    assert "certificate" in str(error).lower(), str(error)


# -- username and password -----------------------------------------------------------------------------------


def _auth_broker(brokers: list[MosquittoInstance], directory: Path, password_file: Path) -> MosquittoInstance:
    return _start(brokers, directory, f"allow_anonymous false\npassword_file {password_file}\n")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_right_credentials_connect_and_receive(
    broker_dir: Path,
    password_file: Path,
    brokers: list[MosquittoInstance],
    event: Event,
    protocol: Literal["3.1.1", "5"],
) -> None:
    broker = _auth_broker(brokers, broker_dir, password_file)
    transport = MQTTTransport(_config(broker, protocol=protocol, username=USER, password=PASSWORD))
    await _receives(transport, broker, event, username=USER, password=PASSWORD)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_wrong_password_is_refused_fast_and_never_shown(
    broker_dir: Path,
    password_file: Path,
    brokers: list[MosquittoInstance],
    caplog: pytest.LogCaptureFixture,
    protocol: Literal["3.1.1", "5"],
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = _auth_broker(brokers, broker_dir, password_file)
    config = _config(broker, protocol=protocol, username=USER, password=WRONG_PASSWORD)
    transport = MQTTTransport(config)

    error, elapsed, context = await _refused(transport)

    assert elapsed < FAST, f"took {elapsed:.1f} s (connect_timeout {CONNECT_TIMEOUT:g} s): {error}"
    text = str(error)
    assert "Not authorized" in text or "Bad user name or password" in text, text
    assert "not authorised" in broker.log_path.read_text(encoding="utf-8"), broker.log_tail()
    assert _accepted_clients(broker) == 0
    # start() gave up: no client left behind retrying with the wrong password
    attempts = broker.log_path.read_text(encoding="utf-8").count("New connection from")
    await asyncio.sleep(1.5)  # > reconnect_min_delay
    assert broker.log_path.read_text(encoding="utf-8").count("New connection from") == attempts

    shown = [
        text,
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        repr(error.__context__),
        repr(transport),
        repr(config),
        str(config),
        *context.details,
    ]
    for record in caplog.records:
        shown.append(record.getMessage())
        if record.exc_info:
            shown.append("".join(traceback.format_exception(*record.exc_info)))
    for secret in (WRONG_PASSWORD, PASSWORD):
        leaks = [s for s in shown if secret in s]
        assert not leaks, f"password shown in: {leaks}"


@pytest.mark.timeout(30)
async def test_no_credentials_on_a_broker_without_anonymous_access(
    broker_dir: Path, password_file: Path, brokers: list[MosquittoInstance]
) -> None:
    broker = _auth_broker(brokers, broker_dir, password_file)
    error, elapsed, _ = await _refused(MQTTTransport(_config(broker)))
    assert elapsed < FAST, f"took {elapsed:.1f} s: {error}"
    assert "Not authorized" in str(error), str(error)
