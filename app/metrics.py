"""Prometheus metrics: requests by route and status, latency per route and per search stage."""

from __future__ import annotations

import posixpath
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app.response_status import ResponseStatus
from app.routing import GetAnswersHead
from catalog.ranking import Ranking

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sketch_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sketch_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "sketch_search_stage_seconds",
            "time spent per search stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )

        self.inexact = Counter(
            "sketch_inexact_rankings_total",
            "rankings whose candidates hit MAX_CANDIDATES before the exact top k was proven",
            registry=self.registry,
        )
        self.encode_batch = Histogram(
            "sketch_encode_batch_size",
            "sketches per network call (concurrent searches are encoded together)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

        # Observations made on a search's way to its answer wait here, and are recorded once an answer
        # has gone out (``settle``): a search records a dozen, each taking a lock in prometheus_client,
        # a measurable share of its time when made where it runs. A deque's append is atomic.
        self._waiting: deque[tuple[Callable[[float], None], float]] = deque()
        self._stages: dict[str, Histogram] = {}

    def record_stage(self, stage: str, seconds: float) -> None:
        """One search spent ``seconds`` in ``stage``: decode, preprocess, wait (for the network), encode,
        scan, widen, rerank, fetch, handoff (between threads; model.encode_batcher), explain. Counted by
        the next ``settle``."""
        child = self._stages.get(stage)
        if child is None:
            child = self._stages[stage] = self.stage.labels(stage)
        self._waiting.append((child.observe, seconds))

    def record_encode_batch(self, size: int, seconds: float) -> None:
        """One network call served ``size`` searches: each of them spent ``seconds`` in the encode stage."""
        self._waiting.append((self.encode_batch.observe, size))
        for _ in range(size):
            self.record_stage("encode", seconds)

    def settle(self) -> None:
        """Record the observations waiting: after each answer has gone out (``RequestMetrics``), and
        before the metrics are read. Observations are made by searches, so at most those in flight
        wait: a search whose client left records after its request settled, and the next settles it."""
        while self._waiting:
            try:
                observe, value = self._waiting.popleft()
            except IndexError:  # another thread settled the last one
                return
            observe(value)

    @contextmanager
    def timed(self, stage: str, timings: dict[str, float] | None = None) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.record_stage(stage, elapsed)
            if timings is not None:
                timings[stage] = elapsed

    def record_ranking(self, ranking: Ranking) -> None:
        """A ranking's stages ("scan", "rerank", "fetch"); candidates widened past the exactness bound
        are counted apart."""
        for stage, seconds in ranking.seconds.items():
            self.record_stage(stage, seconds)
        if not ranking.exact:
            self.inexact.inc()


class RequestMetrics:
    """Counts requests and times them by route, as plain ASGI (Starlette's ``@app.middleware("http")``
    adds a task group and a streamed response to every request: a measurable share of a search).

    It sits outside the guards that answer before the router (the body limit, the admin token), so
    their 413s and 401s are counted as the client got them, under the route they were meant for.

    The ``route`` label is the API route's path template, or for a page or asset the static mounts
    served, its own path written the plain way. Anything else (404s above all, and other spellings of
    a page's path) is "unmatched", so made-up paths cannot grow the label set without bound."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        sent = ResponseStatus(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            status = 500 if sent.status is None else sent.status  # what the error middleware answers
            name = route_label(scope, status, self.routes)
            self.metrics.requests.labels(name, scope["method"], str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)
            self.metrics.settle()  # the search's stages: its answer has gone out


class RouteTemplates:
    """The app's routes (``routes``: ``app.routes``, those inside included routers as well, walked as
    FastAPI's own OpenAPI builder walks them), matched against a request: the route a request answered
    before the router saw it (refused by the body limit or the admin token) was meant for. The
    top-level routes cannot say: an included router matches a path without naming the route inside."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = [route for route in iter_route_contexts(routes) if route.methods and route.path]

    def template(self, scope: Scope) -> str | None:
        """The path template (e.g. ``/admin/galleries/{name}/reindex``) of the route that serves this
        request's method and path, or None. A HEAD request's is the GET route's where that answers HEAD
        (``app.routing``): the flattened routes match by their own methods, without the class's rule."""
        for route in self._routes:
            served = route.original_route
            if (
                route.matches(served.as_served(scope) if isinstance(served, GetAnswersHead) else scope)[0]
                == Match.FULL
            ):
                return route.path
        return None


def _page_label(path: str) -> str:
    """A page's or an asset's path as its label when it is written the one plain way (one trailing
    slash at most, no empty, '.' or '..' segments); else "unmatched". The static files are served
    from any spelling of their path (``//app.js``, ``/x/%2e%2e/app.js``), and each spelling would be a
    label of its own: a series of counters without bound."""
    stem = path[:-1] if path.endswith("/") and path != "/" else path
    return path if not stem.startswith("//") and posixpath.normpath(stem) == stem else "unmatched"


def route_label(scope: Scope, status: int, routes: RouteTemplates) -> str:
    route = scope.get("route")  # the router leaves the matched route in the request's scope
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    if status < 400:
        return _page_label(str(scope["path"]))  # a page or an asset
    # Answered before the router saw it (the body limit, the admin token): the route it was meant for.
    return routes.template(scope) or "unmatched"
