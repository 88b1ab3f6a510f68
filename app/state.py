"""What the running service holds: settings, database, the loaded model, indexes and the worker."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.encode_batcher import EncodeBatcher
from app.index_manager import IndexManager
from app.metrics import Metrics
from app.settings import Settings
from model.factory import Encoder


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    encoder: Encoder
    indexes: IndexManager
    batcher: EncodeBatcher
    metrics: Metrics
    worker_thread: threading.Thread | None = None
    worker_stop: threading.Event = field(default_factory=threading.Event)


def get_state(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]
