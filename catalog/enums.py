"""The bounded vocabularies of the catalog, stored as their string values."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobKind(StrEnum):
    REINDEX = "reindex"


class VersionState(StrEnum):
    READY = "ready"  # written, not yet serving
    ACTIVE = "active"  # the one version a gallery serves
    RETIRED = "retired"  # served before; kept for a rollback until pruned


class ImageOrigin(StrEnum):
    SOURCE = "source"  # found in the gallery's source folder (the user's; never deleted by us)
    UPLOAD = "upload"  # uploaded through the admin API into our upload store


PENDING_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)
