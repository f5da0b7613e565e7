"""The Beam job of ingestion: files → NoteSequence shards + manifest, on any runner.

The work of each step lives in :mod:`melodyflow.transforms.ingest.steps` (without Beam); the DoFns here
run it on Beam's workers and count outcomes in Beam's metrics.
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from melodyflow.transforms.beam import progress
from melodyflow.transforms.beam.runners import RunnerConfig, run
from melodyflow.transforms.beam.work_order import spread
from melodyflow.transforms.ingest import batches
from melodyflow.transforms.ingest.steps import (CHUNK_FILES, Chunk, ChunkConverter, ChunkLayout,  # noqa: F401
                                                ShardWriter, listing_url, merge_chunk_tables, parser_template_for,
                                                prepare_batch_dir, publish_batch)
from melodyflow.transforms.io import storage


class ConvertFilesDoFn(beam.DoFn):
    """Converts a chunk of files (:class:`~melodyflow.transforms.ingest.steps.ChunkConverter`) and counts
    the outcomes; yields the chunk's index."""

    def __init__(self, plan: batches.IngestPlan, parser_template: str | None = None):
        self._converter = ChunkConverter(plan, parser_template)

    def setup(self):
        self._converter.setup()

    def teardown(self):
        self._converter.teardown()

    def process(self, chunk: Chunk):
        for outcome in self._converter.convert(chunk):
            Metrics.counter("ingest", f"files_{outcome.status.value}").inc()
            if outcome.reason:
                Metrics.counter("ingest", f"failed_{outcome.reason}").inc()
        yield chunk.index


class MergeFirstCopiesDoFn(beam.DoFn):
    """Once every chunk is converted: the batch's merged first-copies table (its staging URL)."""

    def __init__(self, batch_dir: str, layout: ChunkLayout):
        self._batch_dir = batch_dir
        self._layout = layout

    def process(self, _element, _chunks_done):
        yield merge_chunk_tables(self._batch_dir, self._layout)


class WriteBatchShardDoFn(beam.DoFn):
    """Shard ``k`` from staging (:class:`~melodyflow.transforms.ingest.steps.ShardWriter`): yields
    ``(url, records)``."""

    def __init__(self, plan: batches.IngestPlan, layout: ChunkLayout):
        self._writer = ShardWriter(plan, layout)

    def process(self, shard: int, first_copies_at: str):
        yield self._writer.write(shard, first_copies_at)


def build_ingest_pipeline(pipeline: beam.Pipeline, plan: batches.IngestPlan,
                          parser_template: str | None = None) -> None:
    """Convert chunks (sequences, outcomes and first-copies tables to staging files) → once every chunk
    is done, one merged first-copies table → per shard: duplicates marked, NoteSequences, manifest and
    dead-letter parts written, and a read-back report."""
    layout = ChunkLayout(len(plan.files), plan.num_shards)
    converted = (
        pipeline
        | "ListNewFiles" >> beam.Create(spread(layout.stage_listing(plan.files, listing_url(plan.batch_dir)),
                                              seed=plan.batch_id))
        | "ReadAndConvert" >> beam.ParDo(ConvertFilesDoFn(plan, parser_template))
    )
    first_copies_table = (
        pipeline
        | "OneTable" >> beam.Create([None])
        | "FirstCopiesOfBatch" >> beam.ParDo(MergeFirstCopiesDoFn(plan.batch_dir, layout),
                                             beam.pvalue.AsList(converted | "ChunksDone"
                                                                >> beam.combiners.Count.Globally()))
    )
    (
        pipeline
        | "AllShards" >> beam.Create(list(range(plan.num_shards)))
        | "WriteShardsAndManifest" >> beam.ParDo(WriteBatchShardDoFn(plan, layout),
                                                 beam.pvalue.AsSingleton(first_copies_table))
        | "ShardsWritten" >> beam.Map(lambda url_count: url_count)  # a last step, so Dask runs it all
    )


def run_ingest_pipeline(plan: batches.IngestPlan, runner: RunnerConfig,
                        on_progress=lambda done, total: None) -> dict:
    """Run the Beam job for ``plan`` and publish the batch; returns the batch report.

    ``on_progress(files_done, files_total)`` is called from a watcher thread while the job runs.
    """
    started = time.monotonic()
    prepare_batch_dir(plan)
    pipeline = beam.Pipeline(runner=runner.make_runner(), options=runner.pipeline_options())
    with parser_template_for(plan, runner.workers_on_this_machine) as template:
        build_ingest_pipeline(pipeline, plan, template.address if template else None)
        with progress.ProgressWatcher(storage.join(plan.batch_dir, progress.PROGRESS_DIR), len(plan.files),
                                      on_progress):
            run(pipeline)
    return publish_batch(plan, started)
