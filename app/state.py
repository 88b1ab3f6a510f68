"""What the running service holds: settings, database, the loaded model, indexes and the worker."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.limits import ExplainSlots
from app.metrics import Metrics
from app.photo_counts import PhotoCounts
from catalog.live_indexes import IndexManager
from catalog.settings import Settings
from model.encode_batcher import EncodeBatcher
from model.encoding import ImageEncoder


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    encoder: ImageEncoder
    indexes: IndexManager
    batcher: EncodeBatcher
    metrics: Metrics
    worker_thread: threading.Thread | None = None
    worker_stop: threading.Event = field(default_factory=threading.Event)
    explain_slots: ExplainSlots = field(default_factory=ExplainSlots)
    # index version -> the labels its gallery's photos carry (read once per version: a search filters by it)
    version_labels: dict[int, frozenset[str]] = field(default_factory=dict)
    photo_counts: PhotoCounts = field(default_factory=PhotoCounts)  # GET /galleries' image_count
