"""Per-file ingestion: read, hash, convert in isolation, and resolve duplicates — no Beam here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from transforms import storage
from transforms.convert import SourceFormat, content_hash, convert_file, format_for_path
from transforms.ingest_records import FileEntry, FileOutcome, FileStatus
from transforms.isolation import IsolatedCallError, IsolatedWorker, Limits
from transforms.midi_scan import count_note_ons


@dataclass(frozen=True)
class IngestSettings:
    """Knobs of an ingestion run; part of the batch fingerprint, so changing one makes a new batch."""

    collection: str
    max_file_bytes: int = 64 * 1024 * 1024
    max_notes: int = 500_000
    file_timeout_s: float = 60.0
    memory_limit_mb: int = 4096
    files_per_shard: int = 2000
    max_shards: int = 1024

    def __post_init__(self) -> None:
        if not self.collection or "/" in self.collection:
            raise ValueError(f"collection must be a non-empty name without '/': {self.collection!r}")
        if self.max_file_bytes <= 0 or self.max_notes <= 0:
            raise ValueError("max_file_bytes and max_notes must be positive")
        if self.files_per_shard <= 0 or self.max_shards <= 0:
            raise ValueError("files_per_shard and max_shards must be positive")
        Limits(timeout_s=self.file_timeout_s, memory_mb=self.memory_limit_mb)  # validates

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=self.file_timeout_s, memory_mb=self.memory_limit_mb)

    def num_shards(self, num_files: int) -> int:
        return max(1, min(self.max_shards, -(-num_files // self.files_per_shard)))


def process_file(
    entry: FileEntry,
    *,
    source: str,
    settings: IngestSettings,
    known_hashes: dict[str, str],
    worker: IsolatedWorker,
) -> FileOutcome:
    """Turn one listed file into exactly one outcome; never raises for a bad file.

    ``known_hashes`` maps content hashes ingested by earlier batches to where they came from, so a
    file already stored is counted as a duplicate without being parsed again.
    """
    fmt = format_for_path(entry.path)
    base = FileOutcome(path=entry.path, size=entry.size, status=FileStatus.FAILED,
                       format=fmt.value if fmt else "")

    def failed(reason: str, error: str, **extra) -> FileOutcome:
        return replace(base, reason=reason, error=storage.redact(error), **extra)

    if fmt is None:
        return failed("unsupported_format", "file extension is not a supported score format")
    if entry.size > settings.max_file_bytes:
        return failed("too_large",
                      f"file is {entry.size} bytes, over the {settings.max_file_bytes}-byte limit")
    url = storage.join(source, entry.path)
    try:
        data = storage.read_bytes(url)
    except storage.StorageError:
        raise  # the store is unreachable, not this file bad: stop the run, publish nothing
    except Exception as exc:  # noqa: BLE001 - unreadable file: dead-letter it, keep going
        return failed("read_error", f"{type(exc).__name__}: {exc}")
    if len(data) > settings.max_file_bytes:  # the listing can be stale
        return failed("too_large", f"file is {len(data)} bytes, over the {settings.max_file_bytes}-byte limit",
                      size=len(data))
    digest = content_hash(data)
    base = replace(base, sha256=digest, size=len(data))
    if not data:
        return failed("empty_file", "file is empty (0 bytes)")
    if digest in known_hashes:
        return replace(base, status=FileStatus.DUPLICATE, duplicate_of=known_hashes[digest])
    if fmt is SourceFormat.MIDI:
        notes = count_note_ons(data, settings.max_notes)
        if notes is not None and notes > settings.max_notes:
            return failed("too_many_notes", f"file has more than {settings.max_notes} note-on events "
                                            f"(the limit); refused before parsing")
    try:
        converted = worker.call(convert_file, data, fmt, relative_path=entry.path,
                                collection=settings.collection, digest=digest)
    except IsolatedCallError as exc:
        return failed(exc.reason, str(exc))
    return replace(base, status=FileStatus.CONVERTED, sequences=converted.sequences,
                   sequence_ids=converted.ids, tune_errors=converted.tune_errors)


def resolve_duplicates(outcomes: Iterable[FileOutcome]) -> list[FileOutcome]:
    """Among converted files with the same content hash, keep the first path; the rest are duplicates.

    Called per content hash after a group-by, so identical files converted by different workers are
    stored once, and which copy is kept does not depend on scheduling.  Failed files are never folded
    together: each one gets its own dead letter.
    """
    ordered = sorted(outcomes, key=lambda o: o.path)
    keep = next((o for o in ordered if o.status is FileStatus.CONVERTED), None)
    if keep is None:
        return ordered
    return [
        replace(o, status=FileStatus.DUPLICATE, duplicate_of=keep.path, sequences=(),
                sequence_ids=(), tune_errors=())
        if o.status is FileStatus.CONVERTED and o is not keep else o
        for o in ordered
    ]
