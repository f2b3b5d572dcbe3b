"""`BufferedClient` reads what stock paho reads: the same messages from the same PUBLISH packets, the same
bytes through its read buffer, and PUBACKs that are byte-for-byte paho's."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pywats_events.transports.mqtt._client import BufferedClient, _BufferedSocket

PUBLISH = 0x30


def _publish_packet(
    topic: bytes, payload: bytes, *, qos: int, mid: int, retain: bool, dup: bool, properties: bytes | None
) -> tuple[int, bytes]:
    """(fixed-header command byte, variable header + payload) of a PUBLISH, as it arrives from a broker."""
    command = PUBLISH | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if properties is not None:
        body += properties
    return command, body + payload


def _received(client: paho.Client, command: int, body: bytes) -> paho.MQTTMessage:
    got: list[paho.MQTTMessage] = []
    client.on_message = lambda _c, _u, message: got.append(message)
    client._in_packet = {"command": command, "packet": body}  # type: ignore[assignment]
    client._handle_publish()
    assert len(got) == 1
    return got[0]


def _user_property() -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("line", "L1")]
    return bytes(props.pack())


CASES = [
    ("3.1.1", b"cfx/line1/ict", b'{"a": 1}', 1, 513, False, False, None),
    ("3.1.1", b"factory/L1/ICT-01/temperature", b"23.5", 0, 0, True, False, None),
    ("3.1.1", b"x", b"", 1, 65535, False, True, None),
    ("5", b"cfx/line1/ict", b"\x1f\x8b gzip bytes", 1, 7, False, False, b"\x00"),
    ("5", b"factory/L1/ICT-01/temperature", b"23.5", 0, 0, True, False, b"\x00"),
    ("5", b"cfx/line1/ict", b"body", 1, 9, False, False, _user_property()),
]


@pytest.mark.parametrize(("protocol", "topic", "payload", "qos", "mid", "retain", "dup", "properties"), CASES)
def test_publish_packets_become_the_messages_paho_makes(
    protocol: str,
    topic: bytes,
    payload: bytes,
    qos: int,
    mid: int,
    retain: bool,
    dup: bool,
    properties: bytes | None,
) -> None:
    version = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
    command, body = _publish_packet(
        topic, payload, qos=qos, mid=mid, retain=retain, dup=dup, properties=properties
    )
    ours = _received(
        BufferedClient(CallbackAPIVersion.VERSION2, protocol=version, manual_ack=True), command, body
    )
    theirs = _received(
        paho.Client(CallbackAPIVersion.VERSION2, protocol=version, manual_ack=True), command, body
    )
    for name in ("topic", "payload", "qos", "mid", "retain", "dup"):
        assert getattr(ours, name) == getattr(theirs, name), name
    if properties is not None and len(properties) > 1:
        assert ours.properties is not None and ours.properties.UserProperty == [("line", "L1")]


class _ChunkSocket:
    """A non-blocking socket double that hands out `data` in the given chunk sizes, then would block."""

    def __init__(self, data: bytes, chunks: list[int]) -> None:
        self.data, self.chunks = data, chunks

    def recv(self, size: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        take = min(size, self.chunks.pop(0) if self.chunks else len(self.data))
        out, self.data = self.data[:take], self.data[take:]
        return out


def test_the_read_buffer_returns_the_stream_unchanged_in_any_read_sizes() -> None:
    data = bytes(range(256)) * 50
    sock = _BufferedSocket(
        _ChunkSocket(data, [7, 3000, 1, 9000]), BufferedClient(CallbackAPIVersion.VERSION2)
    )
    out = b""
    sizes = iter([1, 1, 2, 500, 12_000, 1, 7])
    while True:
        try:
            chunk = sock.recv(next(sizes, 100))
        except BlockingIOError:
            break
        out += chunk
        assert sock.pending() >= 0
    assert out == data and sock.pending() == 0


def test_a_batch_of_acks_is_the_bytes_paho_would_send() -> None:
    ours = BufferedClient(CallbackAPIVersion.VERSION2, manual_ack=True)
    theirs = paho.Client(CallbackAPIVersion.VERSION2, manual_ack=True)
    acks = [(1, 1), (2, 1), (65535, 1), (3, 0)]
    ours.ack_batch(acks)
    for mid, qos in acks:
        theirs.ack(mid, qos)

    def sent(client: Any) -> bytes:
        return b"".join(bytes(packet["packet"]) for packet in client._out_packet)

    assert sent(ours) == sent(theirs) == b"".join(struct.pack("!BBH", 0x40, 2, m) for m in (1, 2, 65535))
