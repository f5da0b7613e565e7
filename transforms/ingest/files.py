"""Per-file ingestion: read, hash, convert in isolation, and resolve duplicates — no Beam here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace


from melodyflow.transforms.io import storage
from melodyflow.transforms.ingest.convert import (ConversionRequest, ConvertedFile, SourceFormat, content_hash, convert_files,
                                convert_midi_compiled, convert_request, format_for_path, preload_midi_reader)
from melodyflow.transforms.ingest.records import FileEntry, FileOutcome, FileStatus
from melodyflow.transforms.sandbox.isolated_worker import IsolatedCallError, IsolatedWorker, Limits, RemoteError
from melodyflow.transforms.midi.scan import count_note_ons


@dataclass(frozen=True)
class IngestSettings:
    """Knobs of an ingestion run; part of the batch fingerprint, so changing one makes a new batch."""

    collection: str
    max_file_bytes: int = 64 * 1024 * 1024
    max_notes: int = 500_000
    file_timeout_s: float = Limits.timeout_s
    memory_limit_mb: int = Limits.memory_mb
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


@dataclass(frozen=True)
class _Pending:
    """A file read, hashed and checked, waiting for the parser."""

    base: FileOutcome
    request: ConversionRequest


def _prepare(entry: FileEntry, *, source: str, settings: IngestSettings,
             known_hashes: dict[str, str]) -> FileOutcome | _Pending:
    """Everything before parsing: an outcome already decided, or the request to convert."""
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
    base = FileOutcome(path=entry.path, size=len(data), status=FileStatus.FAILED, sha256=digest,
                       format=base.format)  # not replace(): this runs per file, and replace() is slow
    if not data:
        return failed("empty_file", "file is empty (0 bytes)")
    if digest in known_hashes:
        return replace(base, status=FileStatus.DUPLICATE, duplicate_of=known_hashes[digest])
    if fmt is SourceFormat.MIDI:
        notes = count_note_ons(data, settings.max_notes)
        if notes is not None and notes > settings.max_notes:
            return failed("too_many_notes", f"file has more than {settings.max_notes} note-on events "
                                            f"(the limit); refused before parsing")
    return _Pending(base, ConversionRequest(data, fmt, entry.path, settings.collection, digest))


def _finish(pending: _Pending, result: ConvertedFile | IsolatedCallError) -> FileOutcome:
    if isinstance(result, IsolatedCallError):
        return replace(pending.base, reason=result.reason, error=storage.redact(str(result)))
    base = pending.base
    return FileOutcome(path=base.path, size=base.size, status=FileStatus.CONVERTED, sha256=base.sha256,
                       format=base.format, sequences=result.sequences, sequence_ids=result.ids,
                       tune_errors=result.tune_errors)


def _prepare_for(worker: IsolatedWorker, requests: Iterable[ConversionRequest]) -> None:
    """Load the compiled MIDI reader in the child before its first MIDI file, outside the time limit."""
    if any(r.fmt is SourceFormat.MIDI for r in requests):
        worker.ensure(preload_midi_reader)


def _convert_one(worker: IsolatedWorker, request: ConversionRequest) -> ConvertedFile | IsolatedCallError:
    try:
        _prepare_for(worker, [request])
        return worker.call(convert_request, request)
    except IsolatedCallError as exc:
        return exc


def _convert_batch(worker: IsolatedWorker, batch: list[_Pending]) -> list[ConvertedFile | IsolatedCallError]:
    """One isolated call for the whole batch; after a hang or crash, each file alone."""
    if len(batch) == 1:
        return [_convert_one(worker, batch[0].request)]
    try:
        _prepare_for(worker, (p.request for p in batch))
        results = worker.call(convert_files, [p.request for p in batch])
    except IsolatedCallError:
        return [_convert_one(worker, p.request) for p in batch]
    return [RemoteError(*r) if isinstance(r, tuple) else r for r in results]


# MIDI files up to this size are read by the compiled reader in the worker itself: its cost is linear in
# the size (a few ms and ~100 MB at worst here), so isolation would only add a round trip per file.
IN_PROCESS_MIDI_BYTES = 1024 * 1024


def _read_in_worker(fmt: SourceFormat, size: int) -> bool:
    return fmt is SourceFormat.MIDI and size <= IN_PROCESS_MIDI_BYTES


def _in_process(request: ConversionRequest) -> bool:
    return _read_in_worker(request.fmt, len(request.data))


def expects_isolated_parsing(entries: Iterable[FileEntry], settings: IngestSettings) -> bool:
    """Whether a listing holds files that will go to the isolated parser whatever their content
    (other formats, large MIDI files), so a job can start the parser template before it is asked.
    Small MIDI files that the compiled reader turns down also go there, but only reading tells."""
    for entry in entries:
        fmt = format_for_path(entry.path)
        if fmt is not None and entry.size <= settings.max_file_bytes and not _read_in_worker(fmt, entry.size):
            return True
    return False


def parsing_bytes(entries: Iterable[FileEntry], settings: IngestSettings) -> tuple[int, int]:
    """Bytes the compiled reader will read in the worker, and bytes bound for the isolated parser (as
    far as the listing tells), for sizing a job before it starts."""
    compiled = isolated = 0
    for entry in entries:
        fmt = format_for_path(entry.path)
        if fmt is None or entry.size > settings.max_file_bytes:
            continue
        if _read_in_worker(fmt, entry.size):
            compiled += entry.size
        else:
            isolated += entry.size
    return compiled, isolated


def process_files(
    entries: Iterable[FileEntry],
    *,
    source: str,
    settings: IngestSettings,
    known_hashes: dict[str, str],
    worker: IsolatedWorker,
    batch_bytes: int = 4 * 1024 * 1024,
) -> list[FileOutcome]:
    """Turn each listed file into exactly one outcome, in order; never raises for a bad file.

    ``known_hashes`` maps content hashes ingested by earlier batches to where they came from, so a
    file already stored is counted as a duplicate without being parsed again.  Small MIDI files that
    the compiled reader accepts are converted here; every other file goes to the isolated parser, in
    batches of up to ``batch_bytes`` per call.  A batch that hangs or crashes the parser is retried
    file by file, so the culprit gets its own timeout or crash reason and the others convert.
    """
    results: list[FileOutcome | None] = []
    batch: list[tuple[int, _Pending]] = []
    batch_size = 0

    def flush() -> None:
        nonlocal batch_size
        for (i, pending), result in zip(batch, _convert_batch(worker, [p for _, p in batch])):
            results[i] = _finish(pending, result)
        batch.clear()
        batch_size = 0

    for entry in entries:  # read while batching, so at most ``batch_bytes`` plus one file are held
        prepared = _prepare(entry, source=source, settings=settings, known_hashes=known_hashes)
        if isinstance(prepared, _Pending) and _in_process(prepared.request):
            fast = convert_midi_compiled(prepared.request.data, relative_path=prepared.request.relative_path,
                                     collection=prepared.request.collection, digest=prepared.request.digest)
            if fast is not None:
                prepared = _finish(prepared, fast)
        results.append(prepared if isinstance(prepared, FileOutcome) else None)
        if isinstance(prepared, _Pending):
            batch.append((len(results) - 1, prepared))
            batch_size += len(prepared.request.data)
            if batch_size >= batch_bytes:
                flush()
    if batch:
        flush()
    return results  # type: ignore[return-value]  # every slot is filled by now
