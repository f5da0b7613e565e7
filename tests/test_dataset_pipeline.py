"""The Beam dataset job end to end on generated corpora: exact records, stable splits, gs://."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

import midi_factory
from support import write_corpus
from melodyflow.transforms.io import storage
from melodyflow.transforms.ingest.batches import completed_batches, plan_ingest, read_sequences
from melodyflow.transforms.melodies.job import run_dataset_pipeline
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.extraction_reference import MelodySettings
from melodyflow.transforms.melodies.dataset import (IncompleteDatasetError, NoInputError, DatasetSettings, open_dataset,
                                       plan_dataset, reference_sequence_examples)
from melodyflow.transforms.beam.runners import RunnerConfig
from melodyflow.transforms.io.tfrecord import iter_records



def _ingest(source, data_root, workers=1):
    plan = plan_ingest(str(source), str(data_root), IngestSettings(collection="gen"))
    if not plan.is_empty:
        run_ingest_pipeline(plan, RunnerConfig(workers=workers))


def _build(data_root, workers=1, **kw):
    settings = DatasetSettings(config=get_config(kw.pop("config", "basic_rnn")), **kw)
    plan = plan_dataset(str(data_root), settings)
    return plan, run_dataset_pipeline(plan, RunnerConfig(workers=workers))


def _records(out_dir: str, split: str) -> list[bytes]:
    out = []
    for name in sorted(storage.list_dir(out_dir)):
        if name.rsplit("/", 1)[-1].startswith(f"{split}.tfrecord-"):
            out += list(iter_records(storage.read_bytes(name)))
    return out


def _expected(data_root, settings):
    """What note-seq's own objects (the oracle) yield for every stored NoteSequence, without Beam."""
    expected = {"train": collections.Counter(), "eval": collections.Counter()}
    totals = collections.Counter()
    for batch in completed_batches(str(data_root)):
        for raw in read_sequences(batch):
            split, records, stats, _ = reference_sequence_examples(raw, settings)
            expected[split].update(record for _, record in records)
            totals.update(stats)
    return expected, totals


@pytest.fixture
def ingested(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {f"song{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(40)})
    data = tmp_path / "data"
    _ingest(corpus, data)
    return corpus, data


@pytest.mark.slow
@pytest.mark.parametrize("fmt,config", [("compact", "basic_rnn"), ("sequence-example", "lookback_rnn")])
def test_dataset_holds_exactly_the_reference_examples(ingested, fmt, config):
    _, data = ingested
    plan, result = _build(data, format=fmt, config=config, eval_ratio=0.25)
    expected, totals = _expected(data, plan.settings)
    for split in ("train", "eval"):
        got = collections.Counter(_records(plan.out_dir, split))
        assert got == expected[split], split
        assert result["info"]["counts"][split] == sum(expected[split].values())
    info = open_dataset(str(data), config)
    assert info["format"] == fmt and info["input_size"] == get_config(config).input_size
    assert sum(info["counts"].values()) == totals["examples_written"] > 20
    assert info["counts"]["eval"] > 0 and info["counts"]["train"] > info["counts"]["eval"]
    stats = result["stats"]
    assert stats["total"]["sequences_read"] == 40
    assert stats["total"]["polyphonic_tracks_discarded"] == totals["polyphonic_tracks_discarded"] > 0
    assert stats["total"]["sequences_drums_only"] == 0
    assert sum(stats["melody_lengths_in_bars"]["train"].values()) == stats["per_split"]["train"]["melodies_extracted"]


@pytest.mark.slow
def test_rebuild_is_byte_identical_and_growth_never_moves_an_example(ingested, tmp_path):
    corpus, data = ingested
    plan, first = _build(data, eval_ratio=0.3)
    shards = {p.name: p.read_bytes() for p in Path(plan.out_dir).glob("*.tfrecord-*")}
    _build(data, eval_ratio=0.3)
    assert {p.name: p.read_bytes() for p in Path(plan.out_dir).glob("*.tfrecord-*")} == shards

    before = {split: set(_records(plan.out_dir, split)) for split in ("train", "eval")}
    write_corpus(corpus, {f"more{i:02d}.mid": midi_factory.melodic_midi(100 + i) for i in range(15)})
    _ingest(corpus, data)
    plan, second = _build(data, eval_ratio=0.3)
    after = {split: set(_records(plan.out_dir, split)) for split in ("train", "eval")}
    assert before["train"] <= after["train"] and before["eval"] <= after["eval"]
    assert second["stats"]["total"]["sequences_read"] == 55
    assert len(second["info"]["source_batches"]) == 2


@pytest.mark.slow
def test_transposed_copies_stay_in_their_sequence_split(ingested):
    _, data = ingested
    plan, result = _build(data, eval_ratio=0.5, melody=MelodySettings(transpositions=(-2, 0, 2)))
    expected, totals = _expected(data, plan.settings)
    assert totals["transpositions_generated"] > 100
    for split in ("train", "eval"):
        assert collections.Counter(_records(plan.out_dir, split)) == expected[split]


def test_missing_inputs_and_unfinished_datasets_are_refused(tmp_path):
    with pytest.raises(NoInputError, match="melodyflow ingest"):
        plan_dataset(str(tmp_path / "nothing"), DatasetSettings(config=get_config("basic_rnn")))
    with pytest.raises(IncompleteDatasetError, match="COMPLETED"):
        open_dataset(str(tmp_path / "nothing"), "basic_rnn")


@pytest.mark.slow
def test_dataset_reads_and_writes_gcs_with_two_workers(gcs_bucket, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(12)})
    for path in corpus.iterdir():
        storage.write_bytes(f"{gcs_bucket}/corpus/{path.name}", path.read_bytes())
    data_root = f"{gcs_bucket}/data"
    _ingest(f"{gcs_bucket}/corpus", data_root)
    plan, result = _build(data_root, workers=2, eval_ratio=0.3)
    expected, _ = _expected(data_root, plan.settings)
    for split in ("train", "eval"):
        assert collections.Counter(_records(plan.out_dir, split)) == expected[split]
    assert open_dataset(data_root, "basic_rnn")["counts"] == result["info"]["counts"]


@pytest.mark.slow
def test_ingestion_and_dataset_jobs_never_import_tensorflow(tmp_path):
    """The data plane's workers pay for no TensorFlow import (seconds and ~1 GB each)."""
    import subprocess
    import sys

    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(4)})
    script = f"""
import sys
from melodyflow.transforms.ingest.batches import plan_ingest
from melodyflow.transforms.melodies.job import run_dataset_pipeline
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
from melodyflow.transforms.beam.runners import RunnerConfig
run_ingest_pipeline(plan_ingest({str(corpus)!r}, {str(tmp_path / 'data')!r}, IngestSettings(collection="c")),
                    RunnerConfig(workers=1))
result = run_dataset_pipeline(plan_dataset({str(tmp_path / 'data')!r}, DatasetSettings(config=get_config("basic_rnn"))),
                              RunnerConfig(workers=1))
assert sum(result["info"]["counts"].values()) > 0
print(sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.stdout.strip().splitlines()[-1] == "[]"
