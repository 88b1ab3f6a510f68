"""What can go wrong in a catalog operation, without HTTP: the service maps each kind to a status."""

from __future__ import annotations


class CatalogError(Exception):
    """``code`` is short and machine-readable; the message is for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class NotFound(CatalogError):
    """A gallery, image or job that does not exist."""


class Conflict(CatalogError):
    """The request contradicts what is stored (a name already taken)."""


class Invalid(CatalogError):
    """The request itself is wrong (a source folder that is not a folder, no files)."""
