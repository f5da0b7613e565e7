"""The on-storage contract of ingested NoteSequences: batches, markers, manifests, reports.

Layout under ``DATA_ROOT``::

    notesequences/batch-00001-<fingerprint>/
        notesequences.tfrecord-00000-of-00002   serialized NoteSequences; shard k holds the k-th slice of the
                                                sorted listing, in listing order
        manifest.jsonl                          one line per input file: status, hash, ids, error
        report.json                             counts and settings
        COMPLETED                               written last; readers ignore a batch without it
    dead_letters/batch-00001-<fingerprint>.jsonl   one line per failed file: path, reason, error

Every nightly run appends a batch containing only files not seen in a completed batch.  A batch's name
is derived from its inputs, so a killed run is re-done in the same directory, and a half-written batch
is never visible: it has no marker.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

from melodyflow.transforms.io import stage_contract, storage
from melodyflow.transforms.io.stage_contract import FORMAT_VERSION, MARKER
from melodyflow.transforms.ingest.convert import format_for_path
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.records import FileEntry, FileOutcome, FileStatus
from melodyflow.transforms.io.tfrecord import iter_records_from_blocks

NOTESEQUENCES_DIR = "notesequences"
DEAD_LETTERS_DIR = "dead_letters"
SHARD_PREFIX = "notesequences.tfrecord"
MANIFEST = "manifest.jsonl"
REPORT = "report.json"
_BATCH_RE = re.compile(r"^batch-(\d{5,})-([0-9a-f]{12})$")


class IncompleteBatchError(stage_contract.IncompleteOutputError):
    """A batch directory has no completion marker: it is being written or its run was killed."""


class EmptySourceError(ValueError):
    """SOURCE holds no file melodyflow reads and nothing was ingested from it before: most likely a wrong path."""


@dataclass(frozen=True)
class IngestPlan:
    """What one ingestion run will do; computed from the listing and completed batches only."""

    source: str
    data_root: str
    batch_id: str
    settings: IngestSettings
    files: tuple[FileEntry, ...]  # new files to process in this batch
    known_hashes: dict[str, str]  # content hash -> "batch:<id>:<path>" for earlier batches
    already_ingested: int  # listed files skipped because a completed batch has them
    ignored: int  # listed files with an extension we do not read
    stale_batches: tuple[str, ...]  # incomplete batch dirs removed before this run

    def refuse_empty_source(self) -> None:
        """A listing with no readable file and no earlier batch from it is a mistake worth stopping for
        (a typo'd path or an empty bucket prefix), not an up-to-date corpus."""
        if not self.files and not self.already_ingested:
            raise EmptySourceError(
                f"SOURCE {self.source} holds no MIDI, MusicXML or ABC files ({self.ignored} other file(s) ignored): "
                "check the path")

    @property
    def batch_dir(self) -> str:
        return storage.join(self.data_root, NOTESEQUENCES_DIR, self.batch_id)

    @property
    def dead_letters_url(self) -> str:
        return storage.join(self.data_root, DEAD_LETTERS_DIR, f"{self.batch_id}.jsonl")

    @property
    def num_shards(self) -> int:
        return self.settings.num_shards(len(self.files))

    @property
    def is_empty(self) -> bool:
        return not self.files


@dataclass(frozen=True)
class CompletedBatch:
    batch_id: str
    url: str
    marker: dict

    @property
    def shard_urls(self) -> list[str]:
        return [storage.join(self.url, name) for name in self.marker["shards"]]

    def outcomes(self) -> Iterator[FileOutcome]:
        """The manifest's outcomes, in path order, read a block at a time (a manifest line per file)."""
        for line in storage.iter_lines(storage.join(self.url, MANIFEST)):
            if line:
                yield FileOutcome.from_manifest_record(json.loads(line))

    def report(self) -> dict:
        return json.loads(storage.read_text(storage.join(self.url, REPORT)))


def _batch_number(batch_id: str) -> int:
    match = _BATCH_RE.match(batch_id)
    if match is None:
        raise ValueError(f"not a batch name: {batch_id!r}")
    return int(match.group(1))


def notesequences_root(data_root: str) -> str:
    return storage.join(data_root, NOTESEQUENCES_DIR)


def _batch_dirs(data_root: str) -> Iterator[tuple[int, str, str]]:
    for url in storage.list_dir(notesequences_root(data_root)):
        name = url.rstrip("/").rsplit("/", 1)[-1]
        match = _BATCH_RE.match(name)
        if match:
            yield int(match.group(1)), name, url


def open_batch(url: str) -> CompletedBatch:
    """Open a batch for reading; refuses one without its completion marker."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    marker = stage_contract.read_marker(url)
    if marker is None:
        raise IncompleteBatchError(
            f"{url} has no {MARKER} marker: its ingestion is still running or was interrupted; "
            "re-run `melodyflow ingest` to complete it")
    return CompletedBatch(batch_id=name, url=url, marker=marker)


def completed_batches(data_root: str) -> list[CompletedBatch]:
    """Completed batches in creation order; incomplete ones are skipped, never read."""
    out = []
    for _, _name, url in sorted(_batch_dirs(data_root)):
        try:
            out.append(open_batch(url))
        except IncompleteBatchError:
            continue
    return out


def read_sequences(batch: CompletedBatch) -> Iterator[bytes]:
    """Serialized NoteSequences of a completed batch, shard by shard."""
    for url in batch.shard_urls:
        yield from iter_records_from_blocks(storage.iter_blocks(url), source=url)


def _fingerprint(files: list[FileEntry], settings: IngestSettings) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(asdict(settings), sort_keys=True).encode())
    h.update(str(FORMAT_VERSION).encode())
    for entry in files:
        h.update(f"{entry.path}\t{entry.size}\n".encode())
    return h.hexdigest()[:12]


def plan_ingest(source: str, data_root: str, settings: IngestSettings) -> IngestPlan:
    """List SOURCE, subtract what completed batches hold, and name the batch for the rest.

    A file counts as already ingested when a completed batch recorded the same relative path with the
    same size (whatever became of it: converted, duplicate or failed), so a nightly run does not re-read
    the whole corpus.  Incomplete batch directories (killed runs) are removed first.
    """
    listing = list(storage.walk_files(source))
    batches = completed_batches(data_root)
    seen: set[tuple[str, int]] = set()
    known_hashes: dict[str, str] = {}
    for batch in batches:
        for outcome in batch.outcomes():
            seen.add((outcome.path, outcome.size))
            if outcome.status is FileStatus.CONVERTED:
                known_hashes.setdefault(outcome.sha256, f"batch:{batch.batch_id}:{outcome.path}")
    ignored = 0
    already = 0
    new_files: list[FileEntry] = []
    for path, size in listing:
        if format_for_path(path) is None:
            ignored += 1
        elif (path, size) in seen:
            already += 1
        else:
            new_files.append(FileEntry(path=path, size=size))
    completed_names = {b.batch_id for b in batches}
    stale = tuple(name for _, name, _ in _batch_dirs(data_root) if name not in completed_names)
    number = max((_batch_number(b.batch_id) for b in batches), default=0) + 1
    batch_id = f"batch-{number:05d}-{_fingerprint(new_files, settings)}"
    return IngestPlan(source=source, data_root=data_root, batch_id=batch_id, settings=settings,
                      files=tuple(new_files), known_hashes=known_hashes, already_ingested=already,
                      ignored=ignored, stale_batches=stale)


def remove_stale_batches(plan: IngestPlan) -> None:
    """Delete leftovers of killed runs (never visible to readers, but they waste space)."""
    for name in plan.stale_batches:
        storage.remove_tree(storage.join(notesequences_root(plan.data_root), name))
        storage.remove_tree(storage.join(plan.data_root, DEAD_LETTERS_DIR, f"{name}.jsonl"))


def summarize(outcomes: Iterable[FileOutcome]) -> dict:
    """Counts per input file, in one pass; ``found == converted + duplicates + failed`` by construction."""
    status: Counter = Counter()
    reasons: Counter = Counter()
    sequences = tunes_failed = 0
    for o in outcomes:
        status[o.status] += 1
        if o.status is FileStatus.CONVERTED:
            sequences += len(o.sequence_ids)
            tunes_failed += len(o.tune_errors)
        elif o.status is FileStatus.FAILED:
            reasons[o.reason] += 1
    return {
        "found": sum(status.values()),
        "converted": status[FileStatus.CONVERTED],
        "duplicates": status[FileStatus.DUPLICATE],
        "failed": status[FileStatus.FAILED],
        "sequences": sequences,
        "tunes_failed": tunes_failed,
        "failure_reasons": dict(sorted(reasons.items())),
    }


def dead_letter_record(source: str, batch_id: str, outcome: FileOutcome) -> dict:
    return {
        "path": storage.redact(storage.join(source, outcome.path)),
        "relative_path": outcome.path,
        "reason": outcome.reason,
        "error": outcome.error,
        "size": outcome.size,
        "sha256": outcome.sha256,
        "batch": batch_id,
    }


def paths_digest(paths: Iterable[str]) -> str:
    """A fingerprint of a run of paths, in order: how a shard's manifest part proves which files it
    covers without the driver re-reading the manifest."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.encode("utf-8") + b"\n")
    return h.hexdigest()


def shard_report(shard_url: str, first_file: int, outcomes: list[FileOutcome], records: int) -> dict:
    """What a shard writer vouches for: the planned files its manifest part covers, their counts, and
    the records it read back from the shard it wrote."""
    return {"shard": shard_url.rstrip("/").rsplit("/", 1)[-1], "first_file": first_file, "files": len(outcomes),
            "paths_sha256": paths_digest(o.path for o in outcomes), "counts": summarize(outcomes),
            "records": records}


def _check_shard_reports(plan: IngestPlan, reports: list[dict]) -> dict:
    """The reports must tile the plan's listing exactly, and each shard hold what its part promises;
    returns the batch's counts."""
    reports = sorted(reports, key=lambda r: r["first_file"])
    covered = 0
    counts = summarize(())
    for r in reports:
        planned = plan.files[r["first_file"]:r["first_file"] + r["files"]]
        if r["first_file"] != covered or paths_digest(e.path for e in planned) != r["paths_sha256"]:
            raise RuntimeError(
                f"manifest part of {r['shard']} in {plan.batch_id} does not cover the planned files "
                f"{r['first_file']}..{r['first_file'] + r['files'] - 1}; refusing to mark the batch complete")
        if r["records"] != r["counts"]["sequences"]:
            raise RuntimeError(
                f"{r['shard']} of {plan.batch_id} holds {r['records']} sequences but its manifest part lists "
                f"{r['counts']['sequences']}; refusing to mark the batch complete")
        covered += r["files"]
        for key, value in r["counts"].items():
            if key == "failure_reasons":
                merged = Counter(counts[key]) + Counter(value)
                counts[key] = dict(sorted(merged.items()))
            else:
                counts[key] += value
    if covered != len(plan.files):
        raise RuntimeError(f"manifest of {plan.batch_id} covers {covered} of {len(plan.files)} planned files; "
                           "refusing to mark the batch complete")
    return counts


def finalize_batch(plan: IngestPlan, shard_reports: list[dict], dead_letter_parts: list[str],
                   elapsed_s: float, before_publishing: Callable[[], None] = lambda: None) -> dict:
    """Write dead letters, call ``before_publishing`` (the job removes its scratch files), write the
    report, then the marker — in that order — and return the report.

    Checks the shard writers' reports (see :func:`shard_report`) against the plan before publishing:
    every planned file covered once, in order, and every shard holding what the manifest promises.
    The checks cost the driver a hash per file, not a manifest read: with several workers, serial
    driver work is what limits scaling.
    """
    counts = _check_shard_reports(plan, shard_reports)
    storage.write_stream(plan.dead_letters_url, lambda: (storage.read_bytes(url) for url in dead_letter_parts))
    before_publishing()
    shard_names = sorted(r["shard"] for r in shard_reports)
    report = {
        "batch_id": plan.batch_id,
        "source": plan.source,
        "data_root": plan.data_root,
        "collection": plan.settings.collection,
        "settings": asdict(plan.settings),
        "counts": {**counts, "already_ingested": plan.already_ingested, "ignored": plan.ignored},
        "shards": shard_names,
        "dead_letters": plan.dead_letters_url,
        "elapsed_s": round(elapsed_s, 3),
        "format_version": FORMAT_VERSION,
    }
    storage.write_text(storage.join(plan.batch_dir, REPORT), json.dumps(report, indent=2, sort_keys=True))
    marker = {"batch_id": plan.batch_id, "shards": shard_names, "sequences": counts["sequences"],
              "format_version": FORMAT_VERSION}
    stage_contract.write_marker(plan.batch_dir, marker)
    return report
