"""Search stage metrics: recorded once the answer has gone out, never lost, never counted twice."""

from __future__ import annotations

import asyncio
import sys
import threading

from starlette.types import Message, Receive, Scope, Send

from app.metrics import Metrics, RequestMetrics, RouteTemplates


def observed(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> tuple[float, float]:
    """(observations, sum) of one histogram series."""
    count = metrics.registry.get_sample_value(f"{name}_count", labels or {})
    total = metrics.registry.get_sample_value(f"{name}_sum", labels or {})
    return count or 0.0, total or 0.0


def test_stages_wait_for_settle_and_are_counted_once() -> None:
    metrics = Metrics()
    metrics.record_stage("scan", 0.002)
    metrics.record_encode_batch(3, 0.01)
    assert observed(metrics, "sketch_search_stage_seconds", {"stage": "scan"}) == (0.0, 0.0)
    metrics.settle()
    assert observed(metrics, "sketch_search_stage_seconds", {"stage": "scan"}) == (1.0, 0.002)
    count, total = observed(metrics, "sketch_search_stage_seconds", {"stage": "encode"})
    assert count == 3.0 and abs(total - 0.03) < 1e-12  # each search of the batch spent the call's time
    assert observed(metrics, "sketch_encode_batch_size") == (1.0, 3.0)
    metrics.settle()
    assert observed(metrics, "sketch_search_stage_seconds", {"stage": "scan"}) == (1.0, 0.002)


def test_stages_recorded_from_many_threads_are_all_counted() -> None:
    metrics = Metrics()

    def record() -> None:
        for _ in range(2000):
            metrics.record_stage("fetch", 0.001)
            metrics.settle()  # settling while the others record: nothing lost, nothing twice

    threads = [threading.Thread(target=record) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch within settle, not only between loops
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    metrics.settle()
    assert observed(metrics, "sketch_search_stage_seconds", {"stage": "fetch"})[0] == 8000.0


def test_a_requests_stages_are_recorded_after_its_answer_went_out() -> None:
    """The stages a request records on its way are observed only once its body has been sent: the
    lock-taking observations are off the answer's path. The request's latency is recorded with them."""
    metrics = Metrics()
    seen_at_body: list[tuple[float, float]] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        metrics.record_stage("decode", 0.003)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def client_side(message: Message) -> None:
        if message["type"] == "http.response.body":
            seen_at_body.append(observed(metrics, "sketch_search_stage_seconds", {"stage": "decode"}))

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": "/search", "headers": []}
    middleware = RequestMetrics(endpoint, metrics, RouteTemplates([]))
    asyncio.run(middleware(scope, receive, client_side))
    assert seen_at_body == [(0.0, 0.0)]
    assert observed(metrics, "sketch_search_stage_seconds", {"stage": "decode"}) == (1.0, 0.003)
    assert observed(metrics, "sketch_request_seconds", {"route": "/search"})[0] == 1.0
