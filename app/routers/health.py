"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.deps import State
from app.routing import GetAnswersHead
from app.schemas import Health, Readiness

router = APIRouter(tags=["health"], route_class=GetAnswersHead)


@router.get("/healthz")
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness, "description": "not ready (see the checks)"}})
def readyz(response: Response, state: State) -> Readiness:
    """Ready when the model is loaded, an index is loaded and the database answers."""
    database_error = None
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # report, do not crash the probe
        database_error = type(exc).__name__
    model = state.encoder is not None
    indexes = sorted(state.indexes.loaded)
    ready = model and bool(indexes) and database_error is None
    response.status_code = 200 if ready else 503
    return Readiness(
        ready=ready,
        model=model,
        indexes=indexes,
        database=database_error is None,
        database_error=database_error,
    )


@router.get("/metrics", include_in_schema=False)
def metrics(state: State) -> Response:
    state.metrics.settle()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
