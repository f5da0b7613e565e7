"""The dataset job's work, without Beam: work units, melody extraction of a unit into staging files,
output shards merged from staging, and publishing.

:mod:`melodyflow.transforms.melodies.job` runs these steps as a Beam job on any runner;
:func:`run_dataset_in_process` runs them one after the other in this process, for builds too small to
gain from Beam. Both write the same bytes: the steps are the same code, staging files are named by
unit, shards are merged in key order, and the partial stats are summed per split and sorted.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections import Counter
from collections.abc import Callable

from melodyflow.transforms.beam import progress
from melodyflow.transforms.io import storage
from melodyflow.transforms.io.sharded_staging import (STAGING_DIR, json_lines, shard_name, split_staged_record,
                                                      write_shard)
from melodyflow.transforms.io.tfrecord import encode_records_in_pieces, iter_records_from_blocks
from melodyflow.transforms.melodies import units as unit_work
from melodyflow.transforms.melodies.dataset import PARTIAL_STATS, SPLITS, DatasetPlan, finalize_dataset
from melodyflow.transforms.melodies.guard import UnitGuard
from melodyflow.transforms.melodies.units import SEQUENCES_PER_UNIT, WorkUnit


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


class UnitExtractor:
    """One work unit → its examples in staging files (one per split and output shard), and its stats,
    under the per-sequence limits of :class:`~melodyflow.transforms.melodies.guard.UnitGuard` (the unit's
    work itself is :func:`~melodyflow.transforms.melodies.units.extract_unit`).

    Examples never travel between steps: a runner holds at most a unit's examples, whatever the corpus
    size.  Stats are small: ``(split, (counters, histogram))`` pairs and dead letters (dicts with a
    ``reason``).  Call :meth:`setup` before the first unit and :meth:`close` after the last.
    """

    def __init__(self, plan: DatasetPlan, template: str | None = None):
        """``template``: the address of the job's fork template when workers share the driver's machine."""
        self._job = unit_work.unit_job(plan.settings, plan.out_dir, {s: plan.num_shards(s) for s in SPLITS})
        self._progress_dir = storage.join(plan.out_dir, progress.PROGRESS_DIR)
        self._template = template
        self._guard: UnitGuard | None = None

    def setup(self) -> None:
        self._guard = UnitGuard(self._job, self._template)

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def extract(self, unit: WorkUnit) -> list:
        """The unit's dead letters (dicts) and ``(split, (counters, histogram))`` sums."""
        assert self._guard is not None, "UnitExtractor.setup() first"
        result = self._guard.run(unit)
        out: list = list(result.failures)
        out += [(split, (dict(counters), dict(histogram))) for split, (counters, histogram) in result.sums.items()
                if counters]
        progress.report(self._progress_dir, result.sequences)
        return out


def failure_order(record: dict) -> dict:
    """A dead letter with its sort key in the partial stats (by id, then reason: same order on every path)."""
    return {**record, "order": f"z-{record['id']}\t{record['reason']}"}


class OutputShardWriter:
    """Output shard ``(split, k)`` ← every unit's staged examples for it, merged in key order.

    Each unit's staging file is sorted, so the shard is a streaming merge: the writer holds one block of
    each unit's file, never the shard.  Local blocks are small (seeks are free); remote ones larger,
    since each is a request.
    """

    LOCAL_BLOCK = 16 << 10
    REMOTE_BLOCK = 1 << 20

    def __init__(self, plan: DatasetPlan):
        self._plan = plan

    def write(self, split: str, shard: int) -> tuple[str, int]:
        urls = storage.list_dir(staging_dir(self._plan, split, shard))
        url = storage.join(self._plan.out_dir,
                           shard_name(self._plan.shard_prefix(split), shard, self._plan.num_shards(split)))
        block = self.LOCAL_BLOCK if storage.protocol_of(url) == "file" else self.REMOTE_BLOCK

        def merged_records():
            streams = [map(split_staged_record, iter_records_from_blocks(storage.iter_blocks(u, block), source=u))
                       for u in urls]
            return (record for _key, record in heapq.merge(*streams))

        records = write_shard(url, lambda: encode_records_in_pieces(merged_records()))
        storage.write_text(shard_count_url(self._plan, split, shard), json.dumps({"url": url, "records": records}),
                           durable=False)
        return url, records


def sum_stats(values):
    counters, histogram = Counter(), Counter()
    for c, h in values:
        counters.update(c)
        histogram.update(h)
    return dict(counters), dict(histogram)


def partial_records(split_and_sums):
    split, (counters, histogram) = split_and_sums
    yield {"kind": "counters", "split": split, "values": counters, "order": f"{split}-0"}
    yield {"kind": "histogram", "split": split, "values": histogram, "order": f"{split}-1"}


def read_count(url: str) -> tuple[str, int]:
    written = json.loads(storage.read_text(url))
    return written["url"], written["records"]


def prepare_dataset_dir(plan: DatasetPlan) -> None:
    """Replace an older dataset (or a killed build): unpublish it first, so no reader sees a mix."""
    storage.remove_tree(storage.join(plan.out_dir, "COMPLETED"))
    storage.remove_tree(plan.out_dir)
    storage.make_dirs(plan.out_dir)


def publish_dataset(plan: DatasetPlan, started: float) -> dict:
    shard_counts = {split: dict(read_count(shard_count_url(plan, split, k)) for k in range(plan.num_shards(split)))
                    for split in SPLITS}
    storage.remove_tree(storage.join(plan.out_dir, STAGING_DIR))
    return finalize_dataset(plan, shard_counts, time.monotonic() - started)


def run_dataset_in_process(plan: DatasetPlan,
                           on_progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """The dataset job's steps in this process, one after the other, without Beam; same outputs as
    :func:`melodyflow.transforms.melodies.job.run_dataset_pipeline`, for builds too small to gain from Beam."""
    started = time.monotonic()
    prepare_dataset_dir(plan)
    extractor = UnitExtractor(plan)
    extractor.setup()
    outputs: list = []
    try:
        with progress.ProgressWatcher(storage.join(plan.out_dir, progress.PROGRESS_DIR), plan.num_sequences,
                                      on_progress):
            for unit in plan_units(plan):
                outputs += extractor.extract(unit)
    finally:
        extractor.close()
    writer = OutputShardWriter(plan)
    for split in SPLITS:
        for shard in range(plan.num_shards(split)):
            writer.write(split, shard)
    per_split: dict[str, list] = {}
    for split, sums in (o for o in outputs if not isinstance(o, dict)):
        per_split.setdefault(split, []).append(sums)
    records = [r for split, sums in per_split.items() for r in partial_records((split, sum_stats(sums)))]
    records += [failure_order(r) for r in outputs if isinstance(r, dict)]
    storage.write_text(storage.join(plan.out_dir, PARTIAL_STATS), json_lines(records, "order"))
    return publish_dataset(plan, started)
