"""The on-storage contract of melody datasets, and the per-sequence work that fills them.

Layout under ``DATA_ROOT/melodies/<config>/``::

    train.tfrecord-00000-of-0000N   training records (format in info.json), sorted by key per shard
    eval.tfrecord-00000-of-0000M
    stats.json                      Magenta's counters and melody-length histogram, per split
    info.json                       config, sizes, format, counts per split, source batches, settings
    COMPLETED                       written last; readers refuse a dataset without it

The split is decided by hashing the NoteSequence id, so an example never changes split when the corpus
grows, and transposed copies and sub-sequences of one sequence share its split.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from melodyflow.transforms.io import stage_contract, storage
from melodyflow.transforms.io.stage_contract import FORMAT_VERSION, MARKER
from melodyflow.transforms.ingest.batches import CompletedBatch, completed_batches
from melodyflow.transforms.melodies import encoding_compiled
from melodyflow.transforms.melodies.configs import MelodyConfig
from melodyflow.transforms.melodies.encoding import FORMATS, encode_events, encode_melody, to_record
from melodyflow.transforms.melodies.extraction_reference import COUNTERS, MelodySettings, sequence_to_melodies

MELODIES_DIR = "melodies"
SPLITS = ("train", "eval")
STATS = "stats.json"
INFO = "info.json"
PARTIAL_STATS = "_stats.partial.jsonl"


class IncompleteDatasetError(stage_contract.IncompleteOutputError):
    """A dataset directory has no completion marker."""


class NoInputError(RuntimeError):
    """There are no completed ingestion batches to build from."""


@dataclass(frozen=True)
class DatasetSettings:
    config: MelodyConfig
    melody: MelodySettings = MelodySettings()
    eval_ratio: float = 0.1
    format: str = "compact"
    examples_per_shard: int = 20000
    max_shards: int = 256
    # Limits per sequence, enforced by running extraction in an isolated child (``guard.py``); a sequence
    # over either is dead-lettered (``timeout``, ``out_of_memory``) and the build goes on.  0 s turns the
    # time limit (and the child) off.  Not part of the fingerprint: they decide only which pathological
    # sequences are dropped, and the dead letters name each one.
    sequence_timeout_s: float = 60.0
    memory_limit_mb: int = 4096

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sequence_timeout_s) and self.sequence_timeout_s >= 0):
            raise ValueError(f"sequence_timeout_s must be >= 0 (0: no limit), got {self.sequence_timeout_s}")
        if self.memory_limit_mb < 256:
            raise ValueError(f"memory_limit_mb must be at least 256, got {self.memory_limit_mb}")
        if not 0.0 <= self.eval_ratio <= 1.0:
            raise ValueError(f"eval_ratio must be within [0, 1], got {self.eval_ratio}")
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.melody.steps_per_quarter != self.config.steps_per_quarter:
            raise ValueError("melody steps_per_quarter must match the config's")

    def limits(self) -> dict:
        return {"sequence_timeout_s": self.sequence_timeout_s, "memory_limit_mb": self.memory_limit_mb}

    def describe(self) -> dict:
        return {"config": self.config.name, "format": self.format, "eval_ratio": self.eval_ratio,
                "melody": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.melody).items()}}


def split_of(sequence_id: str, eval_ratio: float) -> str:
    """Deterministic split: a sequence id always maps to the same split for a given ratio."""
    point = int.from_bytes(hashlib.sha256(sequence_id.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "eval" if point < eval_ratio else "train"


def example_key(sequence_id: str, sub: int, transposition: int, instrument: int, index: int) -> str:
    return f"{sequence_id}\t{sub:05d}\t{transposition:+04d}\t{instrument:05d}\t{index:05d}"


def sequence_examples(serialized: bytes, settings: DatasetSettings):
    """One NoteSequence → ``(split, [(key, record)], stats, histogram)``.

    ``histogram`` holds Magenta's melody-length buckets (``"[10,20)"``) and, as ``"pitch:NN"``, how
    often each pitch starts a note in the encoded (squashed) melodies.  Runs the compiled extraction
    (``extraction_compiled``) and the vectorized encoder (``encode_events``); :func:`reference_sequence_examples`
    is the same contract on note-seq's own objects, kept as the oracle the tests and benchmarks compare
    against.
    """
    from melodyflow.transforms.melodies.extraction_compiled import compiled_sequence_to_melodies
    from melodyflow.transforms.melodies.proto import note_sequence_class

    sequence = note_sequence_class().FromString(serialized)
    split = split_of(sequence.id, settings.eval_ratio)
    melodies, stats, histogram = compiled_sequence_to_melodies(sequence, settings.melody, serialized=serialized)
    records = []
    pitches = np.zeros(128, dtype=np.int64)
    for m in melodies:
        record, squashed = encode_events(m.events, settings.config, settings.format)
        events = np.asarray(squashed, dtype=np.int64)
        pitches += np.bincount(events[events >= 0], minlength=128)
        key = example_key(sequence.id, m.subsequence, m.transposition, m.instrument, m.index)
        records.append((key, record))
    histogram.update({f"pitch:{p}": int(n) for p, n in enumerate(pitches.tolist()) if n})
    stats["examples_written"] += len(records)
    return split, records, stats, histogram


def reference_sequence_examples(serialized: bytes, settings: DatasetSettings):
    """:func:`sequence_examples` computed with note-seq's split, quantize, Melody and encoders."""
    from note_seq import NoteSequence

    sequence = NoteSequence.FromString(serialized)
    split = split_of(sequence.id, settings.eval_ratio)
    melodies, stats, histogram = sequence_to_melodies(sequence, settings.melody)
    records = []
    for m in melodies:
        inputs, labels = encode_melody(m.melody, settings.config)
        histogram.update(f"pitch:{e}" for e in m.melody if e >= 0)
        key = example_key(sequence.id, m.subsequence, m.transposition, m.instrument, m.index)
        records.append((key, to_record(inputs, labels, settings.format, settings.config.input_size)))
    stats["examples_written"] += len(records)
    return split, records, stats, histogram


@dataclass(frozen=True)
class DatasetPlan:
    data_root: str
    settings: DatasetSettings
    batches: tuple[CompletedBatch, ...]

    @property
    def out_dir(self) -> str:
        return storage.join(self.data_root, MELODIES_DIR, self.settings.config.name)

    @property
    def num_sequences(self) -> int:
        return sum(int(b.marker.get("sequences", 0)) for b in self.batches)

    @property
    def input_shards(self) -> list[str]:
        return [url for b in self.batches for url in b.shard_urls]

    def num_shards(self, split: str) -> int:
        # Rough upper bound of examples per split (about one melody per sequence), deterministic.
        share = self.settings.eval_ratio if split == "eval" else 1.0 - self.settings.eval_ratio
        expected = int(self.num_sequences * share) + 1
        return max(1, min(self.settings.max_shards, -(-expected // self.settings.examples_per_shard)))

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps(self.settings.describe(), sort_keys=True).encode())
        h.update(str(FORMAT_VERSION).encode())
        for b in self.batches:
            h.update(b.batch_id.encode())
        return h.hexdigest()[:16]

    def shard_prefix(self, split: str) -> str:
        return f"{split}.tfrecord"


def plan_dataset(data_root: str, settings: DatasetSettings) -> DatasetPlan:
    batches = tuple(completed_batches(data_root))
    if not batches:
        raise NoInputError(
            f"no completed ingestion batch under {storage.join(data_root, 'notesequences')}: "
            "run `melodyflow ingest SOURCE DATA_ROOT` first")
    return DatasetPlan(data_root=data_root, settings=settings, batches=batches)


def up_to_date(plan: DatasetPlan) -> dict | None:
    """The completed dataset's marker when it was built from the same batches and settings."""
    return stage_contract.up_to_date(plan.out_dir, plan.fingerprint)


def open_dataset(data_root: str, config_name: str) -> dict:
    """The ``info.json`` of a completed dataset; refuses one without its marker.  A config that shares
    another's records (``music_transformer``) opens that one's dataset."""
    from melodyflow.transforms.melodies.configs import get_config

    config_name = get_config(config_name).name
    out_dir = storage.join(data_root, MELODIES_DIR, config_name)
    if stage_contract.read_marker(out_dir) is None:
        raise IncompleteDatasetError(
            f"{out_dir} has no {MARKER} marker: build it with `melodyflow dataset {data_root} "
            f"--config {config_name}` (or wait for the running build)")
    info = json.loads(storage.read_text(storage.join(out_dir, INFO)))
    info["url"] = out_dir
    return info


def merge_partial_stats(lines: list[dict]) -> tuple[dict, dict, dict, list[dict]]:
    """Sum per-split counters, length histograms and pitch counts from the partial stats records."""
    counters = {s: Counter(dict.fromkeys(COUNTERS, 0)) for s in SPLITS}
    histograms: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    pitches: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    failures = []
    for rec in lines:
        if rec["kind"] == "counters":
            counters[rec["split"]].update(rec["values"])
        elif rec["kind"] == "histogram":
            for key, n in rec["values"].items():
                if key.startswith("pitch:"):
                    pitches[rec["split"]][key.split(":", 1)[1]] += n
                else:
                    histograms[rec["split"]][key] += n
        elif rec["kind"] == "failure":
            failures.append(rec)
    return ({s: dict(sorted(c.items())) for s, c in counters.items()},
            {s: dict(sorted(h.items(), key=lambda kv: _bucket_order(kv[0]))) for s, h in histograms.items()},
            {s: dict(sorted(p.items(), key=lambda kv: int(kv[0]))) for s, p in pitches.items()},
            failures)


def _bucket_order(bucket: str) -> int:
    return int(bucket[1:].split(",", 1)[0])


def dead_letters_url(plan: DatasetPlan) -> str:
    """One JSON line per sequence that yielded nothing: ``id``, ``split``, ``reason``, ``error``."""
    return storage.join(plan.data_root, "dead_letters", f"melodies-{plan.settings.config.name}.jsonl")


def finalize_dataset(plan: DatasetPlan, shard_counts: dict[str, dict[str, int]], elapsed_s: float) -> dict:
    """Write stats.json, info.json and the marker (last), after checking counts agree."""
    partial_url = storage.join(plan.out_dir, PARTIAL_STATS)
    lines = [json.loads(line) for line in storage.read_text(partial_url).splitlines() if line]
    counters, histograms, pitches, failures = merge_partial_stats(lines)
    for split in SPLITS:
        written = sum(shard_counts[split].values())
        if written != counters[split].get("examples_written", 0):
            raise RuntimeError(f"{split} shards hold {written} examples but the counters say "
                               f"{counters[split].get('examples_written', 0)}; refusing to publish")
    total: Counter[str] = Counter()
    for split in SPLITS:
        total.update(counters[split])
    failures_url: str | None = dead_letters_url(plan)
    if failures:
        storage.write_text(dead_letters_url(plan), "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures))
    else:  # an older build's dead letters must not be taken for this one's
        storage.remove_tree(dead_letters_url(plan))
        failures_url = None
    stats = {"per_split": counters, "total": dict(sorted(total.items())),
             "melody_lengths_in_bars": histograms, "pitch_counts": pitches,
             "failures": len(failures), "failures_file": failures_url,
             "failure_reasons": dict(sorted(Counter(f.get("reason", "extraction_error") for f in failures).items()))}
    storage.write_text(storage.join(plan.out_dir, STATS), json.dumps(stats, indent=2, sort_keys=True))
    config = plan.settings.config
    info = {
        "config": config.name,
        "encoding": config.encoding,
        "input_size": encoding_compiled.input_size(config),  # without importing note-seq (a second)
        "num_classes": encoding_compiled.num_classes(config),
        "min_note": config.min_note,
        "max_note": config.max_note,
        "transpose_to_key": config.transpose_to_key,
        "steps_per_quarter": config.steps_per_quarter,
        "format": plan.settings.format,
        "settings": plan.settings.describe(),
        "limits": plan.settings.limits(),
        "counts": {split: sum(shard_counts[split].values()) for split in SPLITS},
        "sequences": {split: counters[split].get("sequences_read", 0) for split in SPLITS},
        "shards": {split: sorted(u.rsplit("/", 1)[-1] for u in shard_counts[split]) for split in SPLITS},
        "source_batches": [b.batch_id for b in plan.batches],
        "fingerprint": plan.fingerprint,
        "elapsed_s": round(elapsed_s, 3),
        "format_version": FORMAT_VERSION,
    }
    storage.write_text(storage.join(plan.out_dir, INFO), json.dumps(info, indent=2, sort_keys=True))
    storage.remove_tree(partial_url)
    stage_contract.write_marker(plan.out_dir, {"fingerprint": plan.fingerprint, "counts": info["counts"]})
    return {"info": info, "stats": stats}
