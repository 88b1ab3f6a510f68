"""Finding galleries by name: the one place that turns an unknown name into NotFound."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db.models import Gallery, ImageRecord
from catalog.errors import Invalid, NotFound


def normal_label(label: str) -> str:
    """A label as stored and compared: Unicode NFC, so the ``café`` folder macOS wrote in NFD (``e`` +
    combining accent) and the ``café`` typed in a search are one label."""
    return unicodedata.normalize("NFC", label)


def get_gallery(session: Session, name: str) -> Gallery:
    # No gallery name holds a NUL (names are validated when created), and PostgreSQL refuses NUL in a
    # query parameter outright: answer "unknown" without asking it.
    gallery = None if "\x00" in name else session.scalar(select(Gallery).where(Gallery.name == name))
    if gallery is None:
        raise NotFound("unknown_gallery", f"there is no gallery named {name!r}")
    return gallery


def gallery_names(session: Session) -> list[str]:
    return list(session.scalars(select(Gallery.name).order_by(Gallery.name)))


def resolve_gallery(
    session: Session, name: str | None, default: str | None, searchable: Collection[str]
) -> str:
    """The named gallery, else the configured default, else the only one there is, else the only one of
    ``searchable`` (the galleries whose index this process serves: a gallery registered and not yet
    indexed does not take the default away from the one being searched). Raises NotFound
    ``no_gallery`` / ``unknown_gallery``, Invalid ``gallery_required`` when several could be meant."""
    names = gallery_names(session)
    if name is None:
        name = default or (names[0] if len(names) == 1 else None)
        if name is None:
            if not names:
                raise NotFound("no_gallery", "no gallery exists yet: register one with POST /admin/galleries")
            served = sorted(set(searchable) & set(names))
            if len(served) == 1:
                return served[0]
            raise Invalid(
                "gallery_required",
                f"several galleries exist; choose one with ?gallery= ({', '.join(served or names)})",
            )
    if name not in names:
        raise NotFound("unknown_gallery", f"there is no gallery named {name!r}")
    return name


def gallery_labels(session: Session, gallery_id: int) -> frozenset[str]:
    """The labels the gallery's photos carry: a folder of class folders has one per class folder; photos
    uploaded through the API, or lying in a source folder's root, have none. Empty for such a gallery."""
    query = (
        select(ImageRecord.label)
        .where(ImageRecord.gallery_id == gallery_id, ImageRecord.label.is_not(None))
        .distinct()
    )
    return frozenset(label for label in session.scalars(query) if label is not None)
