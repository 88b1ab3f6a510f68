"""Sketch encoding on a bounded pool of threads, so slow model work never blocks the event loop and a
burst of requests queues up to a limit and then gets 429 instead of growing memory without bound."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """More encodes are waiting than the configured limit."""


class EncodePool:
    def __init__(self, threads: int, max_pending: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="encode")
        self.max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn)
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
