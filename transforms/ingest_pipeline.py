"""The Beam job of ingestion: files → NoteSequence shards + manifest, on any runner."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import batches, progress, storage
from transforms.convert import preload_readers
from transforms.ingest_files import first_paths, mark_duplicates, merge_first_paths, process_files
from transforms.ingest_records import FileEntry, FileOutcome, FileStatus
from transforms.isolation import IsolatedWorker
from transforms.runners import RunnerConfig, finish
from transforms.sharded_writer import (STAGING_DIR, count_shard_records, shard_name, split_staged_record,
                                       staged_record)
from transforms.tfrecord import encode_records, iter_records

CHUNK_FILES = 64  # files per Beam element: real work per element (Beam's per-element cost is high)


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive listed files, all destined for the same output shard."""

    index: int
    shard: int
    files: tuple[FileEntry, ...]


def plan_chunks(files: tuple[FileEntry, ...], num_shards: int) -> list[Chunk]:
    """Shard ``k`` holds the ``k``-th contiguous slice of the listing; chunks never straddle two shards.

    The layout depends on the listing and settings only — never on the runner or its worker count —
    so a re-run writes the same bytes.
    """
    per_shard = max(1, -(-len(files) // num_shards))
    chunks = []
    for shard in range(num_shards):
        part = files[shard * per_shard:(shard + 1) * per_shard]
        for start in range(0, len(part), CHUNK_FILES):
            chunks.append(Chunk(len(chunks), shard, tuple(part[start:start + CHUNK_FILES])))
    return chunks


def staging_url(batch_dir: str, chunk: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"chunk-{chunk:06d}.tfrecord")


def outcomes_url(batch_dir: str, chunk: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"chunk-{chunk:06d}.jsonl")


def manifest_part_url(batch_dir: str, shard: int) -> str:
    return storage.join(batch_dir, STAGING_DIR, f"manifest-{shard:05d}.jsonl")


class ConvertFilesDoFn(beam.DoFn):
    """Reads and converts a chunk of files; small MIDI files in-process, the rest in an isolated child.

    The chunk's NoteSequences and outcomes go to staging files; only the chunk's content-hash → first
    path map travels through Beam, so no runner holds a corpus worth of sequences or outcomes.
    """

    def __init__(self, plan: batches.IngestPlan):
        self._progress_dir = storage.join(plan.batch_dir, progress.PROGRESS_DIR)
        self._batch_dir = plan.batch_dir
        self._source = plan.source
        self._settings = plan.settings
        self._known = plan.known_hashes
        self._worker: IsolatedWorker | None = None

    def setup(self):
        self._worker = IsolatedWorker(self._settings.limits, prepare=preload_readers)

    def teardown(self):
        if self._worker is not None:
            self._worker.close()

    def process(self, chunk: Chunk):
        outcomes = process_files(chunk.files, source=self._source, settings=self._settings,
                                 known_hashes=self._known, worker=self._worker)
        storage.write_bytes(staging_url(self._batch_dir, chunk.index), encode_records(
            staged_record(o.path, seq) for o in outcomes for seq in o.sequences), durable=False)
        storage.write_text(outcomes_url(self._batch_dir, chunk.index), "".join(
            json.dumps(o.manifest_record(), sort_keys=True) + "\n" for o in outcomes), durable=False)
        for outcome in outcomes:
            Metrics.counter("ingest", f"files_{outcome.status.value}").inc()
            if outcome.reason:
                Metrics.counter("ingest", f"failed_{outcome.reason}").inc()
        progress.report(self._progress_dir, len(chunk.files))
        # Only what deduplication needs travels through Beam: the runner holds no outcomes or sequences.
        yield first_paths(outcomes)


class WriteShardFromStagingDoFn(beam.DoFn):
    """Shard ``k`` ← the staged sequences of its chunks whose file was kept, in listing order; and the
    shard's part of the manifest.  Both are bounded by the shard's size, never by the corpus's."""

    def __init__(self, plan: batches.IngestPlan, chunks_of_shard: dict[int, list[int]]):
        self._batch_dir = plan.batch_dir
        self._num_shards = plan.num_shards
        self._chunks_of_shard = chunks_of_shard

    def process(self, shard: int, first: dict[str, str]):
        outcomes, records = [], []
        for chunk in self._chunks_of_shard.get(shard, []):
            text = storage.read_text(outcomes_url(self._batch_dir, chunk))
            chunk_outcomes = mark_duplicates(
                [FileOutcome.from_manifest_record(json.loads(line)) for line in text.splitlines()], first)
            kept = {o.path for o in chunk_outcomes if o.status is FileStatus.CONVERTED}
            url = staging_url(self._batch_dir, chunk)
            for staged in iter_records(storage.read_bytes(url), source=url):
                path, sequence = split_staged_record(staged)
                if path in kept:
                    records.append(sequence)
            outcomes += chunk_outcomes
        outcomes.sort(key=lambda o: o.path)
        storage.write_text(manifest_part_url(self._batch_dir, shard), "".join(
            json.dumps(o.manifest_record(), sort_keys=True, ensure_ascii=False) + "\n" for o in outcomes),
            durable=False)
        url = storage.join(self._batch_dir, shard_name(batches.SHARD_PREFIX, shard, self._num_shards))
        storage.write_bytes(url, encode_records(records))
        yield url, len(records)


def build_ingest_pipeline(pipeline: beam.Pipeline, plan: batches.IngestPlan) -> None:
    """Convert chunks (sequences and outcomes to staging files) → the first path of every content (a
    global combine) → per shard, once every chunk is done: duplicates marked, NoteSequences and a
    manifest part written."""
    chunks = plan_chunks(plan.files, plan.num_shards)
    chunks_of_shard: dict[int, list[int]] = {}
    for c in chunks:
        chunks_of_shard.setdefault(c.shard, []).append(c.index)
    first = (
        pipeline
        | "ListNewFiles" >> beam.Create(chunks)
        | "ReadAndConvert" >> beam.ParDo(ConvertFilesDoFn(plan))
        | "FirstPathsOfBatch" >> beam.CombineGlobally(merge_first_paths)
    )
    (
        pipeline
        | "AllShards" >> beam.Create(list(range(plan.num_shards)))
        | "WriteShardsAndManifest" >> beam.ParDo(WriteShardFromStagingDoFn(plan, chunks_of_shard),
                                                 beam.pvalue.AsSingleton(first))
        | "ShardsWritten" >> beam.Map(lambda url_count: url_count)  # a last step, so Dask runs it all
    )


def _publish_manifest(plan: batches.IngestPlan) -> None:
    """Concatenate the manifest parts: shards are contiguous slices of the sorted listing, so the
    result is sorted by path."""
    parts = [storage.read_text(manifest_part_url(plan.batch_dir, k)) for k in range(plan.num_shards)]
    storage.write_text(storage.join(plan.batch_dir, batches.MANIFEST), "".join(parts))


def run_ingest_pipeline(plan: batches.IngestPlan, runner: RunnerConfig,
                        on_progress=lambda done, total: None) -> dict:
    """Run the Beam job for ``plan`` and publish the batch; returns the batch report.

    ``on_progress(files_done, files_total)`` is called from a watcher thread while the job runs.
    """
    started = time.monotonic()
    batches.remove_stale_batches(plan)
    storage.remove_tree(plan.batch_dir)  # a killed run of this very batch left partial files
    storage.make_dirs(plan.batch_dir)
    pipeline = beam.Pipeline(runner=runner.make_runner(), options=runner.pipeline_options())
    build_ingest_pipeline(pipeline, plan)
    with progress.ProgressWatcher(storage.join(plan.batch_dir, progress.PROGRESS_DIR), len(plan.files),
                                  on_progress):
        finish(pipeline.run())
    _publish_manifest(plan)
    storage.remove_tree(storage.join(plan.batch_dir, STAGING_DIR))
    shard_counts = count_shard_records(plan.batch_dir, batches.SHARD_PREFIX, plan.num_shards)
    return batches.finalize_batch(plan, shard_counts, time.monotonic() - started)
