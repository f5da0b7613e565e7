"""One work unit of a dataset build: its NoteSequences → examples in staging files, stats, dead letters.

:func:`extract_unit` is the whole unit's work, and it runs where a time limit per sequence can be
enforced: in an isolated child process (see :mod:`melodyflow.transforms.melodies.guard`), which reads the
unit's records itself, so that only a small description goes in and small stats come out.  It marks the
index of the sequence it starts in a shared progress slot; when the guard kills it for running over the
limit (or it crashes, or runs out of memory), the unit is run again with that index in ``refused``: the
sequence is dead-lettered with its id and the reason, and every other sequence is extracted as before.
The staging files are written only once the whole unit is done, so their bytes never depend on what was
refused on the way.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from melodyflow.transforms.io import storage
from melodyflow.transforms.io.sharded_staging import STAGING_DIR, shard_index, staged_record
from melodyflow.transforms.io.tfrecord import encode_records, iter_records_from_blocks
from melodyflow.transforms.melodies.dataset import SPLITS, DatasetSettings, sequence_examples, split_of
from melodyflow.transforms.sandbox import progress_slot

SEQUENCES_PER_UNIT = 256  # NoteSequences per Beam element: enough work to amortize per-element costs
UNPARSEABLE_ID = "<unparseable>"


@dataclass(frozen=True)
class WorkUnit:
    """Every ``parts``-th record of one input shard, starting at ``part``: a unit of parallel work whose
    layout depends on the input only (never on the runner), and which covers the shard however many
    records it turns out to hold."""

    index: int
    shard_url: str
    part: int
    parts: int


@dataclass(frozen=True)
class UnitJob:
    """What every unit of one build shares; small, since it travels with each call to the child."""

    settings: DatasetSettings
    out_dir: str
    num_shards: tuple[tuple[str, int], ...]  # (split, shards)

    def staging_dir(self, split: str, shard: int) -> str:
        return staging_dir(self.out_dir, split, shard)


def staging_dir(out_dir: str, split: str, shard: int) -> str:
    return storage.join(out_dir, STAGING_DIR, f"{split}-{shard:05d}")


@dataclass(frozen=True)
class Refusal:
    """Why the guard stopped a sequence: a dead-letter reason (``timeout``, ``crashed``, ...) and text."""

    reason: str
    error: str


@dataclass
class UnitResult:
    """A unit's outcome: the staging files are written; this is what goes on through Beam."""

    sequences: int = 0
    examples: int = 0
    sums: dict[str, tuple[Counter, Counter]] = field(default_factory=dict)  # split → (counters, histogram)
    failures: list[dict] = field(default_factory=list)  # dead letters, one per refused or failed sequence

    def count(self, split: str, stats: Mapping[str, int], histogram: Mapping[str, int] | None = None) -> None:
        counters, hist = self.sums.setdefault(split, (Counter(), Counter()))
        counters.update(stats)
        if histogram:
            hist.update(histogram)


def prepare_child() -> None:
    """What an extraction child needs before its first unit (run once in the fork template): the compiled
    kernels loaded, so that no sequence's time limit pays for loading them."""
    from melodyflow.transforms.melodies import extraction_compiled
    from melodyflow.transforms.melodies.configs import CONFIGS
    from melodyflow.transforms.melodies.encoding import FORMATS, encode_events

    extraction_compiled.warm_up()
    for config in CONFIGS.values():  # load every encoder's compiled kernels, outside any time limit
        for fmt in FORMATS:
            encode_events([60, -2, 62, -1, 64, -2, 65, -2], config, fmt)


def _sequence_id(serialized: bytes) -> str:
    from melodyflow.transforms.melodies.proto import note_sequence_class

    try:
        return note_sequence_class().FromString(serialized).id
    except Exception:  # noqa: BLE001 - the record itself is damaged
        return UNPARSEABLE_ID


def _fail(result: UnitResult, settings: DatasetSettings, serialized: bytes, reason: str, error: str,
          trace: str | None = None) -> None:
    """Dead-letter one sequence (read, not extracted), in the split its id belongs to."""
    seq_id = _sequence_id(serialized)
    split = "train" if seq_id == UNPARSEABLE_ID else split_of(seq_id, settings.eval_ratio)
    record = {"kind": "failure", "split": split, "id": seq_id, "reason": reason, "error": storage.redact(error)}
    if trace:
        record["traceback"] = storage.redact(trace)
    result.failures.append(record)
    result.count(split, {"sequences_read": 1, "sequences_failed": 1})


def _too_large(serialized: bytes, settings: DatasetSettings) -> str:
    from melodyflow.transforms.melodies.proto import note_sequence_class

    sequence = note_sequence_class().FromString(serialized)
    melody = settings.melody
    return (f"{len(sequence.notes)} notes over {sequence.total_time:g} s; the limits are {melody.max_notes} "
            f"notes and {melody.max_seconds:g} s")


def extract_unit(unit: WorkUnit, job: UnitJob, refused: Mapping[int, Refusal] | None = None,
                 progress: str | None = None) -> UnitResult:
    """Extract, encode and stage every sequence of ``unit``; never raises for a bad sequence.

    ``refused``: sequences (by index in the unit) not to extract again, dead-lettered with the given
    reason.  ``progress``: a :class:`~melodyflow.transforms.sandbox.progress_slot.ProgressSlot` path to
    mark each sequence's index in.  A sequence that finishes but took longer than the settings' time
    limit is dead-lettered as ``timeout`` as well, so the limit means the same whether the guard had to
    kill it or not.
    """
    settings, refused = job.settings, refused or {}
    limit = settings.sequence_timeout_s or float("inf")
    shards = dict(job.num_shards)
    staged: dict[tuple[str, int], list[bytes]] = {}
    result = UnitResult()
    records = iter_records_from_blocks(storage.iter_blocks(unit.shard_url), source=unit.shard_url,
                                       start=unit.part, step=unit.parts)
    with progress_slot.attach(progress) as slot:
        for index, serialized in enumerate(records):
            result.sequences += 1
            slot[0] = index
            if index in refused:
                _fail(result, settings, serialized, refused[index].reason, refused[index].error)
                continue
            started = time.monotonic()
            try:
                split, examples, stats, histogram = sequence_examples(serialized, settings)
            except MemoryError as exc:
                _fail(result, settings, serialized, "out_of_memory", f"MemoryError: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - one bad sequence must not stop the build
                _fail(result, settings, serialized, "extraction_error", f"{type(exc).__name__}: {exc}",
                      traceback.format_exc(limit=5))
                continue
            elapsed = time.monotonic() - started
            if elapsed > limit:
                _fail(result, settings, serialized, "timeout", timeout_message(limit, elapsed))
                continue
            if stats.get("sequences_discarded_because_too_large"):
                result.failures.append({"kind": "failure", "split": split, "id": _sequence_id(serialized),
                                        "reason": "too_large", "error": _too_large(serialized, settings)})
            for key, record in examples:
                staged.setdefault((split, shard_index(key, shards[split])), []).append(staged_record(key, record))
            result.examples += len(examples)
            result.count(split, stats, histogram)
        slot[0] = progress_slot.IDLE
    for (split, shard), items in staged.items():
        items.sort()  # keys first: sorted staged records let the shard writer merge without holding them
        storage.write_bytes(storage.join(job.staging_dir(split, shard), f"unit-{unit.index:06d}.tfrecord"),
                            encode_records(items), durable=False)
    return result


def timeout_message(limit_s: float, elapsed_s: float | None = None) -> str:
    took = f"took {elapsed_s:.3g} s" if elapsed_s is not None else "did not finish"
    return f"melody extraction {took}; the limit is {limit_s:g} s per sequence (--sequence-timeout)"


def unit_job(settings: DatasetSettings, out_dir: str, num_shards: Mapping[str, int]) -> UnitJob:
    return UnitJob(settings, out_dir, tuple((split, int(num_shards[split])) for split in SPLITS))
