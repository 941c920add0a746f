"""What every result carries about where it came from: the rarecast version and the time it was made."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version


def rarecast_version() -> str:
    """The installed rarecast version (``0.0.0+unknown`` in a source tree that was never installed)."""
    try:
        return version("rarecast")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def utc_now() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
