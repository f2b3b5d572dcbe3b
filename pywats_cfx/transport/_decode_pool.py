"""Decoding in worker processes, so gunzip + JSON + mapping run beside the event loop instead of on it.

Each worker builds its own codec once (from picklable settings) and returns the `DecodeResult` pickled:
pydantic models unpickle without re-validation, which measured as cheap as shipping plain dicts and
rebuilding with `model_construct`, and far cheaper than JSON + `model_validate_json`.

A worker that dies breaks the whole `ProcessPoolExecutor`: every pending decode fails with
`BrokenProcessPool`. `DecodePool.decode` then swaps in a fresh executor (once per broken executor) and
re-raises, so the caller can hand those deliveries back to the broker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import multiprocessing
import os
import pickle
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pywats_events import Codec, ConfigurationError, DecodeResult
from pywats_events.transports import QuarantineRecord

__all__ = ["BrokenProcessPool", "DecodePool", "codec_spec"]

#: ("cfx", settings) rebuilds a `CFXCodec` in the worker; ("codec", codec) ships a picklable codec as is
CodecSpec = tuple[str, Any]
#: (body, headers, topic) as handed to `Codec.decode`
Request = tuple[bytes, dict[str, Any], str | None]

#: deliveries that arrive in the same event-loop turn travel to a worker together, up to this many;
#: one executor round trip costs about as much parent CPU as decoding a message inline
MAX_BATCH = 16

_worker_codec: Codec | None = None


def codec_spec(codec: Codec) -> CodecSpec:
    """What a worker needs to build its own copy of `codec`. Raises `ConfigurationError` if it cannot."""
    from pywats_cfx.codec import CFXCodec

    spec: CodecSpec
    if type(codec) is CFXCodec:
        # Its default clock is a lambda; everything that shapes the output is plain data or a function.
        spec = (
            "cfx",
            {
                "limits": codec.limits,
                "topic_parser": codec.topic_parser,
                "default_message_name": codec.default_message_name,
            },
        )
    else:
        spec = ("codec", codec)
    try:
        pickle.dumps(spec)
    except Exception as exc:
        raise ConfigurationError(
            "amqp.decode_workers",
            f"the codec cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
            "use module-level functions for a topic parser, or decode_workers=0",
        ) from None
    return spec


def _init_worker(spec: CodecSpec) -> None:
    global _worker_codec
    kind, value = spec
    if kind == "cfx":
        from pywats_cfx.codec import CFXCodec

        _worker_codec = CFXCodec(**value)
    else:
        _worker_codec = value


def _decode_one(codec: Codec, body: bytes, headers: dict[str, Any], topic: str | None) -> DecodeResult:
    try:
        return codec.decode(body, headers, topic)
    except Exception as exc:  # the contract says never; a buggy codec still must not cost the message
        record = QuarantineRecord(
            raw=body, reason=f"codec raised {type(exc).__name__}: {exc}", headers=headers, topic=topic
        )
        return DecodeResult(quarantined=[record])


def _decode_batch(items: list[Request]) -> bytes:
    codec = _worker_codec
    assert codec is not None, "worker started without its initializer"
    results = [_decode_one(codec, body, headers, topic) for body, headers, topic in items]
    # Pickled here and unpickled on the event loop: the executor's result thread then only moves bytes.
    return pickle.dumps(results, pickle.HIGHEST_PROTOCOL)


def _fail(waiters: list[asyncio.Future[DecodeResult]], exc: Exception) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)


def _ping(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


class DecodePool:
    """`workers` processes running `codec.decode`; `decode` may raise `BrokenProcessPool` (after which the
    next call already runs on a fresh pool) or, for input that cannot be sent to a worker, anything else."""

    def __init__(self, codec: Codec, workers: int) -> None:
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        self.workers = workers
        self._spec = codec_spec(codec)
        methods = multiprocessing.get_all_start_methods()
        self._mp = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._executor: ProcessPoolExecutor | None = None
        #: how many times a broken pool was replaced
        self.restarts = 0
        self._pending: list[tuple[Request, asyncio.Future[DecodeResult]]] = []
        self._flush_scheduled = False

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._mp,
            initializer=_init_worker,
            initargs=(self._spec,),
        )

    async def start(self) -> None:
        """Start the workers and wait until each has built its codec, so the first message is not slow."""
        if self._executor is None:
            self._executor = self._new_executor()
        await self._warm_up(self._executor)

    async def _warm_up(self, executor: ProcessPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        # Concurrent pings that each hold a worker briefly make the executor start all of them.
        await asyncio.gather(*(loop.run_in_executor(executor, _ping, 0.05) for _ in range(self.workers)))

    def worker_pids(self) -> list[int]:
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return list(processes)

    async def decode(self, body: bytes, headers: Mapping[str, Any], topic: str | None) -> DecodeResult:
        if self._executor is None:
            raise BrokenProcessPool("decode pool is shut down")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[DecodeResult] = loop.create_future()
        self._pending.append(((body, dict(headers), topic), waiter))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await waiter

    def _flush(self) -> None:
        """Send what has gathered since the last flush to the workers, in batches."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        loop = asyncio.get_running_loop()
        executor = self._executor
        for start in range(0, len(pending), MAX_BATCH):
            batch = pending[start : start + MAX_BATCH]
            waiters = [w for _, w in batch]
            if executor is None:
                _fail(waiters, BrokenProcessPool("decode pool is shut down"))
                continue
            try:
                future = executor.submit(_decode_batch, [request for request, _ in batch])
            except BrokenProcessPool as exc:
                self._replace(executor)
                executor = self._executor
                _fail(waiters, exc)
                continue
            except Exception as exc:  # e.g. shut down meanwhile
                _fail(waiters, BrokenProcessPool(str(exc)))
                continue
            future.add_done_callback(functools.partial(self._from_worker, loop, waiters, executor))

    def _from_worker(
        self,
        loop: asyncio.AbstractEventLoop,
        waiters: list[asyncio.Future[DecodeResult]],
        executor: ProcessPoolExecutor,
        done: concurrent.futures.Future[bytes],
    ) -> None:
        """Runs in the executor's thread: hand the result over to the event loop."""
        with contextlib.suppress(RuntimeError):  # loop already closed: nobody waits any more
            loop.call_soon_threadsafe(self._resolve, done, waiters, executor)

    def _resolve(
        self,
        done: concurrent.futures.Future[bytes],
        waiters: list[asyncio.Future[DecodeResult]],
        executor: ProcessPoolExecutor,
    ) -> None:
        try:
            results: list[DecodeResult] = pickle.loads(done.result())
        except BrokenProcessPool as exc:
            self._replace(executor)
            _fail(waiters, exc)
            return
        except BaseException as exc:  # cancelled at shutdown, or input that could not be sent
            _fail(waiters, exc if isinstance(exc, Exception) else BrokenProcessPool(repr(exc)))
            return
        for waiter, result in zip(waiters, results, strict=True):
            if not waiter.done():
                waiter.set_result(result)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Swap in a fresh executor unless another decode already did."""
        if self._executor is not broken:
            return
        self.restarts += 1
        self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    async def shutdown(self) -> None:
        """Stop the workers; pending decodes are cancelled. Idempotent."""
        executor, self._executor = self._executor, None
        pending, self._pending = self._pending, []
        _fail([w for _, w in pending], BrokenProcessPool("decode pool is shut down"))
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)
