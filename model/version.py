"""The installed package's version, read from its metadata (pyproject.toml is the one place it is set)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "sketch-search"


def package_version() -> str:
    """``sketch-search``'s version; ``0+unknown`` when the sources run without being installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
