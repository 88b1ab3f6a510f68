"""Sketch encoding off the event loop, with concurrent requests batched into one network call.

On a CPU one sketch at a time leaves most of the hardware idle: a batch of 8 costs far less than 8
batches of 1 (depthwise convolutions in channels-last layout vectorise over the batch). So requests are
preprocessed on a small thread pool and, while the network is busy, queued: one model thread takes
everything waiting (up to ``max_batch``) per forward pass, the batch being whatever has piled up while
the previous one ran. A lone request never waits for company (below). More than ``max_pending``
requests in flight get ``Busy`` (HTTP 429) instead of an unbounded queue.

A request goes thread to thread without waking the event loop in between: the pool thread that
prepared it queues it, the model thread hands its codes to a pool thread for the request's follow-up
work (``then``, e.g. ranking), and only the final result wakes the loop. Each wake-up and thread hop
is a measurable share of a lone search, so a request with nothing else in flight runs the network
and its follow-up on the pool thread that prepared it, when the network is idle. A follow-up can hand
independent work to the pool (``beside``) and do its own meanwhile: a lone search's other core is
otherwise idle.

``on_stage`` hears, per request, how long it waited for the network once prepared ("wait") and how long
its hand-offs from thread to thread took altogether ("handoff": event loop to pool, model thread to pool
under load, and back to the event loop), the parts of a search no stage of its own measures.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from model.encoding import Codes

T = TypeVar("T")


class Busy(Exception):
    """More encodes are waiting than the configured limit."""


@dataclass
class _Timing:
    """perf_counter() marks of one request's passage from thread to thread (seconds)."""

    submitted: float = 0.0  # handed from the event loop to the pool
    handoff: float = 0.0  # the hand-offs' seconds so far
    queued: float = 0.0  # prepared, waiting for the network
    handed: float = 0.0  # encoded, handed by the model thread to the pool for its follow-up (0: never)
    finished: float = 0.0  # handed back to the event loop


@dataclass
class _Request:
    batch: np.ndarray
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    then: Callable[[Codes], Any] | None = None
    timing: _Timing = field(default_factory=_Timing)

    def finish(self, result: Any, error: BaseException | None) -> None:
        self.timing.finished = time.perf_counter()
        self.loop.call_soon_threadsafe(_resolve, self.future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client gone) while it waited
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Beside(Generic[T]):
    """Work started on the pool beside a follow-up (``EncodeBatcher.beside``). Collecting it runs it on
    the collecting thread if no pool thread has taken it up yet, so a follow-up never waits on a pool
    that is busy with follow-ups (no deadlock, and no waiting under load)."""

    def __init__(self, work: Callable[[], T], future: Future[T]) -> None:
        self._work, self._future = work, future

    def __call__(self) -> T:
        return self._work() if self._future.cancel() else self._future.result()

    def cancel(self) -> None:
        """Not needed after all (the follow-up failed): dropped unless a pool thread has begun it."""
        self._future.cancel()


class EncodeBatcher:
    def __init__(
        self,
        encode_batch: Callable[[np.ndarray], Codes],
        max_batch: int,
        max_pending: int,
        preprocess_threads: int,
        on_batch: Callable[[int, float], None] | None = None,
        on_stage: Callable[[str, float], None] | None = None,
    ) -> None:
        self.encode_batch = encode_batch
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.on_batch = on_batch
        self.on_stage = on_stage
        self._pending = 0
        self._lock = threading.Lock()
        self._network = threading.Lock()  # one network call at a time, by the model thread or a lone request
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._preprocess = ThreadPoolExecutor(preprocess_threads, thread_name_prefix="preprocess")
        self._thread = threading.Thread(target=self._serve, name="encode-batcher", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    async def encode(
        self, prepare: Callable[[], np.ndarray], then: Callable[[Codes], Any] | None = None
    ) -> Any:
        """Codes (one row per image) for the batch ``prepare`` returns, or what ``then`` makes of them
        (run on a pool thread, so blocking work such as ranking stays off the event loop). Errors of
        either reach the caller."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()
            timing = _Timing()

            def prepare_and_queue() -> None:
                timing.handoff = time.perf_counter() - timing.submitted
                try:
                    batch = prepare()
                except BaseException as exc:  # the caller's error, raised where it awaits
                    loop.call_soon_threadsafe(_resolve, future, None, exc)
                    return
                request = _Request(batch, future, loop, then, timing)
                timing.queued = time.perf_counter()
                # Alone, with the network idle: encode right here, sparing the hand-off to the model
                # thread and back. Anything else joins the model thread's next batch.
                if self._pending == 1 and self._network.acquire(blocking=False):
                    try:
                        codes, error = self._encode([request])
                    finally:
                        self._network.release()
                    self._distribute([request], codes, error, inline=True)
                else:
                    self._queue.put(request)

            timing.submitted = time.perf_counter()
            self._preprocess.submit(prepare_and_queue)
            result = await future
            if self.on_stage is not None:
                # Both hops: to the pool thread that took it up, and back once the event loop resumed it.
                self.on_stage("handoff", timing.handoff + time.perf_counter() - timing.finished)
            return result
        finally:
            with self._lock:
                self._pending -= 1

    def _take(self, first: _Request) -> list[_Request]:
        """``first`` and whatever else is waiting, up to ``max_batch`` images."""
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
        while (first := self._queue.get()) is not None:
            # The batch is gathered once the network is free: what arrives while a lone request is
            # encoded on its pool thread joins this batch instead of waiting for the next.
            with self._network:
                requests = self._take(first)
                codes, error = self._encode(requests)
            # Follow-ups go to the pool: this thread stays free for the next batch.
            self._distribute(requests, codes, error, inline=False)

    def _encode(self, requests: list[_Request]) -> tuple[Codes | None, Exception | None]:
        """One network call for the requests' batches (the caller holds ``_network``)."""
        started = time.perf_counter()
        try:
            codes, error = self.encode_batch(np.concatenate([r.batch for r in requests])), None
        except Exception as exc:  # every request of the batch gets the error; the thread lives on
            codes, error = None, exc
        seconds = time.perf_counter() - started
        if self.on_stage is not None:
            for r in requests:
                self.on_stage("wait", started - r.timing.queued)
        if self.on_batch is not None:
            self.on_batch(len(requests), seconds)
        return codes, error

    def _distribute(
        self, requests: list[_Request], codes: Codes | None, error: Exception | None, inline: bool
    ) -> None:
        """Each request its rows: finished, or followed up here (``inline``) or on the pool."""
        row = 0
        for r in requests:
            part = None if codes is None else codes[row : row + len(r.batch)]
            row += len(r.batch)
            if r.then is None or part is None:
                r.finish(part, error)
            elif inline:
                self._follow_up(r, part)
            else:
                r.timing.handed = time.perf_counter()
                self._preprocess.submit(self._follow_up, r, part)

    @staticmethod
    def _follow_up(request: _Request, codes: Codes) -> None:
        assert request.then is not None
        if request.timing.handed:  # by the model thread: its wait for a pool thread is a hand-off too
            request.timing.handoff += time.perf_counter() - request.timing.handed
        try:
            result = request.then(codes)
        except BaseException as exc:  # the caller's error, raised where it awaits
            request.finish(None, exc)
            return
        request.finish(result, None)

    def beside(self, work: Callable[[], T]) -> Beside[T]:
        """Start ``work`` on the pool; calling what this returns collects its result (or raises its
        error). For a follow-up's independent work, done while the follow-up does its own (e.g. while
        FAISS scans without the GIL)."""
        return Beside(work, self._preprocess.submit(work))

    def shutdown(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._preprocess.shutdown(wait=True, cancel_futures=True)
