"""A paho client that reads in large chunks and acknowledges in batches.

Stock paho reads every packet with three or more `recv` calls (command byte, length bytes, body) and sends
every PUBACK with its own `send`, plus a wake-up write for its network thread. At tens of thousands of
messages per second those system calls, each also a hand-over of the GIL, cost more than the parsing.
`BufferedClient` wraps the socket in a read buffer (paho's own select loop honours `pending()`, as it does for
TLS), queues a batch of PUBACKs as one write, and reads plain QoS 0/1 PUBLISH packets itself (paho builds
an MQTT 5 `Properties` object for each one, even when there are none). All three touch paho internals that
are stable across 2.x; when they are missing the client behaves exactly like stock paho.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Sequence
from typing import Any

from paho.mqtt import client as paho

__all__ = ["BufferedClient"]

_PUBACK = 0x40
_READ_SIZE = 256 * 1024
#: packets read per network-loop pass while the buffer still holds data
_READ_BURST = 2000


class _BufferedSocket:
    """Serves paho's small reads from one large `recv`; everything else goes to the real socket."""

    def __init__(self, sock: Any, owner: BufferedClient) -> None:
        self._sock = sock
        self._owner = owner
        self._buffer = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        available = len(self._buffer) - self._pos
        if available <= 0:
            try:
                data = self._sock.recv(max(size, _READ_SIZE))  # BlockingIOError / EOF pass through
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except OSError as exc:  # e.g. the broker's TLS alert: paho only logs it
                self._owner.last_error = str(exc) or type(exc).__name__
                raise
            if len(data) <= size:
                return data
            self._buffer, self._pos = data, 0
            available = len(data)
        end = self._pos + min(size, available)
        chunk = self._buffer[self._pos : end]
        self._pos = end
        return chunk

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buffer) - self._pos + (inner() if inner is not None else 0)

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(paho.Client):
    """paho's `Client` with buffered reads and `ack_batch`, and `last_error`: the text of the last socket or
    TLS error, which paho's callbacks do not carry (certificate refused, connection refused, ...)."""

    _batched_acks = hasattr(paho.Client, "_packet_queue")
    _buffered_reads = hasattr(paho.Client, "_create_socket")
    _fast_publish = hasattr(paho.Client, "_handle_on_message") and hasattr(paho, "time_func")
    last_error = ""

    def reconnect(self) -> paho.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_error = str(exc) or type(exc).__name__
            raise

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if not self._buffered_reads or isinstance(sock, paho._WebsocketWrapper):
            return sock
        return _BufferedSocket(sock, self)

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """Reads on while whole packets wait in the buffer, instead of one packet per select."""
        rc = super().loop_read(max_packets)
        for _ in range(_READ_BURST):
            sock = self._sock
            if rc != paho.MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, _BufferedSocket):
                break
            if sock.pending() <= 0:
                break
            rc = super().loop_read(max_packets)
        return rc

    def _handle_publish(self) -> paho.MQTTErrorCode:
        """A QoS 0 or 1 PUBLISH under manual acknowledgement, without MQTT 5 properties, is read here: paho
        unpacks it with format strings and builds a `Properties` object per MQTT 5 message (together 10-15 µs
        a message). QoS 2, properties, topic aliases and anything unusual stay on paho's path."""
        if not self._manual_ack or not self._fast_publish:
            return super()._handle_publish()
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        if qos == 2 or len(packet) < 3:
            return super()._handle_publish()
        topic_end = 2 + int.from_bytes(packet[:2], "big")
        payload_at = topic_end + (2 if qos else 0)
        if topic_end == 2 or len(packet) < payload_at:  # empty topic: malformed, or an MQTT 5 topic alias
            return super()._handle_publish()
        if self._protocol == paho.MQTTv5:
            if len(packet) <= payload_at or packet[payload_at] != 0:  # properties present
                return super()._handle_publish()
            payload_at += 1
        message = paho.MQTTMessage(
            mid=int.from_bytes(packet[topic_end : topic_end + 2], "big") if qos else 0,
            topic=bytes(packet[2:topic_end]),
        )
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.payload = bytes(packet[payload_at:])
        message.timestamp = paho.time_func()
        self._handle_on_message(message)
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_batch(self, acks: Sequence[tuple[int, int]]) -> None:
        """Acknowledges (mid, qos) pairs in the given order: QoS 1 PUBACKs go out in one write."""
        if not self._batched_acks:
            for mid, qos in acks:
                self.ack(mid, qos)
            return
        run: list[bytes] = []
        for mid, qos in acks:
            if qos == 1:
                run.append(struct.pack("!BBH", _PUBACK, 2, mid))
                continue
            self._queue_pubacks(run)
            run = []
            self.ack(mid, qos)
        self._queue_pubacks(run)

    def _queue_pubacks(self, packets: list[bytes]) -> None:
        if packets:
            self._packet_queue(_PUBACK, b"".join(packets), 0, 1)
