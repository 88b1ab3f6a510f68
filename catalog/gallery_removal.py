"""Deleting a gallery: its rows, index versions and uploaded photos go; its source folder never does.

The database rows go in one transaction. The index folder is first moved aside (a rename, atomic on one
file system) and only removed once the transaction has committed; if the commit fails it is moved back,
so a failed delete leaves the gallery exactly as it was. A build of the gallery holds its lock, so a
delete during a build is refused rather than racing it.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from catalog.builder import gallery_dir
from catalog.db.models import Gallery, ImageExclusion, ImageRecord, IndexVersion, Job
from catalog.enums import ImageOrigin, JobState
from catalog.errors import Conflict
from catalog.galleries import get_gallery
from catalog.locks import BuildLocked, gallery_lock
from catalog.settings import Settings

log = logging.getLogger(__name__)


def delete_gallery(settings: Settings, sessions: sessionmaker[Session], name: str) -> int:
    """Delete the gallery ``name``; returns how many photo rows went with it. NotFound, or Conflict
    while a build of it runs."""
    try:
        with gallery_lock(settings.lock_dir, name):
            return _delete_locked(settings, sessions, name)
    except BuildLocked:
        raise _busy(name) from None


def _busy(name: str) -> Conflict:
    return Conflict(
        "gallery_busy", f"gallery {name!r} is being indexed right now; delete it when the job has finished"
    )


def _delete_locked(settings: Settings, sessions: sessionmaker[Session], name: str) -> int:
    folder = gallery_dir(settings, name)
    trash = settings.trash_dir / f"{folder.name}-{uuid.uuid4().hex[:8]}"
    moved = False
    try:
        with sessions.begin() as session:
            gallery = get_gallery(session, name)
            running = select(Job.id).where(Job.gallery_id == gallery.id, Job.state == JobState.RUNNING)
            if session.scalar(running) is not None:
                raise _busy(name)
            uploads = set(
                session.scalars(
                    select(ImageRecord.stored_path).where(
                        ImageRecord.gallery_id == gallery.id, ImageRecord.origin == ImageOrigin.UPLOAD
                    )
                )
            )
            count = len(
                session.scalars(select(ImageRecord.id).where(ImageRecord.gallery_id == gallery.id)).all()
            )
            for table in (Job, IndexVersion, ImageExclusion, ImageRecord):
                session.execute(delete(table).where(table.gallery_id == gallery.id))
            session.execute(delete(Gallery).where(Gallery.id == gallery.id))
            session.flush()
            if folder.exists():
                trash.parent.mkdir(parents=True, exist_ok=True)
                folder.rename(trash)
                moved = True
    except BaseException:
        if moved:
            trash.rename(folder)
        raise
    if moved:
        shutil.rmtree(trash, ignore_errors=True)
    _remove_unused_uploads(sessions, uploads)
    log.info("gallery %s deleted with %d photos", name, count)
    return count


def _remove_unused_uploads(sessions: sessionmaker[Session], paths: set[str]) -> None:
    """Uploads are stored by content: a file another gallery still lists stays."""
    if not paths:
        return
    with sessions() as session:
        still_used = set(
            session.scalars(select(ImageRecord.stored_path).where(ImageRecord.stored_path.in_(paths)))
        )
    for path in paths - still_used:
        Path(path).unlink(missing_ok=True)
