"""Value types that flow through ingestion: what was found, and what became of each file."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields


class FileStatus(str, enum.Enum):
    CONVERTED = "converted"
    DUPLICATE = "duplicate"
    FAILED = "failed"


@dataclass(frozen=True, order=True, slots=True)
class FileEntry:
    """A source file to ingest: path relative to SOURCE (``/``-separated) and its listed size."""

    path: str
    size: int


@dataclass(frozen=True)
class FileOutcome:
    """The result for one input file; exactly one per file found, so counts always add up."""

    path: str
    size: int
    status: FileStatus
    sha256: str = ""
    format: str = ""
    reason: str = ""  # machine-readable failure class: too_large, read_error, parse_error, timeout ...
    error: str = ""  # human-readable message
    duplicate_of: str = ""  # path (this batch) or "batch:<id>:<path>" (earlier batch)
    sequence_ids: tuple[str, ...] = ()
    tune_errors: tuple[str, ...] = ()
    sequences: tuple[bytes, ...] = field(default=(), repr=False, compare=False)

    def manifest_record(self) -> dict:
        """The JSON-serialisable manifest line (sequence payloads live in the shards, not here)."""
        # Shallow, field by field: ``asdict`` deep-copies every sequence payload just to drop it.
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sequences"}
        record["status"] = self.status.value
        record["sequence_ids"] = list(self.sequence_ids)
        record["tune_errors"] = list(self.tune_errors)
        return record

    @classmethod
    def from_manifest_record(cls, record: dict) -> "FileOutcome":
        return cls(
            path=record["path"],
            size=int(record["size"]),
            status=FileStatus(record["status"]),
            sha256=record.get("sha256", ""),
            format=record.get("format", ""),
            reason=record.get("reason", ""),
            error=record.get("error", ""),
            duplicate_of=record.get("duplicate_of", ""),
            sequence_ids=tuple(record.get("sequence_ids", ())),
            tune_errors=tuple(record.get("tune_errors", ())),
        )
