"""A QoS 1 MQTT publisher in its own process, and the helpers tests use to drive it.

Run as a script it publishes `--count` messages and keeps going through broker restarts (paho reconnects and
resends every unacknowledged publish). Each index whose PUBACK arrived is appended to `--acked-file` at once
(one per line, flushed), so a test knows exactly what the broker accepted, even if this process is killed.
Prints one summary line; exits 0 when all are acknowledged, 3 when `--deadline` passes first.

    proc = start_publisher(host, port, topic="line/{i}", count=200, acked_file=tmp_path / "acked")
    proc.wait(30); assert read_acked(tmp_path / "acked") == set(range(200))
"""

from __future__ import annotations

import argparse
import gzip
import json
import queue
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SCRIPT = Path(__file__).resolve()
EXIT_DEADLINE = 3
UNITS_TESTED = "CFX.Production.TestAndInspection.UnitsTested"
_ID_NAMESPACE = uuid.UUID("6f1d3a52-3c1e-4a8e-9d0f-2b7c1e5a9f10")


def message_uuid(index: int, kind: str = "message") -> str:
    """A UUID fixed by the index, so a test can tell which published message an event came from."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}-{index}"))


def json_payload(index: int) -> bytes:
    body = {"i": index, "value": index * 0.5, "ts": datetime.now(timezone.utc).isoformat()}
    return json.dumps(body).encode()


def cfx_units_tested(index: int) -> dict[str, Any]:
    """A minimal, valid CFX UnitsTested envelope for unit `SN-<index>`."""
    return {
        "MessageName": UNITS_TESTED,
        "Version": "2.0",
        "TimeStamp": datetime.now(timezone.utc).isoformat(),
        "UniqueID": message_uuid(index),
        "Source": "test-publisher",
        "Target": None,
        "RequestID": None,
        "MessageBody": {
            "$type": f"{UNITS_TESTED}, CFX",
            "TransactionID": message_uuid(index, "transaction"),
            "TestMethod": "ICT",
            "Tester": {"OperatorIdentifier": "OP-1", "ActorType": "Human", "LoginName": "op1"},
            "TestedUnits": [
                {
                    "UnitIdentifier": f"SN-{index}",
                    "UnitPositionNumber": 1,
                    "OverallResult": "Passed",
                    "Tests": [],
                }
            ],
        },
    }


def cfx_gzip_payload(index: int) -> bytes:
    return gzip.compress(json.dumps(cfx_units_tested(index)).encode(), mtime=0)


PAYLOADS = {"json": json_payload, "cfx-gzip": cfx_gzip_payload}


def read_acked(path: Path | str) -> set[int]:
    """Indexes the broker acknowledged so far (tolerates a half-written last line of a running publisher)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    complete = text.split("\n")[:-1]  # whatever follows the last newline is still being written
    return {int(line) for line in complete if line.strip()}


def start_publisher(
    host: str,
    port: int,
    *,
    topic: str,
    count: int,
    acked_file: Path | str,
    client_id: str = "test-publisher",
    persistent: bool = True,
    rate: float = 0.0,
    payload: str = "json",
    index_start: int = 0,
    max_inflight: int = 100,
    deadline: float = 60.0,
    qos: int = 1,
) -> subprocess.Popen[str]:
    """Run this module as a separate publisher process; read its summary with `proc.communicate()`."""
    args = [
        sys.executable,
        str(SCRIPT),
        f"--host={host}",
        f"--port={port}",
        f"--topic={topic}",
        f"--count={count}",
        f"--qos={qos}",
        f"--client-id={client_id}",
        f"--rate={rate}",
        f"--payload={payload}",
        f"--prefix-index-start={index_start}",
        f"--acked-file={acked_file}",
        f"--max-inflight={max_inflight}",
        f"--deadline={deadline}",
    ]
    if persistent:
        args.append("--persistent")
    return subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True, help="'{i}' is replaced by the message index")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--qos", type=int, choices=(1, 2), default=1)
    parser.add_argument("--client-id", default="test-publisher")
    parser.add_argument("--persistent", action="store_true", help="clean_session=False")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 = as fast as possible")
    parser.add_argument("--payload", choices=sorted(PAYLOADS), default="json")
    parser.add_argument("--prefix-index-start", type=int, default=0, help="index of the first message")
    parser.add_argument("--acked-file", type=Path, required=True)
    parser.add_argument("--max-inflight", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds before giving up (exit 3)")
    return parser.parse_args(argv)


class _Publisher:
    """Publishes from the main thread; paho's network thread only queues PUBACKed message ids.

    paho calls `on_publish` while holding its outgoing-message lock, which `publish()` also takes, so the
    callback must not wait for the main thread: the mid → index bookkeeping happens here, in order.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.pending: dict[int, deque[int]] = {}
        self.acked: set[int] = set()
        self.connects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=args.client_id,
            clean_session=not args.persistent,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(args.max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]  # paho says int; floats work
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.out = open(args.acked_file, "a", encoding="utf-8")  # closed at the end of run()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self.connects += 1

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acks.put(mid)

    def _drain(self, timeout: float | None = None) -> None:
        try:
            mid = self.acks.get(timeout=timeout) if timeout else self.acks.get_nowait()
            while True:
                waiting = self.pending.get(mid)
                if waiting:
                    index = waiting.popleft()
                    if index not in self.acked:
                        self.acked.add(index)
                        self.out.write(f"{index}\n")
                if not waiting:
                    self.pending.pop(mid, None)
                mid = self.acks.get_nowait()
        except queue.Empty:
            self.out.flush()

    def run(self) -> int:
        args = self.args
        make_payload = PAYLOADS[args.payload]
        started = time.monotonic()
        give_up = started + args.deadline
        self.client.connect_async(args.host, args.port, keepalive=10)
        self.client.loop_start()
        try:
            for n in range(args.count):
                if time.monotonic() > give_up:
                    break
                if args.rate > 0:
                    delay = started + n / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                index = args.prefix_index_start + n
                topic = args.topic.replace("{i}", str(index))
                while True:
                    info = self.client.publish(topic, make_payload(index), qos=args.qos)
                    # NO_CONN is fine: paho keeps the message and sends it after reconnecting.
                    if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:  # its mid is still unacknowledged: wait
                        break
                    self._drain(0.05)
                self.pending.setdefault(info.mid, deque()).append(index)
                self._drain()
            while len(self.acked) < args.count and time.monotonic() < give_up:
                self._drain(0.05)
            self._drain()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.out.close()
        elapsed = time.monotonic() - started
        done = len(self.acked) >= args.count
        print(
            f"publisher {'done' if done else 'DEADLINE'}: acked={len(self.acked)}/{args.count} "
            f"connects={self.connects} elapsed={elapsed:.2f}s",
            flush=True,
        )
        return 0 if done else EXIT_DEADLINE


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.acked_file.parent.mkdir(parents=True, exist_ok=True)
    return _Publisher(args).run()


if __name__ == "__main__":
    sys.exit(main())
