"""Gallery administration: registering galleries, storing uploads, deleting photos, queueing reindexes.

Answers are the Pydantic models of ``app.schemas`` built from the ORM rows; unknown names and ids
raise the catalog's NotFound, which the error handlers turn into 404.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError

from app.errors import APIError, image_rejected
from app.schemas import (
    AdminGalleryStatus,
    GalleryCreated,
    GalleryDeleted,
    GalleryVersions,
    GalleryWarning,
    GalleryWarningCode,
    IndexVersionOut,
    JobOut,
    UploadedImage,
)
from app.state import ServiceState
from catalog import gallery_removal
from catalog.db.models import Gallery, ImageExclusion, ImageRecord, IndexVersion, Job
from catalog.enums import ImageOrigin, JobState, VersionState
from catalog.errors import Conflict, Invalid, NotFound
from catalog.galleries import get_gallery, normal_label
from catalog.jobs import enqueue_reindex
from catalog.scan import check_source_dir, holds_photos, printable
from model.files import atomic_write
from model.imageio import FORMAT_NAMES, ImageRejected, decode_photo, probe

MAX_UPLOAD_FILES = 20


def create_gallery(state: ServiceState, name: str, source_dir: str | None) -> GalleryCreated:
    """The gallery registered, with a warning when its source folder holds no photo (a mistyped or
    wrong folder: its reindex would index nothing and say nothing)."""
    folder = check_source_dir(source_dir) if source_dir is not None else None
    try:
        with state.sessions.begin() as session:
            gallery = Gallery(name=name, source_dir=str(folder) if folder else None)
            session.add(gallery)
            session.flush()
            created = GalleryCreated.model_validate(gallery)
    except IntegrityError:
        raise Conflict("gallery_exists", f"a gallery named {name!r} already exists") from None
    if folder is not None and holds_photos(folder) is False:
        created.warnings.append(
            GalleryWarning(
                code=GalleryWarningCode.NO_PHOTOS,
                message=f"{printable(folder)} holds no photos ({', '.join(FORMAT_NAMES)}), at any depth: "
                "a reindex will index nothing until photos are put there or uploaded",
            )
        )
    return created


def list_galleries(state: ServiceState) -> list[AdminGalleryStatus]:
    with state.sessions() as session:
        counts = dict(
            session.execute(
                select(ImageRecord.gallery_id, func.count()).group_by(ImageRecord.gallery_id)
            ).all()
        )
        active = {
            v.gallery_id: v
            for v in session.scalars(select(IndexVersion).where(IndexVersion.state == VersionState.ACTIVE))
        }
        return [
            AdminGalleryStatus(
                id=g.id,
                name=g.name,
                source_dir=g.source_dir,
                image_count=counts.get(g.id, 0),
                active_version=IndexVersionOut.model_validate(active[g.id]) if g.id in active else None,
            )
            for g in session.scalars(select(Gallery).order_by(Gallery.name))
        ]


def validate_upload(data: bytes, filename: str, max_pixels: int) -> tuple[str, int, int]:
    """The stored suffix (from the content, not the name) and the size as shown, or APIError.

    The photo is decoded as indexing will decode it, so what is stored can be indexed."""
    try:
        header = probe(data, max_pixels)
        decode_photo(data, max_pixels)
    except ImageRejected as exc:
        raise image_rejected(exc, f"bad_upload_{exc.reason}", f"{filename}: {exc}") from None
    return header.format.suffix, header.width, header.height


def store_uploads(
    state: ServiceState, name: str, files: list[tuple[str, bytes]], label: str | None = None
) -> list[UploadedImage]:
    """All files are checked before any is stored: one bad file rejects the request, storing nothing.
    ``label`` (stripped, in NFC as every label is) is the new photos'; a duplicate keeps its own."""
    label = normal_label(label.strip()) if label is not None else None
    if not files:
        raise Invalid("no_files", "send one or more photos in the 'files' field")
    if len(files) > MAX_UPLOAD_FILES:
        raise APIError(413, "too_many_files", f"send at most {MAX_UPLOAD_FILES} photos per request")
    limit = state.settings.max_upload_bytes
    for filename, data in files:
        if len(data) > limit:
            raise APIError(413, "too_large", f"{filename}: a photo may be at most {limit} bytes")
    checked = [(fn, data, *validate_upload(data, fn, state.settings.max_pixels)) for fn, data in files]
    root = state.settings.upload_dir
    results = []
    with state.sessions.begin() as session:
        gallery = get_gallery(session, name)
        for filename, data, ext, width, height in checked:
            sha = hashlib.sha256(data).hexdigest()
            existing = session.scalar(
                select(ImageRecord).where(ImageRecord.gallery_id == gallery.id, ImageRecord.sha256 == sha)
            )
            session.execute(  # uploading a photo on purpose lifts an earlier deletion of it
                delete(ImageExclusion).where(
                    ImageExclusion.gallery_id == gallery.id, ImageExclusion.sha256 == sha
                )
            )
            if existing is not None:
                results.append(
                    UploadedImage(
                        image_id=existing.id,
                        filename=filename,
                        sha256=sha,
                        duplicate=True,
                        label=existing.label,
                    )
                )
                continue
            path = root / sha[:2] / f"{sha}{ext}"
            if not path.exists():
                atomic_write(path, data)
            record = ImageRecord(
                gallery_id=gallery.id,
                stored_path=str(path),
                sha256=sha,
                size_bytes=len(data),
                width=width,
                height=height,
                label=label,
                origin=ImageOrigin.UPLOAD,
            )
            session.add(record)
            session.flush()
            results.append(
                UploadedImage(image_id=record.id, filename=filename, sha256=sha, duplicate=False, label=label)
            )
    return results


def delete_image(state: ServiceState, image_id: int) -> None:
    with state.sessions.begin() as session:
        record = session.get(ImageRecord, image_id)
        if record is None:
            raise NotFound("unknown_image", f"there is no image with id {image_id}")
        path, origin, sha = Path(record.stored_path), record.origin, record.sha256
        if origin == ImageOrigin.SOURCE:  # the folder still has it: remember, so a reindex skips it
            excluded = select(ImageExclusion.id).where(
                ImageExclusion.gallery_id == record.gallery_id, ImageExclusion.sha256 == sha
            )
            if session.scalar(excluded) is None:
                session.add(ImageExclusion(gallery_id=record.gallery_id, sha256=sha))
        session.delete(record)
        session.flush()
        still_used = session.scalar(select(func.count()).where(ImageRecord.sha256 == sha)) or 0
    state.photo_counts.forget()  # GET /galleries counts it gone at once, as searches pass over it
    if origin == ImageOrigin.UPLOAD and not still_used:
        path.unlink(missing_ok=True)  # uploads are ours to delete; a source folder is the user's


def reindex(state: ServiceState, name: str) -> int:
    """Queue a reindex; if one is already waiting or running for the gallery, return that one."""
    with state.sessions() as session:
        gallery_id = get_gallery(session, name).id
    return enqueue_reindex(state.sessions, gallery_id)


def get_job(state: ServiceState, job_id: int) -> JobOut:
    with state.sessions() as session:
        row = session.execute(_jobs_with_gallery_names().where(Job.id == job_id)).first()
        if row is None:
            raise NotFound("unknown_job", f"there is no job with id {job_id}")
        job, name = row
        return _job_out(job, name, datetime.now(UTC))


def list_versions(state: ServiceState) -> list[GalleryVersions]:
    with state.sessions() as session:
        out = []
        for gallery in session.scalars(select(Gallery).order_by(Gallery.name)):
            versions = session.scalars(
                select(IndexVersion)
                .where(IndexVersion.gallery_id == gallery.id)
                .order_by(IndexVersion.id.desc())
            )
            loaded = state.indexes.get(gallery.name)
            out.append(
                GalleryVersions(
                    gallery=gallery.name,
                    serving_version=loaded.version_id if loaded else None,
                    versions=[IndexVersionOut.model_validate(v) for v in versions],
                )
            )
        return out


def delete_gallery(state: ServiceState, name: str) -> GalleryDeleted:
    removed = gallery_removal.delete_gallery(state.settings, state.sessions, name)
    state.indexes.refresh()  # stop serving it here at once; other replicas drop it at their next poll
    return GalleryDeleted(gallery=name, images_removed=removed)


def list_jobs(state: ServiceState, gallery: str | None, limit: int) -> list[JobOut]:
    now = datetime.now(UTC)
    with state.sessions() as session:
        query = _jobs_with_gallery_names()
        if gallery is not None:
            query = query.where(Job.gallery_id == get_gallery(session, gallery).id)
        rows = session.execute(query.order_by(Job.id.desc()).limit(limit)).all()
        return [_job_out(job, name, now) for job, name in rows]


def _jobs_with_gallery_names() -> Select[Job, str]:  # the name is None once the gallery is gone
    return select(Job, Gallery.name).outerjoin(Gallery, Gallery.id == Job.gallery_id)


def _job_out(job: Job, gallery: str | None, now: datetime) -> JobOut:
    """A job as the API shows it, one job or many: with its gallery's name and how long it ran."""
    started = _aware(job.started_at)
    end = _aware(job.finished_at) or (now if job.state == JobState.RUNNING else None)
    duration = round((end - started).total_seconds(), 1) if started and end else None
    stored = {
        name: getattr(job, name) for name in JobOut.model_fields if name not in ("gallery", "duration_s")
    }
    return JobOut.model_validate({**stored, "gallery": gallery, "duration_s": duration})


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
