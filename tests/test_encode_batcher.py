"""The encode batcher: concurrent searches share network calls, each gets its own rows back, errors reach
every request of a failed batch without killing the model thread, and the pending limit answers Busy."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from model.encode_batcher import Busy, EncodeBatcher


def slow_identity(calls: list[int]):  # type: ignore[no-untyped-def]
    def encode(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        time.sleep(0.05)  # long enough for the other requests to queue up behind this call
        return batch[:, 0].copy()

    return encode


async def encode_all(batcher: EncodeBatcher, values: list[float]) -> list[np.ndarray]:
    return await asyncio.gather(*(batcher.encode(lambda v=v: np.full((1, 2), v, np.float32)) for v in values))


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    calls: list[int] = []
    sizes: list[int] = []
    batcher = EncodeBatcher(slow_identity(calls), 8, 100, 2, lambda n, _s: sizes.append(n))
    try:
        values = [float(i) for i in range(20)]
        results = asyncio.run(encode_all(batcher, values))
    finally:
        batcher.shutdown()
    assert [float(r[0]) for r in results] == values
    assert sum(calls) == 20 and max(calls) > 1 and max(calls) <= 8
    assert len(calls) < 20 and sizes == calls


def test_a_lone_request_is_not_held_back() -> None:
    calls: list[int] = []
    batcher = EncodeBatcher(slow_identity(calls), 8, 100, 1)
    try:
        (result,) = asyncio.run(encode_all(batcher, [3.0]))
    finally:
        batcher.shutdown()
    assert calls == [1] and float(result[0]) == 3.0


def test_errors_reach_the_callers_and_the_thread_lives_on() -> None:
    fail = threading.Event()
    fail.set()

    def encode(batch: np.ndarray) -> np.ndarray:
        if fail.is_set():
            raise RuntimeError("model exploded")
        return batch[:, 0].copy()

    batcher = EncodeBatcher(encode, 8, 100, 1)
    try:
        with pytest.raises(RuntimeError, match="model exploded"):
            asyncio.run(encode_all(batcher, [1.0]))
        fail.clear()
        assert float(asyncio.run(encode_all(batcher, [2.0]))[0][0]) == 2.0
    finally:
        batcher.shutdown()


def test_preprocessing_errors_are_raised_to_the_caller() -> None:
    batcher = EncodeBatcher(slow_identity([]), 8, 100, 1)

    def prepare() -> np.ndarray:
        raise ValueError("blank sketch")

    async def run() -> None:
        await batcher.encode(prepare)

    try:
        with pytest.raises(ValueError, match="blank sketch"):
            asyncio.run(run())
        assert batcher.pending == 0
    finally:
        batcher.shutdown()


def test_too_many_pending_requests_are_refused() -> None:
    batcher = EncodeBatcher(slow_identity([]), 8, 3, 2)

    async def run() -> list[object]:
        return await asyncio.gather(
            *(batcher.encode(lambda: np.zeros((1, 2), np.float32)) for _ in range(6)), return_exceptions=True
        )

    try:
        outcomes = asyncio.run(run())
    finally:
        batcher.shutdown()
    assert sum(isinstance(o, Busy) for o in outcomes) == 3
    assert sum(isinstance(o, np.ndarray) for o in outcomes) == 3
    assert batcher.pending == 0


def threads_used(requests: int) -> tuple[list[str], list[str], list[str]]:
    """``requests`` concurrent encodes: the threads that prepared them, ran the network calls and
    followed them up."""
    prepared_on: list[str] = []
    network_on: list[str] = []

    def encode(batch: np.ndarray) -> np.ndarray:
        network_on.append(threading.current_thread().name)
        time.sleep(0.05)  # the others queue up behind this call
        return batch[:, 0].copy()

    def prepare() -> np.ndarray:
        prepared_on.append(threading.current_thread().name)
        return np.zeros((1, 2), np.float32)

    def then(codes: np.ndarray) -> str:
        return threading.current_thread().name

    async def run() -> list[str]:
        return await asyncio.gather(*(batcher.encode(prepare, then) for _ in range(requests)))

    batcher = EncodeBatcher(encode, 8, 100, 2)
    try:
        followed_on = asyncio.run(run())
    finally:
        batcher.shutdown()
    return prepared_on, network_on, followed_on


def test_a_lone_request_stays_on_one_thread_and_company_is_batched_by_the_model_thread() -> None:
    prepared, network, followed = threads_used(1)
    assert prepared[0].startswith("preprocess") and network == prepared == followed  # no hand-off at all
    prepared, network, followed = threads_used(6)
    assert "encode-batcher" in network and len(network) < 6  # the rest were batched
    assert all(name.startswith("preprocess") for name in followed)  # side by side on the pool


def test_work_beside_a_follow_up_runs_alongside_or_inline_and_never_deadlocks() -> None:
    # One pool thread, busy with the follow-ups themselves: work handed beside them can only run if
    # collecting it takes it back.
    batcher = EncodeBatcher(slow_identity([]), 8, 100, 1)
    ran_on: list[str] = []

    def side() -> int:
        ran_on.append(threading.current_thread().name)
        return 7

    def then(codes: np.ndarray) -> int:
        return batcher.beside(side)() + 1

    def failing() -> int:
        raise LookupError("side work failed")

    async def run(n: int, follow: Callable[[np.ndarray], object]) -> list[object]:
        encodes = (batcher.encode(lambda: np.zeros((1, 2), np.float32), follow) for _ in range(n))
        return await asyncio.wait_for(asyncio.gather(*encodes, return_exceptions=True), 20)

    try:
        assert asyncio.run(run(3, then)) == [8, 8, 8]
        assert len(ran_on) == 3
        errors = asyncio.run(run(1, lambda codes: batcher.beside(failing)()))
    finally:
        batcher.shutdown()
    assert isinstance(errors[0], LookupError)  # the side work's error reaches the caller


def test_requests_arriving_while_a_lone_one_is_encoded_are_batched_together() -> None:
    """A lone request is encoded on its own pool thread; the ones that arrive meanwhile must wait for
    it as one batch, not be taken one by one (a batch of 1 is the dearest kind on a CPU)."""
    calls: list[int] = []

    def encode(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        time.sleep(0.3)  # the others arrive well within it, even on a loaded machine
        return batch[:, 0].copy()

    batcher = EncodeBatcher(encode, 8, 100, 2)

    async def run() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.encode(lambda: np.zeros((1, 2), np.float32)))
        later = []
        for value in range(1, 5):
            await asyncio.sleep(0.02)  # arriving one by one while the first is encoded
            prepare = lambda v=value: np.full((1, 2), v, np.float32)  # noqa: E731
            later.append(asyncio.ensure_future(batcher.encode(prepare)))
        return await asyncio.gather(first, *later)

    try:
        results = asyncio.run(run())
    finally:
        batcher.shutdown()
    assert [float(r[0]) for r in results] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert calls == [1, 4]


def test_the_wait_for_the_network_and_the_hand_offs_are_reported_apart_from_the_encode() -> None:
    """A request prepared while the network runs another waits for it: that wait is reported as "wait"
    (about the rest of the other call), a lone request's as next to nothing, and the thread hand-offs
    as "handoff", which holds neither the network nor the wait."""
    stages: list[tuple[str, float]] = []
    lock = threading.Lock()

    def heard(stage: str, seconds: float) -> None:
        with lock:
            stages.append((stage, seconds))

    def encode(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return batch[:, 0].copy()

    batcher = EncodeBatcher(encode, 8, 100, 2, on_stage=heard)

    async def run() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.encode(lambda: np.zeros((1, 2), np.float32)))
        await asyncio.sleep(0.05)  # the first is on the network by now (a lone request: inline)
        second = batcher.encode(lambda: np.ones((1, 2), np.float32), then=lambda codes: codes)
        return await asyncio.gather(first, second)

    try:
        results = asyncio.run(run())
    finally:
        batcher.shutdown()
    assert [float(r[0]) for r in results] == [0.0, 1.0]
    waits = sorted(s for name, s in stages if name == "wait")
    handoffs = [s for name, s in stages if name == "handoff"]
    assert len(waits) == 2 and len(handoffs) == 2
    assert waits[0] < 0.05  # the lone request went straight to the network
    # The other one waited out the rest of the first call (0.25 s), not its own call as well.
    assert 0.15 <= waits[1] <= 0.45
    # Each hand-off is a thread taking the request up, neither the network (0.3 s) nor the wait.
    assert all(0 < h < 0.15 for h in handoffs)


def test_work_beside_a_follow_up_that_failed_is_dropped_unless_begun() -> None:
    """A follow-up that failed (a search whose ranking met a database outage) left the work it had
    started beside it to run anyway on the pool, competing with real work for nothing."""
    batcher = EncodeBatcher(slow_identity([]), 8, 100, 1)  # its one pool thread runs the follow-up
    ran: list[str] = []

    def then(codes: np.ndarray) -> None:
        side = batcher.beside(lambda: ran.append("side"))
        side.cancel()  # the follow-up's own work failed: the side work is not needed
        raise LookupError("ranking failed")

    async def run() -> list[object]:
        encode = batcher.encode(lambda: np.zeros((1, 2), np.float32), then)
        return await asyncio.wait_for(asyncio.gather(encode, return_exceptions=True), 20)

    try:
        outcome = asyncio.run(run())
        batcher.beside(lambda: ran.append("later"))()  # the pool runs what it is given afterwards
    finally:
        batcher.shutdown()
    assert isinstance(outcome[0], LookupError) and ran == ["later"]
