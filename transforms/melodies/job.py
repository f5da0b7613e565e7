"""The Beam job of dataset building: NoteSequence shards → train/eval melody records + stats.

The work of each step lives in :mod:`melodyflow.transforms.melodies.steps` (without Beam); the DoFns here
run it on Beam's workers and count in Beam's metrics.
"""

from __future__ import annotations

import contextlib
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from melodyflow.transforms.beam import progress
from melodyflow.transforms.beam.runners import RunnerConfig, run
from melodyflow.transforms.beam.work_order import spread
from melodyflow.transforms.beam.writes import WriteJsonLines, join_writes
from melodyflow.transforms.io import storage
from melodyflow.transforms.melodies.dataset import PARTIAL_STATS, SPLITS, DatasetPlan
from melodyflow.transforms.melodies import units as unit_work
from melodyflow.transforms.melodies.steps import (SEQUENCES_PER_UNIT, OutputShardWriter, UnitExtractor,  # noqa: F401
                                                  WorkUnit, failure_order, partial_records, plan_units,
                                                  prepare_dataset_dir, publish_dataset, sum_stats)
from melodyflow.transforms.sandbox import fork_template


class ExtractMelodyExamplesDoFn(beam.DoFn):
    """One work unit → staged examples (:class:`~melodyflow.transforms.melodies.steps.UnitExtractor`,
    within the per-sequence limits); yields its dead letters and ``(split, (counters, histogram))`` sums."""

    def __init__(self, plan: DatasetPlan, template: str | None = None):
        """``template``: the address of the job's fork template when workers share the driver's machine."""
        self._extractor = UnitExtractor(plan, template)

    def setup(self):
        self._extractor.setup()

    def teardown(self):
        self._extractor.close()

    def process(self, unit: WorkUnit):
        for output in self._extractor.extract(unit):
            if isinstance(output, dict):
                Metrics.counter("dataset", f"dead_letters_{output['reason']}").inc()
            else:
                Metrics.counter("dataset", "examples").inc(output[1][0].get("examples_written", 0))
            yield output


class MergeStagedExamplesDoFn(beam.DoFn):
    """Output shard ``(split, k)`` merged from staging
    (:class:`~melodyflow.transforms.melodies.steps.OutputShardWriter`)."""

    def __init__(self, plan: DatasetPlan):
        self._writer = OutputShardWriter(plan)

    def process(self, element, _units_done):
        url, records = self._writer.write(*element)
        Metrics.counter("write_shards", "records_written").inc(records)
        yield url, records


def build_dataset_pipeline(pipeline: beam.Pipeline, plan: DatasetPlan, template: str | None = None) -> None:
    """Units → staged examples + stats; then each output shard from its staging files (after all units).

    ``template``: the address of the job's fork template (see :func:`extraction_template_for`)."""
    stats = (
        pipeline
        | "ListWorkUnits" >> beam.Create(spread(plan_units(plan), seed=plan.fingerprint))
        | "ExtractMelodies" >> beam.ParDo(ExtractMelodyExamplesDoFn(plan, template))
    )
    shards = (
        pipeline
        | "ListOutputShards" >> beam.Create([(split, k) for split in SPLITS for k in range(plan.num_shards(split))])
        | "WriteShards" >> beam.ParDo(MergeStagedExamplesDoFn(plan), beam.pvalue.AsList(
            stats | "UnitsDone" >> beam.combiners.Count.Globally()))
    )
    failures = stats | "Failures" >> beam.Filter(lambda r: isinstance(r, dict))
    summed = (
        stats
        | "CounterRecords" >> beam.Filter(lambda r: not isinstance(r, dict))
        | "SumPerSplit" >> beam.CombinePerKey(sum_stats)
        | "PartialRecords" >> beam.FlatMap(partial_records)
    )
    partial = (
        (summed, failures | "FailureOrder" >> beam.Map(failure_order))
        | "AllStats" >> beam.Flatten()
        | "WritePartialStats" >> WriteJsonLines(storage.join(plan.out_dir, PARTIAL_STATS), "order")
    )
    join_writes(shards, partial)


def extraction_template_for(plan: DatasetPlan, runner: RunnerConfig):
    """One fork template for every worker's extraction child when the workers run on this machine and
    a time limit is set (see :mod:`melodyflow.transforms.sandbox.fork_template`); started at once, since
    every unit needs a child."""
    if not (plan.settings.sequence_timeout_s and runner.workers_on_this_machine and fork_template.SUPPORTED):
        return contextlib.nullcontext(None)
    return fork_template.ParserTemplate([unit_work.prepare_child], start_now=True)


def run_dataset_pipeline(plan: DatasetPlan, runner: RunnerConfig, on_progress=lambda done, total: None) -> dict:
    """Build the dataset for ``plan`` (replacing an older one) and publish it.

    ``on_progress(sequences_done, sequences_total)`` is called from a watcher thread while the job runs.
    """
    started = time.monotonic()
    prepare_dataset_dir(plan)
    pipeline = beam.Pipeline(runner=runner.make_runner(), options=runner.pipeline_options())
    with extraction_template_for(plan, runner) as template:
        build_dataset_pipeline(pipeline, plan, template.address if template else None)
        with progress.ProgressWatcher(storage.join(plan.out_dir, progress.PROGRESS_DIR), plan.num_sequences,
                                      on_progress):
            run(pipeline)
    return publish_dataset(plan, started)
