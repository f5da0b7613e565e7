"""The Beam job of dataset building: NoteSequence shards → train/eval melody records + stats."""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import time
from collections import Counter

import apache_beam as beam
from apache_beam.metrics import Metrics

from melodyflow.transforms.beam import progress
from melodyflow.transforms.beam.runners import RunnerConfig, run
from melodyflow.transforms.beam.work_order import spread
from melodyflow.transforms.io import storage
from melodyflow.transforms.io.sharded_staging import (STAGING_DIR, WriteJsonLines, count_records, join_writes,
                                                      shard_name, split_staged_record)
from melodyflow.transforms.io.tfrecord import encode_records_in_pieces, iter_records_from_blocks
from melodyflow.transforms.melodies import units as unit_work
from melodyflow.transforms.melodies.dataset import PARTIAL_STATS, SPLITS, DatasetPlan, finalize_dataset
from melodyflow.transforms.melodies.guard import UnitGuard
from melodyflow.transforms.melodies.units import SEQUENCES_PER_UNIT, WorkUnit
from melodyflow.transforms.sandbox import fork_template


def plan_units(plan: DatasetPlan) -> list[WorkUnit]:
    units: list[WorkUnit] = []
    for batch in plan.batches:
        urls = batch.shard_urls
        per_shard = int(batch.marker.get("sequences", 0)) / max(1, len(urls))
        parts = max(1, math.ceil(per_shard / SEQUENCES_PER_UNIT))
        for url in urls:
            for part in range(parts):
                units.append(WorkUnit(len(units), url, part, parts))
    return units


def shard_count_url(plan: DatasetPlan, split: str, shard: int) -> str:
    return storage.join(plan.out_dir, STAGING_DIR, "counts", f"{split}-{shard:05d}.json")


def staging_dir(plan: DatasetPlan, split: str, shard: int) -> str:
    return unit_work.staging_dir(plan.out_dir, split, shard)


class ExtractMelodyExamplesDoFn(beam.DoFn):
    """One work unit → its examples in staging files (one per split and output shard), and stats.

    Examples never travel through Beam: a runner holds at most a unit's examples, whatever the corpus
    size.  Stats are small: ``(split, (counters, histogram))`` pairs and failure records (dicts).  The
    unit runs under the per-sequence limits of :class:`~melodyflow.transforms.melodies.guard.UnitGuard`.
    """

    def __init__(self, plan: DatasetPlan, template: str | None = None):
        """``template``: the address of the job's fork template when workers share the driver's machine."""
        self._job = unit_work.unit_job(plan.settings, plan.out_dir, {s: plan.num_shards(s) for s in SPLITS})
        self._progress_dir = storage.join(plan.out_dir, progress.PROGRESS_DIR)
        self._template = template
        self._guard: UnitGuard | None = None

    def setup(self):
        self._guard = UnitGuard(self._job, self._template)

    def teardown(self):
        if self._guard is not None:
            self._guard.close()

    def process(self, unit: WorkUnit):
        assert self._guard is not None
        result = self._guard.run(unit)
        Metrics.counter("dataset", "examples").inc(result.examples)
        for failure in result.failures:
            Metrics.counter("dataset", f"dead_letters_{failure['reason']}").inc()
            yield failure
        for split, (counters, histogram) in result.sums.items():
            yield split, (dict(counters), dict(histogram))
        progress.report(self._progress_dir, result.sequences)


class WriteShardFromStagingDoFn(beam.DoFn):
    """Output shard ``(split, k)`` ← every unit's staged examples for it, merged in key order.

    Each unit's staging file is sorted, so the shard is a streaming merge: the writer holds one block of
    each unit's file, never the shard.  Local blocks are small (seeks are free); remote ones larger,
    since each is a request.
    """

    LOCAL_BLOCK = 16 << 10
    REMOTE_BLOCK = 1 << 20

    def __init__(self, plan: DatasetPlan):
        self._plan = plan

    def process(self, element, _units_done):
        split, shard = element
        urls = storage.list_dir(staging_dir(self._plan, split, shard))
        url = storage.join(self._plan.out_dir,
                           shard_name(self._plan.shard_prefix(split), shard, self._plan.num_shards(split)))
        block = self.LOCAL_BLOCK if storage.protocol_of(url) == "file" else self.REMOTE_BLOCK

        def merged_records():
            streams = [map(split_staged_record, iter_records_from_blocks(storage.iter_blocks(u, block), source=u))
                       for u in urls]
            return (record for _key, record in heapq.merge(*streams))

        storage.write_stream(url, lambda: encode_records_in_pieces(merged_records()))
        records = count_records(url)
        Metrics.counter("write_shards", "records_written").inc(records)
        storage.write_text(shard_count_url(self._plan, split, shard), json.dumps({"url": url, "records": records}),
                           durable=False)
        yield url, records


def _sum_stats(values):
    counters, histogram = Counter(), Counter()
    for c, h in values:
        counters.update(c)
        histogram.update(h)
    return dict(counters), dict(histogram)


def _partial_records(split_and_sums):
    split, (counters, histogram) = split_and_sums
    yield {"kind": "counters", "split": split, "values": counters, "order": f"{split}-0"}
    yield {"kind": "histogram", "split": split, "values": histogram, "order": f"{split}-1"}


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
        | "WriteShards" >> beam.ParDo(WriteShardFromStagingDoFn(plan), beam.pvalue.AsList(
            stats | "UnitsDone" >> beam.combiners.Count.Globally()))
    )
    failures = stats | "Failures" >> beam.Filter(lambda r: isinstance(r, dict))
    summed = (
        stats
        | "CounterRecords" >> beam.Filter(lambda r: not isinstance(r, dict))
        | "SumPerSplit" >> beam.CombinePerKey(_sum_stats)
        | "PartialRecords" >> beam.FlatMap(_partial_records)
    )
    partial = (
        (summed, failures | "FailureOrder" >> beam.Map(lambda r: {**r, "order": f"z-{r['id']}\t{r['reason']}"}))
        | "AllStats" >> beam.Flatten()
        | "WritePartialStats" >> WriteJsonLines(storage.join(plan.out_dir, PARTIAL_STATS), "order")
    )
    join_writes(shards, partial)


def _read_count(url: str) -> tuple[str, int]:
    written = json.loads(storage.read_text(url))
    return written["url"], written["records"]


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
    # Replace an older dataset (or a killed build): unpublish it first, so no reader sees a mix.
    storage.remove_tree(storage.join(plan.out_dir, "COMPLETED"))
    storage.remove_tree(plan.out_dir)
    storage.make_dirs(plan.out_dir)
    pipeline = beam.Pipeline(runner=runner.make_runner(), options=runner.pipeline_options())
    with extraction_template_for(plan, runner) as template:
        build_dataset_pipeline(pipeline, plan, template.address if template else None)
        with progress.ProgressWatcher(storage.join(plan.out_dir, progress.PROGRESS_DIR), plan.num_sequences,
                                      on_progress):
            run(pipeline)
    shard_counts = {split: dict(_read_count(shard_count_url(plan, split, k)) for k in range(plan.num_shards(split)))
                    for split in SPLITS}
    storage.remove_tree(storage.join(plan.out_dir, STAGING_DIR))
    return finalize_dataset(plan, shard_counts, time.monotonic() - started)
