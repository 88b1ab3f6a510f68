"""Gallery administration: registering galleries, storing uploads, queueing reindex jobs."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.db.models import Gallery, ImageRecord, IndexVersion, Job
from app.errors import APIError
from app.state import ServiceState
from indexer.worker import enqueue_reindex
from model.imageio import ImageRejected, decode_image

UPLOAD_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def version_dict(v: IndexVersion) -> dict[str, Any]:
    return {
        "id": v.id,
        "state": v.state,
        "bits": v.bits,
        "count": v.count,
        "model_checksum": v.model_checksum,
        "created_at": _iso(v.created_at),
        "activated_at": _iso(v.activated_at),
    }


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "gallery_id": job.gallery_id,
        "state": job.state,
        "processed": job.processed,
        "total": job.total,
        "failed_items": job.failed_items,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _gallery(session: Any, name: str) -> Gallery:
    gallery = session.scalar(select(Gallery).where(Gallery.name == name))
    if gallery is None:
        raise APIError(404, "unknown_gallery", f"there is no gallery named {name!r}")
    return gallery


def create_gallery(state: ServiceState, name: str, source_dir: str | None) -> dict[str, Any]:
    if source_dir is not None and not Path(source_dir).is_dir():
        raise APIError(422, "bad_source_dir", f"source_dir {source_dir!r} is not a folder on the server")
    try:
        with state.sessions.begin() as session:
            gallery = Gallery(name=name, source_dir=str(Path(source_dir).resolve()) if source_dir else None)
            session.add(gallery)
            session.flush()
            return {"id": gallery.id, "name": gallery.name, "source_dir": gallery.source_dir}
    except IntegrityError:
        raise APIError(409, "gallery_exists", f"a gallery named {name!r} already exists") from None


def list_galleries(state: ServiceState) -> list[dict[str, Any]]:
    with state.sessions() as session:
        counts = dict(
            session.execute(
                select(ImageRecord.gallery_id, func.count()).group_by(ImageRecord.gallery_id)
            ).all()
        )
        active = {
            v.gallery_id: v
            for v in session.scalars(select(IndexVersion).where(IndexVersion.state == "active"))
        }
        return [
            {
                "id": g.id,
                "name": g.name,
                "source_dir": g.source_dir,
                "image_count": counts.get(g.id, 0),
                "active_version": version_dict(active[g.id]) if g.id in active else None,
            }
            for g in session.scalars(select(Gallery).order_by(Gallery.name))
        ]


def validate_upload(data: bytes, filename: str, max_pixels: int) -> tuple[str, int, int]:
    """The stored extension (from the content, not the name) and the size, or APIError."""
    try:
        image = decode_image(data, max_pixels, formats=tuple(UPLOAD_FORMATS))
    except ImageRejected as exc:
        status = 413 if exc.reason == "too_large" else 415 if exc.reason == "not_an_image" else 422
        raise APIError(status, f"bad_upload_{exc.reason}", f"{filename}: {exc}") from None
    return UPLOAD_FORMATS[image.format or "PNG"], image.width, image.height


def store_uploads(state: ServiceState, name: str, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """All files are checked before any is stored: one bad file rejects the request, storing nothing."""
    if not files:
        raise APIError(422, "no_files", "send one or more photos in the 'files' field")
    checked = [(fn, data, *validate_upload(data, fn, state.settings.max_pixels)) for fn, data in files]
    root = state.settings.data_dir / "uploads"
    results = []
    with state.sessions.begin() as session:
        gallery = _gallery(session, name)
        for filename, data, ext, width, height in checked:
            sha = hashlib.sha256(data).hexdigest()
            existing = session.scalar(
                select(ImageRecord).where(ImageRecord.gallery_id == gallery.id, ImageRecord.sha256 == sha)
            )
            if existing is not None:
                results.append(
                    {"image_id": existing.id, "filename": filename, "sha256": sha, "duplicate": True}
                )
                continue
            path = root / sha[:2] / f"{sha}{ext}"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            record = ImageRecord(
                gallery_id=gallery.id,
                stored_path=str(path),
                sha256=sha,
                size_bytes=len(data),
                width=width,
                height=height,
                label=None,
                origin="upload",
            )
            session.add(record)
            session.flush()
            results.append({"image_id": record.id, "filename": filename, "sha256": sha, "duplicate": False})
    return results


def delete_image(state: ServiceState, image_id: int) -> None:
    with state.sessions.begin() as session:
        record = session.get(ImageRecord, image_id)
        if record is None:
            raise APIError(404, "unknown_image", f"there is no image with id {image_id}")
        path, origin, sha = Path(record.stored_path), record.origin, record.sha256
        session.delete(record)
        session.flush()
        still_used = session.scalar(select(func.count()).where(ImageRecord.sha256 == sha)) or 0
    if origin == "upload" and not still_used:
        path.unlink(missing_ok=True)  # uploads are ours to delete; a source folder is the user's


def reindex(state: ServiceState, name: str) -> int:
    """Queue a reindex; if one is already waiting or running for the gallery, return that one."""
    with state.sessions() as session:
        gallery = _gallery(session, name)
        pending = session.scalar(
            select(Job.id).where(Job.gallery_id == gallery.id, Job.state.in_(("queued", "running"))).limit(1)
        )
    if pending is not None:
        return int(pending)
    return enqueue_reindex(state.sessions, gallery.id)


def get_job(state: ServiceState, job_id: int) -> dict[str, Any]:
    with state.sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise APIError(404, "unknown_job", f"there is no job with id {job_id}")
        return job_dict(job)


def list_versions(state: ServiceState) -> list[dict[str, Any]]:
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
                {
                    "gallery": gallery.name,
                    "serving_version": loaded.version_id if loaded else None,
                    "versions": [version_dict(v) for v in versions],
                }
            )
        return out
