"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.state import ServiceState, get_state

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(response: Response, state: ServiceState = Depends(get_state)) -> dict[str, object]:
    """Ready when the model is loaded, an index is loaded and the database answers."""
    checks: dict[str, object] = {"model": state.encoder is not None, "indexes": sorted(state.indexes.loaded)}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception as exc:  # report, do not crash the probe
        checks["database"] = False
        checks["database_error"] = type(exc).__name__
    ready = bool(checks["model"]) and bool(checks["indexes"]) and checks["database"] is True
    response.status_code = 200 if ready else 503
    return {"ready": ready, **checks}


@router.get("/metrics", include_in_schema=False)
def metrics(state: ServiceState = Depends(get_state)) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
