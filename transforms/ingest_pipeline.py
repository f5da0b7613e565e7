"""The Beam job of ingestion: files → NoteSequence shards + manifest, on any runner."""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import batches, progress, storage
from transforms.convert import preload_readers
from transforms.ingest_files import process_files, resolve_duplicates
from transforms.ingest_records import FileEntry, FileOutcome, FileStatus
from transforms.isolation import IsolatedWorker
from transforms.runners import RunnerConfig, finish
from transforms.sharded_writer import (WriteJsonLines, WriteShardedTFRecords, count_shard_records,
                                       join_writes)

_LOG = logging.getLogger(__name__)


class ConvertFilesDoFn(beam.DoFn):
    """Reads and converts a chunk of files; the parser runs in an isolated child per worker."""

    def __init__(self, plan: batches.IngestPlan):
        self._progress_dir = storage.join(plan.batch_dir, progress.PROGRESS_DIR)
        self._source = plan.source
        self._settings = plan.settings
        self._known = plan.known_hashes
        self._worker: IsolatedWorker | None = None

    def setup(self):
        self._worker = IsolatedWorker(self._settings.limits, prepare=preload_readers)

    def teardown(self):
        if self._worker is not None:
            self._worker.close()

    def process(self, chunk: list[FileEntry]):
        for outcome in process_files(chunk, source=self._source, settings=self._settings,
                                     known_hashes=self._known, worker=self._worker):
            Metrics.counter("ingest", f"files_{outcome.status.value}").inc()
            if outcome.reason:
                Metrics.counter("ingest", f"failed_{outcome.reason}").inc()
            yield outcome
        progress.report(self._progress_dir, len(chunk))


def _chunks(files: tuple[FileEntry, ...], workers: int) -> list[list[FileEntry]]:
    """Give every element real work (Beam's per-element cost is high) yet enough chunks to balance."""
    size = max(1, min(64, -(-len(files) // (workers * 8))))
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


def build_ingest_pipeline(pipeline: beam.Pipeline, plan: batches.IngestPlan, workers: int) -> None:
    outcomes = (
        pipeline
        | "ListNewFiles" >> beam.Create(_chunks(plan.files, workers))
        | "ReadAndConvert" >> beam.ParDo(ConvertFilesDoFn(plan))
        | "KeyByContentHash" >> beam.Map(lambda o: (o.sha256 or f"unhashed:{o.path}", o))
        | "GroupByContentHash" >> beam.GroupByKey()
        | "ResolveDuplicates" >> beam.FlatMapTuple(lambda _h, group: resolve_duplicates(group))
    )
    shards = (
        outcomes
        | "SequencesOfConverted" >> beam.FlatMap(
            lambda o: zip(o.sequence_ids, o.sequences) if o.status is FileStatus.CONVERTED else ())
        | "WriteNoteSequenceShards" >> WriteShardedTFRecords(
            plan.batch_dir, batches.SHARD_PREFIX, plan.num_shards)
    )
    manifest = (
        outcomes
        | "ManifestRecords" >> beam.Map(FileOutcome.manifest_record)
        | "WriteManifest" >> WriteJsonLines(storage.join(plan.batch_dir, batches.MANIFEST), "path")
    )
    join_writes(shards, manifest)


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
    build_ingest_pipeline(pipeline, plan, runner.workers)
    with progress.ProgressWatcher(storage.join(plan.batch_dir, progress.PROGRESS_DIR), len(plan.files),
                                  on_progress):
        finish(pipeline.run())
    shard_counts = count_shard_records(plan.batch_dir, batches.SHARD_PREFIX, plan.num_shards)
    return batches.finalize_batch(plan, shard_counts, time.monotonic() - started)
