"""The contract every stage's output directory keeps: ingestion batches, melody datasets, training runs'
bundles and generation outputs.

1. A stage writes everything else first (through atomic writes) and its marker last, so a directory
   without the marker is incomplete whatever else it holds: a killed run leaves no half-published output.
2. Readers trust a directory only through its marker and refuse one without it.
3. The marker records the stage's ``fingerprint``: a hash of its inputs and settings.  A re-run is a no-op
   exactly when a marker with the same fingerprint exists ("up to date"); otherwise the stage redoes its
   work, and a deterministic stage writes the same bytes.
4. ``FORMAT_VERSION`` enters every fingerprint, so a change of any stage's on-storage layout makes
   every older output out of date instead of misread.
"""

from __future__ import annotations

import json
from typing import Any

from melodyflow.transforms.io import storage

MARKER = "COMPLETED"
FORMAT_VERSION = 1


class IncompleteOutputError(RuntimeError):
    """A stage's output directory has no completion marker."""


def marker_url(directory: str) -> str:
    return storage.join(directory, MARKER)


def read_marker(directory: str) -> dict[str, Any] | None:
    """The marker's content, or ``None`` when the directory is incomplete (or absent)."""
    try:
        return json.loads(storage.read_text(marker_url(directory)))
    except FileNotFoundError:
        return None


def require_marker(directory: str, remedy: str) -> dict[str, Any]:
    """The marker, or an :class:`IncompleteOutputError` that says what to run (``remedy``)."""
    marker = read_marker(directory)
    if marker is None:
        raise IncompleteOutputError(f"{directory} has no {MARKER} marker: {remedy}")
    return marker


def write_marker(directory: str, marker: dict[str, Any]) -> None:
    """Publish the directory: call this after every other file of the stage is written."""
    storage.write_text(marker_url(directory), json.dumps(marker, sort_keys=True))


def up_to_date(directory: str, fingerprint: str) -> dict[str, Any] | None:
    """The marker when the directory is complete for the same inputs and settings, else ``None``."""
    marker = read_marker(directory)
    return marker if marker is not None and marker.get("fingerprint") == fingerprint else None
