"""Sketch encoding off the event loop, with concurrent requests batched into one network call.

On a CPU one sketch at a time leaves most of the hardware idle: a batch of 8 costs far less than 8
batches of 1 (depthwise convolutions in channels-last layout vectorise over the batch). So requests are
preprocessed on a small thread pool, queued, and one model thread takes everything waiting (up to
``max_batch``) per forward pass. A lone request never waits for company: the batch is whatever has piled
up while the previous one ran. More than ``max_pending`` requests in flight get ``Busy`` (HTTP 429)
instead of an unbounded queue.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from model.encoding import Codes


class Busy(Exception):
    """More encodes are waiting than the configured limit."""


@dataclass
class _Request:
    batch: np.ndarray
    future: asyncio.Future[Codes]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[Codes], result: Codes | None, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client gone) while it waited
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class EncodeBatcher:
    def __init__(
        self,
        encode_batch: Callable[[np.ndarray], Codes],
        max_batch: int,
        max_pending: int,
        preprocess_threads: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.encode_batch = encode_batch
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.on_batch = on_batch
        self._pending = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._preprocess = ThreadPoolExecutor(preprocess_threads, thread_name_prefix="preprocess")
        self._thread = threading.Thread(target=self._serve, name="encode-batcher", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    async def encode(self, prepare: Callable[[], np.ndarray]) -> Codes:
        """Codes (one row per image) for the batch ``prepare`` returns; its errors reach the caller."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            batch = await loop.run_in_executor(self._preprocess, prepare)
            future: asyncio.Future[Codes] = loop.create_future()
            self._queue.put(_Request(batch, future, loop))
            return await future
        finally:
            with self._lock:
                self._pending -= 1

    def _take(self) -> list[_Request] | None:
        first = self._queue.get()
        if first is None:
            return None
        taken, size = [first], len(first.batch)
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            taken.append(item)
            size += len(item.batch)
        return taken

    def _serve(self) -> None:
        while (requests := self._take()) is not None:
            started = time.perf_counter()
            try:
                codes = self.encode_batch(np.concatenate([r.batch for r in requests]))
                error = None
            except Exception as exc:  # every request of the batch gets the error; the thread lives on
                codes, error = None, exc
            if self.on_batch is not None:
                self.on_batch(len(requests), time.perf_counter() - started)
            row = 0
            for r in requests:
                part = None if codes is None else codes[row : row + len(r.batch)]
                row += len(r.batch)
                r.loop.call_soon_threadsafe(_resolve, r.future, part, error)

    def shutdown(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._preprocess.shutdown(wait=True, cancel_futures=True)
