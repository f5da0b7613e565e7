"""The Beam job of dataset building: NoteSequence shards → train/eval melody records + stats."""

from __future__ import annotations

import time
import traceback
from collections import Counter

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import progress, storage
from transforms.melody_dataset import (PARTIAL_STATS, SPLITS, DatasetPlan, DatasetSettings,
                                       finalize_dataset, sequence_examples)
from transforms.runners import RunnerConfig, finish
from transforms.sharded_writer import WriteJsonLines, WriteShardedTFRecords, count_shard_records, join_writes
from transforms.tfrecord import iter_records

_EXAMPLES = "examples"
_STATS = "stats"


class ReadShardDoFn(beam.DoFn):
    def process(self, url: str):
        for record in iter_records(storage.read_bytes(url), source=url):
            yield record


class ExtractMelodyExamplesDoFn(beam.DoFn):
    """One NoteSequence → ``(_EXAMPLES, split, key, record)`` and ``(_STATS, payload)`` elements.

    One output tagged in-band rather than Beam's multiple outputs: the Dask runner mishandles
    ``TaggedOutput``.
    """

    def __init__(self, settings: DatasetSettings, progress_dir: str):
        self._settings = settings
        self._progress_dir = progress_dir
        self._done = 0

    def start_bundle(self):
        self._done = 0

    def finish_bundle(self):
        progress.report(self._progress_dir, self._done)

    def process(self, serialized: bytes):
        self._done += 1
        if self._done == 256:  # bundles can be the whole input on a local runner: report as we go
            progress.report(self._progress_dir, self._done)
            self._done = 0
        try:
            split, records, stats, histogram = sequence_examples(serialized, self._settings)
        except Exception as exc:  # noqa: BLE001 - one bad sequence must not stop the build
            from note_seq import NoteSequence

            try:
                seq_id = NoteSequence.FromString(serialized).id
            except Exception:  # noqa: BLE001
                seq_id = "<unparseable>"
            Metrics.counter("dataset", "sequences_failed").inc()
            yield _STATS, {"kind": "failure", "split": "train", "id": seq_id,
                           "error": storage.redact(f"{type(exc).__name__}: {exc}"),
                           "traceback": storage.redact(traceback.format_exc(limit=5))}
            yield _STATS, ("train", ({"sequences_read": 1, "sequences_failed": 1}, {}))
            return
        Metrics.counter("dataset", "examples").inc(len(records))
        for key, record in records:
            yield _EXAMPLES, (split, key, record)
        yield _STATS, (split, (dict(stats), dict(histogram)))


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
    outputs = (
        pipeline
        | "ListInputShards" >> beam.Create(plan.input_shards)
        | "ReadNoteSequences" >> beam.ParDo(ReadShardDoFn())
        | "SpreadSequences" >> beam.Reshuffle()
        | "ExtractMelodies" >> beam.ParDo(ExtractMelodyExamplesDoFn(
            plan.settings, storage.join(plan.out_dir, progress.PROGRESS_DIR)))
    )
    examples = (outputs | "Examples" >> beam.Filter(lambda t: t[0] == _EXAMPLES)
                | "ExampleTuples" >> beam.Map(lambda t: t[1]))
    writes = []
    for split in SPLITS:
        writes.append(
            examples
            | f"Only{split.title()}" >> beam.Filter(lambda e, s=split: e[0] == s)
            | f"KeyRecords{split.title()}" >> beam.Map(lambda e: (e[1], e[2]))
            | f"Write{split.title()}Shards" >> WriteShardedTFRecords(
                plan.out_dir, plan.shard_prefix(split), plan.num_shards(split))
        )
    stats = (outputs | "Stats" >> beam.Filter(lambda t: t[0] == _STATS)
             | "StatPayloads" >> beam.Map(lambda t: t[1]))
    failures = stats | "Failures" >> beam.Filter(lambda r: isinstance(r, dict))
    summed = (
        stats
        | "CounterRecords" >> beam.Filter(lambda r: not isinstance(r, dict))
        | "SumPerSplit" >> beam.CombinePerKey(_sum_stats)
        | "PartialRecords" >> beam.FlatMap(_partial_records)
    )
    writes.append(
        (summed, failures | "FailureOrder" >> beam.Map(lambda r: {**r, "order": f"z-{r['id']}"}))
        | "AllStats" >> beam.Flatten()
        | "WritePartialStats" >> WriteJsonLines(storage.join(plan.out_dir, PARTIAL_STATS), "order")
    )
    join_writes(*writes)


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
    shard_counts = {split: count_shard_records(plan.out_dir, plan.shard_prefix(split), plan.num_shards(split))
                    for split in SPLITS}
    return finalize_dataset(plan, shard_counts, time.monotonic() - started)
