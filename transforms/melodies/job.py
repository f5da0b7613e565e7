"""The Beam job of dataset building: NoteSequence shards → train/eval melody records + stats."""

from __future__ import annotations

import heapq
import json
import math
import time
import traceback
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from melodyflow.transforms.beam import progress

from melodyflow.transforms.io import storage
from melodyflow.transforms.melodies.dataset import PARTIAL_STATS, SPLITS, DatasetPlan, finalize_dataset, sequence_examples
from melodyflow.transforms.beam.runners import RunnerConfig, finish
from melodyflow.transforms.io.sharded_staging import (STAGING_DIR, WriteJsonLines, join_writes, shard_index, write_shard,
                                       shard_name, split_staged_record, staged_record)
from melodyflow.transforms.io.tfrecord import encode_records, encode_records_in_pieces, iter_records_from_blocks
from melodyflow.transforms.beam.work_order import spread



SEQUENCES_PER_UNIT = 256  # NoteSequences per Beam element: enough work to amortize per-element costs


@dataclass(frozen=True)
class WorkUnit:
    """Every ``parts``-th record of one input shard, starting at ``part``: a unit of parallel work whose
    layout depends on the input only (never on the runner), and which covers the shard however many
    records it turns out to hold."""

    index: int
    shard_url: str
    part: int
    parts: int


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
    return storage.join(plan.out_dir, STAGING_DIR, f"{split}-{shard:05d}")


class ExtractMelodyExamplesDoFn(beam.DoFn):
    """One work unit → its examples in staging files (one per split and output shard), and stats.

    Examples never travel through Beam: a runner holds at most a unit's examples, whatever the corpus
    size.  Stats are small: ``(split, (counters, histogram))`` pairs and failure records (dicts).
    """

    def __init__(self, plan: DatasetPlan):
        self._plan = plan
        self._settings = plan.settings
        self._progress_dir = storage.join(plan.out_dir, progress.PROGRESS_DIR)
        self._num_shards = {split: plan.num_shards(split) for split in SPLITS}

    def setup(self):
        from melodyflow.transforms.melodies import extraction_compiled

        extraction_compiled.warm_up()

    def process(self, unit: WorkUnit):
        staged: dict[tuple[str, int], list[bytes]] = {}
        sums: dict[str, tuple[Counter[str], Counter[str]]] = {split: (Counter(), Counter()) for split in SPLITS}
        done = 0
        for serialized in iter_records_from_blocks(storage.iter_blocks(unit.shard_url), source=unit.shard_url,
                                                   start=unit.part, step=unit.parts):
            done += 1
            try:
                split, examples, stats, histogram = sequence_examples(serialized, self._settings)
            except Exception as exc:  # noqa: BLE001 - one bad sequence must not stop the build
                yield self._failure(serialized, exc)
                sums["train"][0].update({"sequences_read": 1, "sequences_failed": 1})
                continue
            Metrics.counter("dataset", "examples").inc(len(examples))
            for key, record in examples:
                shard = shard_index(key, self._num_shards[split])
                staged.setdefault((split, shard), []).append(staged_record(key, record))
            sums[split][0].update(stats)
            sums[split][1].update(histogram)
        for (split, shard), items in staged.items():
            url = storage.join(staging_dir(self._plan, split, shard), f"unit-{unit.index:06d}.tfrecord")
            items.sort()  # keys first: sorted staged records let the shard writer merge without holding them
            storage.write_bytes(url, encode_records(items), durable=False)
        for split, (counters, histogram) in sums.items():
            if counters:
                yield split, (dict(counters), dict(histogram))
        progress.report(self._progress_dir, done)

    @staticmethod
    def _failure(serialized: bytes, exc: Exception) -> dict:
        from note_seq import NoteSequence

        try:
            seq_id = NoteSequence.FromString(serialized).id
        except Exception:  # noqa: BLE001
            seq_id = "<unparseable>"
        Metrics.counter("dataset", "sequences_failed").inc()
        return {"kind": "failure", "split": "train", "id": seq_id,
                "error": storage.redact(f"{type(exc).__name__}: {exc}"),
                "traceback": storage.redact(traceback.format_exc(limit=5))}


class MergeStagedExamplesDoFn(beam.DoFn):
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

        records = write_shard(url, lambda: encode_records_in_pieces(merged_records()))
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


def build_dataset_pipeline(pipeline: beam.Pipeline, plan: DatasetPlan) -> None:
    """Units → staged examples + stats; then each output shard from its staging files (after all units)."""
    stats = (
        pipeline
        | "ListWorkUnits" >> beam.Create(spread(plan_units(plan), seed=plan.fingerprint))
        | "ExtractMelodies" >> beam.ParDo(ExtractMelodyExamplesDoFn(plan))
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
        | "SumPerSplit" >> beam.CombinePerKey(_sum_stats)
        | "PartialRecords" >> beam.FlatMap(_partial_records)
    )
    partial = (
        (summed, failures | "FailureOrder" >> beam.Map(lambda r: {**r, "order": f"z-{r['id']}"}))
        | "AllStats" >> beam.Flatten()
        | "WritePartialStats" >> WriteJsonLines(storage.join(plan.out_dir, PARTIAL_STATS), "order")
    )
    join_writes(shards, partial)


def _read_count(url: str) -> tuple[str, int]:
    written = json.loads(storage.read_text(url))
    return written["url"], written["records"]


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
    build_dataset_pipeline(pipeline, plan)
    with progress.ProgressWatcher(storage.join(plan.out_dir, progress.PROGRESS_DIR), plan.num_sequences,
                                  on_progress):
        finish(pipeline.run())
    shard_counts = {split: dict(_read_count(shard_count_url(plan, split, k)) for k in range(plan.num_shards(split)))
                    for split in SPLITS}
    storage.remove_tree(storage.join(plan.out_dir, STAGING_DIR))
    return finalize_dataset(plan, shard_counts, time.monotonic() - started)
